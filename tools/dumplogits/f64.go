package main

// The --float64 forward pass.
//
// Why it exists: a W8A8 model with dynamic per-token activation quantization
// rounds every linear input x/s to an int8 code. Rounding is discontinuous,
// so two correct float32 implementations that merely sum in different orders
// (llmq's kernels and torch's) round a few values that lie near k+½ to
// different codes; each such flip moves a value by a whole step (1/127 of
// its token's largest magnitude) and the flips compound through the layers,
// to ~1e-2 of the logits end to end. Computed in float64 the summation noise
// is ~1e-16 relative, so a flip needs a value within ~1e-14 of a tie, which
// practically never happens to a value that is not exactly a tie (those are
// dealt with below): two float64 implementations of the same quantized
// model agree to the noise, and an end-to-end comparison of the logits can
// carry a tight bar.
//
// The pass is deliberately plain (in the spirit of llama2.c's run.c): one
// loop nest per operation, no kernels, no reuse of llmq's forward code, so
// that it checks llmq's float32 path instead of repeating it. What it takes
// from the loaded model is data only: the weights (quantized ones
// dequantized exactly, integer code × scale in float64), the activation
// quantization spec of each linear, the norm weights, and the RoPE settings.
// It covers the Llama architecture (llama, mistral, qwen2 incl. q/k/v
// biases, llama2.c files) and refuses anything else with an error.
//
// One more thing float64 alone does not settle: exact ties. At the first
// layer x/s = 127·x_i·w_i / max_j |x_j·w_j| (RMSNorm's 1/rms cancels), a
// ratio of bf16 embedding and norm values, which is exactly k+½ for a few
// values of a sequence (6 in the 34 tokens the compressed-tensors check
// uses). Every floating-point evaluation lands a rounding error away from
// such a tie, on a side that depends on its operation order, so two float64
// implementations would still disagree there. fakeQuantF64 therefore takes
// a quotient within tieTol of k+½ as the tie it is in exact arithmetic and
// rounds it half to even, the rule's answer; the other side of the
// comparison must do the same.

import (
	"encoding/binary"
	"fmt"
	"math"

	"llmq/checkpoint"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
)

// f64Linear is y = Q(x)·Wᵀ + b in float64, W [out × in] row-major.
type f64Linear struct {
	name    string
	in, out int
	w, b    []float64
	act     *quant.ActQuant // activation quantization of the input; nil: none
}

type f64Block struct {
	norm1, norm2               []float64
	q, k, v, o, gate, up, down *f64Linear
}

// f64Model is a Llama-architecture model held in float64.
type f64Model struct {
	vocab, hidden, heads, kvHeads, headDim int
	eps                                    float64
	embed                                  []float64 // [vocab × hidden]
	blocks                                 []f64Block
	norm                                   []float64
	head                                   *f64Linear
	invFreq                                []float64 // RoPE inverse frequencies, [headDim/2]
	interleaved                            bool      // llama2.c's adjacent-pair RoPE layout
	scale                                  float64   // attention scale 1/√headDim
}

// f64Archs are the families whose forward pass f64Model implements.
var f64Archs = map[string]bool{"llama": true, "mistral": true, "qwen2": true, "llama2c": true}

