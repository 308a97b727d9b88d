package kernels

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// ActsS8 are int8 activations [m×k] quantized per token and packed once
// for the INT8 GEMM (the A micro-panels of the kernel set in use), so that
// several weight matrices reading the same input — a block's q/k/v
// projections, its gate and up projections — share one quantization and
// one packing pass. Build with PrepareActsS8; use with
// PackedS8.MatMulActs; an ActsS8 is read-only once built.
type ActsS8 struct {
	m, k, k4 int
	set      *s8Set
	ap       []byte    // packed micro-panels of all m rows (nil without a kernel set)
	scale    []float32 // per-row scales
	corr     [][]int32 // clamped −128 positions (signed sets; nil if none)
	qx       []int8    // the row-major codes (for the pure-Go and −128 paths)
	bufs     []*floatBuf
}

// PrepareActsS8 quantizes x [m×k] per token (QuantizeRowsS8) and packs the
// codes for the kernels in use. Its buffers come from a pool: Release the
// result when done.
func PrepareActsS8(x []float32, m, k int) *ActsS8 {
	a := newActsS8("PrepareActsS8", x, m, k)
	QuantizeRowsS8(a.qx, a.scale, x, m, k)
	return a.pack()
}

// PrepareActsS8PerTensor is PrepareActsS8 with one scale for all m rows:
// the given scale (static activation quantization, calibrated offline:
// SmoothQuant-O3), or, when scale is 0, the scale of x's largest finite
// |value| (dynamic per-tensor quantization: SmoothQuant-O2), computed as
// QuantizeRowsS8 computes a row's. The codes are quant's symmetric int8
// grid, clamp(round-half-even(x/scale), −127, 127), bit for bit.
func PrepareActsS8PerTensor(x []float32, m, k int, scale float32) *ActsS8 {
	a := newActsS8("PrepareActsS8PerTensor", x, m, k)
	asm := asmOn.Load()
	if scale == 0 {
		scale = s8Scale(absMaxS8(asm, x[:m*k]))
	}
	for r := range a.scale {
		a.scale[r] = scale
	}
	q := bytesOf(a.qx)
	f := func(r0, r1 int) { quantizeWithScaleS8(asm, q[r0*k:r1*k], x[r0*k:r1*k], scale) }
	if m < 2 || m*k < 1<<16 {
		f(0, m)
	} else {
		ParallelFor(m, f)
	}
	return a.pack()
}

// newActsS8 allocates the codes and scales of an m×k activation.
func newActsS8(what string, x []float32, m, k int) *ActsS8 {
	if m < 0 || k < 0 || len(x) < m*k {
		panic(fmt.Sprintf("kernels.%s: len(x)=%d < m·k (m=%d k=%d)", what, len(x), m, k))
	}
	a := &ActsS8{m: m, k: k, k4: (k + 3) / 4, set: s8Active()}
	sb, scale := getBuf(max(1, m))
	qb, qx := getBytes(max(1, m*k))
	a.scale, a.qx, a.bufs = scale[:m], unsafe.Slice((*int8)(unsafe.Pointer(&qx[0])), m*k), []*floatBuf{sb, qb}
	return a
}

// pack packs the codes into the A micro-panels of the kernel set in use.
func (a *ActsS8) pack() *ActsS8 {
	m, k, k4 := a.m, a.k, a.k4
	if a.set == nil || m == 0 || k == 0 {
		return a
	}
	ab, ap := getBytes(max(1, m*k4*4))
	a.ap, a.bufs = ap, append(a.bufs, ab)
	src := bytesOf(a.qx)
	var neg atomic.Bool
	pack := func(p0, p1 int) {
		for ip := p0; ip < p1; ip++ {
			i0 := ip * s8MRows
			rows := min(s8MRows, m-i0)
			if packAPanelS8(a.set, a.ap[i0*k4*4:(i0+rows)*k4*4], src[i0*k:], k, rows, k) {
				neg.Store(true) // never from QuantizeRowsS8's [−127, 127] codes
			}
		}
	}
	np := (m + s8MRows - 1) / s8MRows
	if m*k < 1<<16 {
		pack(0, np)
	} else {
		ParallelFor(np, pack)
	}
	if neg.Load() {
		a.corr = negPositions(src, k, m, k)
	}
	return a
}

// Scales returns the per-row activation scales.
func (a *ActsS8) Scales() []float32 { return a.scale }

// Release returns the buffers to the pool; a must not be used after.
func (a *ActsS8) Release() {
	for _, b := range a.bufs {
		putBuf(b)
	}
	a.bufs, a.ap, a.qx, a.scale = nil, nil, nil, nil
}

// MatMulActs computes c[i][j] = float32(Σ_p a[i][p]·W[j][p]) ·
// (aScale[i]·bScale[j]) + bias[j] for prepared activations (see
// MatMulScaled; bias may be nil).
func (p *PackedS8) MatMulActs(c []float32, a *ActsS8, bScale, bias []float32) {
	if a.k != p.k {
		panic(fmt.Sprintf("kernels.PackedS8.MatMulActs: activations have k=%d, weights k=%d", a.k, p.k))
	}
	p.check("MatMulActs", a.m, a.m*a.k, len(c))
	checkScales("PackedS8.MatMulActs", a.m, p.n, a.scale, bScale, bias)
	if a.m == 0 || p.n == 0 {
		return
	}
	out := s8Out{cf: c, ldc: p.n, aScale: a.scale, bScale: bScale, bias: bias}
	if a.ap == nil || a.set != s8Active() || p.k == 0 {
		gemmS8(a.m, p.n, p.k, bytesOf(a.qx), p.k, nil, 0, p, out)
		return
	}
	g := s8CtxPool.Get().(*s8Ctx)
	*g = s8Ctx{set: a.set, k: p.k, k4: a.k4, lda: p.k, m: a.m, n: p.n, a: bytesOf(a.qx), ap: a.ap,
		bp: p.data, bcorr: p.corr, out: out, corr: a.corr}
	g.execute()
	*g = s8Ctx{}
	s8CtxPool.Put(g)
}
