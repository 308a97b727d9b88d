package methods

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"llmq/kernels"
	"llmq/nn"
	"llmq/quant"
)

// Scaling alone (no quantization) must leave the FP function unchanged,
// with nontrivial scales actually folded in: bit for bit when the factors
// are powers of two (the fold is then exact in floating point), to float
// rounding otherwise. The probes are held-out sequences: on the first
// calibration sequence tiny-llama has one ill-conditioned position (9)
// where even random factors in [0.75, 1.35] move a logit by up to 1.7e-5
// of the largest.
func TestAWQScalingPreservesFunction(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-opt"} {
		for _, pow2 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pow2=%v", name, pow2), func(t *testing.T) {
				m := loadTiny(t, name)
				probes := calibSeqs(14, 40, m.Vocab)[10:]
				var before [][]float32
				for _, p := range probes {
					before = append(before, logits(t, m, p))
				}
				aw := &AWQ{Scheme: Scheme{Weights: quant.MustParseSpec("int4-asym-channel")}, TransformOnly: true, pow2: pow2}
				if err := Run(m, calibSeqs(4, 32, m.Vocab), []Method{aw}, nil); err != nil {
					t.Fatal(err)
				}
				nonzero := 0
				for _, a := range aw.Chosen {
					if a > 0 {
						nonzero++
					}
				}
				if nonzero == 0 {
					t.Fatalf("every mapping chose α = 0 (no scaling to test): %v", aw.Chosen)
				}
				var worst float64
				for i, p := range probes {
					worst = max(worst, relErr(logits(t, m, p), before[i]))
				}
				t.Logf("%d of %d mappings scaled; logit relative error %.3g", nonzero, len(aw.Chosen), worst)
				if pow2 && worst != 0 {
					t.Errorf("power-of-two scaling changed the logits: relative error %.3g", worst)
				}
				if worst > 1e-5 {
					t.Errorf("scaling changed the logits: relative error %.3g > 1e-5", worst)
				}
				for _, nl := range m.Blocks[0].Linears() {
					if _, ok := (*nl.Linear).(*nn.Dense); !ok {
						t.Errorf("TransformOnly quantized %s", nl.Role)
					}
				}
			})
		}
	}
}

// awqOutErr is ‖X·Wᵀ − X·Ŵᵀ‖² for x [n×in], w and ŵ [out×in].
func awqOutErr(x, w, wh []float32, n, out, in int) float64 {
	y := make([]float32, n*out)
	yh := make([]float32, n*out)
	kernels.Sgemm(true, n, out, in, x, in, w, in, y, out, false)
	kernels.Sgemm(true, n, out, in, x, in, wh, in, yh, out, false)
	return awqSqDiff(yh, y)
}

// One linear whose input has a few salient channels (mean |x| 25× the
// rest): AWQ's scaling, and then its clipping, must beat RTN.
func TestAWQSalientChannels(t *testing.T) {
	const n, in, out = 256, 128, 96
	spec := quant.MustParseSpec("int4-asym-g32")
	rng := rand.New(rand.NewPCG(1, 2))
	salient := map[int]bool{5: true, 40: true, 77: true, 101: true}
	x := make([]float32, n*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		if salient[i%in] {
			x[i] *= 25
		}
	}
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	sx := make([]float64, in)
	absMax := make([]float32, in)
	for i, v := range x {
		sx[i%in] += math.Abs(float64(v)) / n
		absMax[i%in] = max(absMax[i%in], float32(math.Abs(float64(v))))
	}
	groups := make([][]int, in)
	for j := range groups {
		groups[j] = []int{j}
	}

	rtn, err := quant.QuantizeWeight(w, out, in, spec)
	if err != nil {
		t.Fatal(err)
	}
	errRTN := awqOutErr(x, w, rtn.Dequantize(), n, out, in)

	d := nn.NewDense(append([]float32(nil), w...), nil, out, in)
	alpha, f, err := awqSearchScales(x, n, in, []*nn.Dense{d}, groups, sx, absMax, Scheme{Weights: spec}, 20)
	if err != nil {
		t.Fatal(err)
	}
	cs := expand(f, groups, in)
	ws := append([]float32(nil), w...)
	scaleColumns(ws, out, in, cs)
	xs := make([]float32, len(x))
	for i, v := range x {
		xs[i] = v / cs[i%in]
	}
	// Effective weight of the scaled, quantized layer seen from X: Q(W·s)/s.
	effective := func(params []quant.Params) []float32 {
		qt, err := quant.QuantizeWithParams(ws, out, in, spec, params)
		if err != nil {
			t.Fatal(err)
		}
		e := qt.Dequantize()
		for i := range e {
			e[i] /= cs[i%in]
		}
		return e
	}
	rtnParams, _ := quant.ComputeParams(ws, out, in, spec)
	errScale := awqOutErr(x, w, effective(rtnParams), n, out, in)
	rlo, rhi, ratio, err := awqClipRanges(ws, out, in, xs, n, spec)
	if err != nil {
		t.Fatal(err)
	}
	clipped := awqRangeParams(spec, rlo, rhi, out)
	errClip := awqOutErr(x, w, effective(clipped), n, out, in)
	t.Logf("output error: RTN %.4g, AWQ scale (α=%.2f) %.4g, + clip (mean ratio %.3f) %.4g", errRTN, alpha, errScale, ratio, errClip)
	if alpha == 0 {
		t.Error("salient channels must make the search pick α > 0")
	}
	if errScale >= errRTN*0.8 {
		t.Errorf("AWQ scaling should clearly beat RTN: %.4g vs %.4g", errScale, errRTN)
	}
	if errClip >= errScale {
		t.Errorf("clipping should reduce the error further: %.4g vs %.4g", errClip, errScale)
	}
}

