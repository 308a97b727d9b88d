package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"unsafe"
)

// INT8 GEMM for W8A8 inference (SmoothQuant, LLM.int8(), ZeroQuant).
//
// # Why the scales factor out
//
// With per-token activation scales (one s_a[i] per row of A) and
// per-channel weight scales (one s_b[j] per output, i.e. per row of W),
//
//	y[i][j] = Σ_p (s_a[i]·qa[i][p]) · (s_b[j]·qw[j][p]) = s_a[i]·s_b[j] · Σ_p qa[i][p]·qw[j][p]
//
// the scales do not depend on p, so the whole reduction runs on the int8
// codes in exact int32 arithmetic and the float scaling happens once per
// output element, in the epilogue (GemmS8Scaled, PackedS8.MatMulScaled).
// That is what makes W8A8 fast: SmoothQuant's smoothing migrates activation
// outliers into the weights precisely so that per-token × per-channel (or
// coarser) scales suffice. Group-wise scales along k would not factor out.
//
// # The AVX2 method and why it is exact
//
// AVX2 has no int8×int8 multiply-accumulate (that is VNNI's VPDPBUSD).
// VPMADDUBSW multiplies unsigned bytes by signed bytes and adds adjacent
// products into int16 with signed saturation; VPMADDWD with a vector of
// int16 ones then adds adjacent int16 into int32 exactly. Feeding raw
// offset-binary activations (a+128 ≤ 255) to VPMADDUBSW would saturate:
// 2·255·127 > 32767. Instead every product a·b is computed as
//
//	|b| · (a·sign(b))        VPABSB for |b|, VPSIGNB for a·sign(b)
//
// |b| ≤ 128 is a valid unsigned byte (|−128| = 128 too), and a·sign(b) is a
// valid signed byte whenever a ≠ −128. A pair sum is then at most
// 2·128·127 = 32512 < 32767 in magnitude: VPMADDUBSW never saturates, the
// int16 pair sums are exact, and VPMADDWD/VPADDD accumulate them exactly in
// int32. So every int8 weight (−128 included, e.g. from full-range
// symmetric grids) is supported directly. An activation of −128 (never
// produced by QuantizeRowsS8, whose codes are in [−127, 127]) is clamped to
// −127 while A is packed and the difference is added back exactly:
// C[i][j] −= Σ_{p: a[i][p] = −128} b[j][p], a sparse int32 correction. The
// results are therefore the exact int32 sums for all int8 inputs, provided
// they fit (|C| ≤ k·128·128 < 2³¹ for k < 131072; beyond that they wrap
// exactly as the pure-Go int32 reference does).
//
// Cost: 4 vector µops (VPSIGNB, VPMADDUBSW, VPMADDWD, VPADDD) per 32
// multiply-adds plus one VPABSB per 32 weights per 5 rows. Zen 3 has two
// vector-integer multiply pipes (VPMADDUBSW and VPMADDWD each run at 2 per
// cycle) and four vector ALU pipes, so the method's ceiling is one 32-MAC
// block per cycle: 64 int8 ops/cycle/core, twice the FP32 FMA peak (2 FMA ×
// 8 lanes × 2 flops = 32). The benchmarks in int8_bench_test.go measure the
// clock and this ceiling (s8PeakLoop) on the machine at hand.
//
// # The VNNI method
//
// AVX-512 VNNI's VPDPBUSD multiplies 4 unsigned bytes by 4 signed bytes per
// dword lane and adds the four products to an int32 accumulator without
// saturation: 64 multiply-adds per zmm instruction, one instruction where
// the AVX2 method needs four per 32. Its first operand must be unsigned, so
// the activations are stored in offset binary, a+128 ∈ [0, 255] (a XOR
// 0x80 while A is packed), and the weights stay signed:
//
//	Σ_p (a_p + 128)·b_p = Σ_p a_p·b_p + 128·Σ_p b_p
//
// The last term depends only on the output column: −128·colsum[j] is
// computed once when W is packed (PackedS8.corr) and the kernel starts its
// accumulators from it on the first k block, so no extra pass over the
// tile is needed. Every int8 activation, −128 included, is
// exact (no clamping); a dword's four products are at most 4·255·128 in
// magnitude, far inside int32. The kernel (s8VKernel*x32) reads two B
// panels (32 columns) per k4 step, so per step it issues two zmm loads of
// B, R dword broadcasts of A and 2·R VPDPBUSD into 2·R independent
// accumulators. The few-row GEMV (s8DotRows) stays on the AVX2 method,
// whose speed there is bound by streaming W from memory anyway.
//
// # Layouts and blocking
//
// B (weights, [n×k] row-major like PyTorch's [out×in]) is packed into panels
// of 16 outputs: [k/4][16 columns][4 bytes], zero padded. That is 64 bytes
// per step of 4 along k — two ymm — and exactly the dword-of-four-bytes
// operand shape of VPDPBUSD, so a VNNI kernel set (see s8Set) can consume the
// same panels. A is packed per call into micro-panels of 5 rows:
// [k/4][5 rows][4 bytes], the dword a VPBROADCASTD splats. The 5×16
// microkernel keeps 10 int32 accumulators, |b| of both halves, the
// broadcast, two temporaries and the int16 ones in the 16 ymm registers.
// Blocking mirrors the FP32 GEMM (doc.go): k in blocks of ≤ 1024 (a 16 KiB B
// micro-panel stays in L1), tiles of ≤ 120 rows × 256 columns accumulated in
// an int32 scratch tile, which the epilogue turns into float32 (or copies
// out) once the whole k range is done. Tiles run on parallelDynamic.
//
// With few rows (decode), GemmS8 skips packing B and takes 32-wide dot
// products straight from the rows of B (s8DotRows), streaming B once at one
// byte per weight. PackedS8 with one row streams its contiguous panels.