// newF64Model converts m, checking that it is exactly the architecture the
// float64 pass implements. eps is the RMSNorm epsilon as the config states
// it (llmq holds it as float32; transformers adds the config's float64
// value), or 0 to widen the model's float32 epsilon.
func newF64Model(m *model.Model, eps float64) (*f64Model, error) {
	if !f64Archs[m.Arch] {
		return nil, fmt.Errorf("--float64 covers the Llama architecture (llama, mistral, qwen2, llama2.c); this model is %q", m.Arch)
	}
	if m.Pos != nil {
		return nil, fmt.Errorf("--float64: learned position embeddings are not covered")
	}
	if m.EmbedScale != 0 || m.LogitCap != 0 {
		return nil, fmt.Errorf("--float64: scaled embeddings or capped logits are not covered")
	}
	if m.Rope == nil || m.Rope.RotDim != m.HeadDim || m.Rope.HeadDim != m.HeadDim {
		return nil, fmt.Errorf("--float64: only full rotary embeddings over the whole head are covered")
	}
	if t := m.Rope.Scaling.Type; t != "" && t != "default" {
		return nil, fmt.Errorf("--float64: RoPE scaling (rope_type %q) is not covered", t)
	}
	norm, ok := m.Norm.(*nn.RMSNorm)
	if !ok {
		return nil, fmt.Errorf("--float64: the final norm is %T, only RMSNorm is covered", m.Norm)
	}
	if eps == 0 {
		eps = float64(norm.Eps)
	}
	f := &f64Model{
		vocab: m.Vocab, hidden: m.Hidden, heads: m.Heads, kvHeads: m.KVHeads, headDim: m.HeadDim,
		eps:         eps,
		norm:        widen(norm.W),
		interleaved: m.Rope.Interleaved,
		scale:       1 / math.Sqrt(float64(m.HeadDim)),
	}
	if err := f.checkNorm("model.norm", m.Norm); err != nil {
		return nil, err
	}
	// The frequencies llmq rotates by: θ^(−2i/d) rounded to float32 and, for
	// a bf16/fp16 checkpoint, to that format (nn.Rope.RoundFreq, as
	// transformers' inv_freq buffer is), then widened. The angles p·f and
	// their sines and cosines are computed in float64 from those values.
	for i := 0; i < m.HeadDim/2; i++ {
		v := float32(math.Pow(m.Rope.Theta, -float64(2*i)/float64(m.HeadDim)))
		if m.Rope.RoundFreq != nil {
			v = m.Rope.RoundFreq(v)
		}
		f.invFreq = append(f.invFreq, float64(v))
	}

	// Embedding, and the head (tied heads share the table).
	headName := "lm_head"
	switch {
	case m.Embed != nil:
		f.embed = widen(m.Embed)
		if d, ok := m.Head.(*nn.Dense); ok && m.HeadShared() && d.B == nil {
			f.head = &f64Linear{name: headName, in: d.In(), out: d.Out(), w: f.embed}
		}
	case m.EmbedFromHead():
		// The embedding is served by a quantized head: its exact values.
		ql, ok := m.Head.(*quant.QuantLinear)
		if rows, isQL := m.EmbedRows.(*quant.QuantLinear); !ok || !isQL || rows != ql {
			return nil, fmt.Errorf("--float64: the embedding rows come from a %T, not the quantized head", m.EmbedRows)
		}
		h, err := f64LinearOf(headName, ql)
		if err != nil {
			return nil, err
		}
		f.head, f.embed = h, h.w
	default:
		return nil, fmt.Errorf("--float64: the model has no embedding table")
	}
	if f.head == nil {
		h, err := f64LinearOf(headName, m.Head)
		if err != nil {
			return nil, err
		}
		f.head = h
	}
	if len(f.embed) != m.Vocab*m.Hidden || f.head.in != m.Hidden || f.head.out != m.Vocab {
		return nil, fmt.Errorf("--float64: embedding or head shape does not match vocab %d × hidden %d", m.Vocab, m.Hidden)
	}

	for l, b := range m.Blocks {
		if err := f.checkBlock(m, l, b); err != nil {
			return nil, err
		}
		var fb f64Block
		for _, nl := range []struct {
			dst **f64Linear
			src nn.Linear
			r   string
		}{{&fb.q, b.Q, "q"}, {&fb.k, b.K, "k"}, {&fb.v, b.V, "v"}, {&fb.o, b.O, "o"},
			{&fb.gate, b.Gate, "gate"}, {&fb.up, b.Up, "up"}, {&fb.down, b.Down, "down"}} {
			fl, err := f64LinearOf(m.LinearName(l, nl.r), nl.src)
			if err != nil {
				return nil, err
			}
			*nl.dst = fl
		}
		qw, kw := m.Heads*m.HeadDim, m.KVHeads*m.HeadDim
		for _, s := range []struct {
			l       *f64Linear
			out, in int
		}{{fb.q, qw, m.Hidden}, {fb.k, kw, m.Hidden}, {fb.v, kw, m.Hidden}, {fb.o, m.Hidden, qw},
			{fb.gate, m.Intermediate, m.Hidden}, {fb.up, m.Intermediate, m.Hidden}, {fb.down, m.Hidden, m.Intermediate}} {
			if s.l.out != s.out || s.l.in != s.in {
				return nil, fmt.Errorf("--float64: %s is %d→%d, want %d→%d", s.l.name, s.l.in, s.l.out, s.in, s.out)
			}
		}
		fb.norm1 = widen(b.Norm1.(*nn.RMSNorm).W)
		fb.norm2 = widen(b.Norm2.(*nn.RMSNorm).W)
		f.blocks = append(f.blocks, fb)
	}
	return f, nil
}

