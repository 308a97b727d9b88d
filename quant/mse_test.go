package quant

import (
	"math"
	"math/rand/v2"
	"testing"

	"llmq/kernels"
)

// normErr is Σ|x − Q(x)|^MSENorm computed independently of groupErr.
func normErr(vals []float32, s Spec, p Params) float64 {
	q := s.Quantizer(p)
	var e float64
	for _, x := range vals {
		e += math.Pow(math.Abs(float64(x-q.Fake(x))), MSENorm)
	}
	return e
}

func TestParamsMSE(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gauss := make([]float32, 128)
	for i := range gauss {
		gauss[i] = float32(rng.NormFloat64())
	}
	outlier := append([]float32(nil), gauss...)
	outlier[5] = 25 // one large value: min/max wastes the grid on it
	tests := []struct {
		name   string
		spec   string
		vals   []float32
		better bool // the search must strictly beat min/max
	}{
		{"int4 asym gaussian", "int4-asym-g128", gauss, true},
		{"int4 asym outlier", "int4-asym-g128", outlier, true},
		{"int4 sym gaussian", "int4-sym-g128", gauss, true},
		{"int3 sym outlier", "int3-sym-g128", outlier, false}, // clipping 25 costs more than the rounding it saves
		{"int8 sym gaussian", "int8-sym-g128", gauss, false},
		{"constant group", "int4-asym-g128", make([]float32, 128), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := MustParseSpec(tc.spec)
			lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
			for _, v := range tc.vals {
				lo, hi = min(lo, v), max(hi, v)
			}
			mm := s.ParamsMinMax(lo, hi)
			got := s.ParamsMSE(tc.vals)
			em, eg := normErr(tc.vals, s, mm), normErr(tc.vals, s, got)
			if eg > em {
				t.Fatalf("MSE search error %g > min/max error %g", eg, em)
			}
			if tc.better && !(eg < em) {
				t.Fatalf("MSE search did not improve on min/max (%g)", em)
			}
			if got.Scale > mm.Scale || !(got.Scale > 0) {
				t.Fatalf("scale %g: want in (0, min/max scale %g]", got.Scale, mm.Scale)
			}
			// Brute force over the same shrink grid: the search is exact.
			best := em
			for i := 1; i <= int(MSEMaxShrink*MSEGrid); i++ {
				p := float32(1 - float64(i)/MSEGrid)
				best = math.Min(best, normErr(tc.vals, s, s.ParamsMinMax(p*lo, p*hi)))
			}
			if math.Abs(eg-best) > 1e-9*math.Max(best, 1) {
				t.Fatalf("search error %g, brute force over the grid %g", eg, best)
			}
		})
	}
}

func TestComputeParamsMSE(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	rows, cols := 4, 256
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	for _, str := range []string{"int4-asym-g128", "int4-sym-channel", "int8-sym-tensor"} {
		s := MustParseSpec(str)
		mm, err := ComputeParams(w, rows, cols, s)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := ComputeParamsMSE(w, rows, cols, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CheckParams(ms, rows, cols); err != nil {
			t.Fatalf("%s: %v", str, err)
		}
		var em, es float64
		gc := s.GroupCols(cols)
		for i := range mm {
			var g []float32
			if s.Granularity == PerTensor {
				g = w
			} else {
				_, pc := s.ParamShape(rows, cols)
				r, c := i/pc, i%pc
				g = w[r*cols+c*gc : r*cols+(c+1)*gc]
			}
			em += normErr(g, s, mm[i])
			es += normErr(g, s, ms[i])
		}
		if es > em {
			t.Errorf("%s: MSE params error %g > min/max %g", str, es, em)
		}
		if s.Granularity == PerTensor && mm[0] != ms[0] {
			t.Errorf("%s: per-tensor params changed (%v → %v), want min/max kept", str, mm[0], ms[0])
		}
	}
	if _, err := ComputeParamsMSE([]float32{1, float32(math.NaN())}, 1, 2, MustParseSpec("int4-sym-channel")); err == nil {
		t.Error("NaN weight: want an error")
	}
}

// paramsMSEReference is the shrink search with math.Pow only (the search
// before screening): ParamsMSE must choose exactly what it chooses.
func paramsMSEReference(s Spec, vals []float32) Params {
	lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range vals {
		lo, hi = min(lo, v), max(hi, v)
	}
	best := s.ParamsMinMax(lo, hi)
	bestErr := s.groupErr(vals, best, math.Inf(1))
	for i := 1; i <= int(MSEMaxShrink*MSEGrid); i++ {
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

// ParamsMSE (screened, with and without the assembly kernels) chooses
// exactly what the math.Pow search chooses, on Gaussian, outlier, uniform,
// one-sided groups and groups of few distinct values (exact ties).
func TestParamsMSEScreeningExact(t *testing.T) {
	for _, asm := range []bool{false, true} {
		if asm && !kernels.HasAsm() {
			continue
		}
		prev := kernels.SetAsm(asm)
		testParamsMSEScreeningExact(t)
		kernels.SetAsm(prev)
	}
}

func testParamsMSEScreeningExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	specs := []string{"int4-asym-g128", "int3-asym-g64", "int4-sym-g128", "int2-asym-g32", "int8-sym-g128",
		"int4-asym-g128-f16scale", "fp4e2m1-g32", "fp8e4m3-g128"}
	for _, str := range specs {
		s := MustParseSpec(str)
		n := s.GroupSize
		for g := 0; g < 400; g++ {
			vals := make([]float32, n)
			sd := math.Pow(10, -3+4*rng.Float64())
			for i := range vals {
				vals[i] = float32(rng.NormFloat64() * sd)
			}
			switch g % 5 {
			case 1: // an outlier
				vals[rng.IntN(n)] *= 20
			case 2: // few distinct values: many exact ties between candidates
				for i := range vals {
					vals[i] = float32(rng.IntN(5)-2) * float32(sd)
				}
			case 3: // uniform
				for i := range vals {
					vals[i] = float32((rng.Float64()*2 - 1) * sd)
				}
			case 4: // one-sided
				for i := range vals {
					vals[i] = float32(math.Abs(float64(vals[i])))
				}
			}
			if got, want := s.ParamsMSE(vals), paramsMSEReference(s, vals); got != want {
				t.Fatalf("%s group %d: screened search %+v, math.Pow search %+v", str, g, got, want)
			}
		}
	}
}