const (
	s8NR     = 16 // columns per B panel
	s8MRows  = 5  // rows per A micro-panel (s8MR in gen_asm.go)
	s8PanelB = 64 // bytes per k4 step of a B panel
)

// Blocking parameters of the INT8 GEMM (see above).
var (
	s8KcMax  = 256 // k4 steps per block: B micro-panel 256·64 B = 16 KiB
	s8McMax  = 120 // rows per tile (multiple of 5)
	s8NcMax  = 256 // columns per tile
	s8SmallM = 4   // GemmS8 with m ≤ s8SmallM streams B unpacked

	s8ABudget = 1 << 23 // bytes of packed A per chunk
	s8BBudget = 1 << 23 // bytes of packed B per chunk (GemmS8)
)

// s8Set is one implementation of the INT8 inner kernels. Kernel sets share
// the packed layouts, the drivers and the tests; only the instruction
// sequence differs. s8Best (per build) is the set the CPU supports; nil
// means the pure-Go twins below.
type s8Set struct {
	name string
	// tile computes C[rows×16] (int32, row stride ldc) (+)= A·B over k4
	// steps for np micro-panels of A (astride bytes apart). corr (16
	// entries) is the unsignedA sets' column correction, added when
	// accum = 0; other sets ignore it.
	tile func(rows, k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, corr *int32)
	// tile2, if not nil, is tile on two B micro-panels at once (bstride
	// bytes apart), writing 32 columns of C (corr: 32 entries).
	tile2 func(rows, k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, bstride int, corr *int32)
	// dotRows computes c[j] = Σ_{p<32·k32} a[p]·b[j·ldb+p], a in [−127, 127].
	dotRows func(k32 int, a, b *byte, ldb int, nrows int, c *int32)
	// unsignedA: tile reads the A micro-panels as offset binary a+128
	// (packed as a XOR 0x80) and starts from corr = −128·Σ_p b[j][p], the
	// correction kept beside the packed B (see "The VNNI method" above).
	unsignedA bool
}

// s8Override, when not nil, replaces s8Best (tests run every kernel set).
var s8Override atomic.Pointer[s8Set]

// s8Active returns the kernel set to use now (nil: pure Go).
func s8Active() *s8Set {
	if !asmOn.Load() {
		return nil
	}
	if o := s8Override.Load(); o != nil {
		return o
	}
	return s8Best
}

// bytesOf views an int8 slice as bytes.
func bytesOf(x []int8) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
}

// getBytes returns a pooled, 64-byte aligned scratch buffer of n > 0 bytes
// (contents undefined) and its handle for putBuf.
func getBytes(n int) (*floatBuf, []byte) {
	fb, f := getBuf((n + 3) / 4)
	return fb, unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), n)
}

// getInt32s is getBytes for n > 0 int32s.
func getInt32s(n int) (*floatBuf, []int32) {
	fb, f := getBuf(n)
	return fb, unsafe.Slice((*int32)(unsafe.Pointer(&f[0])), n)
}

// alignedBytes allocates n bytes starting on a 64-byte boundary.
func alignedBytes(n int) []byte {
	raw := make([]byte, n+64)
	off := int((64 - uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%64) % 64)
	return raw[off : off+n : off+n]
}

// has80 reports whether any byte of v is 0x80 (int8 −128).
func has80(v uint32) bool {
	x := v ^ 0x80808080
	return (x-0x01010101)&^x&0x80808080 != 0
}

// PackedS8 is an int8 weight matrix W [n×k] (n outputs, k inputs, row-major
// as in PyTorch) packed for the INT8 GEMM: ⌈n/16⌉ panels of 16 rows of W,
// each [⌈k/4⌉][16][4 bytes] (see the layout notes above). Every int8 value,
// −128 included, is supported. It is immutable after PackS8 and safe for
// concurrent use.
type PackedS8 struct {
	n, k, k4 int
	data     []byte
	corr     []int32 // −128·Σ_p W[j][p] per output (padded), for offset-binary activations
}

// PackS8 copies W (n×k int8, row-major, len(w) ≥ n·k) into a new PackedS8.
func PackS8(w []int8, n, k int) *PackedS8 {
	if n < 0 || k < 0 || len(w) < n*k {
		panic(fmt.Sprintf("kernels.PackS8: len(w)=%d < n·k (n=%d k=%d)", len(w), n, k))
	}
	k4 := (k + 3) / 4
	np := (n + s8NR - 1) / s8NR
	p := &PackedS8{n: n, k: k, k4: k4, data: alignedBytes(np * k4 * s8PanelB), corr: make([]int32, np*s8NR)}
	if n == 0 || k == 0 {
		return p
	}
	b := bytesOf(w)
	job := &s8PackJob{b: b, ldb: k, n: n, k: k, dst: p.data, corr: p.corr}
	parallelDynamic(np, workersFor(float64(n*k)*8, np), job)
	return p
}

// N returns the number of outputs (rows of W).
func (p *PackedS8) N() int { return p.n }

// K returns the number of inputs (columns of W).
func (p *PackedS8) K() int { return p.k }

// at returns W[j][q] from the packed panels.
func (p *PackedS8) at(j, q int) int32 {
	return int32(int8(p.data[(j/s8NR)*p.k4*s8PanelB+(q/4)*s8PanelB+(j%s8NR)*4+q%4]))
}

// s8PackJob packs B panels (one task per panel of 16 outputs).
type s8PackJob struct {
	b      []byte
	ldb    int
	n, k   int
	dst    []byte
	corr   []int32 // column corrections, indexed like dst's columns
	offset int     // first panel's index in dst
}

func (t *s8PackJob) run(jp int) {
	k4 := (t.k + 3) / 4
	j0 := jp * s8NR
	dst := t.dst[(jp-t.offset)*k4*s8PanelB : (jp-t.offset+1)*k4*s8PanelB]
	cols := min(s8NR, t.n-j0)
	packBS8(dst, t.b[j0*t.ldb:], t.ldb, cols, t.k)
	colCorrS8(t.corr[(jp-t.offset)*s8NR:(jp-t.offset+1)*s8NR], t.b[j0*t.ldb:], t.ldb, cols, t.k)
}

