package kernels

import (
	"fmt"
	"sync"
	"unsafe"
)

// Weight-only int4 kernels: W4A16 (FP32 activations, PackedQ4.MatMul) and
// W4A8 (int8 activations, PackedQ4.MatMulS8) on group-wise quantized
// weights, as produced by GPTQ, AWQ and RTN with llmq/quant's int4 specs.
//
// # Why int4 decode is fast
//
// Generating one token multiplies a single activation row by every weight
// matrix (GEMV): 2 flops per weight, each weight read once. The arithmetic
// is trivial next to the traffic — an FP32 GEMV reads 4 bytes per 2 flops
// and runs at memory speed. Packed int4 weights are 0.5 byte each, plus a
// scale and a zero-point per group (8 bytes per output and group here:
// 0.0625 byte per weight at group size 128), about 7× less to stream.
// Unpacking costs two vector µops per 8 weights (a mask and a conversion),
// done in registers, so a W4A16 GEMV runs several times faster than FP32;
// on this 2-core Zen 3 the unpacking (≈ 3 µops per 8 weights with the FMA)
// rather than memory becomes the limit, at ~8 weights per cycle per core.
// The weights of a 4096×4096 layer (8 MiB) even fit the L3 that the FP32
// copy (64 MiB) overflows. With many rows (prefill) each unpacked vector is
// reused across up to 6 rows and the kernel runs close to the FP32 GEMM.
//
// # Layout (chosen at load time by PackQ4)
//
// Outputs are taken 16 at a time (a "pair" of 8-lane vectors). For each pair
// and each block of 8 consecutive k, 16 dwords hold the 8 codes of each
// output: nibble i of dword l is the code of output 16q+l at k = 8·block+i
// (bits 4i…4i+3). Groups are padded to a multiple of 8 along k (codes and
// activations of the padding are zero), so blocks never straddle groups.
// Codes are stored unsigned, u ∈ [0, 15], with a zero-point z: asymmetric
// codes as they are, symmetric two's complement codes q ∈ [−8, 7] as
// u = q + 8 (q's nibble with its top bit flipped) and z = 8, so
// dequant(W) = scale·(u − z) in both cases. Per pair and group the packed
// parameters are 16 scales and 16 zero-points (as float32, and as int32 for
// W4A8).
//
// # W4A16 kernel
//
// Nibble i < 7 of all 8 lanes is isolated in place by one VPAND with
// 0xF<<4i, which as an integer is u·2^(4i) (exact), and converted by
// VCVTDQ2PS; nibble 7 is shifted down. The activations are prescaled once
// per call by 2^(−4i) for k%8 = i (exact powers of two), so each FMA adds
// exactly the x·u that a plain dequantization would (barring activations
// below 2^−102 in magnitude, which lose bits to subnormal underflow).
// Each output keeps a partial sum per group; at the group's end
//
//	C += scale · (Σ_group x·u − z·Σ_group x)
//
// — the scale multiplies the partial sum once per group, and the zero-point
// is applied through the row sums Σ x (computed once per call and group).
// The result equals A·dequant(W)ᵀ up to float32 summation-order rounding
// (the rounding error is bounded by Σ|x|·scale·(u + z) rather than
// Σ|x|·scale·|u − z|: at most a few times that of a plain FP32 product).
// The kernel computes R ≤ 6 rows × 16 outputs with up to 12 accumulators (1
// row: 4 sets of 2 alternating along k, so ≥ 8 FMA chains are in flight).
//
// # W4A8 kernel
//
// With int8 activations the dot product is integer: VPAND 0x0F and VPSRLW 4
// split each weight dword into the bytes of the even and odd k, VPMADDUBSW
// multiplies these unsigned codes (≤ 15) by the signed activations (any
// int8, −128 included: a pair is at most 2·15·128 = 3840, no saturation) and
// VPMADDWD/VPADDD accumulate in int32. Because both pair sums are so small,
// the even and odd halves are added in int16 before widening: 10 vector µops
// per 128 multiply-adds and row, against 16 for the W8A8 sign trick, so
// W4A8 outruns W8A8. Per group, Σ a·u − z·Σ a is exact in int32 and
// converted once: C += scale·float(…); the per-token activation scale is
// applied at the end.

