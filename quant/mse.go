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
func (s Spec) ParamsMSE(vals []float32) Params {
	lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range vals {
		lo, hi = min(lo, v), max(hi, v)
	}
	best := s.ParamsMinMax(lo, hi)
	bestErr := s.groupErr(vals, best, math.Inf(1))
	steps := int(MSEMaxShrink * MSEGrid)
	for i := 1; i <= steps; i++ {
		p := float32(1 - float64(i)/MSEGrid)
		cand := s.ParamsMinMax(p*lo, p*hi)
		if cand == best {
			continue
		}
		if e := s.groupErr(vals, cand, bestErr); e < bestErr {
			best, bestErr = cand, e
		}
	}
	return best
}

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
