package main

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"

	"llmq/checkpoint"
	"llmq/internal/fixtures"
	"llmq/internal/shared"
	"llmq/model"
	"llmq/modelio"
	"llmq/nn"
	"llmq/quant"
	"llmq/tokenizer"
)

// refSeq is one sequence with the logits an independent computation gave
// for it: logits[i] belongs to position positions[i].
type refSeq struct {
	ids       []int
	positions []int
	logits    [][]float64
}

// TestFloat64Forward checks the float64 pass against references it shares
// no code with (transformers' float64 outputs, llama2.c's run.c) and against
// llmq's own float32 forward. Each tolerance is on max|d| / max|want| and
// sits just above what the reference's own precision allows. run.c and
// llmq compute in float32 (~1e-6). The transformers fixtures are not pure
// float64 either: they are stored as float32, and transformers' Llama keeps
// float32 steps even in a float64 model (RMSNorm casts its input to
// float32, the rotary cos/sin and eager attention's softmax are float32),
// which leaves ~1e-6 between them and an exact forward pass (llmq's
// float32 forward is 2–8e-6 from them). The bars still catch what the pass
// could get wrong: RoPE frequencies rounded to bf16 cost ~1e-2 on
// tiny-qwen2, a misplaced bias or norm far more.
func TestFloat64Forward(t *testing.T) {
	cases := []struct {
		name string
		path []string // under the shared folder
		tol  float64
		prep func(t *testing.T, m *model.Model) // changes the model before both passes (nil: none)
		want func(t *testing.T, path string, m *model.Model) []refSeq
	}{
		// Llama with GQA, float32 weights, outlier channels.
		{"tiny-llama vs transformers float64", []string{"models", "tiny-llama"}, 2e-6, nil, transformersRef},
		// Qwen2: bf16 weights, q/k/v biases, tied head; against transformers'
		// eager float64 run (model/testdata/eager: float32 RoPE frequencies,
		// which the shared reference rounded to bf16).
		{"tiny-qwen2 vs transformers float64", []string{"models", "tiny-qwen2"}, 2e-6, nil, eagerRef},
		// llama2.c's adjacent-pair RoPE layout.
		{"stories260K vs llama2.c run.c", []string{"models", "stories260K", "stories260K.bin"}, 1e-5, nil, llama2cRef},
		// The trained model, bf16, against llmq's float32 forward.
		{"wiki-llama-25m vs llmq float32", []string{"models", "wiki-llama-25m"}, 1e-5, nil, llmqRef},
		// Quantized weights (int4 groups with zero-points, int8 channels)
		// go through exact dequantization; weight-only, so float32 and
		// float64 may be compared tightly.
		{"tiny-llama int4/int8 weight-only vs llmq float32", []string{"models", "tiny-llama"}, 1e-5, quantizeWeights, llmqRef},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := shared.Path(t, c.path...)
			m, err := modelio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if c.prep != nil {
				c.prep(t, m)
			}
			var eps float64
			if cfg := filepath.Join(path, "config.json"); fileExists(cfg) {
				if eps, err = configEps(cfg); err != nil {
					t.Fatal(err)
				}
			}
			f, err := newF64Model(m, eps)
			if err != nil {
				t.Fatal(err)
			}
			for si, seq := range c.want(t, path, m) {
				got, err := f.forward(seq.ids)
				if err != nil {
					t.Fatal(err)
				}
				var maxD, maxW float64
				for i, p := range seq.positions {
					g := got[p*m.Vocab : (p+1)*m.Vocab]
					for j, w := range seq.logits[i] {
						maxD = math.Max(maxD, math.Abs(g[j]-w))
						if math.IsNaN(g[j]) {
							maxD = math.Inf(1)
						}
						maxW = math.Max(maxW, math.Abs(w))
					}
				}
				rel := maxD / maxW
				if !(rel <= c.tol) {
					t.Errorf("sequence %d: max|d| %.3g, max|want| %.3g, relative %.3g > %g", si, maxD, maxW, rel, c.tol)
				} else {
					t.Logf("sequence %d (%d tokens): relative %.3g", si, len(seq.ids), rel)
				}
			}
		})
	}
}