const (
	q4NR      = 16 // outputs per pair
	q4Rows    = 6  // rows per W4A16 kernel call (q4MR in gen_asm.go)
	q4A8Rows  = 4  // rows per W4A8 kernel call (q4A8MR in gen_asm.go)
	q4SzPer   = 32 // float32s of parameters per pair and group
	q4ZiPer   = 16 // int32 zero-points per pair and group
	q4BlkDw   = 16 // dwords per pair and k8 block
	q4NibMask = 0xF
)

// Blocking of the int4 products.
var (
	q4McMax = 96  // rows per tile (a multiple of 6 and of 4)
	q4KcMax = 512 // k per block (whole groups) when m exceeds one kernel's rows
	q4NcMax = 256 // columns per tile
)

// q4Pow[i] is the exact prescale of activations at k%8 = i: 2^(−4i) for
// i < 7 (nibble i is read in place as u·2^(4i)), 1 for nibble 7 (shifted).
var q4Pow = [8]float32{1, 0x1p-4, 0x1p-8, 0x1p-12, 0x1p-16, 0x1p-20, 0x1p-24, 1}

// PackedQ4 is a group-wise int4 weight matrix W [n×k] (n outputs, k inputs)
// in the layout of the int4 kernels (see the notes at the top of int4.go).
// It is immutable after PackQ4 and safe for concurrent use.
type PackedQ4 struct {
	n, k  int
	gs    int // group size along k
	gp    int // group length padded to a multiple of 8
	gk    int // k8 blocks per group
	ng    int // groups per row
	npair int
	data  []uint32  // [npair][ng·gk][16]
	sz    []float32 // [npair][ng][32]: 16 scales, 16 zero-points
	zi    []int32   // [npair][ng][16]: zero-points
	sym   bool      // two's complement codes (no zero-points given)
}

// PackQ4 builds a PackedQ4 from a [rows×cols] int4 matrix in llmq/quant's
// storage (quant.QTensor with 4-bit codes): data holds rows of ⌈cols/2⌉
// bytes, element c of a row in the low nibble of byte c/2 for even c and in
// the high nibble for odd c; scales holds rows × cols/groupSize group scales
// (row-major); zeros holds the matching zero-points for asymmetric codes
// (unsigned, 0..15) or is nil for symmetric codes (two's complement nibbles,
// [−8, 7]). groupSize must divide cols (groupSize = cols: one scale per
// output channel). It panics on inconsistent sizes or zero-points above 15.
func PackQ4(data []byte, rows, cols, groupSize int, scales []float32, zeros []uint8) *PackedQ4 {
	if rows < 0 || cols < 1 || groupSize < 1 || cols%groupSize != 0 {
		panic(fmt.Sprintf("kernels.PackQ4: bad shape rows=%d cols=%d groupSize=%d", rows, cols, groupSize))
	}
	rb := (cols + 1) / 2
	ng := cols / groupSize
	if len(data) < rows*rb || len(scales) < rows*ng || (zeros != nil && len(zeros) < rows*ng) {
		panic(fmt.Sprintf("kernels.PackQ4: len(data)=%d, len(scales)=%d, len(zeros)=%d too short for %d×%d, group %d",
			len(data), len(scales), len(zeros), rows, cols, groupSize))
	}
	for i, z := range zeros[:min(len(zeros), rows*ng)] {
		if z > 15 {
			panic(fmt.Sprintf("kernels.PackQ4: zero-point %d at %d outside [0, 15]", z, i))
		}
	}
	gp := roundUp(groupSize, 8)
	p := &PackedQ4{n: rows, k: cols, gs: groupSize, gp: gp, gk: gp / 8, ng: ng, npair: (rows + q4NR - 1) / q4NR, sym: zeros == nil}
	p.data = alignedUint32s(p.npair * ng * p.gk * q4BlkDw)
	p.sz = alignedFloats(p.npair * ng * q4SzPer)
	p.zi = make([]int32, p.npair*ng*q4ZiPer)
	if rows == 0 {
		return p
	}
	f := func(q0, q1 int) {
		for q := q0; q < q1; q++ {
			p.packPair(q, data, rb, scales, zeros)
		}
	}
	if rows*cols < 1<<16 {
		f(0, p.npair)
	} else {
		ParallelFor(p.npair, f)
	}
	return p
}

