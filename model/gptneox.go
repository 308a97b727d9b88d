package model

import (
	"fmt"

	"llmq/checkpoint"
	"llmq/nn"
)

// GPT-NeoX / Pythia (Black et al. 2022): LayerNorm blocks with the parallel
// residual x += Attn(LN1 x) + MLP(LN2 x), rotary embeddings on only the
// first rotary_pct of each head's features ("rotate half" layout), a GELU
// MLP and an untied head (embed_out). The fused query_key_value projection
// interleaves per head — its output is [heads × (q, k, v) × head_dim] — so
// splitting it means gathering each head's rows.
func init() {
	register(&Family{ModelTypes: []string{"gpt_neox"}, Load: loadGPTNeoX, Names: neoxNames})
}

func loadGPTNeoX(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	var h Hyper
	var err error
	for _, f := range []struct {
		dst  *int
		name string
	}{{&h.Vocab, "vocab_size"}, {&h.Hidden, "hidden_size"}, {&h.Layers, "num_hidden_layers"}, {&h.Heads, "num_attention_heads"}, {&h.Intermediate, "intermediate_size"}, {&h.MaxPos, "max_position_embeddings"}} {
		if *f.dst, err = cfg.Int(f.name); err != nil {
			return nil, err
		}
	}
	if h.Heads == 0 || h.Hidden%h.Heads != 0 {
		return nil, fmt.Errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d", cfg.Path, h.Hidden, h.Heads)
	}
	h.KVHeads, h.HeadDim = h.Heads, h.Hidden/h.Heads
	tokenIDs(cfg, &h)
	if err := checkHyper(cfg.Path, &h); err != nil {
		return nil, err
	}
	eps, err := cfg.FloatOr(1e-5, "layer_norm_eps")
	if err != nil {
		return nil, err
	}
	rope, err := ropeFor(cfg, "", h.HeadDim, 10000, ropeRounding(cfg, w, "gpt_neox.embed_in.weight"))
	if err != nil {
		return nil, err
	}
	parallel, err := cfg.BoolOr(true, "use_parallel_residual")
	if err != nil {
		return nil, err
	}
	actName, err := cfg.StringOr("gelu", "hidden_act")
	if err != nil {
		return nil, err
	}
	act, err := nn.ActivationByName(actName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	tied, err := cfg.BoolOr(false, "tie_word_embeddings")
	if err != nil {
		return nil, err
	}

	b := newBinder(w)
	H, F, D := h.Hidden, h.Intermediate, h.HeadDim
	m := &Model{Hyper: h, Rope: rope}
	m.Embed = b.get("gpt_neox.embed_in.weight", h.Vocab, H)
	for l := 0; l < h.Layers; l++ {
		p := fmt.Sprintf("gpt_neox.layers.%d", l)
		q, k, v := splitHeadsQKV(b.denseNow(p+".attention.query_key_value", 3*H, H), h.Heads, D)
		m.Blocks = append(m.Blocks, &Block{
			Name:  p,
			Norm1: b.layerNorm(p+".input_layernorm", H, eps),
			Q:     q, K: k, V: v,
			O:                b.dense(p+".attention.dense", H, H),
			Norm2:            b.layerNorm(p+".post_attention_layernorm", H, eps),
			Up:               b.dense(p+".mlp.dense_h_to_4h", F, H),
			Down:             b.dense(p+".mlp.dense_4h_to_h", H, F),
			Act:              act,
			Attn:             h.attention(),
			ParallelResidual: parallel,
			Rope:             m.Rope,
		})
	}
	m.Norm = b.layerNorm("gpt_neox.final_layer_norm", H, eps)
	m.Head = headLinear(b, "embed_out", m.Embed, tied, h.Vocab, H)
	if b.err != nil {
		return nil, b.err
	}
	return m, nil
}

// splitHeadsQKV separates a fused projection whose output rows are ordered
// [head][q|k|v][dim] into three [heads·dim × in] projections.
func splitHeadsQKV(l nn.Linear, heads, dim int) (q, k, v nn.Linear) {
	d, ok := l.(*nn.Dense)
	if !ok {
		return nil, nil, nil
	}
	in := d.In()
	var parts [3]nn.Linear
	for j := range parts {
		w := make([]float32, 0, heads*dim*in)
		var bias []float32
		for h := 0; h < heads; h++ {
			r := (h*3 + j) * dim
			w = append(w, d.W[r*in:(r+dim)*in]...)
			if d.B != nil {
				bias = append(bias, d.B[r:r+dim]...)
			}
		}
		parts[j] = nn.NewDense(w, bias, heads*dim, in)
	}
	return parts[0], parts[1], parts[2]
}

// neoxNames name the parts for recipes; the fused per-head qkv is not
// written back (Writable false).
var neoxNames = Names{
	Embed: "gpt_neox.embed_in.weight", Norm: "gpt_neox.final_layer_norm", Head: "embed_out",
	Parts: map[string]string{
		"norm1": "input_layernorm", "norm2": "post_attention_layernorm",
		"q": "attention.query_key_value.q", "k": "attention.query_key_value.k", "v": "attention.query_key_value.v",
		"o": "attention.dense", "up": "mlp.dense_h_to_4h", "down": "mlp.dense_4h_to_h",
	},
}
