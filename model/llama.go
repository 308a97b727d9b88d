package model

import (
	"fmt"

	"llmq/checkpoint"
	"llmq/nn"
)

// Llama (Touvron et al. 2023) and its close relatives Mistral and Qwen2:
// pre-norm blocks with RMSNorm, rotary positions in the "rotate half"
// layout, grouped-query attention and a SwiGLU MLP,
//
//	x += o_proj(Attn(RoPE(q_proj h), RoPE(k_proj h), v_proj h)),  h = RMSNorm(x)
//	x += down_proj(SiLU(gate_proj h) ⊙ up_proj h),                 h = RMSNorm(x)
//
// Qwen2 adds biases to q/k/v; some Llama variants (attention_bias,
// mlp_bias) to every projection. Biases are bound when present.
func init() { register(loadLlama, "llama", "mistral", "qwen2") }

func loadLlama(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	lp, err := llamaConfig(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.ModelType == "qwen2" || cfg.ModelType == "mistral" {
		// Sliding-window attention is the same as full attention until a
		// sequence is longer than the window; we do not implement the window.
		if sw, _ := cfg.BoolOr(false, "use_sliding_window"); sw {
			return nil, fmt.Errorf("%s: use_sliding_window is not supported", cfg.Path)
		}
	}
	lp.rope = nn.NewRope(lp.HeadDim, lp.HeadDim, lp.theta, false, lp.MaxPos, ropeRounding(cfg, w, "model.embed_tokens.weight"))
	return bindLlama(w, lp)
}

// llamaParams are the Llama-family settings beyond the shapes.
type llamaParams struct {
	Hyper
	eps, theta float64
	act        nn.Activation
	silu       bool // act is nn.SiLU
	tied       bool
	rope       *nn.Rope
}

// llamaConfig reads the Llama-family hyper-parameters.
func llamaConfig(cfg *checkpoint.Config) (*llamaParams, error) {
	p := &llamaParams{}
	h := &p.Hyper
	var err error
	ints := []struct {
		dst   *int
		def   int // -1: required
		names []string
	}{
		{&h.Vocab, -1, []string{"vocab_size"}},
		{&h.Hidden, -1, []string{"hidden_size"}},
		{&h.Layers, -1, []string{"num_hidden_layers"}},
		{&h.Heads, -1, []string{"num_attention_heads"}},
		{&h.Intermediate, -1, []string{"intermediate_size"}},
		{&h.MaxPos, 2048, []string{"max_position_embeddings"}},
	}
	for _, f := range ints {
		if f.def < 0 {
			*f.dst, err = cfg.Int(f.names...)
		} else {
			*f.dst, err = cfg.IntOr(f.def, f.names...)
		}
		if err != nil {
			return nil, err
		}
	}
	if h.Heads == 0 {
		return nil, fmt.Errorf("%s: num_attention_heads must be positive", cfg.Path)
	}
	if h.KVHeads, err = cfg.IntOr(h.Heads, "num_key_value_heads"); err != nil {
		return nil, err
	}
	if h.HeadDim, err = cfg.IntOr(h.Hidden/h.Heads, "head_dim"); err != nil {
		return nil, err
	}
	if p.eps, err = cfg.FloatOr(1e-6, "rms_norm_eps"); err != nil {
		return nil, err
	}
	var partial float64
	if p.theta, partial, err = cfg.Rope(10000); err != nil {
		return nil, err
	}
	if partial != 1 {
		return nil, fmt.Errorf("%s: partial rotary is not supported for %s", cfg.Path, cfg.ModelType)
	}
	actName, err := cfg.StringOr("silu", "hidden_act")
	if err != nil {
		return nil, err
	}
	if p.act, err = nn.ActivationByName(actName); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	p.silu = nn.IsSiLU(actName)
	if p.tied, err = cfg.BoolOr(false, "tie_word_embeddings"); err != nil {
		return nil, err
	}
	tokenIDs(cfg, h)
	if err := checkHyper(cfg.Path, h); err != nil {
		return nil, err
	}
	if h.HeadDim%2 != 0 {
		return nil, fmt.Errorf("%s: head_dim %d must be even for rotary embeddings", cfg.Path, h.HeadDim)
	}
	return p, nil
}

// bindLlama binds Llama-named tensors; llama2.c checkpoints come here too,
// with their tensors renamed and their own RoPE convention.
func bindLlama(w checkpoint.Tensors, lp *llamaParams) (*Model, error) {
	b := newBinder(w)
	h, eps, act := lp.Hyper, lp.eps, lp.act
	H, F := h.Hidden, h.Intermediate
	qw, kw := h.Heads*h.HeadDim, h.KVHeads*h.HeadDim
	m := &Model{Hyper: h, Rope: lp.rope}
	m.Embed = b.get("model.embed_tokens.weight", h.Vocab, H)
	for l := 0; l < h.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d", l)
		m.Blocks = append(m.Blocks, &Block{
			Name:      p,
			Norm1:     b.rmsNorm(p+".input_layernorm", H, eps),
			Q:         b.dense(p+".self_attn.q_proj", qw, H),
			K:         b.dense(p+".self_attn.k_proj", kw, H),
			V:         b.dense(p+".self_attn.v_proj", kw, H),
			O:         b.dense(p+".self_attn.o_proj", H, qw),
			Norm2:     b.rmsNorm(p+".post_attention_layernorm", H, eps),
			Gate:      b.dense(p+".mlp.gate_proj", F, H),
			Up:        b.dense(p+".mlp.up_proj", F, H),
			Down:      b.dense(p+".mlp.down_proj", H, F),
			Act:       act,
			ActIsSiLU: lp.silu,
			Attn:      h.attention(),
		})
	}
	m.Norm = b.rmsNorm("model.norm", H, eps)
	m.Head = headLinear(b, "lm_head", m.Embed, lp.tied, h.Vocab, H)
	if b.err != nil {
		return nil, b.err
	}
	return m, nil
}

// headLinear is the output projection: the embedding matrix itself when
// tied (sharing memory, as transformers' tie_weights does, whatever a stored
// copy of the head says), else the named weight.
func headLinear(b *binder, name string, embed []float32, tied bool, vocab, hidden int) nn.Linear {
	if tied {
		if embed == nil {
			return nil
		}
		return nn.NewDense(embed, nil, vocab, hidden)
	}
	return b.dense(name, vocab, hidden)
}