func (p *PackedQ4) packPair(q int, data []byte, rb int, scales []float32, zeros []uint8) {
	ng, gk, gs := p.ng, p.gk, p.gs
	for l := 0; l < q4NR; l++ {
		j := q*q4NR + l
		if j >= p.n {
			break // padding outputs stay zero (scale 0)
		}
		row := data[j*rb : (j+1)*rb]
		for g := 0; g < ng; g++ {
			z := uint32(8)
			if zeros != nil {
				z = uint32(zeros[j*ng+g])
			}
			par := p.sz[(q*ng+g)*q4SzPer:]
			par[l] = scales[j*ng+g]
			par[q4NR+l] = float32(z)
			p.zi[(q*ng+g)*q4ZiPer+l] = int32(z)
			for bb := 0; bb < gk; bb++ {
				var d uint32
				for i := 0; i < 8 && bb*8+i < gs; i++ {
					c := g*gs + bb*8 + i
					u := uint32(row[c>>1]>>(uint(c&1)*4)) & q4NibMask
					if zeros == nil {
						u ^= 8 // two's complement q ↦ q + 8
					}
					d |= u << (4 * i)
				}
				p.data[((q*ng+g)*gk+bb)*q4BlkDw+l] = d
			}
		}
	}
}

// N returns the number of outputs (rows of W).
func (p *PackedQ4) N() int { return p.n }

// K returns the number of inputs (columns of W).
func (p *PackedQ4) K() int { return p.k }

// GroupSize returns the number of consecutive inputs sharing a scale.
func (p *PackedQ4) GroupSize() int { return p.gs }

// Bytes returns the size of the packed weights and parameters.
func (p *PackedQ4) Bytes() int { return 4*len(p.data) + 4*len(p.sz) + 4*len(p.zi) }

// alignedUint32s allocates n uint32s starting on a 64-byte boundary.
func alignedUint32s(n int) []uint32 {
	raw := make([]uint32, n+16)
	off := int((64-uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%64)%64) / 4
	return raw[off : off+n : off+n]
}

// MatMul computes C[m×n] = A[m×k]·dequant(W)ᵀ with A and C dense row-major
// float32 (C is overwritten): the W4A16 product, weights unpacked in
// registers. The result equals A·dequant(W)ᵀ up to float32 rounding of the
// sums (see the notes at the top of int4.go). m = 1 is the decode GEMV.
// MatMul is safe for concurrent use and splits large products over up to
// GOMAXPROCS goroutines.
func (p *PackedQ4) MatMul(c, a []float32, m int) {
	p.check("MatMul", m, len(a), len(c))
	if m == 0 || p.n == 0 {
		return
	}
	g := q4JobPool.Get().(*q4Job)
	*g = q4Job{p: p, asm: asmOn.Load(), m: m, c: c, rows: q4Rows}
	kp := p.ng * p.gp
	fa, ap := getBuf(m * kp)
	fx, xs := getBuf(m * p.ng)
	g.ap, g.xs = ap, xs
	nb := (m + q4Rows - 1) / q4Rows
	packA := func(b0, b1 int) {
		for b := b0; b < b1; b++ {
			r0 := b * q4Rows
			R := min(q4Rows, m-r0)
			p.packA16(ap[r0*kp:(r0+R)*kp], xs[r0*p.ng:(r0+R)*p.ng], a[r0*p.k:(r0+R)*p.k], R)
		}
	}
	if nb > 1 && m*p.k >= 1<<16 {
		ParallelFor(nb, packA)
	} else {
		packA(0, nb)
	}
	g.execute()
	putBuf(fa)
	putBuf(fx)
	*g = q4Job{}
	q4JobPool.Put(g)
}

