package model

import (
	"fmt"
	"testing"

	"llmq/internal/fixtures"
	"llmq/internal/shared"
)

// TestDecodeMatchesPrefill runs each family's fixture sequence (48 tokens,
// three times tiny-mistral's and the Gemmas' 16-position windows) through
// the KV cache one token at a time and in uneven chunks: every position's
// logits must equal the one-call prefill's, so sliding windows, per-layer
// rotary bases, q/k norms and expert routing hold in decode too.
func TestDecodeMatchesPrefill(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-llama3", "tiny-mistral", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-mixtral", "tiny-qwen3moe"} {
		t.Run(name, func(t *testing.T) {
			dir := shared.Path(t, "models", name)
			m, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			ids := fixtures.ReadTransformers(t, dir).IDs[0]
			T, V := len(ids), m.Vocab
			want, err := m.Forward(m.NewState(T), ids, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, chunk := range []int{1, 7} {
				st := m.NewState(4) // grows past its reservation
				for p := 0; p < T; p += chunk {
					n := min(chunk, T-p)
					got, err := m.Forward(st, ids[p:p+n], Options{})
					if err != nil {
						t.Fatal(err)
					}
					compare(t, fmt.Sprintf("chunks of %d, positions %d–%d", chunk, p, p+n-1), got, want[p*V:(p+n)*V])
				}
			}
		})
	}
}

// Running every expert on every token (calibration's mode) computes the
// same block output as running only the routed ones.
func TestAllExpertsSameOutput(t *testing.T) {
	for _, name := range []string{"tiny-mixtral", "tiny-qwen3moe"} {
		t.Run(name, func(t *testing.T) {
			dir := shared.Path(t, "models", name)
			m, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			ids := fixtures.ReadTransformers(t, dir).IDs[1]
			want, _ := m.Forward(m.NewState(len(ids)), ids, Options{})
			counts := make([]int, len(m.Blocks[0].MoE.Experts))
			for _, b := range m.Blocks {
				b.MoE.AllExperts = true
			}
			m.Blocks[0].MoE.Tokens = counts
			got, _ := m.Forward(m.NewState(len(ids)), ids, Options{})
			compare(t, "logits", got, want)
			total := 0
			for _, c := range counts {
				total += c
			}
			if k := m.Blocks[0].MoE.TopK; total != k*len(ids) {
				t.Errorf("routed token count %d, want %d tokens × top-%d", total, len(ids), k)
			}
		})
	}
}
