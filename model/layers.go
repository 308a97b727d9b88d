package model

import (
	"fmt"

	"llmq/kernels"
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
		if m.EmbedFromHead() {
			m.EmbedRows.Row(xr, id)
		} else {
			copy(xr, m.Embed[id*H:(id+1)*H])
		}
		if m.EmbedScale != 0 {
			kernels.Scale(xr, m.EmbedScale)
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
	m.Blocks[l].Forward(x, T, cache, &r.s)
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
	m.capLogits(logits)
	return logits
}

// InputGroups lists the roles of a block's linears that read the same
// input, in execution order: q/k/v read the first norm's output, gate/up
// the second's. Methods that scale or quantize by input statistics
// (SmoothQuant, AWQ, GPTQ) work group by group. In a mixture of experts
// the router and every expert's gate and up read the second norm's output
// (each expert sees all tokens when MoE.AllExperts is set, as calibration
// does), and each expert's down its own input.
func (b *Block) InputGroups() [][]string {
	groups := [][]string{{"q", "k", "v"}, {"o"}}
	switch {
	case b.MoE != nil:
		in := []string{"router"}
		var downs [][]string
		for i := range b.MoE.Experts {
			in = append(in, ExpertRole(i, "gate"), ExpertRole(i, "up"))
			downs = append(downs, []string{ExpertRole(i, "down")})
		}
		return append(append(groups, in), downs...)
	case b.Gate != nil:
		return append(groups, []string{"gate", "up"}, []string{"down"})
	}
	return append(groups, []string{"up"}, []string{"down"})
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

// Names is how a family's checkpoints name a model's tensors and modules.
type Names struct {
	// Embed and Pos are tensors, Norm and Head modules (".weight" and
	// ".bias" follow), outside the blocks.
	Embed, Pos, Norm, Head string
	// Parts maps a block role ("norm1", "q", "q_norm", …) to its module
	// inside the block ("input_layernorm", "self_attn.q_proj", …). Roles
	// split out of a fused projection are named after the fused module
	// with the part appended ("attn.c_attn.q").
	Parts map[string]string
	// Experts is the module of expert i inside a block, a format with one
	// %d ("block_sparse_moe.experts.%d"), and ExpertParts the module of
	// each expert part ("gate" → "w1").
	Experts     string
	ExpertParts map[string]string
	// Fused maps a module the family's checkpoints hold as one projection
	// ("self_attn.qkv_proj") to the roles it stacks, in row order (q, k,
	// v): the model holds the parts apart, exporters fuse them back.
	Fused map[string][]string
	// Writable: every tensor of a Model can be written back under these
	// names. Families whose checkpoints fuse or transpose block weights
	// (GPT-2's Conv1D, GPT-NeoX's per-head qkv) are not.
	Writable bool
}

// part returns the module name of a block role, or "" if unknown.
func (n *Names) part(role string) string {
	if s, ok := n.Parts[role]; ok {
		return s
	}
	if i, p, ok := ParseExpertRole(role); ok && n.Experts != "" {
		if s, ok := n.ExpertParts[p]; ok {
			return fmt.Sprintf(n.Experts, i) + "." + s
		}
	}
	return ""
}

// LinearName is the module name of a block part (a linear or a norm),
// e.g. "model.layers.3.self_attn.q_proj" — what recipes' targets and
// ignore lists match against and what saving writes.
func (m *Model) LinearName(l int, role string) string {
	if m.names != nil {
		if s := m.names.part(role); s != "" {
			return m.Blocks[l].Name + "." + s
		}
	}
	return m.Blocks[l].Name + "." + role
}

// FusedModules returns the family's fused projections (see Names.Fused);
// nil when it has none.
func (m *Model) FusedModules() map[string][]string {
	if m.names == nil {
		return nil
	}
	return m.names.Fused
}

// OuterNames are the checkpoint names of a family's tensors outside the
// blocks.
type OuterNames struct {
	Embed, Pos, Norm, Head string // Norm is the final norm's module name
}

// TensorNames returns the names of m's non-block tensors in its family's
// checkpoint layout, or false if the family's layout cannot be written
// back from a Model.
func (m *Model) TensorNames() (OuterNames, bool) {
	if m.names == nil {
		return TensorNamesOf(m.Arch)
	}
	return outerOf(m.names)
}

// TensorNamesOf is TensorNames for a family (a config's model_type).
func TensorNamesOf(arch string) (OuterNames, bool) {
	f, ok := families[arch]
	if !ok {
		return OuterNames{}, false
	}
	return outerOf(&f.Names)
}

// PartNameOf is the module name of a block role inside a block of the
// family's checkpoints ("self_attn.q_proj" for "q"), as LinearName names it
// in a loaded model; false when the family or the role is unknown. Readers
// of other formats (GGUF) serve a family's binder under these names.
func PartNameOf(arch, role string) (string, bool) {
	f, ok := families[arch]
	if !ok {
		return "", false
	}
	s := f.Names.part(role)
	return s, s != ""
}

func outerOf(n *Names) (OuterNames, bool) {
	return OuterNames{Embed: n.Embed, Pos: n.Pos, Norm: n.Norm, Head: n.Head}, n.Writable
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
	if !m.HeadShared() {
		n += layer(m.Head)
	}
	return n
}