// checkBlock refuses blocks that are not a plain Llama decoder layer.
func (f *f64Model) checkBlock(m *model.Model, l int, b *model.Block) error {
	switch {
	case b.PostNorm || b.ParallelResidual:
		return fmt.Errorf("--float64: %s: post-norm or parallel-residual blocks are not covered", b.Name)
	case b.Gate == nil || !b.ActIsSiLU:
		return fmt.Errorf("--float64: %s: only SwiGLU MLPs (SiLU gate) are covered", b.Name)
	}
	for _, p := range b.Parts() {
		switch p.Role {
		case "norm1", "norm2", "q", "k", "v", "o", "gate", "up", "down":
		default:
			return fmt.Errorf("--float64: %s: blocks with a %s part are not covered", b.Name, p.Role)
		}
	}
	a := b.Attn
	if a.Window > 0 || a.SoftCap > 0 {
		return fmt.Errorf("--float64: %s: sliding-window or soft-capped attention is not covered", b.Name)
	}
	if b.Rope != m.Rope {
		return fmt.Errorf("--float64: %s: per-layer rotary embeddings are not covered", b.Name)
	}
	if a.QuantK != nil || a.QuantV != nil || a.QuantQ != nil || a.QuantP != nil || a.Quant != nil {
		return fmt.Errorf("--float64: %s: KV-cache or attention quantization is not covered", b.Name)
	}
	if a.Heads != m.Heads || a.KVHeads != m.KVHeads || a.HeadDim != m.HeadDim || m.KVHeads == 0 || m.Heads%m.KVHeads != 0 {
		return fmt.Errorf("--float64: %s: attention shape %d/%d heads × %d does not match the model's", b.Name, a.Heads, a.KVHeads, a.HeadDim)
	}
	if a.Scale != float32(f.scale) {
		return fmt.Errorf("--float64: %s: attention scale %g is not 1/√head_dim", b.Name, a.Scale)
	}
	if err := f.checkNorm(m.LinearName(l, "norm1"), b.Norm1); err != nil {
		return err
	}
	return f.checkNorm(m.LinearName(l, "norm2"), b.Norm2)
}

// checkNorm refuses norms other than RMSNorm with the model's epsilon.
func (f *f64Model) checkNorm(name string, n nn.Norm) error {
	r, ok := n.(*nn.RMSNorm)
	if !ok {
		return fmt.Errorf("--float64: %s is %T, only RMSNorm is covered", name, n)
	}
	if len(r.W) != f.hidden {
		return fmt.Errorf("--float64: %s has width %d, want %d", name, len(r.W), f.hidden)
	}
	if r.Eps != float32(f.eps) {
		return fmt.Errorf("--float64: %s has epsilon %g, the config says %g", name, r.Eps, f.eps)
	}
	return nil
}