// colCorrS8 writes −128·Σ_p b[j][p] for the cols rows of b (row stride
// ldb, columns [0,k)) to corr[j], and 0 to the padding entries up to
// len(corr), in wrapping int32 arithmetic like the sums it corrects.
func colCorrS8(corr []int32, b []byte, ldb, cols, k int) {
	for j := range corr {
		var s int32
		if j < cols {
			for _, v := range b[j*ldb : j*ldb+k] {
				s += int32(int8(v))
			}
		}
		corr[j] = -s << 7
	}
}

// packAPanelS8 packs one A micro-panel for the kernel set: offset binary
// for the unsignedA sets (where −128 needs no clamping: it becomes 0),
// signed for the others and the pure-Go kernel (set nil), with −128
// clamped to −127 and reported so that the caller
// can correct (negPositions).
func packAPanelS8(set *s8Set, dst, a []byte, lda, rows, k int) (neg bool) {
	if set != nil && set.unsignedA {
		packAS8Offset(dst, a, lda, rows, k)
		return false
	}
	if packAS8(dst, a, lda, rows, k) {
		clampAS8(dst)
		return true
	}
	return false
}

// packAS8Offset is packAS8 for the unsignedA kernels: it stores the
// offset-binary a+128 (XOR 0x80 flips the sign bit: −128…127 → 0…255),
// padding included (the padded B columns are zero).
func packAS8Offset(dst, a []byte, lda, rows, k int) {
	k4 := (k + 3) / 4
	kf := k / 4
	dst = dst[:k4*rows*4]
	// Row by row: sequential reads, four steps (two 8-byte loads) at a
	// time, each dword stored rows·4 bytes after the previous one. The
	// bounds are checked once here.
	if kf > 0 {
		_ = a[(rows-1)*lda+4*kf-1]
		_ = dst[kf*rows*4-1]
		d := unsafe.Pointer(unsafe.SliceData(dst))
		src := unsafe.Pointer(unsafe.SliceData(a))
		stride := uintptr(rows * 4)
		for r := 0; r < rows; r++ {
			sp, dp := unsafe.Add(src, r*lda), unsafe.Add(d, 4*r)
			q := 0
			for ; q+4 <= kf; q += 4 {
				v := *(*uint64)(unsafe.Add(sp, 4*q)) ^ 0x8080808080808080
				w := *(*uint64)(unsafe.Add(sp, 4*q+8)) ^ 0x8080808080808080
				*(*uint32)(dp) = uint32(v)
				*(*uint32)(unsafe.Add(dp, stride)) = uint32(v >> 32)
				*(*uint32)(unsafe.Add(dp, 2*stride)) = uint32(w)
				*(*uint32)(unsafe.Add(dp, 3*stride)) = uint32(w >> 32)
				dp = unsafe.Add(dp, 4*stride)
			}
			for ; q < kf; q++ {
				*(*uint32)(dp) = *(*uint32)(unsafe.Add(sp, 4*q)) ^ 0x80808080
				dp = unsafe.Add(dp, stride)
			}
		}
	}
	for r := 0; r < rows; r++ {
		src := a[r*lda : r*lda+k]
		if kf < k4 {
			var t [4]byte
			copy(t[:], src[4*kf:])
			binary.LittleEndian.PutUint32(dst[(kf*rows+r)*4:], binary.LittleEndian.Uint32(t[:])^0x80808080)
		}
	}
}

// packBS8 packs cols (≤ 16) rows of b (row stride ldb), columns [0,k), into
// one panel dst[(q/4)·64 + j·4 + q%4], zero padding k up to a multiple of 4
// and the columns cols..15.
func packBS8(dst, b []byte, ldb, cols, k int) {
	k4 := (k + 3) / 4
	kf := k / 4
	dst = dst[:k4*s8PanelB]
	// 16 steps (one 64-byte line of each source row) at a time
	for q0 := 0; q0 < kf; q0 += 16 {
		q1 := min(q0+16, kf)
		for j := 0; j < cols; j++ {
			src := b[j*ldb+4*q0 : j*ldb+4*q1]
			for q := q0; q < q1; q++ {
				binary.LittleEndian.PutUint32(dst[q*s8PanelB+4*j:], binary.LittleEndian.Uint32(src[4*(q-q0):]))
			}
		}
	}
	if kf < k4 { // the last, partial step
		for j := 0; j < cols; j++ {
			var t [4]byte
			copy(t[:], b[j*ldb+4*kf:j*ldb+k])
			copy(dst[kf*s8PanelB+4*j:], t[:])
		}
	}
	if cols < s8NR {
		for q := 0; q < k4; q++ {
			clear(dst[q*s8PanelB+4*cols : (q+1)*s8PanelB])
		}
	}
}

// packAS8 packs rows (≤ 5) rows of a (row stride lda), columns [0,k), into a
// micro-panel dst[(q·rows + r)·4 + q%4…], zero padding k to a multiple of 4.
// It reports whether any byte was −128; if so they are left as they are and
// the caller clamps them (clampAS8).
func packAS8(dst, a []byte, lda, rows, k int) (neg bool) {
	k4 := (k + 3) / 4
	kf := k / 4
	dst = dst[:k4*rows*4]
	var acc uint32
	for r := 0; r < rows; r++ {
		src := a[r*lda : r*lda+k]
		for q := 0; q < kf; q++ {
			v := binary.LittleEndian.Uint32(src[4*q:])
			if has80(v) {
				acc = 1
			}
			binary.LittleEndian.PutUint32(dst[(q*rows+r)*4:], v)
		}
		if kf < k4 {
			var t [4]byte
			copy(t[:], src[4*kf:])
			v := binary.LittleEndian.Uint32(t[:])
			if has80(v) {
				acc = 1
			}
			binary.LittleEndian.PutUint32(dst[(kf*rows+r)*4:], v)
		}
	}
	return acc != 0
}