// awqRMSDiff is the root-mean-square difference of two logit vectors.
func awqRMSDiff(a, b []float32) float64 {
	return math.Sqrt(awqSqDiff(a, b) / float64(len(a)))
}

// End to end on tiny-llama (planted outlier channels), W4 g32: AWQ logits
// must be closer to FP than RTN's. down_proj reads 344 channels, which g32
// does not divide, so it stays FP in both.
func TestAWQBeatsRTNTinyLlama(t *testing.T) {
	scheme := Scheme{Weights: quant.MustParseSpec("int4-asym-g32")}
	sel, err := NewSelector(nil, []string{"down_proj"})
	if err != nil {
		t.Fatal(err)
	}
	probe := calibSeqs(20, 64, 512)[16:] // held out: calibration uses the first 16
	fp := loadTiny(t, "tiny-llama")
	var ref [][]float32
	for _, p := range probe {
		ref = append(ref, logits(t, fp, p))
	}
	errOf := func(stage Method) (rms, rel float64) {
		m := loadTiny(t, "tiny-llama")
		if err := Run(m, calibSeqs(16, 64, m.Vocab), []Method{stage}, nil); err != nil {
			t.Fatal(err)
		}
		for i, p := range probe {
			l := logits(t, m, p)
			rms += awqRMSDiff(l, ref[i]) / float64(len(probe))
			rel = max(rel, relErr(l, ref[i]))
		}
		return rms, rel
	}
	rtnRMS, rtnRel := errOf(&RTN{Scheme: scheme, Select: sel})
	noClip := &AWQ{Scheme: scheme, Select: sel}
	scaleRMS, scaleRel := errOf(noClip)
	aw := NewAWQ(scheme)
	aw.Select = sel
	awqRMS, awqRel := errOf(aw)
	t.Logf("logit error (rms / max-rel): RTN %.4f / %.4f, AWQ scale only %.4f / %.4f, AWQ scale+clip %.4f / %.4f",
		rtnRMS, rtnRel, scaleRMS, scaleRel, awqRMS, awqRel)
	t.Logf("chosen α: %v", aw.Chosen)
	t.Logf("clip ratios: %v", aw.ClipRatio)
	if awqRMS >= rtnRMS {
		t.Errorf("AWQ logits should be closer to FP than RTN's: rms %.4f vs %.4f", awqRMS, rtnRMS)
	}
	if scaleRMS >= rtnRMS {
		t.Errorf("AWQ scaling alone should beat RTN: rms %.4f vs %.4f", scaleRMS, rtnRMS)
	}
}

func TestAWQErrors(t *testing.T) {
	m := loadTiny(t, "tiny-llama")
	aw := NewAWQ(Scheme{Weights: quant.MustParseSpec("int4-asym-g32")}) // 344 % 32 ≠ 0 for down_proj
	if err := Run(m, calibSeqs(2, 16, m.Vocab), []Method{aw}, nil); err == nil {
		t.Error("a group size that does not divide down_proj's input must be an error")
	}
	if err := Run(m, nil, []Method{NewAWQ(Scheme{Weights: quant.MustParseSpec("int4-asym-g8")})}, nil); err == nil {
		t.Error("AWQ without calibration data must be an error")
	}
}

// TransformOnly with Clip leaves FP32 linears whose groups are clamped to
// the searched ranges; RTN after it then finds those ranges and must land
// close to AWQ's own quantization (codes may differ only where a clamped
// value and a saturated one round differently at the edge of the grid).
func TestAWQTransformOnlyThenRTN(t *testing.T) {
	scheme := Scheme{Weights: quant.MustParseSpec("int4-asym-g32")}
	sel, err := NewSelector(nil, []string{"down_proj"})
	if err != nil {
		t.Fatal(err)
	}
	probe := calibSeqs(20, 64, 512)[16:]
	fp := loadTiny(t, "tiny-llama")
	run := func(stages ...Method) (rms float64) {
		m := loadTiny(t, "tiny-llama")
		if err := Run(m, calibSeqs(16, 64, m.Vocab), stages, nil); err != nil {
			t.Fatal(err)
		}
		for _, p := range probe {
			rms += awqRMSDiff(logits(t, m, p), logits(t, fp, p)) / float64(len(probe))
		}
		return rms
	}
	full := NewAWQ(scheme)
	full.Select = sel
	split := NewAWQ(scheme)
	split.Select, split.TransformOnly = sel, true
	a, b := run(full), run(split, &RTN{Scheme: scheme, Select: sel})
	t.Logf("logit rms error: AWQ %.4f, AWQ transforms then RTN %.4f", a, b)
	// Measured: 0.864 vs 0.916 (6 %; 4.5 % before RoPE angles became the
	// float32 products transformers computes), where RTN alone is 1.47: a
	// split that lost the searched ranges lands near RTN, 70 % off.
	if math.Abs(a-b) > 0.1*a {
		t.Errorf("AWQ transforms + RTN should match AWQ within 10%%: %.4f vs %.4f", b, a)
	}
}
