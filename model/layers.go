package model

import (
	"fmt"

	"llmq/nn"
)

// This file is the view of a model that quantization works through:
// running the embedding and single blocks on calibration data, and naming
// each block's linear layers as the checkpoint does.

// EmbedTokens returns the input of block 0 for one sequence starting at
// position 0: token embeddings plus learned positions where the family has
// them. Rotary families add positions inside attention instead.
func (m *Model) EmbedTokens(tokens []int) ([]float32, error) {
	x := make([]float32, len(tokens)*m.Hidden)
	return x, m.embed(x, tokens, 0)
}

// embed writes the embeddings of tokens at positions pos0, pos0+1, … into x.
func (m *Model) embed(x []float32, tokens []int, pos0 int) error {
	H := m.Hidden
	if m.Pos != nil && pos0+len(tokens) > m.MaxPos {
		return fmt.Errorf("sequence of %d positions exceeds the model's %d learned positions", pos0+len(tokens), m.MaxPos)
	}
	for t, id := range tokens {
		if id < 0 || id >= m.Vocab {
			return fmt.Errorf("token id %d out of range [0, %d)", id, m.Vocab)
		}
		xr := x[t*H : (t+1)*H]
		if m.Embed == nil && m.EmbedRows != nil {
			m.EmbedRows.Row(xr, id)
		} else {
			copy(xr, m.Embed[id*H:(id+1)*H])
		}
		if m.Pos != nil {
			p := pos0 + t + m.PosOffset
			for j, v := range m.Pos[p*H : (p+1)*H] {
				xr[j] += v
			}
		}
	}
	return nil
}

// BlockRunner runs single blocks on whole sequences (positions 0…T−1, a
// fresh KV cache per call), reusing its scratch memory between calls. It is
// not safe for concurrent use.
type BlockRunner struct {
	m *Model
	s scratch
}

// NewBlockRunner prepares to run m's blocks.
func (m *Model) NewBlockRunner() *BlockRunner { return &BlockRunner{m: m} }

// Run updates x [T × Hidden], the residual stream entering block l, into
// the block's output.
func (r *BlockRunner) Run(l int, x []float32, T int) {
	m := r.m
	r.s.ensure(m, T)
	cache := nn.NewKVCache(m.KVHeads, m.HeadDim, T)
	m.Blocks[l].Forward(x, T, cache, m.Rope, &r.s)
}

// Logits applies the final norm and the head to hidden states h [T × Hidden].
func (m *Model) Logits(h []float32, T int) []float32 {
	x := h
	if m.Norm != nil {
		x = make([]float32, len(h))
		m.Norm.Forward(x, h, T)
	}
	logits := make([]float32, T*m.Vocab)
	m.Head.Forward(logits, x, T)
	return logits
}

// InputGroups lists the roles of a block's linears that read the same
// input, in execution order: q/k/v read the first norm's output, gate/up
// the second's. Methods that scale or quantize by input statistics
// (SmoothQuant, AWQ, GPTQ) work group by group.
func (b *Block) InputGroups() [][]string {
	mlp := []string{"up"}
	if b.Gate != nil {
		mlp = []string{"gate", "up"}
	}
	return [][]string{{"q", "k", "v"}, {"o"}, mlp, {"down"}}
}

// Linear returns the slot of the linear with a role ("q", …, "down").
func (b *Block) Linear(role string) *nn.Linear {
	for _, l := range b.Linears() {
		if l.Role == role {
			return l.Linear
		}
	}
	return nil
}

// linearSuffix names each role's module inside a block (linears and the
// two norms), per family, the way the checkpoint does. Roles split out of fused projections are named
// after the fused module with the part appended.
var linearSuffix = map[string]map[string]string{
	"llama": {"norm1": "input_layernorm", "norm2": "post_attention_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
		"gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"},
	"opt": {"norm1": "self_attn_layer_norm", "norm2": "final_layer_norm", "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.out_proj",
		"up": "fc1", "down": "fc2"},
	"gpt2": {"norm1": "ln_1", "norm2": "ln_2", "q": "attn.c_attn.q", "k": "attn.c_attn.k", "v": "attn.c_attn.v", "o": "attn.c_proj",
		"up": "mlp.c_fc", "down": "mlp.c_proj"},
	"gpt_neox": {"norm1": "input_layernorm", "norm2": "post_attention_layernorm", "q": "attention.query_key_value.q", "k": "attention.query_key_value.k", "v": "attention.query_key_value.v",
		"o": "attention.dense", "up": "mlp.dense_h_to_4h", "down": "mlp.dense_4h_to_h"},
}

// LinearName is the module name of a block's linear or norm ("norm1",
// "norm2"), e.g. "model.layers.3.self_attn.q_proj" — what recipes' targets
// and ignore lists match against.
func (m *Model) LinearName(l int, role string) string {
	arch := m.Arch
	switch arch {
	case "mistral", "qwen2", "llama2c":
		arch = "llama"
	}
	if s, ok := linearSuffix[arch][role]; ok {
		return m.Blocks[l].Name + "." + s
	}
	return m.Blocks[l].Name + "." + role
}

// OuterNames are the checkpoint names of a family's tensors outside the
// blocks. Families whose checkpoints store blocks in another layout
// (GPT-2's transposed Conv1D, GPT-NeoX's fused per-head qkv) have none:
// writers cannot reproduce their files from a Model.
type OuterNames struct {
	Embed, Pos, Norm, Head string // Norm is the final norm's module name
}

var outerNames = map[string]OuterNames{
	"llama": {Embed: "model.embed_tokens.weight", Norm: "model.norm", Head: "lm_head"},
	"opt":   {Embed: "model.decoder.embed_tokens.weight", Pos: "model.decoder.embed_positions.weight", Norm: "model.decoder.final_layer_norm", Head: "lm_head"},
}

// TensorNames returns the names of m's non-block tensors in its family's
// checkpoint layout, or false if the family's layout cannot be written
// back from a Model.
func (m *Model) TensorNames() (OuterNames, bool) { return TensorNamesOf(m.Arch) }

// TensorNamesOf is TensorNames for a family (a config's model_type).
func TensorNamesOf(arch string) (OuterNames, bool) {
	switch arch {
	case "mistral", "qwen2", "llama2c":
		arch = "llama"
	}
	n, ok := outerNames[arch]
	return n, ok
}

// Bytes is the storage of the model's weights as they are held now: FP32
// tensors at 4 bytes a value, quantized layers at their packed size (every
// layer type reports its own through a Bytes method). A head tied to the
// embedding counts once.
func (m *Model) Bytes() int64 {
	n := 4 * int64(len(m.Embed)+len(m.Pos))
	layer := func(l nn.Linear) int64 {
		if b, ok := l.(interface{ Bytes() int }); ok {
			return int64(b.Bytes())
		}
		if lz, ok := l.(*LazyDense); ok {
			return 4 * int64(lz.out*lz.in)
		}
		return 0
	}
	norm := func(x nn.Norm) int64 {
		if x == nil {
			return 0
		}
		w, b := nn.NormParams(x)
		return 4 * int64(len(w)+len(b))
	}
	for _, b := range m.Blocks {
		for _, nl := range b.Linears() {
			n += layer(*nl.Linear)
		}
		n += norm(b.Norm1) + norm(b.Norm2)
	}
	n += norm(m.Norm)
	if d, ok := m.Head.(*nn.Dense); !ok || len(d.W) == 0 || len(m.Embed) == 0 || &d.W[0] != &m.Embed[0] {
		n += layer(m.Head)
	}
	return n
}