// f64LinearOf holds a linear layer in float64: FP32 weights widened,
// quantized weights dequantized exactly, the activation quantization kept.
func f64LinearOf(name string, l nn.Linear) (*f64Linear, error) {
	switch v := l.(type) {
	case *nn.Dense:
		return &f64Linear{name: name, in: v.In(), out: v.Out(), w: widen(v.W), b: widen(v.B)}, nil
	case *quant.QuantLinear:
		fl := &f64Linear{name: name, in: v.In(), out: v.Out(), w: dequantF64(v.Weight()), b: widen(v.Bias())}
		if act := v.ActSpec(); act != nil {
			if err := checkActF64(act); err != nil {
				return nil, fmt.Errorf("--float64: %s: %w", name, err)
			}
			fl.act = act
		}
		return fl, nil
	case nil:
		return nil, fmt.Errorf("--float64: %s is missing", name)
	}
	return nil, fmt.Errorf("--float64: %s is a %T; the float64 pass reads FP32 layers and quant.QuantLinear (the reference path) only", name, l)
}

// dequantF64 returns the exact values of a quantized matrix: scale × (code
// − zero) for integer grids, scale × decoded minifloat otherwise. Codes
// have at most 9 significant bits and scales are float32 (24), so every
// product is exact in float64's 53 — unlike QTensor.Dequantize, whose
// float32 product rounds.
func dequantF64(t *quant.QTensor) []float64 {
	codes := t.Codes()
	fp := t.Spec.FP()
	out := make([]float64, len(codes))
	for r := 0; r < t.Rows; r++ {
		for c := 0; c < t.Cols; c++ {
			i := r*t.Cols + c
			p := t.Param(t.Spec.ParamIndex(r, c, t.Cols))
			if fp != nil {
				out[i] = float64(p.Scale) * float64(fp.Decode(uint8(codes[i])))
			} else {
				out[i] = float64(p.Scale) * float64(codes[i]-p.Zero)
			}
		}
	}
	return out
}

// checkActF64 refuses activation quantization that fakeQuantF64 does not
// reproduce: minifloat grids, and dynamic scales that llmq constrains
// (powers of two, FP16 storage) — rounding rules of llmq's float32 scales
// that have no float64 counterpart.
func checkActF64(a *quant.ActQuant) error {
	if a.Spec.IsFP() {
		return fmt.Errorf("activation quantization %v: minifloat formats are not covered", a)
	}
	if !a.Static && (a.Spec.Scale != quant.ScaleAny || a.Spec.HalfScales) {
		return fmt.Errorf("activation quantization %v: constrained or FP16 scales are not covered", a)
	}
	if a.Spec.Granularity == quant.PerChannel {
		return fmt.Errorf("activation quantization %v: per-channel is not an activation granularity", a)
	}
	return nil
}

