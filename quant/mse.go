package quant

import (
	"math"

	"llmq/kernels"
)

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
//   - |d|^2.4 by a polynomial accurate to 1e-8 (kernels.Pow24; on integer
//     grids kernels.QuantErrPow24, 8 values at a time in AVX2), a few
//     multiply-adds where math.Pow costs hundreds of nanoseconds;
//   - the group's large values first, so that a candidate clipping them
//     too much exceeds the best error, and is abandoned, after a few terms
//     (the sum of nonnegative terms only grows).
//
// A screened error that differs from the best one's by more than
// mseScreenTol (100× the bound on the screening error, plus mseScreenAbs) decides the
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
		hiBound := bestApprox*(1+mseScreenTol) + mseScreenAbs
		e := s.groupErrApprox(ordered, cand, hiBound)
		switch {
		case e >= hiBound:
			// Certainly not better.
		case e < bestApprox*(1-mseScreenTol)-mseScreenAbs:
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

// mseScreenTol and mseScreenAbs are the margins within which screened
// errors are re-compared exactly: the screened powers are within 1e-8
// relative (and 1e-91 absolute: differences below 2^−126 count as 0), and
// float64 sums of up to millions of nonnegative terms add less than 1e-9.
const (
	mseScreenTol = 1e-6
	mseScreenAbs = 1e-80
)

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

// groupErrApprox is groupErr with |d|^2.4 screened (kernels.Pow24,
// kernels.QuantErrPow24 on integer grids: within 1e-8 relative, plus below
// 1e-91 absolute per value for differences under 2^−126), returning at
// least bound (or +Inf) once the sum reaches bound. The quantization
// difference d of each value is computed exactly as Quantizer.Fake does.
func (s Spec) groupErrApprox(vals []float32, p Params, bound float64) float64 {
	q := s.Quantizer(p)
	if q.FP == nil {
		return kernels.QuantErrPow24(vals, q.Scale, float32(q.Zero), float32(q.QMin), float32(q.QMax), bound)
	}
	var e float64
	for _, x := range vals {
		e += kernels.Pow24(x - q.Fake(x))
		if e >= bound {
			return math.Inf(1)
		}
	}
	return e
}

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
