package methods

import (
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"llmq/calib"
	"llmq/eval"
	"llmq/internal/shared"
	"llmq/kernels"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
	"llmq/tokenizer"
)

func int8RandMat(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

// int8Ref is y = x·Wᵀ + b in float64.
func int8Ref(x, w, b []float32, rows, out, in int) []float32 {
	y := make([]float32, rows*out)
	for t := 0; t < rows; t++ {
		for i := 0; i < out; i++ {
			var s float64
			for j := 0; j < in; j++ {
				s += float64(x[t*in+j]) * float64(w[i*in+j])
			}
			if b != nil {
				s += float64(b[i])
			}
			y[t*out+i] = float32(s)
		}
	}
	return y
}

// With the decomposition disabled, Int8Linear is plain vector-wise int8:
// the RTN reference layer with int8-sym-channel weights and dynamic
// int8-sym-token activations, up to float rounding. Widths on both sides
// of the 1040-column exactness limit of the float32 product.
func TestInt8NoThresholdIsVectorWise(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, in := range []int{200, 1500} {
		const rows, out = 13, 96
		w := int8RandMat(rng, out*in, 0.05)
		b := int8RandMat(rng, out, 0.1)
		x := int8RandMat(rng, rows*in, 1)
		x[5*in+7] = 40 // would be an outlier column with a finite threshold
		ref, err := quant.QuantizeLinear(w, b, out, in, quant.MustParseSpec("int8-sym-channel"), quant.DynamicAct(quant.MustParseSpec("int8-sym-token")))
		if err != nil {
			t.Fatal(err)
		}
		l, err := NewInt8Linear(w, b, out, in, math.Inf(1), true)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, rows*out)
		got := make([]float32, rows*out)
		ref.Forward(want, x, rows)
		l.Forward(got, x, rows)
		if e := relErr(got, want); e > 1e-6 {
			t.Errorf("in=%d: relative difference from vector-wise int8 %.3g > 1e-6", in, e)
		}
		if s := l.Stats(); s.OutlierColumns != 0 || s.Forwards != 1 || s.Rows != rows {
			t.Errorf("in=%d: stats %+v, want one call, no outliers", in, s)
		}
	}
}

// A planted outlier column (|x| = 60, the paper's emergent-feature
// magnitude) ruins per-token int8; the decomposition must cut the error
// at least tenfold.
func TestInt8OutlierDecomposition(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const rows, out, in, col = 32, 128, 256, 17
	w := int8RandMat(rng, out*in, 0.05)
	x := int8RandMat(rng, rows*in, 1)
	for r := 0; r < rows; r++ {
		x[r*in+col] = 60
		if r%2 == 1 {
			x[r*in+col] = -60
		}
	}
	fp := int8Ref(x, w, nil, rows, out, in)
	errOf := func(thr float64, keepFP bool) (float64, *Int8Linear) {
		l, err := NewInt8Linear(w, nil, out, in, thr, keepFP)
		if err != nil {
			t.Fatal(err)
		}
		y := make([]float32, rows*out)
		l.Forward(y, x, rows)
		return math.Sqrt(awqSqDiff(y, fp) / float64(len(y))), l
	}
	plain, _ := errOf(math.Inf(1), true)
	mixed, l := errOf(6, true)
	mixedQ, _ := errOf(6, false)
	t.Logf("rms error vs FP: vector-wise int8 %.4g, LLM.int8 %.4g (%.1f× smaller), with int8 outlier weights %.4g", plain, mixed, plain/mixed, mixedQ)
	if mixed*10 > plain {
		t.Errorf("decomposition should cut the error ≥ 10×: %.4g vs %.4g", mixed, plain)
	}
	if mixedQ*5 > plain {
		t.Errorf("decomposition with int8 outlier weights should still help ≥ 5×: %.4g vs %.4g", mixedQ, plain)
	}
	s := l.Stats()
	if s.OutlierColumns != 1 || s.MaxOutlierColumns != 1 || s.DistinctColumns != 1 || l.OutlierColumnCounts()[col] != 1 {
		t.Errorf("stats %+v: want exactly column %d as the outlier", s, col)
	}
	// Non-finite inputs propagate instead of being clipped.
	x[3*in+5] = float32(math.NaN())
	y := make([]float32, rows*out)
	l.Forward(y, x, rows)
	if v := y[3*out]; v == v {
		t.Errorf("a NaN input gave %v", v)
	}
}

