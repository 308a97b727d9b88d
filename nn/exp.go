package nn

import "math"

// Exp32 is exp(x) in float32 arithmetic accurate to a few ulp, several times
// faster than math.Exp, for single values (sampling). Whole slices — the
// softmax of attention, SiLU, log-sum-exp over the vocabulary — go through
// the vectorized kernels.ExpShift, kernels.SiLU and kernels.SumExp instead.
//
// It writes e^x = 2^n · e^r with n = round(x·log₂e) and |r| ≤ ln2/2, r
// computed in two parts (Cody–Waite) so the reduction is exact, and e^r by
// a degree-6 Taylor/minimax polynomial whose error is below float32's.
func Exp32(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375 // ln2 split: hi has few bits, so n·ln2hi is exact
		ln2lo = -2.12194440e-4
	)
	switch {
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	case x != x:
		return x
	}
	t := x * log2e
	var ni int32
	if t >= 0 { // round half away from zero: any nearest integer works
		ni = int32(t + 0.5)
	} else {
		ni = int32(t - 0.5)
	}
	n := float32(ni)
	r := x - n*ln2hi
	r -= n * ln2lo
	// e^r ≈ 1 + r + r²/2! + … + r⁶/6!  (|r| ≤ 0.347: remainder < 2e-8)
	p := float32(1.0 / 720)
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	if ni < -126 { // subnormal result: scale in two steps
		return p * math.Float32frombits(uint32(ni+126+127)<<23) * math.Float32frombits(1<<23)
	}
	if ni > 127 {
		return p * 2 * math.Float32frombits(uint32(ni-1+127)<<23)
	}
	return p * math.Float32frombits(uint32(ni+127)<<23)
}
