package model

import (
	"llmq/kernels"
	"llmq/nn"
)

// Block is one decoder layer, general enough for every supported family:
//
//	sequential (Llama, OPT, GPT-2):  x += O(Attn(N1(x)));  x += MLP(N2(x))
//	sandwich   (Gemma 2/3):          x += PA(O(Attn(N1(x))));  x += PM(MLP(N2(x)))
//	parallel   (GPT-NeoX, Pythia):   x += O(Attn(N1(x))) + MLP(N2(x))
//	post-norm  (OPT-350m):           x = N1(x + O(Attn(x)));  x = N2(x + MLP(x))
//
// and MLP(h) = Down(Act(Gate(h)) ⊙ Up(h)) when Gate is set (SwiGLU, Shazeer
// 2020), else Down(Act(Up(h))); a mixture-of-experts block (MoE set) routes
// each token to a few such MLPs instead. Inside attention, QNorm and KNorm
// (Qwen3, Gemma 3) normalise each head's query and key before RoPE.
//
// Every norm and linear is reachable through Parts, which is what saving,
// export, smoothing and the checkers iterate: a part added here and not
// listed there would be silently skipped by all of them.
type Block struct {
	Name         string // checkpoint prefix, e.g. "model.layers.3"
	Norm1, Norm2 nn.Norm
	QNorm, KNorm nn.Norm // per-head norms of queries and keys (nil: none)
	// PostAttnNorm and PostMLPNorm normalise the attention and MLP outputs
	// before the residual add (Gemma's sandwich norms; nil: none).
	PostAttnNorm, PostMLPNorm nn.Norm
	Q, K, V, O                nn.Linear
	Gate, Up, Down            nn.Linear // the dense MLP (nil with MoE)
	MoE                       *MoE
	Act                       nn.Activation
	ActIsSiLU                 bool // Act is nn.SiLU: a gated MLP fuses it (kernels.SiLUMul)
	Attn                      nn.Attention
	Rope                      *nn.Rope // nil with learned positions
	ParallelResidual          bool
	PostNorm                  bool
}

