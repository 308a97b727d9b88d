package generate

import (
	"testing"

	"llmq/internal/shared"
	"llmq/model"
)

func TestSamplerValidation(t *testing.T) {
	bad := []struct{ temp, topP float64 }{{-1, 0.9}, {1, 0}, {1, 1.5}}
	for _, c := range bad {
		if _, err := NewSampler(c.temp, c.topP, 1); err == nil {
			t.Errorf("NewSampler(%v, %v) must fail", c.temp, c.topP)
		}
	}
}

// A negative count is an error, not a panic; a huge one reserves no more
// than the model's context.
func TestRunCounts(t *testing.T) {
	m, err := model.Load(shared.Path(t, "models", "tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := NewSampler(0, 1, 1)
	if _, err := Run(m, []int{1, 50}, -5, s, -1, nil); err == nil {
		t.Error("n = -5: no error")
	}
	emitted := 0
	out, err := Run(m, []int{1, 50}, 1<<50, s, -1, func(int) bool { emitted++; return emitted < 3 })
	if err != nil || len(out) != 3 {
		t.Errorf("n = 2^50, stopped by emit after 3: %d tokens, %v", len(out), err)
	}
	if out, err := Run(m, []int{1, 50}, 0, s, -1, nil); err != nil || len(out) != 0 {
		t.Errorf("n = 0: %v, %v", out, err)
	}
}

func TestSamplerTopP(t *testing.T) {
	// Probabilities ∝ exp(logits): token 2 has ~0.84 of the mass, token 0
	// ~0.11, so top-p 0.5 always picks 2 and top-p 0.9 never picks 1 or 3.
	logits := []float32{2, -3, 4, -3}
	s, _ := NewSampler(1, 0.5, 42)
	for i := 0; i < 200; i++ {
		if id := s.Sample(logits); id != 2 {
			t.Fatalf("top-p 0.5 sampled %d", id)
		}
	}
	s, _ = NewSampler(1, 0.9, 42)
	seen := map[int]int{}
	for i := 0; i < 2000; i++ {
		seen[s.Sample(logits)]++
	}
	if seen[1] != 0 || seen[3] != 0 || seen[0] == 0 || seen[2] < seen[0] {
		t.Errorf("top-p 0.9 choices %v: want only tokens 0 and 2, mostly 2", seen)
	}
	greedy, _ := NewSampler(0, 0.9, 1)
	if id := greedy.Sample(logits); id != 2 {
		t.Errorf("greedy picked %d", id)
	}
}

// Generation with the KV cache must choose what a full re-computation of
// the whole sequence would choose, and a seed must reproduce its text.
func TestRunMatchesFullForward(t *testing.T) {
	m, err := model.Load(shared.Path(t, "models", "tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	prompt := []int{1, 50, 60, 70}
	s, _ := NewSampler(0, 1, 1)
	out, err := Run(m, prompt, 12, s, -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 12 {
		t.Fatalf("generated %d tokens, want 12", len(out))
	}
	seq := append([]int(nil), prompt...)
	for i, id := range out {
		logits, err := m.Forward(m.NewState(len(seq)), seq, model.Options{LastOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if want := Argmax(logits); want != id {
			t.Fatalf("token %d: cached generation chose %d, full forward %d", i, id, want)
		}
		seq = append(seq, id)
	}
	a, _ := NewSampler(0.9, 0.95, 7)
	b, _ := NewSampler(0.9, 0.95, 7)
	x, _ := Run(m, prompt, 16, a, -1, nil)
	y, _ := Run(m, prompt, 16, b, -1, nil)
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("same seed, different samples: %v vs %v", x, y)
		}
	}
}