// clampAS8 replaces −128 by −127 in packed or copied activations.
func clampAS8(x []byte) {
	for i, v := range x {
		if v == 0x80 {
			x[i] = 0x81
		}
	}
}

// negPositions returns, for each of the m rows of a (row stride lda, k
// columns), the columns holding −128 (nil rows where there are none).
func negPositions(a []byte, lda, m, k int) [][]int32 {
	corr := make([][]int32, m)
	for i := 0; i < m; i++ {
		for q, v := range a[i*lda : i*lda+k] {
			if v == 0x80 {
				corr[i] = append(corr[i], int32(q))
			}
		}
	}
	return corr
}

// s8Out is where and how the int32 results go.
type s8Out struct {
	c32                  []int32   // int32 output (GemmS8), or nil
	cf                   []float32 // float output (scaled variants)
	ldc                  int
	aScale, bScale, bias []float32
}

// s8Finish completes rows×cols results of the output block at (i0, j0): buf
// holds the int32 sums (row stride ldbuf) of the clamped activations; corr
// (if not nil, indexed by i0+r) lists the clamped positions and bAt reads
// the weight W[j][q] needed to correct them. Then the sums are stored or
// scaled.
func (o *s8Out) finish(asm bool, i0, rows, j0, cols int, buf []int32, ldbuf int, corr [][]int32, bAt func(j, q int) int32) {
	if corr != nil {
		for r := 0; r < rows; r++ {
			list := corr[i0+r]
			if len(list) == 0 {
				continue
			}
			row := buf[r*ldbuf : r*ldbuf+cols]
			for jj := range row {
				var s int32
				for _, q := range list {
					s += bAt(j0+jj, int(q))
				}
				row[jj] -= s // a = −127 + (−1): the missing −1·b
			}
		}
	}
	for r := 0; r < rows; r++ {
		i := i0 + r
		src := buf[r*ldbuf : r*ldbuf+cols]
		if o.c32 != nil {
			copy(o.c32[i*o.ldc+j0:i*o.ldc+j0+cols], src)
			continue
		}
		var bias []float32
		if o.bias != nil {
			bias = o.bias[j0 : j0+cols]
		}
		s8EpilogueRow(asm, src, o.cf[i*o.ldc+j0:i*o.ldc+j0+cols], o.aScale[i], o.bScale[j0:j0+cols], bias)
	}
}

// s8EpilogueRow computes c[j] = float32(acc[j])·(as·bs[j]) (+ bias[j]), each
// operation rounded once in this order, for j < len(acc).
func s8EpilogueRow(asm bool, acc []int32, c []float32, as float32, bs, bias []float32) {
	n := len(acc)
	c, bs = c[:n], bs[:n]
	j := 0
	if asm && n >= 8 {
		j = n &^ 7
		var bp *float32
		if bias != nil {
			bias = bias[:n]
			bp = &bias[0]
		}
		s8Epilogue(j, &acc[0], &c[0], as, &bs[0], bp)
	}
	for ; j < n; j++ {
		v := float32(float32(acc[j]) * float32(as*bs[j]))
		if bias != nil {
			v += bias[j]
		}
		c[j] = v
	}
}

// GemmS8 computes C = A·Bᵀ exactly in int32 for int8 matrices: A is m×k
// (row stride lda), B is n×k (row stride ldb; the [out×in] weight layout),
// C is m×n (row stride ldc) and is overwritten. Every int8 input is allowed
// (see the notes at the top of int8.go); sums that do not fit int32 wrap.
// Slices need only reach the last element used. GemmS8 is safe for
// concurrent use and splits large products over up to GOMAXPROCS
// goroutines. With more than a few rows it packs B on every call; a weight
// used repeatedly should be packed once with PackS8.
func GemmS8(m, n, k int, a []int8, lda int, b []int8, ldb int, c []int32, ldc int) {
	checkS8("GemmS8", m, n, k, a, lda, b, ldb, len(c), ldc)
	if m == 0 || n == 0 {
		return
	}
	gemmS8(m, n, k, bytesOf(a), lda, bytesOf(b), ldb, nil, s8Out{c32: c, ldc: ldc})
}

// GemmS8Scaled computes, for int8 A [m×k] and B [n×k],
//
//	c[i][j] = float32(Σ_p a[i][p]·b[j][p]) · (aScale[i]·bScale[j]) + bias[j]
//
// the W8A8 linear layer with per-token activation scales and per-channel
// weight scales: the sum is exact in int32 and the scaling is fused into the
// store (each float operation rounded once, in the order written). bias may
// be nil. aScale needs m entries, bScale and bias n.
func GemmS8Scaled(m, n, k int, a []int8, lda int, aScale []float32, b []int8, ldb int, bScale []float32, bias []float32, c []float32, ldc int) {
	checkS8("GemmS8Scaled", m, n, k, a, lda, b, ldb, len(c), ldc)
	checkScales("GemmS8Scaled", m, n, aScale, bScale, bias)
	if m == 0 || n == 0 {
		return
	}
	gemmS8(m, n, k, bytesOf(a), lda, bytesOf(b), ldb, nil, s8Out{cf: c, ldc: ldc, aScale: aScale, bScale: bScale, bias: bias})
}

// MatMul computes C[m×n] = A[m×k]·Wᵀ exactly in int32, A and C dense
// row-major; C is overwritten.
func (p *PackedS8) MatMul(c []int32, a []int8, m int) {
	p.check("MatMul", m, len(a), len(c))
	if m == 0 || p.n == 0 {
		return
	}
	gemmS8(m, p.n, p.k, bytesOf(a), p.k, nil, 0, p, s8Out{c32: c, ldc: p.n})
}