// The integer product is exact: the int32 reference and the INT8 GEMM
// kernel Int8Linear runs both equal a float64 sum of integer products,
// including the worst case 127·127·k far beyond float32's 2^24 integers
// (where a float32 GEMM would round).
func TestInt8ExactAccumulation(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		m, n, k int
		extreme bool
	}{{5, 7, 33, false}, {9, 70, 1040, true}, {6, 40, 3001, false}, {4, 24, 4099, true}} {
		a := make([]int8, c.m*c.k)
		b := make([]int8, c.n*c.k)
		for i := range a {
			a[i] = int8(rng.IntN(255) - 127)
			if c.extreme {
				a[i] = 127
			}
		}
		for i := range b {
			b[i] = int8(rng.IntN(255) - 127)
			if c.extreme {
				b[i] = []int8{127, -127}[i/c.k%2] // rows alternate +127…, −127…
			}
		}
		af := make([]float32, len(a))
		bf := make([]float32, len(b))
		for i, v := range a {
			af[i] = float32(v)
		}
		for i, v := range b {
			bf[i] = float32(v)
		}
		got := make([]int32, c.m*c.n)
		Int8MatMul(got, a, b, c.m, c.n, c.k)
		gotF := make([]int32, c.m*c.n)
		kernels.PackS8(b, c.n, c.k).MatMul(gotF, a, c.m)
		naive := make([]float32, c.m*c.n) // one float32 GEMM over all of k
		kernels.Sgemm(true, c.m, c.n, c.k, af, c.k, bf, c.k, naive, c.n, false)
		inexact := 0
		for i := 0; i < c.m; i++ {
			for j := 0; j < c.n; j++ {
				var want float64
				for p := 0; p < c.k; p++ {
					want += float64(a[i*c.k+p]) * float64(b[j*c.k+p])
				}
				if float64(got[i*c.n+j]) != want || float64(gotF[i*c.n+j]) != want {
					t.Fatalf("%d×%d×%d: c[%d,%d] int32 %d, INT8 kernel %d, want %.0f", c.m, c.n, c.k, i, j, got[i*c.n+j], gotF[i*c.n+j], want)
				}
				if float64(naive[i*c.n+j]) != want {
					inexact++
				}
			}
		}
		t.Logf("%d×%d×%d: exact; a single float32 GEMM would get %d of %d wrong", c.m, c.n, c.k, inexact, c.m*c.n)
	}
}

// End to end on tiny-llama, whose hidden channels 3 and 77 carry planted
// outliers: LLM.int8() must be closer to FP than W8A8 with per-token
// dynamic activations, and must have found those channels.
func TestInt8BeatsW8A8TinyLlama(t *testing.T) {
	probe := calibSeqs(20, 64, 512)[16:]
	fp := loadTiny(t, "tiny-llama")
	var ref [][]float32
	for _, p := range probe {
		ref = append(ref, logits(t, fp, p))
	}
	errOf := func(stage Method) (rms float64) {
		m := loadTiny(t, "tiny-llama")
		if err := Run(m, nil, []Method{stage}, nil); err != nil {
			t.Fatal(err)
		}
		for i, p := range probe {
			rms += awqRMSDiff(logits(t, m, p), ref[i]) / float64(len(probe))
		}
		return rms
	}
	w8a8 := errOf(&RTN{Scheme: Scheme{Weights: quant.MustParseSpec("int8-sym-channel"), Acts: ptr(quant.MustParseSpec("int8-sym-token"))}})
	li := &LLMInt8{}
	mixed := errOf(li)
	t.Logf("logit rms error: W8A8 per-token %.5f, LLM.int8() %.5f", w8a8, mixed)
	if mixed >= w8a8 {
		t.Errorf("LLM.int8() should be closer to FP than W8A8: %.5f vs %.5f", mixed, w8a8)
	}
	sum := li.Summary()
	t.Logf("outliers: %+v, mean %.2f columns per call", sum, sum.MeanOutlierColumns())
	q := li.Layers["model.layers.0.self_attn.q_proj"]
	if q == nil {
		t.Fatal("q_proj of block 0 was not replaced")
	}
	hits := q.OutlierColumnCounts()
	if hits[3] == 0 || hits[77] == 0 {
		t.Errorf("planted outlier channels 3 and 77 were not decomposed: hits %d, %d (stats %+v)", hits[3], hits[77], q.Stats())
	}
	if _, ok := any(q).(nn.Linear); !ok {
		t.Error("Int8Linear must be an nn.Linear")
	}
}