// scratch holds the per-call intermediate buffers, grown to the largest
// batch seen so steady-state calls allocate nothing.
type scratch struct {
	x, h, h2, q, k, v, a, o, f, g []float32
	r, ei, eo                     []float32 // router logits, an expert's gathered inputs and outputs
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func (s *scratch) ensure(m *Model, T int) {
	H := m.Hidden
	qw := m.Heads * m.HeadDim
	kw := m.KVHeads * m.HeadDim
	s.x = grow(s.x, T*H)
	s.h = grow(s.h, T*H)
	s.h2 = grow(s.h2, T*H)
	s.q = grow(s.q, T*qw)
	s.k = grow(s.k, T*kw)
	s.v = grow(s.v, T*kw)
	s.a = grow(s.a, T*qw)
	s.o = grow(s.o, T*H)
	s.f = grow(s.f, T*m.Intermediate)
	s.g = grow(s.g, T*m.Intermediate)
}

// Forward updates the residual stream x [T × Hidden] in place.
func (b *Block) Forward(x []float32, T int, cache *nn.KVCache, s *scratch) {
	H := b.O.Out()
	h := s.h[:T*H]
	attnIn := x
	if !b.PostNorm {
		b.Norm1.Forward(h, x, T)
		attnIn = h
	}
	o := s.o[:T*H]
	b.attention(o, attnIn, T, cache, s)
	switch {
	case b.ParallelResidual:
		h2 := s.h2[:T*H]
		b.Norm2.Forward(h2, x, T)
		b.mlp(h, h2, T, s) // h is free again: reuse it for the MLP output
		for i := range x[:T*H] {
			x[i] += o[i] + h[i]
		}
	case b.PostNorm:
		add(x, o)
		b.Norm1.Forward(x, x, T)
		b.mlp(h, x, T, s)
		add(x, h)
		b.Norm2.Forward(x, x, T)
	default:
		if b.PostAttnNorm != nil {
			b.PostAttnNorm.Forward(o, o, T)
		}
		add(x, o)
		b.Norm2.Forward(h, x, T)
		b.mlp(o, h, T, s)
		if b.PostMLPNorm != nil {
			b.PostMLPNorm.Forward(o, o, T)
		}
		add(x, o)
	}
}

// add computes x += y (the residual connection). Axpy with α = 1 is the
// same sum bit for bit (the fused multiply-add rounds 1·y + x once), on
// vectors.
func add(x, y []float32) {
	kernels.Axpy(1, y[:len(x)], x)
}

func (b *Block) attention(out, in []float32, T int, cache *nn.KVCache, s *scratch) {
	q := s.q[:T*b.Q.Out()]
	k := s.k[:T*b.K.Out()]
	v := s.v[:T*b.V.Out()]
	nn.ForwardShared(in, T, []nn.Linear{b.Q, b.K, b.V}, [][]float32{q, k, v})
	if b.QNorm != nil { // one row per (token, head)
		b.QNorm.Forward(q, q, T*b.Attn.Heads)
	}
	if b.KNorm != nil {
		b.KNorm.Forward(k, k, T*b.Attn.KVHeads)
	}
	if b.Rope != nil {
		pos0 := cache.Len
		b.Rope.Apply(q, T, b.Attn.Heads, pos0)
		b.Rope.Apply(k, T, b.Attn.KVHeads, pos0)
	}
	a := s.a[:T*b.Q.Out()]
	b.Attn.Forward(a, q, k, v, T, cache)
	b.O.Forward(out, a, T)
}

func (b *Block) mlp(out, in []float32, T int, s *scratch) {
	if b.MoE != nil {
		b.MoE.forward(out, in, T, b.Act, b.ActIsSiLU, s)
		return
	}
	runMLP(out, in, T, b.Gate, b.Up, b.Down, b.Act, b.ActIsSiLU, s)
}

// runMLP computes out = Down(Act(Gate(in)) ⊙ Up(in)) (or Down(Act(Up(in)))
// without a gate) for T rows.
func runMLP(out, in []float32, T int, gate, up, down nn.Linear, act nn.Activation, silu bool, s *scratch) {
	F := up.Out()
	s.f = grow(s.f, T*F)
	u := s.f[:T*F]
	var g []float32
	if gate != nil {
		s.g = grow(s.g, T*F)
		g = s.g[:T*F]
		nn.ForwardShared(in, T, []nn.Linear{up, gate}, [][]float32{u, g})
	} else {
		up.Forward(u, in, T)
	}
	switch {
	case gate != nil && silu:
		forRows(T, F, func(lo, hi int) { kernels.SiLUMul(g[lo:hi], u[lo:hi]) })
		u = g
	case gate != nil:
		forRows(T, F, func(lo, hi int) {
			act(g[lo:hi])
			for i, v := range g[lo:hi] {
				u[lo+i] *= v
			}
		})
	default:
		forRows(T, F, func(lo, hi int) { act(u[lo:hi]) })
	}
	down.Forward(out, u, T)
}

// parallelElems is the size of a T×F activation above which forRows splits
// it across goroutines: ~10 µs of SiLU, far more of the erf/tanh GELUs.
const parallelElems = 1 << 15

// forRows calls f(lo, hi) on element ranges made of whole rows that together
// cover a [T × F] buffer: once over all of it when it is small, else on
// row ranges in parallel (kernels.ParallelFor).
func forRows(T, F int, f func(lo, hi int)) {
	if T < 2 || T*F < parallelElems {
		f(0, T*F)
		return
	}
	kernels.ParallelFor(T, func(lo, hi int) { f(lo*F, hi*F) })
}

// Clone returns a copy of the block whose part slots are its own (the
// layers themselves are shared): replacing a part of the copy, experts
// included, leaves b as it was.
func (b *Block) Clone() *Block {
	c := *b
	if b.MoE != nil {
		c.MoE = b.MoE.Clone()
	}
	return &c
}

// Part is one norm or linear layer of a block, with its role — "norm1",
// "q_norm", "q", "experts.3.down", … — through which the family names it in
// the checkpoint (Model.PartName). Exactly one of Norm and Linear is set;
// the pointer lets methods and loaders replace the part in place.
type Part struct {
	Role   string
	Norm   *nn.Norm
	Linear *nn.Linear
}

// Parts lists every norm and linear of the block that is present, in
// execution order.
func (b *Block) Parts() []Part {
	var ps []Part
	norm := func(role string, n *nn.Norm) {
		if *n != nil {
			ps = append(ps, Part{Role: role, Norm: n})
		}
	}
	lin := func(role string, l *nn.Linear) {
		if *l != nil {
			ps = append(ps, Part{Role: role, Linear: l})
		}
	}
	norm("norm1", &b.Norm1)
	lin("q", &b.Q)
	lin("k", &b.K)
	lin("v", &b.V)
	norm("q_norm", &b.QNorm)
	norm("k_norm", &b.KNorm)
	lin("o", &b.O)
	norm("post_attn_norm", &b.PostAttnNorm)
	norm("norm2", &b.Norm2)
	if b.MoE != nil {
		lin("router", &b.MoE.Router)
		for i, e := range b.MoE.Experts {
			lin(ExpertRole(i, "gate"), &e.Gate)
			lin(ExpertRole(i, "up"), &e.Up)
			lin(ExpertRole(i, "down"), &e.Down)
		}
	} else {
		lin("gate", &b.Gate)
		lin("up", &b.Up)
		lin("down", &b.Down)
	}
	norm("post_mlp_norm", &b.PostMLPNorm)
	return ps
}

// Norms lists the block's norms by role (Parts without the linears).
func (b *Block) Norms() []Part {
	var ps []Part
	for _, p := range b.Parts() {
		if p.Norm != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Linears lists the block's linear layers by role, in execution order; the
// pointers let quantization methods replace a layer in place.
func (b *Block) Linears() []NamedLinear {
	var out []NamedLinear
	for _, p := range b.Parts() {
		if p.Linear != nil {
			out = append(out, NamedLinear{p.Role, p.Linear})
		}
	}
	return out
}

// NamedLinear is a linear layer of a block and its role.
type NamedLinear struct {
	Role   string
	Linear *nn.Linear
}

// Norm returns the slot of the norm with a role ("norm1", "q_norm", …), or
// nil if the block has none.
func (b *Block) Norm(role string) *nn.Norm {
	for _, p := range b.Parts() {
		if p.Role == role && p.Norm != nil {
			return p.Norm
		}
	}
	return nil
}

func (b *Block) numParams() int {
	n := 0
	for _, p := range b.Parts() {
		if p.Norm != nil {
			w, bias := nn.NormParams(*p.Norm)
			n += len(w) + len(bias)
			continue
		}
		switch d := (*p.Linear).(type) {
		case *nn.Dense:
			n += len(d.W) + len(d.B)
		default: // quantized or lazily bound: its logical weight
			n += d.Out() * d.In()
		}
	}
	return n
}