// MatMulScaled computes c[i][j] = float32(Σ_p a[i][p]·W[j][p]) ·
// (aScale[i]·bScale[j]) + bias[j] for A [m×k] dense row-major and C [m×n]
// (see GemmS8Scaled). bias may be nil.
func (p *PackedS8) MatMulScaled(c []float32, a []int8, aScale []float32, m int, bScale, bias []float32) {
	p.check("MatMulScaled", m, len(a), len(c))
	checkScales("PackedS8.MatMulScaled", m, p.n, aScale, bScale, bias)
	if m == 0 || p.n == 0 {
		return
	}
	gemmS8(m, p.n, p.k, bytesOf(a), p.k, nil, 0, p, s8Out{cf: c, ldc: p.n, aScale: aScale, bScale: bScale, bias: bias})
}

func (p *PackedS8) check(what string, m, la, lc int) {
	if m < 0 {
		panic("kernels.PackedS8." + what + ": negative m")
	}
	if la < m*p.k || lc < m*p.n {
		panic(fmt.Sprintf("kernels.PackedS8.%s: len(a)=%d, len(c)=%d too short for m=%d n=%d k=%d", what, la, lc, m, p.n, p.k))
	}
}

func checkS8(what string, m, n, k int, a []int8, lda int, b []int8, ldb int, lc, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels.%s: negative dimension m=%d n=%d k=%d", what, m, n, k))
	}
	if m == 0 || n == 0 {
		return
	}
	if ldc < n || lc < (m-1)*ldc+n {
		panic(fmt.Sprintf("kernels.%s: C too short or ldc < n (len=%d ldc=%d m=%d n=%d)", what, lc, ldc, m, n))
	}
	if k == 0 {
		return
	}
	if lda < k || len(a) < (m-1)*lda+k {
		panic(fmt.Sprintf("kernels.%s: A too short or lda < k (len=%d lda=%d m=%d k=%d)", what, len(a), lda, m, k))
	}
	if ldb < k || len(b) < (n-1)*ldb+k {
		panic(fmt.Sprintf("kernels.%s: B too short or ldb < k (len=%d ldb=%d n=%d k=%d)", what, len(b), ldb, n, k))
	}
}

func checkScales(what string, m, n int, aScale, bScale, bias []float32) {
	if len(aScale) < m || len(bScale) < n || (bias != nil && len(bias) < n) {
		panic(fmt.Sprintf("kernels.%s: scales too short (len(aScale)=%d, len(bScale)=%d, len(bias)=%d; m=%d n=%d)",
			what, len(aScale), len(bScale), len(bias), m, n))
	}
}

// gemmS8 is the driver behind the INT8 entry points: B is either unpacked
// (b, ldb) or prepacked (pb).
func gemmS8(m, n, k int, a []byte, lda int, b []byte, ldb int, pb *PackedS8, out s8Out) {
	set := s8Active()
	if k == 0 {
		zero := make([]int32, n)
		for i := 0; i < m; i++ {
			out.finish(set != nil, i, 1, 0, n, zero, n, nil, nil)
		}
		return
	}
	if pb == nil && m <= s8SmallM {
		gemmS8Small(set, m, n, k, a, lda, b, ldb, out)
		return
	}
	k4 := (k + 3) / 4
	g := s8CtxPool.Get().(*s8Ctx)
	*g = s8Ctx{set: set, k: k, k4: k4, lda: lda}
	mch := max(s8MRows, s8ABudget/(k4*4)/s8MRows*s8MRows)
	abuf, ap := getBytes(min(m, mch) * k4 * 4)
	var bbuf, sbuf *floatBuf
	var bp []byte
	var bcorr []int32
	nch := n
	if pb == nil {
		nch = max(s8NR, s8BBudget/(k4*s8PanelB)*s8NR)
		bbuf, bp = getBytes(roundUp(min(n, nch), s8NR) * k4 * 4)
		sbuf, bcorr = getInt32s(roundUp(min(n, nch), s8NR))
	}
	for i0 := 0; i0 < m; i0 += mch {
		mm := min(mch, m-i0)
		for j0 := 0; j0 < n; j0 += nch {
			nn := min(nch, n-j0)
			g.m, g.n = mm, nn
			g.a = a[i0*lda:]
			g.ap = ap[:mm*k4*4]
			g.packA = j0 == 0
			if pb == nil {
				g.b, g.ldb = b[j0*ldb:], ldb
				g.bp = bp[:roundUp(nn, s8NR)*k4*4]
				g.bcorr = bcorr[:roundUp(nn, s8NR)]
				g.packB = true
			} else {
				g.bp = pb.data
				g.bcorr = pb.corr
				g.packB = false
			}
			g.out = out
			if out.c32 != nil {
				g.out.c32 = out.c32[i0*out.ldc+j0:]
			} else {
				g.out.cf = out.cf[i0*out.ldc+j0:]
				g.out.aScale = out.aScale[i0:]
				g.out.bScale = out.bScale[j0:]
				if out.bias != nil {
					g.out.bias = out.bias[j0:]
				}
			}
			g.execute()
		}
	}
	putBuf(abuf)
	if bbuf != nil {
		putBuf(bbuf)
		putBuf(sbuf)
	}
	*g = s8Ctx{}
	s8CtxPool.Put(g)
}

// s8Ctx is one blocked INT8 product on packed operands: a packing phase and
// a compute phase run on parallelDynamic (the FP32 gemmCtx's structure).
type s8Ctx struct {
	set     *s8Set
	compute bool

	m, n, k, k4 int
	a           []byte
	lda         int
	b           []byte // unpacked B (packB)
	ldb         int
	ap, bp      []byte
	bcorr       []int32 // column corrections of the packed B (unsignedA sets)
	packA       bool
	packB       bool
	npA, npB    int
	nPackA      int
	neg         atomic.Bool // some activation was −128 (clamped in ap)
	corr        [][]int32   // clamped positions per row, when neg
	out         s8Out

	kc4, mc, nc    int
	tilesM, tilesN int
}