// MatMulS8 computes c[i][j] = aScale[i] · Σ_g scale[j][g]·(Σ_{p∈g} a[i][p]·(u[j][p] − z[j][g]))
// for int8 activations A [m×k] (e.g. from QuantizeRowsS8) with per-row
// scales: the W4A8 product. The inner sums are exact integers; C [m×n] is
// overwritten.
func (p *PackedQ4) MatMulS8(c []float32, a []int8, aScale []float32, m int) {
	p.check("MatMulS8", m, len(a), len(c))
	if len(aScale) < m {
		panic(fmt.Sprintf("kernels.PackedQ4.MatMulS8: len(aScale)=%d < m=%d", len(aScale), m))
	}
	if m == 0 || p.n == 0 {
		return
	}
	g := q4JobPool.Get().(*q4Job)
	*g = q4Job{p: p, asm: asmOn.Load(), m: m, c: c, rows: q4A8Rows, a8: true}
	kp := p.ng * p.gp
	fa, ap := getBytes(m * kp)
	fs, as := getInt32s(m * p.ng)
	g.ap8, g.as = ap, as
	ab := bytesOf(a)
	nb := (m + q4A8Rows - 1) / q4A8Rows
	packA := func(b0, b1 int) {
		for b := b0; b < b1; b++ {
			r0 := b * q4A8Rows
			R := min(q4A8Rows, m-r0)
			p.packA8(ap[r0*kp:(r0+R)*kp], as[r0*p.ng:(r0+R)*p.ng], ab[r0*p.k:(r0+R)*p.k], R)
		}
	}
	if nb > 1 && m*p.k >= 1<<16 {
		ParallelFor(nb, packA)
	} else {
		packA(0, nb)
	}
	g.execute()
	for i := 0; i < m; i++ {
		Scale(c[i*p.n:(i+1)*p.n], aScale[i])
	}
	putBuf(fa)
	putBuf(fs)
	*g = q4Job{}
	q4JobPool.Put(g)
}

func (p *PackedQ4) check(what string, m, la, lc int) {
	if m < 0 {
		panic("kernels.PackedQ4." + what + ": negative m")
	}
	if la < m*p.k || lc < m*p.n {
		panic(fmt.Sprintf("kernels.PackedQ4.%s: len(a)=%d, len(c)=%d too short for m=%d n=%d k=%d", what, la, lc, m, p.n, p.k))
	}
}

// packA16 packs R rows of activations x [R×k] for the W4A16 kernel:
// dst[(g·gp + kk)·R + r] = x[r][g·gs + kk]·q4Pow[kk%8] (0 in the padding),
// xs[g·R + r] = Σ_{kk<gs} x[r][g·gs + kk].
func (p *PackedQ4) packA16(dst, xs, x []float32, R int) {
	gs, gp := p.gs, p.gp
	for r := 0; r < R; r++ {
		row := x[r*p.k : (r+1)*p.k]
		for g := 0; g < p.ng; g++ {
			src := row[g*gs : (g+1)*gs]
			d := dst[g*gp*R:]
			var s float64
			for kk, v := range src {
				s += float64(v)
				d[kk*R+r] = v * q4Pow[kk&7]
			}
			for kk := gs; kk < gp; kk++ {
				d[kk*R+r] = 0
			}
			xs[g*R+r] = float32(s)
		}
	}
}

// packA8 packs R rows of int8 activations x [R×k] for the W4A8 kernel: per
// k8 block and row 8 bytes, the even k first (a0 a2 a4 a6 a1 a3 a5 a7),
// zero in the padding; as[g·R + r] = Σ_{p∈g} x[r][p].
func (p *PackedQ4) packA8(dst []byte, as []int32, x []byte, R int) {
	gs, gk := p.gs, p.gk
	for r := 0; r < R; r++ {
		row := x[r*p.k : (r+1)*p.k]
		for g := 0; g < p.ng; g++ {
			var s int32
			for bb := 0; bb < gk; bb++ {
				d := dst[((g*gk+bb)*R+r)*8:]
				d = d[:8]
				for i := 0; i < 8; i++ {
					kk := bb*8 + i
					var v byte
					if kk < gs {
						v = row[g*gs+kk]
						s += int32(int8(v))
					}
					d[(i&1)*4+i>>1] = v
				}
			}
			as[g*R+r] = s
		}
	}
}

