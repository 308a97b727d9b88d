package quant

import "math"

// Affine integer quantization.
//
// A b-bit integer grid maps a real x to a code q and back:
//
//	q = clip(round(x/s) + z, qmin, qmax)
//	x̂ = s·(q − z)
//
// with scale s > 0 and integer zero-point z. Inside the clip range the error
// is at most half a step, |x − x̂| ≤ s/2; outside it x̂ saturates to the
// nearest end of the grid.
//
// round is round-half-to-even, the rounding of torch.round and of the FP
// units: round(2.5) = 2, round(3.5) = 4, round(−0.5) = −0. Rounding half away
// from zero would bias every tie outward; half-to-even is unbiased, and it is
// what the reference implementations (GPTQ, SmoothQuant, AWQ) compute, so
// codes produced here match theirs bit for bit.
//
// Two families of grids:
//
// Symmetric (z = 0), signed codes. By default the range is the restricted
// [−(2^(b−1)−1), 2^(b−1)−1] (int8: [−127, 127]), which is symmetric about
// zero: +a and −a quantize to opposite codes, the scale of an absmax a is
// simply s = a/(2^(b−1)−1), and the product of two codes never reaches the
// (−128)·(−128) corner that overflows int8×int8→int16 tricks. This is the
// choice of SmoothQuant, LLM.int8() and TensorRT for weights.
//
// The full-range option [−2^(b−1), 2^(b−1)−1] (int8: [−128, 127]) uses the
// extra negative code. It is the grid of GPTQ's "sym" mode, which works on
// the unsigned grid [0, 2^b−1] with the zero-point fixed at the midpoint
// 2^(b−1): subtracting that mid zero-point gives exactly this signed range.
// Both ranges use one scale rule, s = 2a/(qmax − qmin), which for the full
// range is GPTQ's s = 2a/(2^b−1); +a then lands on qmax + ½ and saturates
// to qmax, an error of exactly s/2, so the s/2 bound still holds on [−a, a].
//
// Asymmetric: unsigned codes [0, 2^b−1] and an integer zero-point
// z ∈ [0, 2^b−1] chosen so that 0 is exactly representable (x = 0 ↦ q = z):
//
//	lo = min(xmin, 0), hi = max(xmax, 0)
//	s = (hi − lo)/(2^b − 1),  z = clip(−round(lo/s), 0, 2^b−1)
//
// Including 0 in the range keeps zero padding and ReLU zeros exact, as
// PyTorch observers and GPTQ do; rounding z shifts the grid by at most s/2,
// so the s/2 bound holds on the whole of [lo, hi].
//
// Degenerate ranges. An all-zero group (absmax 0, or lo = hi = 0) would give
// s = 0 and NaN = 0/0 in x/s. Instead the scale is floored at a tiny positive
// value (MinScale for float32 scales): every code is then z, which
// dequantizes to exactly 0, and no step of quantize/dequantize produces NaN
// or Inf. A tiny floor, rather than PyTorch's s = 1 or GPTQ's range [−1, 1],
// keeps such a group from dominating the ZeroQuant-FP M2 constraint (which
// divides every scale of a row by the largest) and is also the right answer
// for groups of legitimately tiny but nonzero weights.

// MinScale is the floor on every scale computed here for float32 scale
// storage: the smallest normal float32, 2^−126. It only ever matters for
// all-zero (or denormal-valued) groups; see the package comment on
// degenerate ranges. FP16 scale storage uses its own floor (see pack.go).
const MinScale float32 = 0x1p-126

// IntRange returns the code range [qmin, qmax] of a bits-wide integer grid:
// symmetric restricted [−(2^(b−1)−1), 2^(b−1)−1], symmetric full
// [−2^(b−1), 2^(b−1)−1], or asymmetric [0, 2^b−1] (fullRange is ignored
// for asymmetric grids). bits must be in 2..8; it panics otherwise, as the
// Spec that carries bits has already been validated.
func IntRange(bits int, symmetric, fullRange bool) (qmin, qmax int32) {
	if bits < 2 || bits > 8 {
		panic("quant.IntRange: bits outside 2..8")
	}
	if !symmetric {
		return 0, 1<<bits - 1
	}
	h := int32(1) << (bits - 1)
	if fullRange {
		return -h, h - 1
	}
	return -(h - 1), h - 1
}

// RoundHalfEven rounds to the nearest integer, ties to even (torch.round).
func RoundHalfEven(x float32) float32 {
	return float32(math.RoundToEven(float64(x)))
}

// IntParamsMinMax returns the scale and zero-point of the grid [qmin, qmax]
// for values in [lo, hi] (lo ≤ hi, both finite). For a symmetric grid the
// zero-point is 0 and s = 2·max(|lo|, |hi|)/(qmax − qmin); for an asymmetric
// grid the range is widened to contain 0, s = (hi − lo)/(qmax − qmin) and
// z = clip(qmin − round(lo/s), qmin, qmax). The scale is floored at minScale
// (> 0; MinScale for float32 storage) so that zero ranges stay finite.
func IntParamsMinMax(lo, hi float32, qmin, qmax int32, symmetric bool, minScale float32) (scale float32, zero int32) {
	steps := float64(qmax - qmin)
	if symmetric {
		a := math.Max(math.Abs(float64(lo)), math.Abs(float64(hi)))
		return clampScale(2*a/steps, minScale), 0
	}
	l, h := math.Min(float64(lo), 0), math.Max(float64(hi), 0)
	scale = clampScale((h-l)/steps, minScale)
	return scale, intZero(float32(l), scale, qmin, qmax)
}

// intZero is z = clip(qmin − round(lo/s), qmin, qmax), computed in float32
// like torch's observers.
func intZero(lo, scale float32, qmin, qmax int32) int32 {
	z := float64(qmin) - math.RoundToEven(float64(lo/scale))
	return int32(math.Max(float64(qmin), math.Min(float64(qmax), z)))
}

// clampScale converts a nonnegative float64 scale to float32, flooring at
// minScale and capping at the largest finite float32 (ranges wider than
// float32 can only come from float32 inputs near ±MaxFloat32).
func clampScale(s float64, minScale float32) float32 {
	if !(s >= float64(minScale)) { // also catches NaN
		return minScale
	}
	if s > math.MaxFloat32 {
		return math.MaxFloat32
	}
	f := float32(s)
	if f < minScale {
		f = minScale
	}
	return f
}

// QuantizeInt returns q = clip(round(x/s) + z, qmin, qmax). ±Inf saturate;
// NaN maps to z (dequantizing to 0) so that the code is always defined —
// callers that must reject NaN check their input first, as QuantizeWeight
// does. x/s is computed in float32, as torch does.
func QuantizeInt(x, scale float32, zero, qmin, qmax int32) int32 {
	r := math.RoundToEven(float64(x/scale)) + float64(zero)
	switch {
	case r >= float64(qmax):
		return qmax
	case r <= float64(qmin):
		return qmin
	case r == r:
		return int32(r)
	}
	return zero // NaN
}

// DequantizeInt returns x̂ = s·(q − z). q − z is an exact small integer, so
// the only rounding is the one float32 product.
func DequantizeInt(q int32, scale float32, zero int32) float32 {
	return scale * float32(q-zero)
}
