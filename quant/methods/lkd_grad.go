package methods

import (
	"fmt"
	"math"

	"llmq/kernels"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
)

// This file is the differentiable decoder block LKD trains: a forward pass
// that keeps what the backward pass needs (gBlock.forward into a gCache),
// and the backward pass itself, written by hand for the shared model.Block
// (sequential or parallel residual; RMSNorm or LayerNorm; RoPE, full,
// partial or interleaved, or none; causal grouped-query attention; gated
// or plain MLPs with SiLU, GELU, GELU-tanh or ReLU; biases).
//
// The code is generic over the float type. LKD runs it in float32, with
// kernels.Sgemm for every product and the production kernels for the
// softmax (kernels.ExpShift) and the SiLU gate (kernels.SiLUMul), so the
// forward pass is the production block's to float32 rounding; norm
// statistics, softmax sums, the loss and the other nonlinearities and
// their derivatives are evaluated in float64. The tests run the very same
// code in float64 (with a plain triple-loop product and float64 exp) and
// check the gradients against central finite differences, which in float64
// agree with a correct gradient to ~1e-9 relative.
//
// Notation for one sequence of T tokens, x [T×H] the block input:
//
//	h1 = N1(x)
//	q = RoPE(Q(h1)), k = RoPE(K(h1)), v = V(h1)
//	P_h = softmax_causal(σ·q_h·k_gᵀ),  a_h = P_h·v_g   (g = h / (heads/kvHeads))
//	o = O(a)
//	sequential: x1 = x + o, h2 = N2(x1), y = x1 + MLP(h2)
//	parallel:   h2 = N2(x),  y = x + o + MLP(h2)
//	MLP(h) = Down(act(Gate h) ⊙ Up h)  or  Down(act(Up h))
//
// and every linear computes Q_a(x)·Ŵᵀ + b, Q_a the optional activation
// fake-quantization. The backward pass, for the upstream gradient
// dy = ∂L/∂y of a loss L:
//
//   - linear: dŴ += dyᵀ·Q_a(x), dx = (dy·Ŵ) ⊙ 1[x inside Q_a's range]
//     (straight-through estimator for Q_a: rounding has derivative 1;
//     dynamic ranges never clip, static ones clip outside the calibrated
//     range). Biases are frozen.
//   - RMSNorm y = w ⊙ x·r, r = (mean x² + ε)^−½: with g = dy ⊙ w,
//     dx = r·g − r³·x·(g·x)/d.
//   - LayerNorm y = w ⊙ x̂ + b, x̂ = (x − μ)·r: with g = dy ⊙ w,
//     dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂)). Norm weights are frozen.
//   - RoPE rotates each pair by +θ_p; it is orthogonal, so its transpose —
//     the backward — rotates by −θ_p.
//   - softmax: dS = σ·P ⊙ (dP − rowsum(dP ⊙ P)) with dP = da_h·v_gᵀ; then
//     dq_h = dS·k_g, dk_g += dSᵀ·q_h, dv_g += P_hᵀ·da_h (summed over the
//     query heads sharing a key/value head). Masked entries have P = 0 and
//     so dS = 0.
//   - gated MLP m = act(g) ⊙ u: dg = dm ⊙ u ⊙ act'(g), du = dm ⊙ act(g).

// gfloat is the float type the differentiable block runs in.
type gfloat interface{ float32 | float64 }

// gGemm is C (+)= A·op(B) with kernels.Sgemm's conventions (row-major,
// leading dimensions, op(B) = Bᵀ when transB). float32 uses the kernel;
// float64 (the gradient check) a plain loop with float64 sums.
func gGemm[F gfloat](transB bool, m, n, k int, a []F, lda int, b []F, ldb int, c []F, ldc int, acc bool) {
	if a32, ok := any(a).([]float32); ok {
		kernels.Sgemm(transB, m, n, k, a32, lda, any(b).([]float32), ldb, any(c).([]float32), ldc, acc)
		return
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var bv F
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(a[i*lda+p]) * float64(bv)
			}
			if acc {
				c[i*ldc+j] += F(s)
			} else {
				c[i*ldc+j] = F(s)
			}
		}
	}
}

// gTranspose writes the [cols×rows] transpose of src [rows×cols] (row
// stride lds) into dst (row stride rows).
func gTranspose[F gfloat](dst, src []F, rows, cols, lds int) {
	const tile = 32
	for r0 := 0; r0 < rows; r0 += tile {
		for c0 := 0; c0 < cols; c0 += tile {
			for r := r0; r < min(r0+tile, rows); r++ {
				for c := c0; c < min(c0+tile, cols); c++ {
					dst[c*rows+r] = src[r*lds+c]
				}
			}
		}
	}
}