// fakeQuantF64 replaces x [rows × cols] in place by the values llmq's
// activation quantization (quant.QuantLinear.Forward) feeds the product,
// with every step in float64 instead of float32:
//
//	dynamic, per token / tensor / group of the finite values:
//	  symmetric:  s = 2·max(|lo|, |hi|) / (qmax − qmin), z = 0
//	              (int8: [−127, 127], so s = absmax/127)
//	  asymmetric: s = (max(hi,0) − min(lo,0)) / (qmax − qmin),
//	              z = clip(qmin − round(min(lo,0)/s), qmin, qmax)
//	  s is floored at quant.MinScale (an all-zero group stays zero)
//	static: llmq's stored float32 scale and integer zero-point
//	q = clip(round(x/s) + z, qmin, qmax), round half to even (quant.RoundHalfEven),
//	    x/s within tieTol of k+½ taken as that tie (see the file comment)
//	x̂ = s·(q − z)
//
// NaN and ±Inf pass through unquantized, as llmq passes them.
func fakeQuantF64(x []float64, rows, cols int, a *quant.ActQuant) {
	spec := a.Spec
	qmin, qmax := spec.IntRange()
	apply := func(g []float64, s float64, z int32) {
		for i, v := range g {
			if v-v != 0 {
				continue
			}
			u := v / s
			if f := math.Floor(u); math.Abs(u-f-0.5) < tieTol {
				u = f + 0.5
			}
			q := math.RoundToEven(u) + float64(z)
			q = math.Max(float64(qmin), math.Min(float64(qmax), q))
			g[i] = s * (q - float64(z))
		}
	}
	if a.Static {
		apply(x[:rows*cols], float64(a.Params.Scale), a.Params.Zero)
		return
	}
	params := func(g []float64) (float64, int32) {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, v := range g {
			if v-v == 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		if lo > hi { // no finite value
			lo, hi = 0, 0
		}
		steps := float64(qmax - qmin)
		if spec.Symmetric {
			return floorScale(2 * math.Max(math.Abs(lo), math.Abs(hi)) / steps), 0
		}
		l, h := math.Min(lo, 0), math.Max(hi, 0)
		s := floorScale((h - l) / steps)
		z := math.Max(float64(qmin), math.Min(float64(qmax), float64(qmin)-math.RoundToEven(l/s)))
		return s, int32(z)
	}
	if spec.Granularity == quant.PerTensor {
		s, z := params(x[:rows*cols])
		apply(x[:rows*cols], s, z)
		return
	}
	gc := spec.GroupCols(cols)
	for r := 0; r < rows; r++ {
		for c0 := 0; c0 < cols; c0 += gc {
			g := x[r*cols+c0 : r*cols+c0+gc]
			s, z := params(g)
			apply(g, s, z)
		}
	}
}

// tieTol is how close to k+½ a float64 quotient x/s must be to count as
// an exact tie: far above float64's error on it (|x/s| ≤ 127, relative
// error ~1e-15 after a forward pass: ~1e-13) and far below the distance a
// value that is no tie has from one, except with probability ~1e-9 each.
const tieTol = 1e-9

func floorScale(s float64) float64 {
	if !(s >= float64(quant.MinScale)) {
		return float64(quant.MinScale)
	}
	return s
}

// forward returns y [rows × out] for x [rows × in] (x is not modified).
func (l *f64Linear) forward(x []float64, rows int) []float64 {
	if l.act != nil {
		x = append([]float64(nil), x[:rows*l.in]...)
		fakeQuantF64(x, rows, l.in, l.act)
	}
	y := make([]float64, rows*l.out)
	for r := 0; r < rows; r++ {
		xr := x[r*l.in : (r+1)*l.in]
		for o := 0; o < l.out; o++ {
			wr := l.w[o*l.in : (o+1)*l.in]
			var s float64
			for i, v := range xr {
				s += v * wr[i]
			}
			if l.b != nil {
				s += l.b[o]
			}
			y[r*l.out+o] = s
		}
	}
	return y
}

// forward returns the logits [len(ids) × vocab] of one sequence starting at
// position 0.
func (f *f64Model) forward(ids []int) ([]float64, error) {
	T, H := len(ids), f.hidden
	x := make([]float64, T*H)
	for t, id := range ids {
		if id < 0 || id >= f.vocab {
			return nil, fmt.Errorf("token id %d out of range [0, %d)", id, f.vocab)
		}
		copy(x[t*H:(t+1)*H], f.embed[id*H:(id+1)*H])
	}
	h := make([]float64, T*H)
	for _, b := range f.blocks {
		// x += o_proj(Attn(RoPE(q_proj h), RoPE(k_proj h), v_proj h)), h = RMSNorm(x)
		f.rmsNorm(h, x, b.norm1, T)
		q, k, v := b.q.forward(h, T), b.k.forward(h, T), b.v.forward(h, T)
		f.rope(q, T, f.heads)
		f.rope(k, T, f.kvHeads)
		o := b.o.forward(f.attention(q, k, v, T), T)
		for i := range x {
			x[i] += o[i]
		}
		// x += down_proj(SiLU(gate_proj h) ⊙ up_proj h), h = RMSNorm(x)
		f.rmsNorm(h, x, b.norm2, T)
		g, u := b.gate.forward(h, T), b.up.forward(h, T)
		for i, gv := range g {
			g[i] = gv / (1 + math.Exp(-gv)) * u[i]
		}
		d := b.down.forward(g, T)
		for i := range x {
			x[i] += d[i]
		}
	}
	f.rmsNorm(h, x, f.norm, T)
	return f.head.forward(h, T), nil
}

// rmsNorm writes y = x / √(mean(x²) + ε) · w row by row.
func (f *f64Model) rmsNorm(y, x, w []float64, rows int) {
	H := f.hidden
	for r := 0; r < rows; r++ {
		xr, yr := x[r*H:(r+1)*H], y[r*H:(r+1)*H]
		var ss float64
		for _, v := range xr {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(H)+f.eps)
		for i, v := range xr {
			yr[i] = v * inv * w[i]
		}
	}
}

// rope rotates x [rows × heads·headDim] at positions 0, 1, …: pair i of a
// head, (x[i], x[i+d/2]) in Hugging Face's layout or (x[2i], x[2i+1]) in
// llama2.c's, turns by angle p·invFreq[i].
func (f *f64Model) rope(x []float64, rows, heads int) {
	d, half := f.headDim, f.headDim/2
	for p := 0; p < rows; p++ {
		for h := 0; h < heads; h++ {
			v := x[(p*heads+h)*d : (p*heads+h+1)*d]
			for i := 0; i < half; i++ {
				sin, cos := math.Sincos(float64(p) * f.invFreq[i])
				ia, ib := i, i+half
				if f.interleaved {
					ia, ib = 2*i, 2*i+1
				}
				a, b := v[ia], v[ib]
				v[ia] = a*cos - b*sin
				v[ib] = b*cos + a*sin
			}
		}
	}
}

// attention is causal softmax attention with grouped-query sharing: query
// head h reads key/value head h/(heads/kvHeads). q is [T × heads·d], k and v
// [T × kvHeads·d]; it returns [T × heads·d].
func (f *f64Model) attention(q, k, v []float64, T int) []float64 {
	d, group := f.headDim, f.heads/f.kvHeads
	qw, kw := f.heads*d, f.kvHeads*d
	out := make([]float64, T*qw)
	p := make([]float64, T)
	for h := 0; h < f.heads; h++ {
		g := h / group
		for t := 0; t < T; t++ {
			qt := q[t*qw+h*d : t*qw+(h+1)*d]
			m := math.Inf(-1)
			for s := 0; s <= t; s++ {
				ks := k[s*kw+g*d : s*kw+(g+1)*d]
				var dot float64
				for i, qv := range qt {
					dot += qv * ks[i]
				}
				p[s] = dot * f.scale
				m = math.Max(m, p[s])
			}
			var sum float64
			for s := 0; s <= t; s++ {
				p[s] = math.Exp(p[s] - m)
				sum += p[s]
			}
			ot := out[t*qw+h*d : t*qw+(h+1)*d]
			for s := 0; s <= t; s++ {
				vs := v[s*kw+g*d : s*kw+(g+1)*d]
				w := p[s] / sum
				for i, vv := range vs {
					ot[i] += w * vv
				}
			}
		}
	}
	return out
}

// configEps reads rms_norm_eps from a Hugging Face config.json, with the
// default llmq's loader and transformers' Llama config both use.
func configEps(cfgPath string) (float64, error) {
	cfg, err := checkpoint.ReadConfig(cfgPath)
	if err != nil {
		return 0, err
	}
	return cfg.FloatOr(1e-6, "rms_norm_eps")
}

func widen(v []float32) []float64 {
	if v == nil {
		return nil
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func f64Bytes(v []float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}