var s8CtxPool = sync.Pool{New: func() any { return new(s8Ctx) }}

func (g *s8Ctx) execute() {
	g.npA = (g.m + s8MRows - 1) / s8MRows
	g.npB = (g.n + s8NR - 1) / s8NR
	g.nPackA = 0
	if g.packA {
		g.nPackA = (g.npA + packGroupA - 1) / packGroupA
		g.neg.Store(false)
		g.corr = nil
	}
	nt := g.nPackA
	if g.packB {
		nt += g.npB
	}
	if nt > 0 {
		g.compute = false
		work := float64(g.m*g.k) * 4
		if g.packB {
			work += float64(g.n*g.k) * 4
		}
		parallelDynamic(nt, workersFor(work, nt), g)
	}
	if g.packA && g.neg.Load() {
		g.corr = negPositions(g.a, g.lda, g.m, g.k)
	}
	g.plan()
	g.compute = true
	flops := 2 * float64(g.m) * float64(g.n) * float64(g.k)
	parallelDynamic(g.tilesM*g.tilesN, workersFor(flops, g.tilesM*g.tilesN), g)
}

func (g *s8Ctx) plan() {
	m, k4 := g.m, g.k4
	if m <= s8MRows {
		g.kc4 = k4
	} else {
		nkb := (k4 + s8KcMax - 1) / s8KcMax
		g.kc4 = (k4 + nkb - 1) / nkb
	}
	nmb := (m + s8McMax - 1) / s8McMax
	g.mc = roundUp((m+nmb-1)/nmb, s8MRows)
	g.tilesM = (m + g.mc - 1) / g.mc
	w := workersFor(2*float64(m)*float64(g.n)*float64(g.k), 1<<30)
	tilesN := (g.npB*s8NR + s8NcMax - 1) / s8NcMax
	if want := (4*w + g.tilesM - 1) / g.tilesM; w > 1 && tilesN < want {
		tilesN = want
	}
	tilesN = min(tilesN, g.npB)
	pp := (g.npB + tilesN - 1) / tilesN
	g.nc = pp * s8NR
	g.tilesN = (g.npB + pp - 1) / pp
}

func (g *s8Ctx) run(i int) {
	if g.compute {
		g.tile(i)
		return
	}
	if i < g.nPackA {
		p0 := i * packGroupA
		p1 := min(p0+packGroupA, g.npA)
		for ip := p0; ip < p1; ip++ {
			i0 := ip * s8MRows
			rows := min(s8MRows, g.m-i0)
			dst := g.ap[i0*g.k4*4 : (i0+rows)*g.k4*4]
			if packAPanelS8(g.set, dst, g.a[i0*g.lda:], g.lda, rows, g.k) {
				g.neg.Store(true)
			}
		}
		return
	}
	jp := i - g.nPackA
	j0 := jp * s8NR
	cols := min(s8NR, g.n-j0)
	packBS8(g.bp[jp*g.k4*s8PanelB:(jp+1)*g.k4*s8PanelB], g.b[j0*g.ldb:], g.ldb, cols, g.k)
	colCorrS8(g.bcorr[jp*s8NR:(jp+1)*s8NR], g.b[j0*g.ldb:], g.ldb, cols, g.k)
}

// bAt reads W[j][q] from the packed panels of this product.
func (g *s8Ctx) bAt(j, q int) int32 {
	return int32(int8(g.bp[(j/s8NR)*g.k4*s8PanelB+(q/4)*s8PanelB+(j%s8NR)*4+q%4]))
}

// tile computes one mc×nc tile into an int32 scratch tile: for each k block,
// for each B micro-panel (in L1), down the A micro-panels of the tile (in
// L2); then corrects, scales and stores it.
func (g *s8Ctx) tile(t int) {
	tm, tn := t/g.tilesN, t%g.tilesN
	i0 := tm * g.mc
	i1 := min(g.m, i0+g.mc)
	rows := i1 - i0
	pp := g.nc / s8NR
	jp0 := tn * pp
	jp1 := min(g.npB, jp0+pp)
	width := (jp1 - jp0) * s8NR
	fb, buf := getInt32s(rows * width)
	k4 := g.k4
	nfull := rows / s8MRows
	rem := rows - nfull*s8MRows
	irem := i0 + nfull*s8MRows
	ap, bp := g.ap, g.bp
	for pc := 0; pc < k4; pc += g.kc4 {
		kc := min(g.kc4, k4-pc)
		acc := 0
		if pc > 0 {
			acc = 1
		}
		for jp := jp0; jp < jp1; jp++ {
			bpan := bp[jp*k4*s8PanelB+pc*s8PanelB : jp*k4*s8PanelB+(pc+kc)*s8PanelB]
			ct := buf[(jp-jp0)*s8NR:]
			var cp *int32 // column corrections of this panel (and the next)
			if g.set != nil && g.set.unsignedA {
				cp = &g.bcorr[jp*s8NR]
				if jp+1 < jp1 {
					_ = g.bcorr[(jp+2)*s8NR-1]
				}
			}
			if g.set != nil && g.set.tile2 != nil && jp+1 < jp1 {
				// Two panels: the second starts k4 panel steps after the first.
				_ = bp[(jp+1)*k4*s8PanelB+(pc+kc)*s8PanelB-1]
				if nfull > 0 {
					_ = ap[(i0+nfull*s8MRows)*k4*4-1]
					_ = ct[(nfull*s8MRows-1)*width+2*s8NR-1]
					g.set.tile2(s8MRows, kc, &ap[i0*k4*4+pc*s8MRows*4], &bpan[0], &ct[0], width, acc, nfull, s8MRows*k4*4, k4*s8PanelB, cp)
				}
				if rem > 0 {
					_ = ap[irem*k4*4+(pc+kc)*rem*4-1]
					_ = ct[(rows-1)*width+2*s8NR-1]
					g.set.tile2(rem, kc, &ap[irem*k4*4+pc*rem*4], &bpan[0], &ct[(irem-i0)*width], width, acc, 1, 0, k4*s8PanelB, cp)
				}
				jp++
				continue
			}
			if g.set == nil {
				for i := i0; i < i1; i += s8MRows {
					r := min(s8MRows, i1-i)
					s8KernelGo(r, kc, ap[i*k4*4+pc*r*4:], bpan, ct[(i-i0)*width:], width, acc != 0)
				}
				continue
			}
			if nfull > 0 {
				_ = ap[(i0+nfull*s8MRows)*k4*4-1]
				_ = ct[(nfull*s8MRows-1)*width+s8NR-1]
				g.set.tile(s8MRows, kc, &ap[i0*k4*4+pc*s8MRows*4], &bpan[0], &ct[0], width, acc, nfull, s8MRows*k4*4, cp)
			}
			if rem > 0 {
				_ = ap[irem*k4*4+(pc+kc)*rem*4-1]
				_ = ct[(rows-1)*width+s8NR-1]
				g.set.tile(rem, kc, &ap[irem*k4*4+pc*rem*4], &bpan[0], &ct[(irem-i0)*width], width, acc, 1, 0, cp)
			}
		}
	}
	var bAt func(j, q int) int32
	if g.corr != nil {
		bAt = g.bAt
	}
	g.out.finish(g.set != nil, i0, rows, jp0*s8NR, min(width, g.n-jp0*s8NR), buf, width, g.corr, bAt)
	putBuf(fb)
}

