package modelio

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/checkpoint"
	"llmq/internal/shared"
	"llmq/model"
	"llmq/quant"
	"llmq/quant/methods"
	"llmq/recipe"
)

// TestFamiliesQuantizeSaveReload quantizes every writable family with the
// presets users start from, the way `llmq quantize` does (lazily bound
// weights, an untied head still in the checkpoint), saves the result and
// loads it back: the reloaded model computes what the quantized model
// computed in memory (reference path), and the quantized logits stay near
// the FP ones. SmoothQuant's smoothing alone must leave the FP function as
// it was (every consumer of a smoothed norm rescaled: q/k/v, the router and
// every expert).
//
// The bars on the error against FP — relative max-abs logit error, mean KL
// in nats per position — are the worst of the three original families
// (tiny-llama, tiny-qwen2, tiny-opt, whose planted ×25 outlier channels
// wreck plain W8A8) with 25 % headroom, measured on these probes:
// W8A8 0.517 / 0.082 (tiny-qwen2), SmoothQuant-O1 0.13 / 0.013, GPTQ W4
// g8 1.05 / 0.485, AWQ W4 g8 0.416 / 0.094. A mixture of experts is held
// to the KL bar only: quantization noise flips the top-k choice of a few
// near-tied tokens, which moves single logits far while the distribution
// over the sequence stays close.
func TestFamiliesQuantizeSaveReload(t *testing.T) {
	presets := []struct {
		name    string
		rel, kl float64
	}{
		{"smooth-only", 1e-4, 1e-6},
		{"w8a8", 0.65, 0.1},
		{"smoothquant-o1", 0.17, 0.016},
		{"gptq-w4a16", 1.3, 0.6},
		{"awq-w4a16", 0.52, 0.12},
	}
	// The presets' group of 128 columns divides no tiny fixture's MLP
	// width (344, 320, 192, 96): the W4 recipes here are the presets with
	// groups of 8.
	recipes := map[string]string{
		"smooth-only": `
quant_stage:
  quant_modifiers:
    SmoothQuantModifier:
      smoothing_strength: 0.5
`,
		"gptq-w4a16": `
quant_stage:
  quant_modifiers:
    GPTQModifier:
      targets: [Linear]
      ignore: [lm_head, 're:.*mlp\.gate$', 're:.*block_sparse_moe\.gate$']
      dampening_frac: 0.01
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 8, observer: mse}
`,
		"awq-w4a16": `
quant_stage:
  quant_modifiers:
    AWQModifier:
      targets: [Linear]
      ignore: [lm_head, 're:.*mlp\.gate$', 're:.*block_sparse_moe\.gate$']
      n_grid: 20
      apply_clip: true
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 8}
`,
	}
	families := []string{"tiny-llama", "tiny-qwen2", "tiny-opt", "tiny-llama3", "tiny-mistral", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-mixtral", "tiny-qwen3moe"}
	if testing.Short() {
		families = []string{"tiny-mistral", "tiny-gemma2", "tiny-qwen3moe"}
	}
	for _, fam := range families {
		for _, p := range presets {
			t.Run(fam+"/"+p.name, func(t *testing.T) {
				src := shared.Path(t, "models", fam)
				fp, err := model.Load(src)
				if err != nil {
					t.Fatal(err)
				}
				m, err := model.LoadLazy(src)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				r, err := recipe.Load(p.name)
				if text, ok := recipes[p.name]; ok {
					r, err = recipe.Parse(p.name+" with groups of 8", []byte(text))
				}
				if err != nil {
					t.Fatal(err)
				}
				stages, err := r.Build(m)
				if err != nil {
					t.Fatal(err)
				}
				if err := methods.Run(m, seqs(8, 48, m.Vocab), stages, nil); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(t.TempDir(), "q")
				if err := Save(m, src, out, p.name); err != nil {
					t.Fatal(err)
				}
				back, err := LoadWith(out, Options{Reference: true})
				if err != nil {
					t.Fatal(err)
				}
				probe := seqs(9, 48, m.Vocab)[8]
				want, _ := m.Forward(m.NewState(48), probe, model.Options{})
				got, err := back.Forward(back.NewState(48), probe, model.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if rel, _ := logitError(want, got, m.Vocab); rel > 0 {
					t.Fatalf("reloaded logits differ from the in-memory model's by %.3g (relative)", rel)
				}
				ref, _ := fp.Forward(fp.NewState(48), probe, model.Options{})
				rel, kl := logitError(ref, got, m.Vocab)
				t.Logf("vs FP: relative logit error %.3g, KL %.3g", rel, kl)
				if m.Blocks[0].MoE != nil && p.name != "smooth-only" {
					rel = 0 // see above
				}
				if rel > p.rel || kl > p.kl || math.IsNaN(rel) {
					t.Errorf("quantized logits off FP by %.3g relative, KL %.3g (bars %g, %g)", rel, kl, p.rel, p.kl)
				}
				if fmt.Sprint(len(back.Blocks[0].Linears())) != fmt.Sprint(len(m.Blocks[0].Linears())) {
					t.Errorf("reloaded block has %d linears, was %d", len(back.Blocks[0].Linears()), len(m.Blocks[0].Linears()))
				}
			})
		}
	}
}

// logitError is the max-abs logit error relative to the largest reference
// logit, and the mean KL(ref ‖ got) per position.
func logitError(ref, got []float32, vocab int) (rel, kl float64) {
	var num, den float64
	for i := range ref {
		num = math.Max(num, math.Abs(float64(got[i]-ref[i])))
		den = math.Max(den, math.Abs(float64(ref[i])))
	}
	T := len(ref) / vocab
	for t := 0; t < T; t++ {
		p, q := logSoftmax(ref[t*vocab:(t+1)*vocab]), logSoftmax(got[t*vocab:(t+1)*vocab])
		for j := range p {
			kl += math.Exp(p[j]) * (p[j] - q[j])
		}
	}
	return num / den, kl / float64(T)
}

func logSoftmax(z []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range z {
		s += math.Exp(float64(v) - m)
	}
	out := make([]float64, len(z))
	for i, v := range z {
		out[i] = float64(v) - m - math.Log(s)
	}
	return out
}

// A saved folder's config.json spells every number as the source did:
// transformers' strict config classes refuse 30 where the field is a float
// (Gemma 2's "final_logit_softcapping": 30.0), so re-encoding through
// float64 would make the folder and its exports unloadable there.
func TestSaveKeepsConfigNumbers(t *testing.T) {
	src := shared.Path(t, "models", "tiny-gemma2")
	m, err := model.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := methods.Run(m, nil, []methods.Method{&methods.RTN{Scheme: methods.Scheme{Weights: quant.MustParseSpec("int8-sym-channel")}}}, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "q")
	if err := Save(m, src, out, "test"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"final_logit_softcapping": 30.0`, `"attn_logit_softcapping": 50.0`, `"rms_norm_eps": 1e-06`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("config.json lost %s:\n%s", want, raw)
		}
	}
}

// writeUntiedLlama writes a random Llama checkpoint with an untied head
// and widths every preset's groups divide (hidden 256, MLP 512) into dir.
func writeUntiedLlama(t *testing.T, dir string) {
	t.Helper()
	const H, F, V, L, heads, kv, hd = 256, 512, 512, 2, 4, 2, 64
	cfg := fmt.Sprintf(`{"model_type": "llama", "hidden_size": %d, "intermediate_size": %d, "vocab_size": %d,
  "num_hidden_layers": %d, "num_attention_heads": %d, "num_key_value_heads": %d, "head_dim": %d,
  "rms_norm_eps": 1e-05, "max_position_embeddings": 256, "tie_word_embeddings": false,
  "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}`, H, F, V, L, heads, kv, hd)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := uint64(1)
	rnd := func(n int, std float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			// xorshift64*: deterministic, no dependency on math/rand's streams
			seed ^= seed >> 12
			seed ^= seed << 25
			seed ^= seed >> 27
			u := float64((seed*2685821657736338717)>>11) / (1 << 53)
			v[i] = float32((2*u - 1) * std * 1.7320508)
		}
		return v
	}
	ones := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	var ts []checkpoint.WriteTensor
	add := func(name string, v []float32, shape ...int) {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		ts = append(ts, checkpoint.WriteTensor{Name: name, DType: checkpoint.F32, Shape: shape, Data: b})
	}
	add("model.embed_tokens.weight", rnd(V*H, 0.5), V, H)
	add("lm_head.weight", rnd(V*H, 0.05), V, H)
	add("model.norm.weight", ones(H), H)
	for l := 0; l < L; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", ones(H), H)
		add(p+"post_attention_layernorm.weight", ones(H), H)
		add(p+"self_attn.q_proj.weight", rnd(heads*hd*H, 0.06), heads*hd, H)
		add(p+"self_attn.k_proj.weight", rnd(kv*hd*H, 0.06), kv*hd, H)
		add(p+"self_attn.v_proj.weight", rnd(kv*hd*H, 0.06), kv*hd, H)
		add(p+"self_attn.o_proj.weight", rnd(H*heads*hd, 0.06), H, heads*hd)
		add(p+"mlp.gate_proj.weight", rnd(F*H, 0.06), F, H)
		add(p+"mlp.up_proj.weight", rnd(F*H, 0.06), F, H)
		add(p+"mlp.down_proj.weight", rnd(H*F, 0.04), H, F)
	}
	if err := checkpoint.WriteSafetensors(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
}

// Every built-in preset quantizes a model with an untied head (bound
// lazily, as llmq quantize loads it), saves it, and the saved folder
// reloads to the model that was quantized in memory.
func TestEveryPresetUntiedHead(t *testing.T) {
	if testing.Short() {
		t.Skip("every preset: -short")
	}
	src := t.TempDir()
	writeUntiedLlama(t, src)
	for _, name := range recipe.Presets() {
		t.Run(name, func(t *testing.T) {
			m, err := model.LoadLazy(src)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			r, err := recipe.Load(name)
			if err != nil {
				t.Fatal(err)
			}
			stages, err := r.Build(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := methods.Run(m, seqs(4, 32, m.Vocab), stages, nil); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "q")
			if err := Save(m, src, out, name); err != nil {
				t.Fatal(err)
			}
			back, err := LoadWith(out, Options{Reference: true})
			if err != nil {
				t.Fatal(err)
			}
			probe := seqs(9, 48, m.Vocab)[8]
			want, _ := m.Forward(m.NewState(48), probe, model.Options{})
			got, err := back.Forward(back.NewState(48), probe, model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rel, _ := logitError(want, got, m.Vocab); rel > 0 {
				t.Errorf("reloaded logits differ from the in-memory model's by %.3g (relative)", rel)
			}
		})
	}
}
