package methods

import (
	"math"

	"llmq/quant"
)

// refinePow2 improves power-of-two constrained scales (ZeroQuant-FP's M1
// and M2) of a weight matrix. The constraint fixes the set of allowed
// scales — powers of two (M1), or a row scale times powers of two (M2) —
// and the paper picks the ceiling, the smallest allowed scale that does not
// clip. That can double the scale (one bit of precision lost); the
// neighbouring, smaller member of the set clips the group's largest values
// a little but rounds everything else twice as finely, and is often the
// better choice; M2's rule rounds the other way (it may clip), so there the
// next larger member is a candidate too. For each group we keep whichever
// candidate gives the smallest squared error on the group's weights. The result still
// satisfies the constraint exactly. Other specs are returned unchanged.
func refinePow2(w []float32, rows, cols int, spec quant.Spec, params []quant.Params) {
	if spec.Scale != quant.ScalePow2 && spec.Scale != quant.ScalePow2Ratio {
		return
	}
	if spec.Granularity == quant.PerTensor {
		params[0] = bestPow2(w, spec, params[0], []float32{params[0].Scale / 2})
		return
	}
	_, pc := spec.ParamShape(rows, cols)
	gc := spec.GroupCols(cols)
	for r := 0; r < rows; r++ {
		var rowMax float32
		for g := 0; g < pc; g++ {
			rowMax = max(rowMax, params[r*pc+g].Scale)
		}
		for g := 0; g < pc; g++ {
			p := &params[r*pc+g]
			vals := w[r*cols+g*gc : r*cols+(g+1)*gc]
			cands := []float32{p.Scale / 2}
			if spec.Scale == quant.ScalePow2Ratio && 2*p.Scale <= rowMax {
				// M2 rounds the ratio down (S_max/2^ceil(log2(S_max/S)) ≤ S),
				// which clips; the next larger member does not.
				cands = append(cands, 2*p.Scale)
			}
			*p = bestPow2(vals, spec, *p, cands)
		}
	}
}

// bestPow2 returns whichever of p and p with a candidate scale has the
// smallest squared error on vals.
func bestPow2(vals []float32, spec quant.Spec, p quant.Params, cands []float32) quant.Params {
	best, bestErr := p, sqErr(vals, spec, p)
	for _, c := range cands {
		if !(c > 0) || math.IsInf(float64(c), 0) {
			continue
		}
		q := p
		q.Scale = c
		if e := sqErr(vals, spec, q); e < bestErr {
			best, bestErr = q, e
		}
	}
	return best
}

func sqErr(vals []float32, spec quant.Spec, p quant.Params) float64 {
	q := spec.Quantizer(p)
	var e float64
	for _, v := range vals {
		d := float64(q.Fake(v) - v)
		e += d * d
	}
	return e
}
