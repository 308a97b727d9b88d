package methods

import (
	"math"
	"testing"

	"llmq/internal/shared"
	"llmq/model"
	"llmq/quant"
)

func loadTiny(t testing.TB, name string) *model.Model {
	t.Helper()
	m, err := model.Load(shared.Path(t, "models", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// calibSeqs returns n deterministic pseudo-random token sequences.
func calibSeqs(n, T, vocab int) [][]int {
	out := make([][]int, n)
	for i := range out {
		out[i] = make([]int, T)
		for t := range out[i] {
			out[i][t] = (i*7919 + t*104729 + 17) % vocab
		}
	}
	return out
}

func logits(t testing.TB, m *model.Model, tokens []int) []float32 {
	t.Helper()
	l, err := m.Forward(m.NewState(len(tokens)), tokens, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// relErr is max|a−b| / max|b|.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i]-b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / den
}

// SmoothQuant must not change what the model computes before quantization.
func TestSmoothQuantPreservesFunction(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-opt", "tiny-gpt2", "tiny-gptneox"} {
		t.Run(name, func(t *testing.T) {
			m := loadTiny(t, name)
			probe := calibSeqs(1, 40, m.Vocab)[0]
			before := logits(t, m, probe)
			sq := &SmoothQuant{Alpha: 0.5}
			if err := Run(m, calibSeqs(4, 32, m.Vocab), []Method{sq}, nil); err != nil {
				t.Fatal(err)
			}
			if len(sq.Chosen) == 0 {
				t.Fatal("no mapping was smoothed")
			}
			after := logits(t, m, probe)
			if e := relErr(after, before); e > 1e-5 {
				t.Errorf("smoothing changed the logits: relative error %.3g > 1e-5", e)
			}
		})
	}
}

// With planted outliers, smoothing must make W8A8 with per-tensor dynamic
// activations much closer to FP than the same quantization without it.
func TestSmoothQuantHelpsPerTensorW8A8(t *testing.T) {
	scheme := Scheme{Weights: quant.MustParseSpec("int8-sym-channel"), Acts: ptr(quant.MustParseSpec("int8-sym-tensor"))}
	probe := calibSeqs(1, 48, 512)[0]
	ref := logits(t, loadTiny(t, "tiny-llama"), probe)
	errOf := func(stages ...Method) float64 {
		m := loadTiny(t, "tiny-llama")
		if err := Run(m, calibSeqs(8, 48, m.Vocab), stages, nil); err != nil {
			t.Fatal(err)
		}
		return relErr(logits(t, m, probe), ref)
	}
	plain := errOf(&RTN{Scheme: scheme})
	smoothed := errOf(&SmoothQuant{Alpha: 0.5}, &RTN{Scheme: scheme})
	searched := errOf(&SmoothQuant{Alpha: 0.5, Search: true, SearchScheme: scheme}, &RTN{Scheme: scheme})
	t.Logf("logit error: plain %.4f, smoothed α=0.5 %.4f, searched %.4f", plain, smoothed, searched)
	if smoothed > plain/2 {
		t.Errorf("smoothing should at least halve the error: %.4f vs %.4f", smoothed, plain)
	}
	if searched > smoothed*1.05 {
		t.Errorf("α search should not be worse than α=0.5: %.4f vs %.4f", searched, smoothed)
	}
}

func ptr[T any](v T) *T { return &v }

func TestSelector(t *testing.T) {
	cases := []struct {
		targets, ignore []string
		name            string
		want            bool
	}{
		{nil, nil, "model.layers.0.self_attn.q_proj", true},
		{[]string{"Linear"}, []string{"lm_head"}, "model.layers.0.mlp.down_proj", true},
		{[]string{"re:.*mlp.*"}, nil, "model.layers.0.self_attn.q_proj", false},
		{[]string{"re:.*mlp.*"}, nil, "model.layers.3.mlp.up_proj", true},
		{[]string{"Linear"}, []string{"re:.*down_proj"}, "model.layers.3.mlp.down_proj", false},
		{[]string{"q_proj"}, nil, "model.layers.3.self_attn.q_proj", true},
		{[]string{"q_proj"}, nil, "model.layers.3.self_attn.xq_proj", false},
	}
	for _, c := range cases {
		s, err := NewSelector(c.targets, c.ignore)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Selected(c.name); got != c.want {
			t.Errorf("targets %v ignore %v: Selected(%s) = %v, want %v", c.targets, c.ignore, c.name, got, c.want)
		}
	}
	if _, err := NewSelector([]string{"re:("}, nil); err == nil {
		t.Error("a bad regexp must be an error")
	}
}
