package model

import (
	"fmt"
	"path/filepath"
	"testing"

	"llmq/checkpoint"
	"llmq/internal/shared"
)

// TestTransformersEager compares the default forward pass with logits that
// transformers 5.17 computed on the GPU machine in float64 with the eager
// attention (scripts/transformers-eager-oracle.py; testdata/eager holds
// them, safetensors files of input_ids and logits): float32 RoPE
// frequencies, Gemma 2's attention soft cap — what the model computes when
// a user runs it, where the references in ../shared differ (see
// TestTransformersReference).
func TestTransformersEager(t *testing.T) {
	for _, name := range []string{"tiny-qwen2", "tiny-llama3", "tiny-qwen3", "tiny-mistral", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-mixtral", "tiny-qwen3moe"} {
		t.Run(name, func(t *testing.T) {
			m, err := Load(shared.Path(t, "models", name))
			if err != nil {
				t.Fatal(err)
			}
			if m.EmbedScale != 0 {
				// Gemma's √hidden multiplier has the compute dtype: exact
				// in the oracle's float64, bf16-rounded in a bf16 run.
				m.EmbedScale = sqrt32(float64(m.Hidden))
			}
			f, err := checkpoint.OpenSafetensors(filepath.Join("testdata", "eager", name+"-logits.st"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ids, info, err := f.Float32("input_ids")
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := f.Float32("logits")
			if err != nil {
				t.Fatal(err)
			}
			B, T, V := info.Shape[0], info.Shape[1], m.Vocab
			for bi := 0; bi < B; bi++ {
				tokens := make([]int, T)
				for i := range tokens {
					tokens[i] = int(ids[bi*T+i])
				}
				logits, err := m.Forward(m.NewState(T), tokens, Options{})
				if err != nil {
					t.Fatal(err)
				}
				compare(t, fmt.Sprintf("batch %d logits", bi), logits, want[bi*T*V:(bi+1)*T*V])
			}
		})
	}
}