// s8KernelGo is the pure-Go twin of the microkernel: C[rows×16] (+)= A·B for
// a packed A micro-panel a ([k4][rows][4]) and B micro-panel b ([k4][16][4]),
// in wrapping int32 arithmetic like the assembly.
func s8KernelGo(rows, k4 int, a, b []byte, c []int32, ldc int, accum bool) {
	a = a[:k4*rows*4]
	b = b[:k4*s8PanelB]
	for r := 0; r < rows; r++ {
		var acc [s8NR]int32
		for q := 0; q < k4; q++ {
			aa := (*[4]byte)(a[(q*rows+r)*4:])
			a0, a1, a2, a3 := int32(int8(aa[0])), int32(int8(aa[1])), int32(int8(aa[2])), int32(int8(aa[3]))
			bb := (*[s8PanelB]byte)(b[q*s8PanelB:])
			for j := range acc {
				acc[j] += a0*int32(int8(bb[4*j])) + a1*int32(int8(bb[4*j+1])) +
					a2*int32(int8(bb[4*j+2])) + a3*int32(int8(bb[4*j+3]))
			}
		}
		row := c[r*ldc : r*ldc+s8NR]
		if accum {
			for j, v := range acc {
				row[j] += v
			}
		} else {
			copy(row, acc[:])
		}
	}
}

// dotS8Go returns Σ a[p]·b[p] in wrapping int32 arithmetic.
func dotS8Go(a, b []byte) int32 {
	b = b[:len(a)]
	var s0, s1 int32
	p := 0
	for ; p+2 <= len(a); p += 2 {
		s0 += int32(int8(a[p])) * int32(int8(b[p]))
		s1 += int32(int8(a[p+1])) * int32(int8(b[p+1]))
	}
	if p < len(a) {
		s0 += int32(int8(a[p])) * int32(int8(b[p]))
	}
	return s0 + s1
}

// s8Small is GemmS8 with few rows: dot products of the rows of A with the
// unpacked rows of B, each task owning a block of output columns, so B
// streams from memory once at one byte per weight.
type s8Small struct {
	set     *s8Set
	m, n, k int
	a       []byte // A, clamped to [−127, 127] if it held −128
	lda     int
	b       []byte
	ldb     int
	corr    [][]int32
	out     s8Out
	block   int
}

func gemmS8Small(set *s8Set, m, n, k int, a []byte, lda int, b []byte, ldb int, out s8Out) {
	g := &s8Small{set: set, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, out: out}
	var abuf *floatBuf
	for i := 0; i < m; i++ {
		if bytesIndex80(a[i*lda:i*lda+k]) >= 0 {
			// Clamp a copy and remember what to correct.
			g.corr = negPositions(a, lda, m, k)
			abuf, g.a = getBytes(m * k)
			for r := 0; r < m; r++ {
				copy(g.a[r*k:(r+1)*k], a[r*lda:r*lda+k])
			}
			clampAS8(g.a)
			g.lda = k
			break
		}
	}
	flops := 2 * float64(m) * float64(n) * float64(k)
	w := workersFor(flops, (n+s8NR-1)/s8NR)
	g.block = n
	if w > 1 {
		g.block = roundUp((n+4*w-1)/(4*w), s8NR)
	}
	parallelDynamic((n+g.block-1)/g.block, w, g)
	if abuf != nil {
		putBuf(abuf)
	}
}

// bytesIndex80 returns the index of the first −128 in x, or −1.
func bytesIndex80(x []byte) int {
	for i, v := range x {
		if v == 0x80 {
			return i
		}
	}
	return -1
}

func (g *s8Small) bAt(j, q int) int32 { return int32(int8(g.b[j*g.ldb+q])) }

