package methods

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"llmq/model"
	"llmq/nn"
	"llmq/quant"
)

// onGrid reports whether every group of width g in x is an integer
// multiple of its absmax/qmax (the symmetric grid's step).
func onGrid(x []float32, g int, qmax float64) bool {
	for i := 0; i < len(x); i += g {
		grp := x[i : i+g]
		step := float64(quant.AbsMax(grp)) / qmax
		if step == 0 {
			continue
		}
		for _, v := range grp {
			k := float64(v) / step
			if math.Abs(k-math.Round(k)) > 1e-3 {
				return false
			}
		}
	}
	return true
}

func TestKVCacheHooks(t *testing.T) {
	m := loadTiny(t, "tiny-llama")
	kv := &KVCache{Format: "int8", BMM: true}
	if err := Run(m, nil, []Method{kv}, nil); err != nil {
		t.Fatal(err)
	}
	a := m.Blocks[0].Attn
	if a.QuantK == nil || a.QuantV == nil || a.QuantQ == nil || a.QuantP == nil {
		t.Fatal("hooks not installed")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rows, w := 5, a.KVHeads*a.HeadDim
	x := make([]float32, rows*w)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	a.QuantK(x, rows)
	if !onGrid(x, a.HeadDim, 127) {
		t.Error("keys are not on a per-token, per-head int8 grid")
	}
	p := []float32{0.5, 0.25, 0.125, 0.1, 0.025}
	QuantizeProbs(p)
	if !onGrid(p, len(p), 255) {
		t.Errorf("probabilities %v are not on the row's uint8 grid", p)
	}
}

// rmsRel is ‖a−b‖₂/‖b‖₂.
func rmsRel(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i] - b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

// A quantized KV cache (and attention BMMs) changes the logits of a trained
// model only a little, int8 less than FP8 E4M3 (3 mantissa bits), and the
// static variant calibrates one scale per layer for K and V.
func TestKVCacheAccuracy(t *testing.T) {
	probe := calibSeqs(1, 64, 32000)[0]
	ref := logits(t, loadTiny(t, "wiki-llama-25m"), probe)
	cases := []struct {
		kv     *KVCache
		maxErr float64
	}{
		{&KVCache{Format: "int8"}, 0.01},
		{&KVCache{Format: "fp8e4m3"}, 0.05},
		{&KVCache{Format: "int8", Static: true}, 0.05},
		{&KVCache{Format: "int8", BMM: true}, 0.05},
	}
	for _, c := range cases {
		m := loadTiny(t, "wiki-llama-25m")
		if err := Run(m, calibSeqs(4, 64, m.Vocab), []Method{c.kv}, nil); err != nil {
			t.Fatal(err)
		}
		e := rmsRel(logits(t, m, probe), ref)
		t.Logf("%s: logit error %.4f", c.kv.Name(), e)
		if e > c.maxErr || e == 0 {
			t.Errorf("%s: logit error %.4f, want in (0, %v]", c.kv.Name(), e, c.maxErr)
		}
		if c.kv.Static && len(c.kv.Scales) != 2*len(m.Blocks) {
			t.Errorf("static: %d scales, want %d", len(c.kv.Scales), 2*len(m.Blocks))
		}
	}
	if _, err := (&KVCache{Format: "int3"}).spec("g16"); err == nil {
		t.Error("an unknown KV format must be an error")
	}
}

func TestHEROLevels(t *testing.T) {
	want := map[int]map[string]bool{
		1: {"q": true, "k": true, "v": true, "gate": true, "up": true},
		2: {"q": true, "k": true, "v": true, "o": true, "gate": true, "up": true, "down": true},
		3: {"q": true, "k": true, "v": true, "o": true, "gate": true, "up": true, "down": true},
	}
	for level, roles := range want {
		m := loadTiny(t, "tiny-llama")
		h, err := NewHERO(level)
		if err != nil {
			t.Fatal(err)
		}
		if err := Run(m, nil, []Method{h}, nil); err != nil {
			t.Fatal(err)
		}
		for _, nl := range m.Blocks[1].Linears() {
			_, q := (*nl.Linear).(*quant.QuantLinear)
			if q != roles[nl.Role] {
				t.Errorf("level %d: %s quantized = %v, want %v", level, nl.Role, q, roles[nl.Role])
			}
		}
		if got := m.Blocks[0].Attn.QuantP != nil; got != (level == 3) {
			t.Errorf("level %d: attention BMM quantized = %v", level, got)
		}
		if !onGrid(m.Embed, m.Hidden, 127) {
			t.Errorf("level %d: embedding rows are not on an int8 grid", level)
		}
	}
	// A tied head keeps FP weights when the embedding is quantized.
	m := loadTiny(t, "tiny-qwen2")
	orig := append([]float32(nil), m.Embed...)
	h, _ := NewHERO(1)
	if err := Run(m, nil, []Method{h}, nil); err != nil {
		t.Fatal(err)
	}
	head := m.Head.(*nn.Dense)
	for i := range orig {
		if head.W[i] != orig[i] {
			t.Fatal("the tied head was quantized with the embedding")
		}
	}
	if _, err := NewHERO(4); err == nil {
		t.Error("level 4 must be an error")
	}
}

// The INT8 KV cache (codes and per-token, per-head scales) computes exactly
// what the simulated cache (fake-quantized floats) computes, in a prefill
// longer than one attention row block and in decode steps after it, at a
// quarter of the cache memory.
func TestKVCacheInt8Storage(t *testing.T) {
	real, sim := loadTiny(t, "tiny-llama"), loadTiny(t, "tiny-llama")
	for _, m := range []*model.Model{real, sim} {
		if err := Run(m, nil, []Method{&KVCache{Format: "int8"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range sim.Blocks {
		b.Attn.Quant = nil // hooks only: the FP32 cache of fake-quantized values
	}
	prompt := calibSeqs(1, 150, real.Vocab)[0]
	rs, ss := real.NewState(160), sim.NewState(160)
	for step := 0; step < 4; step++ {
		in := prompt
		if step > 0 {
			in = []int{(step * 37) % real.Vocab}
		}
		lr, err := real.Forward(rs, in, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ls, err := sim.Forward(ss, in, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(lr, ls) {
			t.Fatalf("step %d: INT8 cache logits differ from the simulated cache's", step)
		}
	}
	if !rs.Cache(0).Int8() || ss.Cache(0).Int8() {
		t.Fatalf("cache kinds: real int8 %v, simulated int8 %v", rs.Cache(0).Int8(), ss.Cache(0).Int8())
	}
	if c := rs.Cache(0); len(c.K) != 0 || len(c.Kq) != c.Len*c.KVHeads*c.HeadDim {
		t.Fatalf("INT8 cache holds %d floats and %d codes for %d positions", len(c.K), len(c.Kq), c.Len)
	}
}
