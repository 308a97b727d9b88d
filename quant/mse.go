package quant

import "math"

// MSE observer: the range-shrinking grid search of GPTQ's reference
// quantizer (quant.py, mse=True) and llm-compressor's "mse" observer.
//
// Min/max parameters make the grid cover a group's extreme values, which at
// 3–4 bits spends most of the few levels on one or two outliers. Shrinking
// the range to p·[lo, hi] clips those values but rounds the other ones more
// finely. The search tries p = 1, 1 − 1/G, …, 1 − ⌊S·G⌋/G (G = MSEGrid,
// S = MSEMaxShrink) and keeps the parameters minimizing
//
//	Σ_i |x_i − Q_p(x_i)|^MSENorm
//
// with the exponent 2.4 of the reference (between the MSE and an L3 norm,
// penalizing large errors a little more than MSE). p = 1 is min/max, so the
// result is never worse than min/max under that norm.
const (
	MSEGrid      = 100
	MSEMaxShrink = 0.8
	MSENorm      = 2.4
)

// ParamsMSE returns the parameters of one group of values chosen by the
// shrink search above (vals finite, non-empty).
//
// The search is the reference's scan — candidates in order of decreasing
// p, a candidate replacing the best so far only if its error is strictly
// smaller — with each error first screened cheaply:
//
//   - |d|^2.4 by pow24, a polynomial accurate to 1e-8 that costs a few
//     multiply-adds where math.Pow costs hundreds of nanoseconds;
//   - the group's large values first, so that a candidate clipping them
//     too much exceeds the best error, and is abandoned, after a few terms
//     (the sum of nonnegative terms only grows).
//
// A screened error that differs from the best one's by more than
// mseScreenTol (100× the bound on the screening error) decides the
// comparison; the rare close calls are decided by the exact errors
// (math.Pow in the original order, as groupErr). Every comparison therefore
// comes out as with math.Pow alone, and so does the result.
func (s Spec) ParamsMSE(vals []float32) Params {
	lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range vals {
		lo, hi = min(lo, v), max(hi, v)
	}
	best := s.ParamsMinMax(lo, hi)
	var buf [256]float32
	ordered := largeFirst(vals, lo, hi, buf[:0])
	bestApprox := s.groupErrApprox(ordered, best, math.Inf(1))
	bestExact := math.NaN() // computed on demand
	steps := int(MSEMaxShrink * MSEGrid)
	for i := 1; i <= steps; i++ {
		p := float32(1 - float64(i)/MSEGrid)
		cand := s.ParamsMinMax(p*lo, p*hi)
		if cand == best {
			continue
		}
		hiBound := bestApprox * (1 + mseScreenTol)
		e := s.groupErrApprox(ordered, cand, hiBound)
		switch {
		case e >= hiBound:
			// Certainly not better.
		case e < bestApprox*(1-mseScreenTol):
			best, bestApprox, bestExact = cand, e, math.NaN()
		default:
			if math.IsNaN(bestExact) {
				bestExact = s.groupErr(vals, best, math.Inf(1))
			}
			if ee := s.groupErr(vals, cand, bestExact); ee < bestExact {
				best, bestApprox, bestExact = cand, e, ee
			}
		}
	}
	return best
}

// largeFirst returns vals reordered (appended to dst) with the values
// beyond half the range's extremes first: those are the ones clipping
// candidates get wrong.
func largeFirst(vals []float32, lo, hi float32, dst []float32) []float32 {
	l, h := lo/2, hi/2
	for _, v := range vals {
		if v < l || v > h {
			dst = append(dst, v)
		}
	}
	for _, v := range vals {
		if !(v < l || v > h) {
			dst = append(dst, v)
		}
	}
	return dst
}

// mseScreenTol is the relative margin within which screened errors are
// re-compared exactly: pow24's relative error is below 1e-8 and float64
// sums of up to millions of nonnegative terms add less than 1e-9.
const mseScreenTol = 1e-6

// groupErr is Σ|x − Q(x)|^MSENorm over vals, abandoned (returning +Inf)
// once it exceeds bound.
func (s Spec) groupErr(vals []float32, p Params, bound float64) float64 {
	q := s.Quantizer(p)
	var e float64
	for _, x := range vals {
		d := math.Abs(float64(x - q.Fake(x)))
		e += math.Pow(d, MSENorm)
		if e >= bound {
			return math.Inf(1)
		}
	}
	return e
}

