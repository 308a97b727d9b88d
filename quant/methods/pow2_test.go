package methods

import (
	"math"
	"math/rand/v2"
	"testing"

	"llmq/quant"
)

// refinePow2 keeps the scale constraint and never makes a group's error worse.
func TestRefinePow2(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	rows, cols := 16, 256
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * math.Exp(rng.NormFloat64()))
	}
	for _, name := range []string{"fp4e2m1-g32-pow2", "fp4e2m1-g32-pow2ratio", "int4-sym-g64-pow2"} {
		spec := quant.MustParseSpec(name)
		plain, err := quant.ComputeParams(w, rows, cols, spec)
		if err != nil {
			t.Fatal(err)
		}
		refined := append([]quant.Params(nil), plain...)
		refinePow2(w, rows, cols, spec, refined)
		_, pc := spec.ParamShape(rows, cols)
		gc := spec.GroupCols(cols)
		changed := 0
		for r := 0; r < rows; r++ {
			var rowMax float32
			for g := 0; g < pc; g++ {
				rowMax = max(rowMax, plain[r*pc+g].Scale)
			}
			for g := 0; g < pc; g++ {
				i := r*pc + g
				vals := w[r*cols+g*gc : r*cols+(g+1)*gc]
				if sqErr(vals, spec, refined[i]) > sqErr(vals, spec, plain[i]) {
					t.Fatalf("%s: group %d got worse", name, i)
				}
				if refined[i] != plain[i] {
					changed++
				}
				ratio := float64(refined[i].Scale)
				if spec.Scale == quant.ScalePow2Ratio {
					ratio = float64(rowMax) / ratio
				}
				if frac, _ := math.Frexp(ratio); frac != 0.5 {
					t.Fatalf("%s: scale %v breaks the power-of-two constraint", name, refined[i].Scale)
				}
			}
		}
		if changed == 0 {
			t.Errorf("%s: refinement never changed a scale (suspicious on heavy-tailed weights)", name)
		}
	}
}
