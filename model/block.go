package model

import (
	"llmq/kernels"
	"llmq/nn"
)

// Block is one decoder layer, general enough for every supported family:
//
//	sequential (Llama, OPT, GPT-2):  x += O(Attn(N1(x)));  x += MLP(N2(x))
//	parallel   (GPT-NeoX, Pythia):   x += O(Attn(N1(x))) + MLP(N2(x))
//	post-norm  (OPT-350m):           x = N1(x + O(Attn(x)));  x = N2(x + MLP(x))
//
// and MLP(h) = Down(Act(Gate(h)) ⊙ Up(h)) when Gate is set (SwiGLU, Shazeer
// 2020), else Down(Act(Up(h))).
type Block struct {
	Name             string // checkpoint prefix, e.g. "model.layers.3"
	Norm1, Norm2     nn.Norm
	Q, K, V, O       nn.Linear
	Gate, Up, Down   nn.Linear
	Act              nn.Activation
	ActIsSiLU        bool // Act is nn.SiLU: a gated MLP fuses it (kernels.SiLUMul)
	Attn             nn.Attention
	ParallelResidual bool
	PostNorm         bool
}

// scratch holds the per-call intermediate buffers, grown to the largest
// batch seen so steady-state calls allocate nothing.
type scratch struct {
	x, h, h2, q, k, v, a, o, f, g []float32
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
func (b *Block) Forward(x []float32, T int, cache *nn.KVCache, rope *nn.Rope, s *scratch) {
	H := b.O.Out()
	h := s.h[:T*H]
	attnIn := x
	if !b.PostNorm {
		b.Norm1.Forward(h, x, T)
		attnIn = h
	}
	o := s.o[:T*H]
	b.attention(o, attnIn, T, cache, rope, s)
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
		add(x, o)
		b.Norm2.Forward(h, x, T)
		b.mlp(o, h, T, s)
		add(x, o)
	}
}

// add computes x += y (the residual connection). Axpy with α = 1 is the
// same sum bit for bit (the fused multiply-add rounds 1·y + x once), on
// vectors.
func add(x, y []float32) {
	kernels.Axpy(1, y[:len(x)], x)
}

func (b *Block) attention(out, in []float32, T int, cache *nn.KVCache, rope *nn.Rope, s *scratch) {
	q := s.q[:T*b.Q.Out()]
	k := s.k[:T*b.K.Out()]
	v := s.v[:T*b.V.Out()]
	nn.ForwardShared(in, T, []nn.Linear{b.Q, b.K, b.V}, [][]float32{q, k, v})
	if rope != nil {
		pos0 := cache.Len
		rope.Apply(q, T, b.Attn.Heads, pos0)
		rope.Apply(k, T, b.Attn.KVHeads, pos0)
	}
	a := s.a[:T*b.Q.Out()]
	b.Attn.Forward(a, q, k, v, T, cache)
	b.O.Forward(out, a, T)
}

func (b *Block) mlp(out, in []float32, T int, s *scratch) {
	F := b.Up.Out()
	u := s.f[:T*F]
	var g []float32
	if b.Gate != nil {
		g = s.g[:T*F]
		nn.ForwardShared(in, T, []nn.Linear{b.Up, b.Gate}, [][]float32{u, g})
	} else {
		b.Up.Forward(u, in, T)
	}
	switch {
	case b.Gate != nil && b.ActIsSiLU:
		forRows(T, F, func(lo, hi int) { kernels.SiLUMul(g[lo:hi], u[lo:hi]) })
		u = g
	case b.Gate != nil:
		forRows(T, F, func(lo, hi int) {
			b.Act(g[lo:hi])
			for i, v := range g[lo:hi] {
				u[lo+i] *= v
			}
		})
	default:
		forRows(T, F, func(lo, hi int) { b.Act(u[lo:hi]) })
	}
	b.Down.Forward(out, u, T)
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

// Linears lists the block's linear layers by role, in execution order; the
// pointers let quantization methods replace a layer in place.
func (b *Block) Linears() []NamedLinear {
	out := []NamedLinear{{"q", &b.Q}, {"k", &b.K}, {"v", &b.V}, {"o", &b.O}}
	if b.Gate != nil {
		out = append(out, NamedLinear{"gate", &b.Gate})
	}
	return append(out, NamedLinear{"up", &b.Up}, NamedLinear{"down", &b.Down})
}

// NamedLinear is a linear layer of a block and its role.
type NamedLinear struct {
	Role   string
	Linear *nn.Linear
}

func (b *Block) numParams() int {
	n := 0
	for _, l := range b.Linears() {
		switch d := (*l.Linear).(type) {
		case *nn.Dense:
			n += len(d.W) + len(d.B)
		default: // quantized or lazily bound: its logical weight
			n += d.Out() * d.In()
		}
	}
	for _, nm := range []nn.Norm{b.Norm1, b.Norm2} {
		w, bias := nn.NormParams(nm)
		n += len(w) + len(bias)
	}
	return n
}
