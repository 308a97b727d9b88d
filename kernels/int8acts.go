package kernels

import "fmt"

// ActsS8 are int8 activations [m×k] quantized per token and packed once
// for the INT8 GEMM (the A micro-panels of the kernel set in use), so that
// several weight matrices reading the same input — a block's q/k/v
// projections, its gate and up projections — share one quantization and
// one packing pass. Build with PrepareActsS8; use with
// PackedS8.MatMulActs; an ActsS8 is read-only once built.
type ActsS8 struct {
	m, k, k4 int
	set      *s8Set
	ap       []byte    // packed micro-panels of all m rows
	scale    []float32 // per-row scales
	corr     [][]int32 // clamped −128 positions (AVX2 sets; nil if none)
	qx       []int8    // the row-major codes (for the pure-Go and −128 paths)
	buf      *floatBuf
}

// PrepareActsS8 quantizes x [m×k] per token (QuantizeRowsS8) and packs the
// codes for the kernels in use. Release the result when done.
func PrepareActsS8(x []float32, m, k int) *ActsS8 {
	if m < 0 || k < 0 || len(x) < m*k {
		panic(fmt.Sprintf("kernels.PrepareActsS8: len(x)=%d < m·k (m=%d k=%d)", len(x), m, k))
	}
	k4 := (k + 3) / 4
	a := &ActsS8{m: m, k: k, k4: k4, set: s8Active(), scale: make([]float32, m), qx: make([]int8, m*k)}
	QuantizeRowsS8(a.qx, a.scale, x, m, k)
	if a.set == nil || m == 0 || k == 0 {
		return a
	}
	a.buf, a.ap = getBytes(max(1, m*k4*4))
	src := bytesOf(a.qx)
	np := (m + s8MRows - 1) / s8MRows
	pack := func(p0, p1 int) {
		for ip := p0; ip < p1; ip++ {
			i0 := ip * s8MRows
			rows := min(s8MRows, m-i0)
			dst := a.ap[i0*k4*4 : (i0+rows)*k4*4]
			if a.set.unsignedA {
				packAS8Offset(dst, src[i0*k:], k, rows, k)
			} else if packAS8(dst, src[i0*k:], k, rows, k) {
				clampAS8(dst)
				a.corr = negPositions(src, k, m, k) // never from QuantizeRowsS8's [−127, 127] codes
			}
		}
	}
	if m*k < 1<<16 {
		pack(0, np)
	} else {
		ParallelFor(np, pack)
	}
	return a
}

// Scales returns the per-row activation scales.
func (a *ActsS8) Scales() []float32 { return a.scale }

// Release returns the packing buffer to the pool; a must not be used after.
func (a *ActsS8) Release() {
	if a.buf != nil {
		putBuf(a.buf)
		a.buf, a.ap = nil, nil
	}
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
