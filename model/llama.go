package model

import (
	"fmt"
	"math"

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
// mlp_bias) to every projection. Biases are bound when present. Mistral
// attends through a sliding window on every layer (sliding_window), Qwen2
// on the layers that layer_types (or use_sliding_window with
// max_window_layers) marks; Llama 3.1+ scales its rotary frequencies
// (rope_type llama3, see ropeFor).
func init() {
	register(&Family{ModelTypes: []string{"llama", "mistral", "qwen2"}, Load: loadLlama, Names: llamaNames})
}

// llamaNames are the module names of Llama-style checkpoints, which most
// families share or extend.
var llamaNames = Names{
	Embed: "model.embed_tokens.weight", Norm: "model.norm", Head: "lm_head", Writable: true,
	Parts: map[string]string{
		"norm1": "input_layernorm", "norm2": "post_attention_layernorm",
		"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
		"q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm",
		"gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
	},
}

// withParts returns a copy of n with some part names added or replaced.
func (n Names) withParts(parts map[string]string) Names {
	p := map[string]string{}
	for k, v := range n.Parts {
		p[k] = v
	}
	for k, v := range parts {
		p[k] = v
	}
	n.Parts = p
	return n
}

func loadLlama(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	lp, err := llamaConfig(cfg)
	if err != nil {
		return nil, err
	}
	d := &decoder{llamaParams: lp, names: &llamaNames}
	if cfg.ModelType == "mistral" {
		err = d.slideAll(cfg)
	} else {
		err = d.slideQwen(cfg)
	}
	if err != nil {
		return nil, err
	}
	return d.build(cfg, w)
}

// slideAll makes every layer a sliding-window one when the config sets
// sliding_window (Mistral, Phi-3, Mixtral).
func (d *decoder) slideAll(cfg *checkpoint.Config) error {
	var err error
	if d.window, err = cfg.IntOr(0, "sliding_window"); err != nil {
		return err
	}
	d.layerTypes = uniform(d.Layers, fullAttention)
	if d.window > 0 {
		d.layerTypes = uniform(d.Layers, slidingAttention)
	}
	return nil
}

// slideQwen reads Qwen2/3's sliding layers (see qwenLayerTypes).
func (d *decoder) slideQwen(cfg *checkpoint.Config) error {
	var err error
	if d.layerTypes, err = qwenLayerTypes(cfg, d.Layers); err != nil {
		return err
	}
	d.window, err = cfg.IntOr(0, "sliding_window")
	return err
}

// build gives each layer type its rotary embedding and binds the model.
func (d *decoder) build(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	var err error
	if d.ropes, err = ropesFor(cfg, w, d.layerTypes, d.HeadDim, d.names.Embed); err != nil {
		return nil, err
	}
	return d.bind(w)
}

// Layer types, as transformers' layer_types names them.
const (
	fullAttention    = "full_attention"
	slidingAttention = "sliding_attention"
)

func uniform(n int, t string) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = t
	}
	return s
}

// layerTypes reads config.json's layer_types (one entry per layer), or
// returns def when the config has none.
func layerTypes(cfg *checkpoint.Config, layers int, def func(i int) string) ([]string, error) {
	var ts []string
	if ok, err := cfg.Decode("layer_types", &ts); err != nil {
		return nil, err
	} else if !ok {
		ts = make([]string, layers)
		for i := range ts {
			ts[i] = def(i)
		}
		return ts, nil
	}
	if len(ts) != layers {
		return nil, fmt.Errorf("%s: layer_types has %d entries for %d layers", cfg.Path, len(ts), layers)
	}
	for i, t := range ts {
		if t != fullAttention && t != slidingAttention {
			return nil, fmt.Errorf("%s: layer_types[%d] is %q (supported: %q, %q)", cfg.Path, i, t, fullAttention, slidingAttention)
		}
	}
	return ts, nil
}