// gFrom32 copies src into a new slice of F (nil stays nil).
func gFrom32[F gfloat](src []float32) []F {
	if src == nil {
		return nil
	}
	out := make([]F, len(src))
	for i, v := range src {
		out[i] = F(v)
	}
	return out
}

func gGrow[F gfloat](b []F, n int) []F {
	if cap(b) < n {
		return make([]F, n)
	}
	return b[:n]
}

// ---------------------------------------------------------------------------
// Activations

// actKind is one of the MLP nonlinearities of package nn.
type actKind int

const (
	actSiLU actKind = iota
	actGELU
	actGELUTanh
	actReLU
)

func (k actKind) String() string {
	return [...]string{"silu", "gelu", "gelu_tanh", "relu"}[k]
}

const geluC = 0.7978845608028654 // √(2/π)

func (k actKind) f(x float64) float64 {
	switch k {
	case actSiLU:
		return x / (1 + math.Exp(-x))
	case actGELU:
		return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
	case actGELUTanh:
		return 0.5 * x * (1 + math.Tanh(geluC*(x+0.044715*x*x*x)))
	}
	return max(x, 0)
}

// fdf returns f(x) and f'(x) (one exponential for SiLU).
func (k actKind) fdf(x float64) (f, df float64) {
	if k == actSiLU {
		s := 1 / (1 + math.Exp(-x))
		return x * s, s * (1 + x*(1-s))
	}
	return k.f(x), k.df(x)
}

// df is the derivative: SiLU σ(x)·(1 + x·(1 − σ(x))); GELU Φ(x) + x·φ(x);
// GELU-tanh ½(1 + t) + ½x(1 − t²)·c(1 + 3·0.044715x²) with
// t = tanh(c(x + 0.044715x³)); ReLU 1[x > 0].
func (k actKind) df(x float64) float64 {
	switch k {
	case actSiLU:
		s := 1 / (1 + math.Exp(-x))
		return s * (1 + x*(1-s))
	case actGELU:
		return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
	case actGELUTanh:
		t := math.Tanh(geluC * (x + 0.044715*x*x*x))
		return 0.5*(1+t) + 0.5*x*(1-t*t)*geluC*(1+3*0.044715*x*x)
	}
	if x > 0 {
		return 1
	}
	return 0
}