func (g *s8Small) run(t int) {
	j0 := t * g.block
	j1 := min(g.n, j0+g.block)
	w := j1 - j0
	m, k := g.m, g.k
	fb, buf := getInt32s(m * w)
	k32 := 0
	if g.set != nil {
		k32 = k / 32
	}
	for jb := j0; jb < j1; jb += 8 {
		je := min(jb+8, j1)
		for i := 0; i < m; i++ {
			arow := g.a[i*g.lda : i*g.lda+k]
			out := buf[i*w+jb-j0 : i*w+je-j0]
			if k32 > 0 {
				_ = g.b[(je-1)*g.ldb+k-1]
				g.set.dotRows(k32, &arow[0], &g.b[jb*g.ldb], g.ldb, je-jb, &out[0])
			} else {
				clear(out)
			}
			if p0 := 32 * k32; p0 < k {
				for j := jb; j < je; j++ {
					out[j-jb] += dotS8Go(arow[p0:], g.b[j*g.ldb+p0:j*g.ldb+k])
				}
			}
		}
	}
	var bAt func(j, q int) int32
	if g.corr != nil {
		bAt = g.bAt
	}
	g.out.finish(g.set != nil, 0, m, j0, w, buf, w, g.corr, bAt)
	putBuf(fb)
}

// QuantizeRowsS8 quantizes x [rows×cols] to int8 codes with one symmetric
// scale per row (per-token dynamic quantization, quant's int8-sym-token):
//
//	scale[r] = absmax_r/127 (computed in float64, rounded to float32,
//	           floored at 2^−126 so that all-zero rows stay finite)
//	q        = clamp(round-half-even(x/scale[r]), −127, 127)   x/scale in float32
//
// so that float32(q)·scale[r] equals llmq/quant's FakeQuantize bit for bit.
// As there, the absmax is taken over finite values only; NaN maps to 0 and
// ±Inf to ±127. dst needs rows·cols entries, scale rows.
func QuantizeRowsS8(dst []int8, scale []float32, x []float32, rows, cols int) {
	if rows < 0 || cols < 0 || len(x) < rows*cols || len(dst) < rows*cols || len(scale) < rows {
		panic(fmt.Sprintf("kernels.QuantizeRowsS8: bad sizes (rows=%d cols=%d len(x)=%d len(dst)=%d len(scale)=%d)",
			rows, cols, len(x), len(dst), len(scale)))
	}
	asm := asmOn.Load()
	f := func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			scale[r] = quantizeRowS8(asm, bytesOf(dst[r*cols:(r+1)*cols]), x[r*cols:(r+1)*cols])
		}
	}
	if rows < 2 || rows*cols < 1<<16 {
		f(0, rows)
		return
	}
	ParallelFor(rows, f)
}

// s8MinScale is quant.MinScale, the scale floor for all-zero rows.
const s8MinScale float32 = 0x1p-126

// s8Scale is quant's symmetric int8 scale of a row with the given absmax:
// 2·absmax/254 in float64, rounded to float32, floored at 2^−126.
func s8Scale(absmax float32) float32 {
	raw := 2 * float64(absmax) / 254
	if !(raw >= float64(s8MinScale)) {
		return s8MinScale
	}
	if f := float32(raw); f >= s8MinScale {
		return f
	}
	return s8MinScale
}

// quantS8 is quant.QuantizeInt(x, s, 0, −127, 127).
func quantS8(x, s float32) byte {
	r := math.RoundToEven(float64(x / s))
	switch {
	case r >= 127:
		return 127
	case r <= -127:
		return 0x81
	case r == r:
		return byte(int8(r))
	}
	return 0 // NaN
}

func quantizeRowS8(asm bool, q []byte, x []float32) float32 {
	s := s8Scale(absMaxS8(asm, x))
	quantizeWithScaleS8(asm, q, x, s)
	return s
}

// absMaxS8 returns the largest |x_i| over the finite elements.
func absMaxS8(asm bool, x []float32) float32 {
	if asm && len(x) >= 8 {
		if am := s8AbsMax(len(x), &x[0]); !math.IsInf(float64(am), 0) { // NaN skipped, ±Inf included
			return am
		}
	}
	return absMaxFinite(x)
}

// quantizeWithScaleS8 writes the codes of x on the symmetric int8 grid of
// scale s to q (quantS8 element by element; the assembly saturates ±Inf
// and values beyond the grid like quantS8).
func quantizeWithScaleS8(asm bool, q []byte, x []float32, s float32) {
	n := len(x)
	i := 0
	if asm && n >= 32 {
		i = n &^ 31
		s8Quant(i/32, &x[0], &q[0], s)
	}
	for ; i < n; i++ {
		q[i] = quantS8(x[i], s)
	}
}

// DequantizeRowsS8 dequantizes rows×cols int8 codes with one scale per row:
// dst[r·ldd + i] = float32(src[r·lds + i])·scales[r·sstride] — an INT8 KV
// cache's keys or values of one head, for instance (a row per position,
// the head's scale sstride apart). Strides are in elements.
func DequantizeRowsS8(dst []float32, ldd int, src []int8, lds int, scales []float32, sstride, rows, cols int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	if ldd < cols || lds < cols || len(dst) < (rows-1)*ldd+cols || len(src) < (rows-1)*lds+cols || len(scales) < (rows-1)*sstride+1 {
		panic(fmt.Sprintf("kernels.DequantizeRowsS8: bad sizes (rows=%d cols=%d ldd=%d lds=%d sstride=%d len(dst)=%d len(src)=%d len(scales)=%d)",
			rows, cols, ldd, lds, sstride, len(dst), len(src), len(scales)))
	}
	c32 := 0
	if asmOn.Load() {
		c32 = cols / 32
		if c32 > 0 {
			s8Dequant(rows, c32, &bytesOf(src)[0], lds, &dst[0], ldd, &scales[0], sstride)
		}
	}
	for r := 0; r < rows; r++ {
		s := scales[r*sstride]
		d, q := dst[r*ldd:r*ldd+cols], src[r*lds:r*lds+cols]
		for i := 32 * c32; i < cols; i++ {
			d[i] = float32(q[i]) * s
		}
	}
}

// absMaxFinite returns the largest |x_i| over the finite elements (0 if none).
func absMaxFinite(x []float32) float32 {
	var m float32
	for _, v := range x {
		if v-v != 0 { // NaN or ±Inf
			continue
		}
		m = max(m, float32(math.Abs(float64(v))))
	}
	return m
}