// qwenLayerTypes is Qwen2/Qwen3's rule when layer_types is absent: with
// use_sliding_window, layers from max_window_layers on slide.
func qwenLayerTypes(cfg *checkpoint.Config, layers int) ([]string, error) {
	sw, err := cfg.BoolOr(false, "use_sliding_window")
	if err != nil {
		return nil, err
	}
	maxWin, err := cfg.IntOr(layers, "max_window_layers")
	if err != nil {
		return nil, err
	}
	return layerTypes(cfg, layers, func(i int) string {
		if sw && i >= maxWin {
			return slidingAttention
		}
		return fullAttention
	})
}

// ropesFor builds one rotary embedding per distinct layer type.
func ropesFor(cfg *checkpoint.Config, w checkpoint.Tensors, types []string, headDim int, embedName string) (map[string]*nn.Rope, error) {
	ropes := map[string]*nn.Rope{}
	round := ropeRounding(cfg, w, embedName)
	for _, t := range types {
		if ropes[t] != nil {
			continue
		}
		r, err := ropeFor(cfg, t, headDim, 10000, round)
		if err != nil {
			return nil, err
		}
		ropes[t] = r
	}
	return ropes, nil
}

// llamaParams are the Llama-family settings beyond the shapes.
type llamaParams struct {
	Hyper
	eps  float64
	act  nn.Activation
	silu bool // act is nn.SiLU
	tied bool
	rope *nn.Rope // llama2.c's, which has no config
}

// llamaConfig reads the hyper-parameters every Llama-like family has.
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
	actName, err := cfg.StringOr("silu", "hidden_activation", "hidden_act")
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

// decoder is what a Llama-like family (pre-norm RMSNorm blocks, rotary
// positions, a gated MLP) sets for bind; each family file fills it from its
// config.
type decoder struct {
	*llamaParams
	names      *Names
	layerTypes []string            // per layer: full or sliding attention (nil: all full)
	window     int                 // sliding window of the sliding layers
	ropes      map[string]*nn.Rope // rotary embedding per layer type
	qkNorm     bool                // per-head q_norm / k_norm
	sandwich   bool                // Gemma's post-attention and post-MLP norms
	normOffset float32             // stored norm weights are w − normOffset (Gemma: 1)
	attnScale  float64             // 0: 1/√head_dim
	attnCap    float32             // attention logit soft cap (0: none)
	embedScale float32             // embedding multiplier (0: none)
	logitCap   float32             // final logit soft cap (0: none)
	// moe, if set, binds the MoE of layer l (nil for a dense layer).
	moe func(b *binder, prefix string, l int) *MoE
	// fusedQKV / fusedGateUp: the checkpoint stores q, k, v (gate and up)
	// as one projection whose rows are the parts one after the other
	// (Phi-3), split on load.
	fusedQKV, fusedGateUp string
}