// q4Job is one int4 product: tiles of rows × pairs of outputs, k in blocks
// of whole groups, on parallelDynamic.
type q4Job struct {
	p    *PackedQ4
	asm  bool
	a8   bool
	m    int
	c    []float32
	rows int // rows per kernel call: q4Rows or q4A8Rows

	ap  []float32 // W4A16: packed activations, blocks of rows × [kp][R]
	xs  []float32 // W4A16: row sums, blocks × [ng][R]
	ap8 []byte    // W4A8: packed activations, blocks × [kp/8][R][8]
	as  []int32   // W4A8: row sums, blocks × [ng][R]

	mc, gb         int // rows per tile, groups per k block
	pp             int // pairs per tile
	tilesM, tilesN int
}

var q4JobPool = sync.Pool{New: func() any { return new(q4Job) }}

func (g *q4Job) execute() {
	p, m := g.p, g.m
	nmb := (m + q4McMax - 1) / q4McMax
	g.mc = roundUp((m+nmb-1)/nmb, g.rows)
	g.tilesM = (m + g.mc - 1) / g.mc
	g.gb = p.ng
	if m > g.rows {
		g.gb = max(1, q4KcMax/p.gp)
	}
	flops := 2 * float64(m) * float64(p.n) * float64(p.k)
	w := workersFor(flops, 1<<30)
	tilesN := (p.npair*q4NR + q4NcMax - 1) / q4NcMax
	if want := (4*w + g.tilesM - 1) / g.tilesM; w > 1 && tilesN < want {
		tilesN = want
	}
	tilesN = min(tilesN, p.npair)
	g.pp = (p.npair + tilesN - 1) / tilesN
	g.tilesN = (p.npair + g.pp - 1) / g.pp
	parallelDynamic(g.tilesM*g.tilesN, workersFor(flops, g.tilesM*g.tilesN), g)
}

func (g *q4Job) run(t int) {
	p := g.p
	tm, tn := t/g.tilesN, t%g.tilesN
	i0 := tm * g.mc
	i1 := min(g.m, i0+g.mc)
	q0 := tn * g.pp
	q1 := min(p.npair, q0+g.pp)
	n, ng, gk, gp := p.n, p.ng, p.gk, p.gp
	kp := ng * gp
	// The last pair may have fewer than 16 real outputs: it is computed into
	// a scratch tile and copied.
	var scratch []float32
	var sb *floatBuf
	if q1*q4NR > n {
		sb, scratch = getBuf((i1 - i0) * q4NR)
	}
	for g0 := 0; g0 < ng; g0 += g.gb {
		gn := min(g.gb, ng-g0)
		accum := 0
		if g0 > 0 {
			accum = 1
		}
		for q := q0; q < q1; q++ {
			ragged := (q+1)*q4NR > n
			for i := i0; i < i1; i += g.rows {
				R := min(g.rows, i1-i)
				var c []float32
				ldc := n
				if ragged {
					c, ldc = scratch[(i-i0)*q4NR:], q4NR
				} else {
					c = g.c[i*n+q*q4NR:]
				}
				_ = c[(R-1)*ldc+q4NR-1]
				w := p.data[(q*ng+g0)*gk*q4BlkDw : (q*ng+g0+gn)*gk*q4BlkDw]
				sz := p.sz[(q*ng+g0)*q4SzPer : (q*ng+g0+gn)*q4SzPer]
				if g.a8 {
					a := g.ap8[i*kp+g0*gp*R : i*kp+(g0+gn)*gp*R]
					as := g.as[i*ng+g0*R : i*ng+(g0+gn)*R]
					zi := p.zi[(q*ng+g0)*q4ZiPer : (q*ng+g0+gn)*q4ZiPer]
					if g.asm {
						q4A8Asm(R, gn, gk, &a[0], &w[0], &sz[0], &zi[0], &as[0], &c[0], ldc, accum)
					} else {
						q4A8Go(R, gn, gk, a, w, sz, zi, as, c, ldc, accum != 0)
					}
					continue
				}
				a := g.ap[i*kp+g0*gp*R : i*kp+(g0+gn)*gp*R]
				xs := g.xs[i*ng+g0*R : i*ng+(g0+gn)*R]
				if g.asm {
					q4A16Asm(R, gn, gk, &a[0], &w[0], &sz[0], &xs[0], &c[0], ldc, accum)
				} else {
					q4A16Go(R, gn, gk, a, w, sz, xs, c, ldc, accum != 0)
				}
			}
		}
	}
	if scratch != nil {
		j0 := (q1 - 1) * q4NR
		for i := i0; i < i1; i++ {
			copy(g.c[i*n+j0:(i+1)*n], scratch[(i-i0)*q4NR:])
		}
		putBuf(sb)
	}
}