func TestInt8Errors(t *testing.T) {
	m := loadTiny(t, "tiny-llama")
	if err := Run(m, nil, []Method{&LLMInt8{Threshold: -1}}, nil); err == nil {
		t.Error("a negative threshold must be an error")
	}
	if _, err := NewInt8Linear([]float32{1, float32(math.Inf(1))}, nil, 1, 2, 6, true); err == nil {
		t.Error("non-finite weights must be an error")
	}
}

// TestInt8AWQWikiPerplexity is the measurement of the two methods on the
// WikiText-2 Llamas (minutes; LLMQ_LONG=1 only): perplexity of the first
// 20 windows of 512 tokens of the test split for FP32, RTN W4 g128, AWQ W4
// g128 (16 × 512 calibration tokens from the validation split), W8A8 with
// dynamic per-token activations and LLM.int8().
func TestInt8AWQWikiPerplexity(t *testing.T) {
	if long, _ := strconv.ParseBool(os.Getenv("LLMQ_LONG")); !long {
		t.Skip("set LLMQ_LONG=1 for the WikiText-2 measurement")
	}
	read := func(name string) string {
		b, err := os.ReadFile(shared.Path(t, "data", "wikitext-2", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	testText, validText := read("wiki.test.tokens"), read("wiki.valid.tokens")
	w4 := Scheme{Weights: quant.MustParseSpec("int4-asym-g128")}
	w8a8 := Scheme{Weights: quant.MustParseSpec("int8-sym-channel"), Acts: ptr(quant.MustParseSpec("int8-sym-token"))}
	for _, name := range []string{"wiki-llama-25m", "wiki-llama-25m-outliers"} {
		dir := shared.Path(t, "models", name)
		tok, err := tokenizer.FromDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		ids := append([]int{tok.BOS()}, tok.Encode(testText)...)
		seqs, err := calib.Sample(append([]int{tok.BOS()}, tok.Encode(validText)...), 16, 512, 0)
		if err != nil {
			t.Fatal(err)
		}
		li := &LLMInt8{}
		aw := NewAWQ(w4)
		for _, c := range []struct {
			label string
			stage Method
		}{
			{"FP32", nil},
			{"RTN W4 g128 asym", &RTN{Scheme: w4}},
			{"AWQ W4 g128 asym (scale only)", &AWQ{Scheme: w4, Grid: 20}},
			{"AWQ W4 g128 asym (scale + clip)", aw},
			{"W8A8 per-token dynamic (RTN)", &RTN{Scheme: w8a8}},
			{"LLM.int8() α=6", li},
		} {
			m, err := model.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if c.stage != nil {
				var cs [][]int
				if c.stage.NeedsCalibration() {
					cs = seqs
				}
				if err := Run(m, cs, []Method{c.stage}, nil); err != nil {
					t.Fatalf("%s: %v", c.label, err)
				}
			}
			quantTime := time.Since(start)
			res, err := eval.Perplexity(m, ids, 512, 20, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%-24s %-32s ppl %9.3f  (quantize %5.1fs, eval %5.1fs)", name, c.label, res.Value(), quantTime.Seconds(), res.Elapsed.Seconds())
		}
		s := li.Summary()
		t.Logf("%s LLM.int8(): %d calls, mean %.2f outlier columns per call (max %d), %d distinct (layer, column) pairs", name, s.Forwards, s.MeanOutlierColumns(), s.MaxOutlierColumns, s.DistinctColumns)
		for _, role := range []string{"q_proj", "o_proj", "gate_proj", "down_proj"} {
			var tot Int8Stats
			for lname, l := range li.Layers {
				if strings.HasSuffix(lname, role) {
					ls := l.Stats()
					tot.Forwards += ls.Forwards
					tot.OutlierColumns += ls.OutlierColumns
				}
			}
			t.Logf("%s   %-9s mean %.2f outlier columns per call", name, role, tot.MeanOutlierColumns())
		}
		t.Logf("%s AWQ α: %v", name, aw.Chosen)
	}
}
