package model

import (
	"fmt"

	"llmq/checkpoint"
	"llmq/nn"
)

// GPT-2 (Radford et al. 2019): learned absolute positions, pre-norm
// LayerNorm blocks, a GELU (tanh approximation) MLP and a tied head. Its
// projections are Conv1D modules that store weights as [in × out] — the
// transpose of nn.Linear — and the query, key and value projections are one
// fused c_attn of width 3·hidden; we transpose on load and split c_attn into
// three linears so the block looks like every other family's.
func init() {
	register(&Family{ModelTypes: []string{"gpt2"}, Load: loadGPT2, Names: gpt2Names})
}

func loadGPT2(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	var h Hyper
	var err error
	for _, f := range []struct {
		dst  *int
		name string
	}{{&h.Vocab, "vocab_size"}, {&h.Hidden, "n_embd"}, {&h.Layers, "n_layer"}, {&h.Heads, "n_head"}, {&h.MaxPos, "n_positions"}} {
		if *f.dst, err = cfg.Int(f.name); err != nil {
			return nil, err
		}
	}
	if h.Heads == 0 || h.Hidden%h.Heads != 0 {
		return nil, fmt.Errorf("%s: n_embd %d is not a multiple of n_head %d", cfg.Path, h.Hidden, h.Heads)
	}
	if h.Intermediate, err = cfg.IntOr(4*h.Hidden, "n_inner"); err != nil {
		return nil, err
	}
	h.KVHeads, h.HeadDim = h.Heads, h.Hidden/h.Heads
	tokenIDs(cfg, &h)
	if err := checkHyper(cfg.Path, &h); err != nil {
		return nil, err
	}
	eps, err := cfg.FloatOr(1e-5, "layer_norm_epsilon")
	if err != nil {
		return nil, err
	}
	actName, err := cfg.StringOr("gelu_new", "activation_function")
	if err != nil {
		return nil, err
	}
	act, err := nn.ActivationByName(actName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	for _, flag := range []string{"scale_attn_by_inverse_layer_idx", "add_cross_attention"} {
		if v, err := cfg.BoolOr(false, flag); err != nil {
			return nil, err
		} else if v {
			return nil, fmt.Errorf("%s: %s = true is not supported", cfg.Path, flag)
		}
	}
	if v, err := cfg.BoolOr(true, "scale_attn_weights"); err != nil {
		return nil, err
	} else if !v {
		return nil, fmt.Errorf("%s: scale_attn_weights = false is not supported", cfg.Path)
	}

	b := newBinder(w)
	H, F := h.Hidden, h.Intermediate
	// conv binds a Conv1D weight [in × out] (+ bias) as an nn.Linear.
	conv := func(name string, in, out int) nn.Linear {
		wt := transpose(b.get(name+".weight", in, out), in, out)
		bias := b.get(name+".bias", out)
		if b.err != nil {
			return nil
		}
		return nn.NewDense(wt, bias, out, in)
	}
	m := &Model{Hyper: h}
	m.Embed = b.get("transformer.wte.weight", h.Vocab, H)
	m.Pos = b.get("transformer.wpe.weight", h.MaxPos, H)
	for l := 0; l < h.Layers; l++ {
		p := fmt.Sprintf("transformer.h.%d", l)
		qkv := splitRows(conv(p+".attn.c_attn", H, 3*H), H, H, H)
		m.Blocks = append(m.Blocks, &Block{
			Name:  p,
			Norm1: b.layerNorm(p+".ln_1", H, eps),
			Q:     qkv[0], K: qkv[1], V: qkv[2],
			O:     conv(p+".attn.c_proj", H, H),
			Norm2: b.layerNorm(p+".ln_2", H, eps),
			Up:    conv(p+".mlp.c_fc", H, F),
			Down:  conv(p+".mlp.c_proj", F, H),
			Act:   act,
			Attn:  h.attention(),
		})
	}
	m.Norm = b.layerNorm("transformer.ln_f", H, eps)
	m.Head = headLinear(b, "lm_head", m.Embed, true, h.Vocab, H)
	if b.err != nil {
		return nil, b.err
	}
	return m, nil
}

// splitRows cuts a fused dense layer into consecutive blocks of output rows
// (nil in, nils out, so binding errors surface once through the binder).
func splitRows(l nn.Linear, sizes ...int) []nn.Linear {
	out := make([]nn.Linear, len(sizes))
	d, ok := l.(*nn.Dense)
	if !ok {
		return out
	}
	in, r := d.In(), 0
	for i, n := range sizes {
		var bias []float32
		if d.B != nil {
			bias = d.B[r : r+n]
		}
		out[i] = nn.NewDense(d.W[r*in:(r+n)*in], bias, n, in)
		r += n
	}
	return out
}

// gpt2Names name the parts for recipes; the Conv1D layout is not written
// back (Writable false).
var gpt2Names = Names{
	Embed: "transformer.wte.weight", Pos: "transformer.wpe.weight", Norm: "transformer.ln_f", Head: "lm_head",
	Parts: map[string]string{
		"norm1": "ln_1", "norm2": "ln_2",
		"q": "attn.c_attn.q", "k": "attn.c_attn.k", "v": "attn.c_attn.v", "o": "attn.c_proj",
		"up": "mlp.c_fc", "down": "mlp.c_proj",
	},
}