// q4A16Go is the pure-Go twin of the W4A16 kernel (same packed operands,
// same order of operations per group, without fused multiply-adds).
func q4A16Go(R, ng, gk int, a []float32, w []uint32, sz []float32, xs []float32, c []float32, ldc int, accum bool) {
	var acc [q4Rows][q4NR]float32
	for g := 0; g < ng; g++ {
		acc = [q4Rows][q4NR]float32{}
		for bb := 0; bb < gk; bb++ {
			blk := (*[q4BlkDw]uint32)(w[(g*gk+bb)*q4BlkDw:])
			ab := a[(g*gk+bb)*8*R : (g*gk+bb+1)*8*R]
			for i := 0; i < 8; i++ {
				for l, d := range blk {
					var u float32
					if i < 7 {
						u = float32(int32(d & (q4NibMask << (4 * i))))
					} else {
						u = float32(d >> 28)
					}
					for r := 0; r < R; r++ {
						acc[r][l] += ab[i*R+r] * u
					}
				}
			}
		}
		par := sz[g*q4SzPer : (g+1)*q4SzPer]
		for r := 0; r < R; r++ {
			x := xs[g*R+r]
			row := c[r*ldc : r*ldc+q4NR]
			for l := range row {
				v := acc[r][l] - float32(par[q4NR+l]*x)
				if accum || g > 0 {
					row[l] += float32(par[l] * v)
				} else {
					row[l] = par[l] * v
				}
			}
		}
	}
}

// q4A8Go is the pure-Go twin of the W4A8 kernel.
func q4A8Go(R, ng, gk int, a []byte, w []uint32, sz []float32, zi []int32, as []int32, c []float32, ldc int, accum bool) {
	for g := 0; g < ng; g++ {
		var acc [q4A8Rows][q4NR]int32
		for bb := 0; bb < gk; bb++ {
			blk := (*[q4BlkDw]uint32)(w[(g*gk+bb)*q4BlkDw:])
			for r := 0; r < R; r++ {
				ab := (*[8]byte)(a[((g*gk+bb)*R+r)*8:])
				for l, d := range blk {
					var s int32
					for i := 0; i < 8; i++ {
						s += int32((d>>(4*i))&q4NibMask) * int32(int8(ab[(i&1)*4+i>>1]))
					}
					acc[r][l] += s
				}
			}
		}
		par := sz[g*q4SzPer : (g+1)*q4SzPer]
		z := zi[g*q4ZiPer : (g+1)*q4ZiPer]
		for r := 0; r < R; r++ {
			row := c[r*ldc : r*ldc+q4NR]
			for l := range row {
				v := float32(acc[r][l] - z[l]*as[g*R+r])
				if accum || g > 0 {
					row[l] += float32(par[l] * v)
				} else {
					row[l] = par[l] * v
				}
			}
		}
	}
}