// bind builds the model from the checkpoint's tensors.
func (d *decoder) bind(w checkpoint.Tensors) (*Model, error) {
	b := newBinder(w)
	h, n := d.Hyper, d.names
	H, F := h.Hidden, h.Intermediate
	qw, kw := h.Heads*h.HeadDim, h.KVHeads*h.HeadDim
	m := &Model{Hyper: h, EmbedScale: d.embedScale, LogitCap: d.logitCap}
	m.Embed = b.get(n.Embed, h.Vocab, H)
	norm := func(name string, width int) nn.Norm {
		nm := b.rmsNorm(name, width, d.eps)
		if r, ok := nm.(*nn.RMSNorm); ok && d.normOffset != 0 && r.W != nil {
			r.Offset = d.normOffset
			if !b.normsApplied() {
				for i := range r.W {
					r.W[i] += d.normOffset
				}
			}
		}
		return nm
	}
	for l := 0; l < h.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d", l)
		name := func(role string) string { return p + "." + n.part(role) }
		lt := fullAttention
		if d.layerTypes != nil {
			lt = d.layerTypes[l]
		}
		blk := &Block{
			Name:      p,
			Norm1:     norm(name("norm1"), H),
			Norm2:     norm(name("norm2"), H),
			Act:       d.act,
			ActIsSiLU: d.silu,
			Attn:      h.attention(),
			Rope:      d.rope,
		}
		if d.ropes != nil {
			blk.Rope = d.ropes[lt]
		}
		if d.attnScale != 0 {
			blk.Attn.Scale = float32(d.attnScale)
		}
		blk.Attn.SoftCap = d.attnCap
		if lt == slidingAttention {
			blk.Attn.Window = d.window
		}
		if d.fusedQKV != "" {
			parts := b.splitRows(p+"."+d.fusedQKV, []string{name("q"), name("k"), name("v")}, H, qw, kw, kw)
			blk.Q, blk.K, blk.V = parts[0], parts[1], parts[2]
		} else {
			blk.Q = b.dense(name("q"), qw, H)
			blk.K = b.dense(name("k"), kw, H)
			blk.V = b.dense(name("v"), kw, H)
		}
		blk.O = b.dense(name("o"), H, qw)
		if d.qkNorm {
			blk.QNorm = norm(name("q_norm"), h.HeadDim)
			blk.KNorm = norm(name("k_norm"), h.HeadDim)
		}
		if d.sandwich {
			blk.PostAttnNorm = norm(name("post_attn_norm"), H)
			blk.PostMLPNorm = norm(name("post_mlp_norm"), H)
		}
		if d.moe != nil {
			blk.MoE = d.moe(b, p, l)
		}
		if blk.MoE == nil {
			if d.fusedGateUp != "" {
				parts := b.splitRows(p+"."+d.fusedGateUp, []string{name("gate"), name("up")}, H, F, F)
				blk.Gate, blk.Up = parts[0], parts[1]
			} else {
				blk.Gate = b.dense(name("gate"), F, H)
				blk.Up = b.dense(name("up"), F, H)
			}
			blk.Down = b.dense(name("down"), H, F)
		}
		m.Blocks = append(m.Blocks, blk)
	}
	m.Norm = norm(n.Norm, H)
	m.Head = headLinear(b, n.Head, m.Embed, d.tied, h.Vocab, H)
	if b.err != nil {
		return nil, b.err
	}
	m.Rope = m.Blocks[0].Rope
	for _, blk := range m.Blocks {
		if blk.Rope != m.Rope {
			m.Rope = nil // no single rope: each block has its own
		}
	}
	return m, nil
}

// bindExperts binds a mixture of experts: the router at prefix.router and
// experts at prefix.Experts, each F wide, through the family's names.
func bindExperts(b *binder, n *Names, prefix string, experts, topK, hidden, F int, normTopK bool) *MoE {
	e := &MoE{TopK: topK, NormTopK: normTopK}
	e.Router = b.dense(prefix+"."+n.part("router"), experts, hidden)
	for i := 0; i < experts; i++ {
		e.Experts = append(e.Experts, &Expert{
			Gate: b.dense(prefix+"."+n.part(ExpertRole(i, "gate")), F, hidden),
			Up:   b.dense(prefix+"."+n.part(ExpertRole(i, "up")), F, hidden),
			Down: b.dense(prefix+"."+n.part(ExpertRole(i, "down")), hidden, F),
		})
	}
	return e
}

// moeConfig reads the expert count and top-k of a mixture-of-experts
// config.
func moeConfig(cfg *checkpoint.Config) (experts, topK int, err error) {
	if experts, err = cfg.Int("num_local_experts", "num_experts"); err != nil {
		return 0, 0, err
	}
	if topK, err = cfg.Int("num_experts_per_tok"); err != nil {
		return 0, 0, err
	}
	if experts < 1 || topK < 1 || topK > experts {
		return 0, 0, fmt.Errorf("%s: num_experts_per_tok %d must be in [1, %d experts]", cfg.Path, topK, experts)
	}
	return experts, topK, nil
}

// bindLlama binds a llama2.c checkpoint, whose tensors the reader renamed
// to Llama's, with its own RoPE convention.
func bindLlama(w checkpoint.Tensors, lp *llamaParams) (*Model, error) {
	d := &decoder{llamaParams: lp, names: &llamaNames}
	m, err := d.bind(w)
	if err != nil {
		return nil, err
	}
	m.names = &llamaNames
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

// sqrt32 is √x rounded to float32.
func sqrt32(x float64) float32 { return float32(math.Sqrt(x)) }