// lkdIdentifyAct finds which nonlinearity b.Act is. A Go function value has no
// identity to compare, so the activation is recognised by its values on a
// few probe points (they separate GELU from its tanh approximation by
// > 1e-4); an activation outside nn's set is an error.
func lkdIdentifyAct(b *model.Block) (actKind, error) {
	if b.ActIsSiLU {
		return actSiLU, nil
	}
	if b.Act == nil {
		return 0, fmt.Errorf("%s: block has no activation", b.Name)
	}
	probe := []float32{-3, -1.7, -0.6, -0.1, 0.25, 0.9, 2.3}
	got := append([]float32(nil), probe...)
	b.Act(got)
	for _, k := range []actKind{actSiLU, actGELU, actGELUTanh, actReLU} {
		ok := true
		for i, x := range probe {
			want := k.f(float64(x))
			if math.Abs(float64(got[i])-want) > 2e-6*(1+math.Abs(want)) {
				ok = false
				break
			}
		}
		if ok {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%s: unrecognised MLP activation (LKD differentiates silu, gelu, gelu_tanh and relu)", b.Name)
}

// ---------------------------------------------------------------------------
// Linear layers

// gLinear is one linear of the differentiable block: y = Q_a(x)·Wᵀ + b.
// W is the weight the forward uses — for a quantized layer the fake-
// quantized latent weight, refreshed by LKD before every step — and dW,
// when non-nil, accumulates ∂L/∂W (nil: the layer is frozen, only its
// input gradient is computed).
type gLinear[F gfloat] struct {
	role    string
	in, out int
	W, B    []F
	act     *quant.ActQuant
	dW      []F
	f32     []float32 // float64 instantiation: round trip through the float32 fake-quantizer
}

// newGLinear reads a layer of the block: nn.Dense as is, quant.QuantLinear
// through its dequantized weight, bias and activation quantization.
func newGLinear[F gfloat](role string, l nn.Linear) (*gLinear[F], error) {
	g := &gLinear[F]{role: role, in: l.In(), out: l.Out()}
	switch d := l.(type) {
	case *nn.Dense:
		g.W, g.B = gFrom32[F](d.W), gFrom32[F](d.B)
	case *quant.QuantLinear:
		g.W, g.B, g.act = gFrom32[F](d.DequantizedWeight()), gFrom32[F](d.Bias()), d.ActSpec()
	default:
		return nil, fmt.Errorf("%s linear is %T: LKD differentiates through nn.Dense and quant.QuantLinear only", role, l)
	}
	return g, nil
}

// quantIn writes Q_a(x) into buf (grown as needed) and returns it; the
// layer must have activation quantization.
func (l *gLinear[F]) quantIn(buf, x []F, T int) ([]F, error) {
	n := T * l.in
	buf = gGrow(buf, n)
	fq := func(dst, src []float32) error {
		if l.act.Static {
			return quant.FakeQuantizeWithParams(dst, src, T, l.in, l.act.Spec, []quant.Params{l.act.Params})
		}
		return quant.FakeQuantizeInto(dst, src, T, l.in, l.act.Spec)
	}
	if d32, ok := any(buf).([]float32); ok {
		return buf, fq(d32, any(x[:n]).([]float32))
	}
	l.f32 = gGrow(l.f32, n)
	for i, v := range x[:n] {
		l.f32[i] = float32(v)
	}
	if err := fq(l.f32, l.f32); err != nil {
		return nil, err
	}
	for i, v := range l.f32 {
		buf[i] = F(v)
	}
	return buf, nil
}

// input returns what l's product reads from x: x itself without activation
// quantization; prevIn, the quantized input of a layer prev reading the
// same x, when prev quantizes it identically (q/k/v and gate/up share one
// quantization); else Q_a(x) in *buf.
func (l *gLinear[F]) input(buf *[]F, x []F, T int, prev *gLinear[F], prevIn []F) ([]F, error) {
	if l.act == nil {
		return x, nil
	}
	if prev != nil && prev.act != nil && *prev.act == *l.act {
		return prevIn, nil
	}
	out, err := l.quantIn(*buf, x, T)
	*buf = out
	return out, err
}

// forward computes y [T×out] from xq = quantIn(x).
func (l *gLinear[F]) forward(y, xq []F, T int) {
	gGemm(true, T, l.out, l.in, xq, l.in, l.W, l.in, y, l.out, false)
	if l.B != nil {
		for t := 0; t < T; t++ {
			row := y[t*l.out : (t+1)*l.out]
			for i, b := range l.B {
				row[i] += b
			}
		}
	}
}

// steRange is the input range in which Q_a passes gradients: static
// ranges clip beyond the grid (half a step past its end, where rounding
// turns into clipping); dynamic ranges are computed from the input itself
// and never clip, so their STE is the identity (ok false).
func (l *gLinear[F]) steRange() (lo, hi float64, ok bool) {
	if l.act == nil || !l.act.Static {
		return 0, 0, false
	}
	lo, hi = lkdSTEBounds(l.act.Spec, l.act.Params)
	return lo, hi, true
}

// lkdSTEBounds is the range of values a grid with parameters p represents
// without clipping: [s·(qmin − z − ½), s·(qmax − z + ½)] for integers,
// ±s·max for minifloats.
func lkdSTEBounds(spec quant.Spec, p quant.Params) (lo, hi float64) {
	s := float64(p.Scale)
	if spec.IsFP() {
		m := s * float64(spec.FP().Max())
		return -m, m
	}
	qmin, qmax := spec.IntRange()
	return s * (float64(qmin-p.Zero) - 0.5), s * (float64(qmax-p.Zero) + 0.5)
}

// backward takes dy [T×out], the layer's raw input x and the input its
// product read, xq. It accumulates dW += dyᵀ·xq when the layer is trained,
// and writes dx = (dy·W) ⊙ STE mask — or adds it to dx when acc is set.
// tmp is scratch of at least max(out, in)·T.
func (l *gLinear[F]) backward(dx, dy, x, xq []F, T int, acc bool, tmp []F) {
	if l.dW != nil {
		dyT := tmp[:l.out*T]
		gTranspose(dyT, dy, T, l.out, l.out)
		gGemm(false, l.out, l.in, T, dyT, T, xq, l.in, l.dW, l.in, true)
	}
	if dx == nil {
		return
	}
	lo, hi, clip := l.steRange()
	if !clip {
		gGemm(false, T, l.in, l.out, dy, l.out, l.W, l.in, dx, l.in, acc)
		return
	}
	g := tmp[:T*l.in]
	gGemm(false, T, l.in, l.out, dy, l.out, l.W, l.in, g, l.in, false)
	for i, v := range x[:T*l.in] {
		if f := float64(v); f < lo || f > hi {
			g[i] = 0
		}
		if acc {
			dx[i] += g[i]
		} else {
			dx[i] = g[i]
		}
	}
}

// ---------------------------------------------------------------------------
// Norms

// gNorm is RMSNorm (B nil, rms) or LayerNorm, frozen.
type gNorm[F gfloat] struct {
	rms  bool
	W, B []F
	eps  float64
}

func newGNorm[F gfloat](n nn.Norm, where string) (gNorm[F], error) {
	switch v := n.(type) {
	case *nn.RMSNorm:
		return gNorm[F]{rms: true, W: gFrom32[F](v.W), eps: float64(v.Eps)}, nil
	case *nn.LayerNorm:
		return gNorm[F]{W: gFrom32[F](v.W), B: gFrom32[F](v.B), eps: float64(v.Eps)}, nil
	}
	return gNorm[F]{}, fmt.Errorf("%s is %T: LKD differentiates RMSNorm and LayerNorm", where, n)
}

// forward normalises the T rows of x into y and records per row the mean
// (LayerNorm) and the reciprocal standard deviation r in st [2T].
func (n *gNorm[F]) forward(y, x []F, T int, st []float64) {
	d := len(n.W)
	for t := 0; t < T; t++ {
		xr, yr := x[t*d:(t+1)*d], y[t*d:(t+1)*d]
		var mean float64
		if !n.rms {
			for _, v := range xr {
				mean += float64(v)
			}
			mean /= float64(d)
		}
		var ss float64
		for _, v := range xr {
			c := float64(v) - mean
			ss += c * c
		}
		r := 1 / math.Sqrt(ss/float64(d)+n.eps)
		st[2*t], st[2*t+1] = mean, r
		for i, v := range xr {
			z := (float64(v) - mean) * r * float64(n.W[i])
			if n.B != nil {
				z += float64(n.B[i])
			}
			yr[i] = F(z)
		}
	}
}

// backward adds (acc) or writes ∂L/∂x for the upstream dy.
func (n *gNorm[F]) backward(dx, dy, x []F, T int, st []float64, acc bool) {
	d := len(n.W)
	fd := float64(d)
	for t := 0; t < T; t++ {
		xr, dyr, dxr := x[t*d:(t+1)*d], dy[t*d:(t+1)*d], dx[t*d:(t+1)*d]
		mean, r := st[2*t], st[2*t+1]
		var sg, sgx float64 // Σ g, Σ g·x̂ (LayerNorm) or Σ g·x (RMSNorm)
		for i, v := range xr {
			g := float64(dyr[i]) * float64(n.W[i])
			sg += g
			sgx += g * (float64(v) - mean) * r
		}
		for i, v := range xr {
			g := float64(dyr[i]) * float64(n.W[i])
			xh := (float64(v) - mean) * r
			var out float64
			if n.rms {
				// dx = r·g − r³·x·(g·x)/d = r·(g − x̂·(g·x̂)/d)
				out = r * (g - xh*sgx/fd)
			} else {
				out = r * (g - sg/fd - xh*sgx/fd)
			}
			if acc {
				dxr[i] += F(out)
			} else {
				dxr[i] = F(out)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// RoPE

// gRope holds the cos/sin of an nn.Rope for positions 0…T−1, read from the
// rope itself (by rotating unit vectors), so the forward rotates by exactly
// the float32 angles of the production path.
type gRope[F gfloat] struct {
	src              *nn.Rope
	hd, rot, half, T int
	inter            bool
	cos, sin         []F
}

func newGRope[F gfloat](r *nn.Rope) *gRope[F] {
	return &gRope[F]{src: r, hd: r.HeadDim, rot: r.RotDim, half: r.RotDim / 2, inter: r.Interleaved}
}

func (r *gRope[F]) ensure(T int) {
	if T <= r.T {
		return
	}
	probe := make([]float32, T*r.hd)
	for t := 0; t < T; t++ {
		for i := 0; i < r.half; i++ {
			if r.inter {
				probe[t*r.hd+2*i] = 1
			} else {
				probe[t*r.hd+i] = 1
			}
		}
	}
	r.src.Apply(probe, T, 1, 0)
	r.cos, r.sin = make([]F, T*r.half), make([]F, T*r.half)
	for t := 0; t < T; t++ {
		for i := 0; i < r.half; i++ {
			ci, si := t*r.hd+i, t*r.hd+i+r.half
			if r.inter {
				ci, si = t*r.hd+2*i, t*r.hd+2*i+1
			}
			r.cos[t*r.half+i], r.sin[t*r.half+i] = F(probe[ci]), F(probe[si])
		}
	}
	r.T = T
}

// apply rotates x [T × heads·hd] by +θ (or by −θ, the transpose, when
// inverse is set), with nn.Rope's formulas.
func (r *gRope[F]) apply(x []F, T, heads int, inverse bool) {
	width := heads * r.hd
	for t := 0; t < T; t++ {
		cs := r.cos[t*r.half : (t+1)*r.half]
		sn := r.sin[t*r.half : (t+1)*r.half]
		for h := 0; h < heads; h++ {
			v := x[t*width+h*r.hd : t*width+h*r.hd+r.rot]
			for i := 0; i < r.half; i++ {
				ia, ib := i, i+r.half
				if r.inter {
					ia, ib = 2*i, 2*i+1
				}
				a, b, c, s := v[ia], v[ib], cs[i], sn[i]
				if inverse {
					s = -s
				}
				v[ia] = a*c - b*s
				v[ib] = b*c + a*s
			}
		}
	}
}

// ---------------------------------------------------------------------------
// The block

// gBlock is a differentiable copy of a model.Block. It is not safe for
// concurrent use (it owns its scratch memory).
type gBlock[F gfloat] struct {
	name                         string
	q, k, v, o, gate, up, down   *gLinear[F] // gate nil for plain MLPs
	n1, n2                       gNorm[F]
	act                          actKind
	heads, kvHeads, hd           int
	scale                        float64
	rope                         *gRope[F]
	parallel                     bool
	hidden, inter                int
	c                            gCache[F]
	dq, dk, dv, da, dh, dm, dtmp []F
	dx1, dg, du                  []F
	dkh, dvh                     []F
}

// gCache is what one forward pass keeps for the backward pass.
type gCache[F gfloat] struct {
	T                          int
	x                          []F // the input (not owned)
	h1, h2, x1                 []F
	st1, st2                   []float64
	qIn, kIn, vIn, aIn         []F // each linear's (quantized) input
	gateIn, upIn, downIn       []F
	qb, kb, vb, ab, gb, ub, mb []F // buffers of the quantized inputs
	q, k, v, p, a, o           []F
	g, u, m, d, y              []F
}

// newGBlock builds the differentiable view of b (weights copied into F;
// every linear frozen until its dW is allocated). rope is the model's (nil
// with learned positions).
func newGBlock[F gfloat](b *model.Block, rope *nn.Rope) (*gBlock[F], error) {
	if b.PostNorm {
		return nil, fmt.Errorf("%s: post-norm blocks (OPT-350m style) are not supported by LKD", b.Name)
	}
	// The backward pass models the parts below and nothing else: a part it
	// does not know (q/k norms, sandwich norms, experts) or attention it
	// does not compute (sliding windows, soft caps) is refused rather than
	// trained through a different function.
	for _, p := range b.Parts() {
		switch p.Role {
		case "norm1", "norm2", "q", "k", "v", "o", "gate", "up", "down":
		default:
			return nil, fmt.Errorf("%s: LKD does not support blocks with a %s part yet", b.Name, p.Role)
		}
	}
	if b.Attn.Window > 0 || b.Attn.SoftCap > 0 {
		return nil, fmt.Errorf("%s: LKD does not support sliding-window or soft-capped attention yet", b.Name)
	}
	g := &gBlock[F]{name: b.Name, heads: b.Attn.Heads, kvHeads: b.Attn.KVHeads, hd: b.Attn.HeadDim,
		scale: float64(b.Attn.Scale), parallel: b.ParallelResidual}
	if g.heads <= 0 || g.kvHeads <= 0 || g.heads%g.kvHeads != 0 || g.hd <= 0 {
		return nil, fmt.Errorf("%s: bad attention shape %d heads / %d kv heads × %d", b.Name, g.heads, g.kvHeads, g.hd)
	}
	var err error
	if g.act, err = lkdIdentifyAct(b); err != nil {
		return nil, err
	}
	if g.n1, err = newGNorm[F](b.Norm1, b.Name+" norm1"); err != nil {
		return nil, err
	}
	if g.n2, err = newGNorm[F](b.Norm2, b.Name+" norm2"); err != nil {
		return nil, err
	}
	for _, nl := range b.Linears() {
		gl, err := newGLinear[F](nl.Role, *nl.Linear)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name, err)
		}
		switch nl.Role {
		case "q":
			g.q = gl
		case "k":
			g.k = gl
		case "v":
			g.v = gl
		case "o":
			g.o = gl
		case "gate":
			g.gate = gl
		case "up":
			g.up = gl
		case "down":
			g.down = gl
		}
	}
	g.hidden, g.inter = g.o.out, g.up.out
	qw, kw := g.heads*g.hd, g.kvHeads*g.hd
	switch {
	case g.q.out != qw || g.k.out != kw || g.v.out != kw || g.o.in != qw:
		return nil, fmt.Errorf("%s: attention projections do not match %d heads / %d kv heads × %d", b.Name, g.heads, g.kvHeads, g.hd)
	case g.n1.W == nil || len(g.n1.W) != g.hidden || len(g.n2.W) != g.hidden || g.q.in != g.hidden || g.up.in != g.hidden || g.down.out != g.hidden || g.down.in != g.inter:
		return nil, fmt.Errorf("%s: inconsistent layer widths", b.Name)
	case g.gate != nil && (g.gate.out != g.inter || g.gate.in != g.hidden):
		return nil, fmt.Errorf("%s: gate and up projections differ in shape", b.Name)
	}
	if rope != nil {
		if rope.HeadDim != g.hd || rope.RotDim < 2 || rope.RotDim > g.hd || rope.RotDim%2 != 0 {
			return nil, fmt.Errorf("%s: RoPE over %d of %d features does not fit head dimension %d", b.Name, rope.RotDim, rope.HeadDim, g.hd)
		}
		g.rope = newGRope[F](rope)
	}
	return g, nil
}

// linears lists the block's linears in execution order.
func (g *gBlock[F]) linears() []*gLinear[F] {
	out := []*gLinear[F]{g.q, g.k, g.v, g.o}
	if g.gate != nil {
		out = append(out, g.gate)
	}
	return append(out, g.up, g.down)
}

func (c *gCache[F]) ensure(g *gBlock[F], T int) {
	H, I := g.hidden, g.inter
	qw, kw := g.heads*g.hd, g.kvHeads*g.hd
	c.T = T
	c.h1, c.h2, c.x1 = gGrow(c.h1, T*H), gGrow(c.h2, T*H), gGrow(c.x1, T*H)
	c.st1, c.st2 = gGrow(c.st1, 2*T), gGrow(c.st2, 2*T)
	c.q, c.k, c.v = gGrow(c.q, T*qw), gGrow(c.k, T*kw), gGrow(c.v, T*kw)
	c.p, c.a, c.o = gGrow(c.p, g.heads*T*T), gGrow(c.a, T*qw), gGrow(c.o, T*H)
	c.g, c.u, c.m = gGrow(c.g, T*I), gGrow(c.u, T*I), gGrow(c.m, T*I)
	c.d, c.y = gGrow(c.d, T*H), gGrow(c.y, T*H)
}

// forward runs the block on x [T×Hidden] (left unchanged), keeping the
// intermediates in g.c, and returns the output (g.c.y, valid until the
// next call). Errors come from activation fake-quantization (NaN/Inf).
func (g *gBlock[F]) forward(x []F, T int) ([]F, error) {
	c := &g.c
	c.ensure(g, T)
	c.x = x
	H, I := g.hidden, g.inter
	var err error
	g.n1.forward(c.h1, x, T, c.st1)
	if c.qIn, err = g.q.input(&c.qb, c.h1, T, nil, nil); err != nil {
		return nil, err
	}
	if c.kIn, err = g.k.input(&c.kb, c.h1, T, g.q, c.qIn); err != nil {
		return nil, err
	}
	if c.vIn, err = g.v.input(&c.vb, c.h1, T, g.q, c.qIn); err != nil {
		return nil, err
	}
	g.q.forward(c.q, c.qIn, T)
	g.k.forward(c.k, c.kIn, T)
	g.v.forward(c.v, c.vIn, T)
	if g.rope != nil {
		g.rope.ensure(T)
		g.rope.apply(c.q, T, g.heads, false)
		g.rope.apply(c.k, T, g.kvHeads, false)
	}
	g.attention(T)
	if c.aIn, err = g.o.input(&c.ab, c.a, T, nil, nil); err != nil {
		return nil, err
	}
	g.o.forward(c.o, c.aIn, T)
	mlpIn := x
	if !g.parallel {
		for i := range c.x1 {
			c.x1[i] = x[i] + c.o[i]
		}
		mlpIn = c.x1
	}
	g.n2.forward(c.h2, mlpIn, T, c.st2)
	if c.upIn, err = g.up.input(&c.ub, c.h2, T, nil, nil); err != nil {
		return nil, err
	}
	g.up.forward(c.u, c.upIn, T)
	if g.gate != nil {
		if c.gateIn, err = g.gate.input(&c.gb, c.h2, T, g.up, c.upIn); err != nil {
			return nil, err
		}
		g.gate.forward(c.g, c.gateIn, T)
		m32, fast := any(c.m).([]float32)
		if fast && g.act == actSiLU {
			// the production kernel: m = silu(g)·u
			copy(m32, any(c.g).([]float32))
			kernels.SiLUMul(m32[:T*I], any(c.u).([]float32))
		} else {
			for i, gv := range c.g[:T*I] {
				c.m[i] = F(g.act.f(float64(gv)) * float64(c.u[i]))
			}
		}
	} else {
		for i, uv := range c.u[:T*I] {
			c.m[i] = F(g.act.f(float64(uv)))
		}
	}
	if c.downIn, err = g.down.input(&c.mb, c.m, T, nil, nil); err != nil {
		return nil, err
	}
	g.down.forward(c.d, c.downIn, T)
	if g.parallel {
		for i := range c.y[:T*H] {
			c.y[i] = x[i] + (c.o[i] + c.d[i])
		}
	} else {
		for i := range c.y[:T*H] {
			c.y[i] = c.x1[i] + c.d[i]
		}
	}
	return c.y, nil
}

// attention computes c.p (the causal softmax probabilities per head) and
// c.a from c.q, c.k, c.v, heads in parallel.
func (g *gBlock[F]) attention(T int) {
	c := &g.c
	hd, qw, kw := g.hd, g.heads*g.hd, g.kvHeads*g.hd
	group := g.heads / g.kvHeads
	kernels.ParallelFor(g.heads, func(lo, hi int) {
		for h := lo; h < hi; h++ {
			kv := h / group
			p := c.p[h*T*T : (h+1)*T*T]
			gGemm(true, T, T, hd, c.q[h*hd:], qw, c.k[kv*hd:], kw, p, T, false)
			p32, fast := any(p).([]float32)
			for t := 0; t < T; t++ {
				if fast { // the production softmax (nn.Attention)
					r := p32[t*T : t*T+t+1]
					sum := kernels.ExpShift(r, r, kernels.MaxF32(r), float32(g.scale))
					kernels.Scale(r, float32(1/sum))
					clear(p32[t*T+t+1 : (t+1)*T])
					continue
				}
				row := p[t*T : (t+1)*T]
				m := math.Inf(-1)
				for _, s := range row[:t+1] {
					m = max(m, float64(s))
				}
				var sum float64
				for j, s := range row[:t+1] {
					e := math.Exp((float64(s) - m) * g.scale)
					sum += e
					row[j] = F(e)
				}
				inv := 1 / sum
				for j := range row[:t+1] {
					row[j] = F(float64(row[j]) * inv)
				}
				clear(row[t+1:])
			}
			gGemm(false, T, hd, T, p, T, c.v[kv*hd:], kw, c.a[h*hd:], qw, false)
		}
	})
}

// backward propagates dy = ∂L/∂y [T×Hidden] through the last forward pass,
// accumulating the weight gradients of the trained linears (dW non-nil).
// With dx non-nil it also writes ∂L/∂x there (the tests check it; LKD
// trains one block and needs no input gradient).
func (g *gBlock[F]) backward(dy, dx []F) {
	c := &g.c
	T, H, I := c.T, g.hidden, g.inter
	qw, kw := g.heads*g.hd, g.kvHeads*g.hd
	wide := max(H, I, qw, T)
	g.dtmp = gGrow(g.dtmp, wide*T)
	g.dh = gGrow(g.dh, T*H)
	g.dm = gGrow(g.dm, T*I)
	g.dg, g.du = gGrow(g.dg, T*I), gGrow(g.du, T*I)
	g.da, g.dq = gGrow(g.da, T*qw), gGrow(g.dq, T*qw)
	g.dk, g.dv = gGrow(g.dk, T*kw), gGrow(g.dv, T*kw)
	g.dx1 = gGrow(g.dx1, T*H)
	tmp := g.dtmp

	// MLP: y = r + Down(m), r the residual (x1, or x + o).
	g.down.backward(g.dm, dy, c.m, c.downIn, T, false, tmp)
	if g.gate != nil {
		for i, dm := range g.dm[:T*I] {
			f, df := g.act.fdf(float64(c.g[i]))
			g.dg[i] = F(float64(dm) * float64(c.u[i]) * df)
			g.du[i] = F(float64(dm) * f)
		}
		g.gate.backward(g.dh, g.dg, c.h2, c.gateIn, T, false, tmp)
		g.up.backward(g.dh, g.du, c.h2, c.upIn, T, true, tmp)
	} else {
		for i, dm := range g.dm[:T*I] {
			g.du[i] = F(float64(dm) * g.act.df(float64(c.u[i])))
		}
		g.up.backward(g.dh, g.du, c.h2, c.upIn, T, false, tmp)
	}
	// dh is ∂L/∂h2. The gradient reaching the attention output o: dy in
	// both variants (parallel: y = x + o + MLP(N2 x); sequential:
	// y = x1 + MLP(N2 x1), x1 = x + o, so ∂L/∂x1 = dy + N2ᵀ·dh).
	dO := dy
	if !g.parallel {
		copy(g.dx1, dy[:T*H])
		g.n2.backward(g.dx1, g.dh, c.x1, T, c.st2, true)
		dO = g.dx1
	} else if dx != nil {
		copy(dx, dy[:T*H])
		g.n2.backward(dx, g.dh, c.x, T, c.st2, true)
	}

	// Attention.
	g.o.backward(g.da, dO, c.a, c.aIn, T, false, tmp)
	g.attentionBackward(T)
	if g.rope != nil {
		g.rope.apply(g.dq, T, g.heads, true)
		g.rope.apply(g.dk, T, g.kvHeads, true)
	}
	g.q.backward(g.dh, g.dq, c.h1, c.qIn, T, false, tmp)
	g.k.backward(g.dh, g.dk, c.h1, c.kIn, T, true, tmp)
	g.v.backward(g.dh, g.dv, c.h1, c.vIn, T, true, tmp)
	if dx == nil {
		return
	}
	if !g.parallel {
		copy(dx, g.dx1[:T*H])
	}
	g.n1.backward(dx, g.dh, c.x, T, c.st1, true)
}

// attentionBackward turns g.da into g.dq, g.dk, g.dv (post-RoPE), heads in
// parallel; each head writes its own key/value gradient, summed over the
// heads of a group at the end.
func (g *gBlock[F]) attentionBackward(T int) {
	c := &g.c
	hd, qw, kw := g.hd, g.heads*g.hd, g.kvHeads*g.hd
	group := g.heads / g.kvHeads
	g.dkh = gGrow(g.dkh, g.heads*T*hd)
	g.dvh = gGrow(g.dvh, g.heads*T*hd)
	kernels.ParallelFor(g.heads, func(lo, hi int) {
		ds := make([]F, T*T)
		xt := make([]F, hd*T) // a head's q or da, transposed
		yt := make([]F, hd*T) // a head's dk or dv, transposed
		for h := lo; h < hi; h++ {
			kv := h / group
			p := c.p[h*T*T : (h+1)*T*T]
			da := g.da[h*hd:]
			// dP = da_h·v_gᵀ
			gGemm(true, T, T, hd, da, qw, c.v[kv*hd:], kw, ds, T, false)
			// dS = σ·P ⊙ (dP − rowsum(P ⊙ dP)), causal entries only
			for t := 0; t < T; t++ {
				pr, dr := p[t*T:(t+1)*T], ds[t*T:(t+1)*T]
				var dot float64
				for j := 0; j <= t; j++ {
					dot += float64(pr[j]) * float64(dr[j])
				}
				for j := 0; j <= t; j++ {
					dr[j] = F(g.scale * float64(pr[j]) * (float64(dr[j]) - dot))
				}
				clear(dr[t+1:])
			}
			// dq_h = dS·k_g
			gGemm(false, T, hd, T, ds, T, c.k[kv*hd:], kw, g.dq[h*hd:], qw, false)
			// dk_h = dSᵀ·q_h, computed as its transpose q_hᵀ·dS (Sgemm has
			// no transposed A, and transposing q_h [T×hd] is cheaper than
			// dS [T×T])
			gTranspose(xt, c.q[h*hd:], T, hd, qw)
			gGemm(false, hd, T, T, xt, T, ds, T, yt, T, false)
			gTranspose(g.dkh[h*T*hd:], yt, hd, T, T)
			// dv_h = P_hᵀ·da_h = (da_hᵀ·P_h)ᵀ
			gTranspose(xt, da, T, hd, qw)
			gGemm(false, hd, T, T, xt, T, p, T, yt, T, false)
			gTranspose(g.dvh[h*T*hd:], yt, hd, T, T)
		}
	})
	clear(g.dk[:T*kw])
	clear(g.dv[:T*kw])
	for h := 0; h < g.heads; h++ {
		kv := h / group
		for t := 0; t < T; t++ {
			dk := g.dk[t*kw+kv*hd : t*kw+(kv+1)*hd]
			dv := g.dv[t*kw+kv*hd : t*kw+(kv+1)*hd]
			for i, v := range g.dkh[h*T*hd+t*hd : h*T*hd+(t+1)*hd] {
				dk[i] += v
			}
			for i, v := range g.dvh[h*T*hd+t*hd : h*T*hd+(t+1)*hd] {
				dv[i] += v
			}
		}
	}
}
