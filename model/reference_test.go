package model

import (
	"fmt"
	"math"
	"testing"

	"llmq/internal/fixtures"
	"llmq/internal/shared"
)

// TestTransformersReference runs every tiny-* fixture and compares logits and
// every hidden state with the float64 outputs HF transformers computed from
// the same stored weights.
func TestTransformersReference(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-opt", "tiny-gpt2", "tiny-gptneox", "tiny-llama3", "tiny-qwen3", "tiny-mistral", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-mixtral", "tiny-qwen3moe"} {
		t.Run(name, func(t *testing.T) {
			dir := shared.Path(t, "models", name)
			// The references in ../shared were computed with RoPE
			// frequencies rounded to the stored dtype and, for Gemma 2,
			// through SDPA, which leaves out the attention soft cap; both
			// differ from transformers' eager float32 frequencies and
			// capped scores, which the defaults follow (TestTransformersEager).
			roundRopeFreq = true
			m, err := Load(dir)
			roundRopeFreq = false
			if err != nil {
				t.Fatal(err)
			}
			if name == "tiny-gemma2" {
				for _, b := range m.Blocks {
					b.Attn.SoftCap = 0
				}
			}
			ref := fixtures.ReadTransformers(t, dir)
			B, T := len(ref.IDs), len(ref.IDs[0])
			wantLogits, wantHidden := ref.Logits, ref.Hidden
			if ref.HiddenStates != m.Layers+1 {
				t.Fatalf("reference has %d hidden states, model %d layers", ref.HiddenStates, m.Layers)
			}
			H, V := m.Hidden, m.Vocab
			for bi := 0; bi < B; bi++ {
				tokens := ref.IDs[bi]
				st := m.NewState(T)
				hidden := map[int][]float32{}
				logits, err := m.Forward(st, tokens, Options{Hidden: func(i int, h []float32) {
					hidden[i] = append([]float32(nil), h...)
				}})
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i <= m.Layers; i++ {
					off := (i*B + bi) * T * H
					compare(t, fmt.Sprintf("batch %d hidden_states[%d]", bi, i), hidden[i], wantHidden[off:off+T*H])
				}
				compare(t, fmt.Sprintf("batch %d logits", bi), logits, wantLogits[bi*T*V:(bi+1)*T*V])
			}
		})
	}
}

// compare checks max abs error ≤ 1e-3 and max abs error relative to the
// reference's largest magnitude ≤ 1e-4.
func compare(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var maxErr, maxRef float64
	at := 0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if d > maxErr || math.IsNaN(d) {
			maxErr, at = d, i
		}
		maxRef = math.Max(maxRef, math.Abs(float64(want[i])))
	}
	rel := maxErr / maxRef
	if maxErr > 1e-3 || rel > 1e-4 || math.IsNaN(maxErr) {
		t.Errorf("%s: max abs error %.3g (rel %.3g) at %d: got %v want %v", what, maxErr, rel, at, got[at], want[at])
	} else if testing.Verbose() {
		t.Logf("%s: max abs error %.3g, rel %.3g", what, maxErr, rel)
	}
}