// transformersRef reads a tiny fixture's reference.safetensors: logits HF
// transformers computed in float64 (stored as float32) for every position.
func transformersRef(t *testing.T, dir string, _ *model.Model) []refSeq {
	ref := fixtures.ReadTransformers(t, dir)
	V := ref.Vocab
	var out []refSeq
	for b, ids := range ref.IDs {
		s := refSeq{ids: ids}
		T := len(ids)
		for p := 0; p < T; p++ {
			s.positions = append(s.positions, p)
			s.logits = append(s.logits, widen(ref.Logits[(b*T+p)*V:(b*T+p+1)*V]))
		}
		out = append(out, s)
	}
	return out
}

// eagerRef reads the logits transformers' eager attention computed in
// float64 for a fixture (model/testdata/eager, made on the GPU machine by
// scripts/transformers-eager-oracle.py).
func eagerRef(t *testing.T, dir string, _ *model.Model) []refSeq {
	f, err := checkpoint.OpenSafetensors(filepath.Join("..", "..", "model", "testdata", "eager", filepath.Base(dir)+"-logits.st"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, info, err := f.Float32("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	logits, lInfo, err := f.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	B, T, V := info.Shape[0], info.Shape[1], lInfo.Shape[2]
	var out []refSeq
	for b := 0; b < B; b++ {
		var s refSeq
		for p := 0; p < T; p++ {
			s.ids = append(s.ids, int(ids[b*T+p]))
			s.positions = append(s.positions, p)
			s.logits = append(s.logits, widen(logits[(b*T+p)*V:(b*T+p+1)*V]))
		}
		out = append(out, s)
	}
	return out
}

// llama2cRef reads run.c's logits at a few positions of its greedy path.
func llama2cRef(t *testing.T, bin string, _ *model.Model) []refSeq {
	ref := fixtures.ReadLlama2C(t, filepath.Dir(bin))
	s := refSeq{ids: ref.Greedy[:64]}
	for key, l := range ref.Logits {
		p, err := strconv.Atoi(key)
		if err != nil || p >= len(s.ids) {
			t.Fatalf("reference.json: logits position %q", key)
		}
		s.positions = append(s.positions, p)
		s.logits = append(s.logits, l)
	}
	return []refSeq{s}
}

// llmqRef is llmq's own float32 forward on the tokenization of dumplogits'
// default text (or, without a tokenizer, a fixed walk through the vocabulary).
func llmqRef(t *testing.T, dir string, m *model.Model) []refSeq {
	ids := []int{1}
	if tok, err := tokenizer.FromDir(dir); err == nil {
		ids = append(ids, tok.Encode(defaultText)...)
	} else {
		for i := 1; i < 40; i++ {
			ids = append(ids, (i*37)%m.Vocab)
		}
	}
	logits, err := m.Forward(m.NewState(len(ids)), ids, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := refSeq{ids: ids}
	for p := range ids {
		s.positions = append(s.positions, p)
		s.logits = append(s.logits, widen(logits[p*m.Vocab:(p+1)*m.Vocab]))
	}
	return []refSeq{s}
}

// quantizeWeights replaces the attention projections by int8 per-channel
// and the MLP by int4 asymmetric g8 weight-only quantized layers.
func quantizeWeights(t *testing.T, m *model.Model) {
	for _, b := range m.Blocks {
		for _, nl := range b.Linears() {
			d, ok := (*nl.Linear).(*nn.Dense)
			if !ok {
				t.Fatalf("%s: %T, want a dense layer", nl.Role, *nl.Linear)
			}
			spec := quant.MustParseSpec("int4-asym-g8")
			if nl.Role == "q" || nl.Role == "k" || nl.Role == "v" || nl.Role == "o" {
				spec = quant.MustParseSpec("int8-sym-channel")
			}
			ql, err := quant.QuantizeLinear(d.W, d.B, d.Out(), d.In(), spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			*nl.Linear = ql
		}
	}
}

// TestFloat64Refuses checks that families the float64 pass does not
// implement give an error, not a panic or a silently wrong forward.
func TestFloat64Refuses(t *testing.T) {
	for _, name := range []string{"tiny-opt", "tiny-gpt2", "tiny-gptneox"} {
		t.Run(name, func(t *testing.T) {
			m, err := modelio.Load(shared.Path(t, "models", name))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := newF64Model(m, 0); err == nil {
				t.Fatalf("%s: no error", name)
			} else {
				t.Log(err)
			}
		})
	}
}

// TestDequantF64Exact: llmq's float32 dequantization rounds the exact
// product scale × code once, so the float64 values must round to it bit for
// bit.
func TestDequantF64Exact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, cols = 16, 64
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64()) * float32(1+i%7)
	}
	for _, s := range []string{"int8-sym-channel", "int4-asym-g16", "int4-sym-full-g32", "int8-sym-tensor", "fp8e4m3-channel"} {
		qt, err := quant.QuantizeWeight(w, rows, cols, quant.MustParseSpec(s))
		if err != nil {
			t.Fatal(err)
		}
		want := qt.Dequantize()
		for i, v := range dequantF64(qt) {
			if float32(v) != want[i] {
				t.Fatalf("%s: element %d: float64 %v rounds to %v, llmq has %v", s, i, v, float32(v), want[i])
			}
		}
	}
}

// TestFakeQuantF64 compares the float64 activation quantization with llmq's
// float32 one (quant.FakeQuantize). Both must pick the same code for every
// value, except where x/s lies so close to a tie k+½ that float32's rounding
// of the scale and the quotient may decide it either way.
func TestFakeQuantF64(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const rows, cols = 32, 256
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		if i%97 == 0 {
			x[i] *= 40 // outliers, as real activations have
		}
	}
	for _, s := range []string{"int8-sym-token", "int8-asym-token", "int4-sym-g32", "int8-sym-tensor"} {
		spec := quant.MustParseSpec(s)
		want, err := quant.FakeQuantize(x, rows, cols, spec)
		if err != nil {
			t.Fatal(err)
		}
		got := widen(x)
		fakeQuantF64(got, rows, cols, &quant.ActQuant{Spec: spec})
		gc := spec.GroupCols(cols)
		if spec.Granularity == quant.PerTensor {
			gc = rows * cols
		}
		ties, checked := 0, 0
		for g0 := 0; g0 < rows*cols; g0 += gc {
			var lo, hi float64
			for _, v := range x[g0 : g0+gc] {
				lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
			}
			qmin, qmax := spec.IntRange()
			step := (hi - lo) / float64(qmax-qmin) // asymmetric grid's step
			if spec.Symmetric {
				step = 2 * math.Max(-lo, hi) / float64(qmax-qmin)
			}
			for i := g0; i < g0+gc; i++ {
				d := math.Abs(got[i] - float64(want[i]))
				if d < step/2 { // the same code: the values differ by llmq's float32 scale and product only
					if d > 4e-7*math.Abs(got[i]) {
						t.Fatalf("%s: element %d = %v: float64 %v, llmq %v", s, i, x[i], got[i], want[i])
					}
					checked++
					continue
				}
				// A different code: only allowed at a tie.
				u := float64(x[i]) / step
				if frac := math.Abs(u - math.Floor(u) - 0.5); frac > 1e-5 {
					t.Fatalf("%s: element %d = %v: float64 %v, llmq %v (x/s %.9f is no tie)", s, i, x[i], got[i], want[i], u)
				}
				ties++
			}
		}
		t.Logf("%s: %d values agree, %d differ at a tie", s, checked, ties)
	}

	// Exact ties: with absmax 127 the int8 scale is exactly 1, so x/s is
	// exactly k+½ and both must round half to even.
	tie := []float32{127, 2.5, 3.5, -0.5, -2.5, 0.5, 1.5, -126.5}
	want, err := quant.FakeQuantize(tie, 1, len(tie), quant.MustParseSpec("int8-sym-token"))
	if err != nil {
		t.Fatal(err)
	}
	got := widen(tie)
	fakeQuantF64(got, 1, len(tie), &quant.ActQuant{Spec: quant.MustParseSpec("int8-sym-token")})
	for i := range tie {
		if got[i] != float64(want[i]) {
			t.Errorf("tie %v: float64 gives %v, llmq %v", tie[i], got[i], want[i])
		}
	}

	// A tie that float64 arithmetic missed by a rounding error is still a
	// tie (rounded half to even); a value clearly off the tie is not.
	near := []float64{127, 2.5 + 1e-13, 3.5 - 1e-13, -2.5 - 1e-13, 2.5 + 1e-6, 3.5 - 1e-6}
	wantNear := []float64{127, 2, 4, -2, 3, 3}
	fakeQuantF64(near, 1, len(near), &quant.ActQuant{Spec: quant.MustParseSpec("int8-sym-token")})
	for i, w := range wantNear {
		if near[i] != w {
			t.Errorf("value %d: float64 gives %v, want %v", i, near[i], w)
		}
	}
}
