package model

import (
	"fmt"

	"llmq/checkpoint"
	"llmq/nn"
)

// OPT (Zhang et al. 2022): learned absolute positions stored with an offset
// of 2 (row p+2 holds position p, a fairseq legacy), LayerNorm with biases,
// biased projections and a ReLU MLP (fc1 → ReLU → fc2). Most sizes are
// pre-norm; OPT-350m is post-norm (do_layer_norm_before = false) and then
// has no final norm. The head is tied to the token embeddings.
func init() {
	register(&Family{ModelTypes: []string{"opt"}, Load: loadOPT, Names: optNames})
}

func loadOPT(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	var h Hyper
	var err error
	for _, f := range []struct {
		dst  *int
		name string
	}{{&h.Vocab, "vocab_size"}, {&h.Hidden, "hidden_size"}, {&h.Layers, "num_hidden_layers"}, {&h.Heads, "num_attention_heads"}, {&h.Intermediate, "ffn_dim"}, {&h.MaxPos, "max_position_embeddings"}} {
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
	if proj, err := cfg.IntOr(h.Hidden, "word_embed_proj_dim"); err != nil {
		return nil, err
	} else if proj != h.Hidden {
		return nil, fmt.Errorf("%s: word_embed_proj_dim %d ≠ hidden_size %d (project_in/out) is not supported", cfg.Path, proj, h.Hidden)
	}
	preNorm, err := cfg.BoolOr(true, "do_layer_norm_before")
	if err != nil {
		return nil, err
	}
	removeFinal, err := cfg.BoolOr(false, "_remove_final_layer_norm")
	if err != nil {
		return nil, err
	}
	actName, err := cfg.StringOr("relu", "activation_function")
	if err != nil {
		return nil, err
	}
	act, err := nn.ActivationByName(actName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	tied, err := cfg.BoolOr(true, "tie_word_embeddings")
	if err != nil {
		return nil, err
	}
	const eps = 1e-5 // torch.nn.LayerNorm's default, which OPT uses

	b := newBinder(w)
	H, F := h.Hidden, h.Intermediate
	m := &Model{Hyper: h, PosOffset: 2}
	m.Embed = b.get("model.decoder.embed_tokens.weight", h.Vocab, H)
	m.Pos = b.get("model.decoder.embed_positions.weight", h.MaxPos+m.PosOffset, H)
	for l := 0; l < h.Layers; l++ {
		p := fmt.Sprintf("model.decoder.layers.%d", l)
		m.Blocks = append(m.Blocks, &Block{
			Name:     p,
			Norm1:    b.layerNorm(p+".self_attn_layer_norm", H, eps),
			Q:        b.dense(p+".self_attn.q_proj", H, H),
			K:        b.dense(p+".self_attn.k_proj", H, H),
			V:        b.dense(p+".self_attn.v_proj", H, H),
			O:        b.dense(p+".self_attn.out_proj", H, H),
			Norm2:    b.layerNorm(p+".final_layer_norm", H, eps),
			Up:       b.dense(p+".fc1", F, H),
			Down:     b.dense(p+".fc2", H, F),
			Act:      act,
			Attn:     h.attention(),
			PostNorm: !preNorm,
		})
	}
	if preNorm && !removeFinal {
		m.Norm = b.layerNorm("model.decoder.final_layer_norm", H, eps)
	}
	m.Head = headLinear(b, "lm_head", m.Embed, tied, h.Vocab, H)
	if b.err != nil {
		return nil, b.err
	}
	return m, nil
}

var optNames = Names{
	Embed: "model.decoder.embed_tokens.weight", Pos: "model.decoder.embed_positions.weight",
	Norm: "model.decoder.final_layer_norm", Head: "lm_head", Writable: true,
	Parts: map[string]string{
		"norm1": "self_attn_layer_norm", "norm2": "final_layer_norm",
		"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.out_proj",
		"up": "fc1", "down": "fc2",
	},
}