// groupErrApprox is groupErr with |d|^2.4 by pow24, abandoned (+Inf) once
// the sum reaches bound. The quantization error d of each value is computed
// exactly as Quantizer.Fake does.
func (s Spec) groupErrApprox(vals []float32, p Params, bound float64) float64 {
	q := s.Quantizer(p)
	var e float64
	if q.FP != nil {
		for _, x := range vals {
			e += pow24(x - q.Fake(x))
			if e >= bound {
				return math.Inf(1)
			}
		}
		return e
	}
	// Integer grid: Fake inlined (QuantizeInt's clip(round(x/s) + z) in the
	// same float32 and float64 steps), pow24 inlined with Estrin's scheme,
	// and the bound checked every 8 values.
	sc, z := q.Scale, float64(q.Zero)
	qmin, qmax := float64(q.QMin), float64(q.QMax)
	for i := 0; i < len(vals); i += 8 {
		for _, x := range vals[i:min(i+8, len(vals))] {
			r := math.RoundToEven(float64(x/sc)) + z
			if r > qmax {
				r = qmax
			} else if r < qmin {
				r = qmin
			}
			d := x - sc*float32(r-z)
			b := math.Float32bits(d) &^ (1 << 31)
			if b < 1<<23 {
				e += pow24(d)
				continue
			}
			t := 2*float64(math.Float32frombits(b&0x7fffff|0x3f800000)) - 3
			t2 := t * t
			p := (pow24C0 + pow24C1*t) + t2*(pow24C2+pow24C3*t) +
				(t2*t2)*((pow24C4+pow24C5*t)+t2*(pow24C6+pow24C7*t))
			e += p * pow24Exp[b>>23]
		}
		if e >= bound {
			return math.Inf(1)
		}
	}
	return e
}

// pow24 is |d|^2.4 in float64 with relative error below 1e-8 (checked over
// every float32 mantissa by TestPow24). A normal float32 is m·2^k with
// m ∈ [1, 2), so |d|^2.4 = m^2.4 · 2^(2.4k): the power of two comes from a
// table (exact to float64 rounding) and m^2.4 from its degree-7 Chebyshev
// interpolant in t = 2m − 3 ∈ [−1, 1) (error 6e-9). Zeros give 0,
// subnormals (below 2^−126, whose 2.4th power is below 1e-91) go to
// math.Pow.
func pow24(d float32) float64 {
	b := math.Float32bits(d) &^ (1 << 31)
	k := b >> 23
	if k == 0 {
		if b == 0 {
			return 0
		}
		return math.Pow(float64(math.Float32frombits(b)), MSENorm)
	}
	t := 2*float64(math.Float32frombits(b&0x7fffff|0x3f800000)) - 3
	p := pow24C7
	p = p*t + pow24C6
	p = p*t + pow24C5
	p = p*t + pow24C4
	p = p*t + pow24C3
	p = p*t + pow24C2
	p = p*t + pow24C1
	p = p*t + pow24C0
	return p * pow24Exp[k]
}

// Monomial coefficients of the Chebyshev interpolant of ((t+3)/2)^2.4 on
// [−1, 1] at 8 nodes.
const (
	pow24C0 = 2.6461778054503781106
	pow24C1 = 2.116942239544754028
	pow24C2 = 0.49395303704667430452
	pow24C3 = 0.021953507024686095106
	pow24C4 = -0.0010969176651934684005
	pow24C5 = 0.00011692690037265116348
	pow24C6 = -0.000018098281067832114011
	pow24C7 = 3.1470215216549382944e-6
)

// pow24Exp[k] = 2^(2.4·(k − 127)) for the biased float32 exponents k
// (entry 255 is +Inf: a difference that overflowed float32).
var pow24Exp = func() (t [256]float64) {
	for k := range t {
		t[k] = math.Pow(2, MSENorm*float64(k-127))
	}
	t[255] = math.Inf(1)
	return t
}()

// ComputeParamsMSE is ComputeParams with every group's range chosen by
// ParamsMSE (per-channel and per-group weights; a per-tensor spec keeps
// min/max). Row-level constraints (ConstrainRow) still apply.
func ComputeParamsMSE(w []float32, rows, cols int, spec Spec) ([]Params, error) {
	params, err := ComputeParams(w, rows, cols, spec)
	if err != nil || spec.Granularity == PerTensor || spec.Scale != ScaleAny {
		return params, err
	}
	gc := spec.GroupCols(cols)
	_, pc := spec.ParamShape(rows, cols)
	for r := 0; r < rows; r++ {
		for g := 0; g < pc; g++ {
			params[r*pc+g] = spec.ParamsMSE(w[r*cols+g*gc : r*cols+min((g+1)*gc, cols)])
		}
	}
	return params, nil
}
