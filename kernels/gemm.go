package kernels

import (
	"fmt"
	"sync"
	"unsafe"
)

// Register tile of the microkernel: mr rows of C by nr columns.
const (
	mr = 6
	nr = 16
)

// Blocking parameters (see doc.go).
var (
	kcMax = 256 // depth of one rank-kc update: B micro-panel kc×16×4 B = 16 KiB in L1
	mcMax = 144 // rows of A per tile: A block mc×kc×4 B ≤ 144 KiB in L2
	ncMax = 256 // columns of C per tile

	// Packing buffers are bounded: A is packed in chunks of at most
	// aBudget floats, B (for Sgemm) in chunks of at most bBudget floats.
	aBudget = 1 << 21
	bBudget = 1 << 21

	// Sgemm with m ≤ smallM skips packing and streams B once
	// (dot products for transB, axpy otherwise).
	smallMT = 3
	smallMN = 3
)

// Sgemm computes C = A·op(B), or C += A·op(B) when accumulate is set, for
// row-major matrices with leading dimensions (row strides) lda, ldb, ldc.
// A is m×k. If transB, B is stored n×k and op(B) = Bᵀ (the y = x·Wᵀ case of a
// linear layer with W stored [out×in]); otherwise B is stored k×n. C is m×n.
// With k = 0, C is zeroed (or left unchanged when accumulating).
//
// Slices need only reach the last element used: len(a) ≥ (m-1)·lda+k and so
// on. C must not overlap A or B. Sgemm is safe for concurrent use; it splits
// large products over up to GOMAXPROCS goroutines.
func Sgemm(transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool) {
	checkDims(transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		if !accumulate {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	asm := asmOn.Load()
	if transB && m <= smallMT {
		gemv(asm, true, m, n, k, a, lda, b, ldb, c, ldc, accumulate)
		return
	}
	if !transB && m <= smallMN {
		gemv(asm, false, m, n, k, a, lda, b, ldb, c, ldc, accumulate)
		return
	}

	g := getCtx()
	g.asm = asm
	g.accumulate = accumulate
	g.ldc = ldc
	g.k = k
	mch := max(mr, aBudget/k/mr*mr)
	nch := max(nr, bBudget/k/nr*nr)
	abuf, ap := getBuf(&aPool, min(m, mch)*k)
	bbuf, bp := getBuf(&bPool, roundUp(min(n, nch), nr)*k)
	for i0 := 0; i0 < m; i0 += mch {
		mm := min(mch, m-i0)
		for j0 := 0; j0 < n; j0 += nch {
			nn := min(nch, n-j0)
			g.m, g.n = mm, nn
			g.ap, g.bp = ap[:mm*k], bp[:roundUp(nn, nr)*k]
			g.a, g.lda = a[i0*lda:], lda
			if transB {
				g.b = b[j0*ldb:]
			} else {
				g.b = b[j0:]
			}
			g.ldb, g.transB = ldb, transB
			g.c = c[i0*ldc+j0:]
			g.packA = j0 == 0
			g.packB = true
			g.execute()
		}
	}
	putBuf(&aPool, abuf)
	putBuf(&bPool, bbuf)
	putCtx(g)
}

func checkDims(transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels.Sgemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	if m == 0 || n == 0 {
		return
	}
	if ldc < n || len(c) < (m-1)*ldc+n {
		panic(fmt.Sprintf("kernels.Sgemm: C too short or ldc < n (len=%d ldc=%d m=%d n=%d)", len(c), ldc, m, n))
	}
	if k == 0 {
		return
	}
	if lda < k || len(a) < (m-1)*lda+k {
		panic(fmt.Sprintf("kernels.Sgemm: A too short or lda < k (len=%d lda=%d m=%d k=%d)", len(a), lda, m, k))
	}
	if transB {
		if ldb < k || len(b) < (n-1)*ldb+k {
			panic(fmt.Sprintf("kernels.Sgemm: B too short or ldb < k (len=%d ldb=%d n=%d k=%d)", len(b), ldb, n, k))
		}
	} else if ldb < n || len(b) < (k-1)*ldb+n {
		panic(fmt.Sprintf("kernels.Sgemm: B too short or ldb < n (len=%d ldb=%d k=%d n=%d)", len(b), ldb, k, n))
	}
}

// PackedB is a weight matrix W [n×k] (n outputs, k inputs, row-major as in
// PyTorch) stored in the panel layout of the microkernel: ⌈n/16⌉ panels, each
// k×16 floats holding 16 consecutive rows of W transposed (zero padded past
// n). It is immutable after PackB and safe for concurrent use.
type PackedB struct {
	n, k int
	data []float32
}

// PackB copies W (n×k, row-major, len(w) ≥ n·k) into a new PackedB.
func PackB(w []float32, n, k int) *PackedB {
	if n < 0 || k < 0 || len(w) < n*k {
		panic(fmt.Sprintf("kernels.PackB: len(w)=%d < n·k (n=%d k=%d)", len(w), n, k))
	}
	np := (n + nr - 1) / nr
	p := &PackedB{n: n, k: k, data: alignedFloats(np * nr * k)}
	if n == 0 || k == 0 {
		return p
	}
	g := getCtx()
	g.asm = asmOn.Load()
	g.n, g.k = n, k
	g.b, g.ldb, g.transB = w, k, true
	g.bp = p.data
	g.packA, g.packB = false, true
	g.setPack()
	parallelDynamic(g.packTasks(), workersFor(float64(n*k)*16, np), g)
	putCtx(g)
	return p
}

// N returns the number of outputs (rows of W, columns of the product).
func (p *PackedB) N() int { return p.n }

// K returns the number of inputs (columns of W).
func (p *PackedB) K() int { return p.k }

// MatMulPacked computes C[m×n] = A[m×k]·Wᵀ with A and C dense row-major
// (lda = k, ldc = n); C is overwritten. It is safe for concurrent use.
func MatMulPacked(c, a []float32, m int, p *PackedB) {
	GemmPacked(m, a, p.k, p, c, p.n, false)
}

// GemmPacked computes C = A·Wᵀ (C += A·Wᵀ if accumulate) with explicit row
// strides: A is m×k (lda ≥ k), C is m×n (ldc ≥ n), W the packed n×k matrix.
func GemmPacked(m int, a []float32, lda int, p *PackedB, c []float32, ldc int, accumulate bool) {
	n, k := p.n, p.k
	if m < 0 {
		panic("kernels.GemmPacked: negative m")
	}
	if m == 0 || n == 0 {
		return
	}
	if ldc < n || len(c) < (m-1)*ldc+n {
		panic(fmt.Sprintf("kernels.GemmPacked: C too short or ldc < n (len=%d ldc=%d m=%d n=%d)", len(c), ldc, m, n))
	}
	if k == 0 {
		if !accumulate {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	if lda < k || len(a) < (m-1)*lda+k {
		panic(fmt.Sprintf("kernels.GemmPacked: A too short or lda < k (len=%d lda=%d m=%d k=%d)", len(a), lda, m, k))
	}
	g := getCtx()
	g.asm = asmOn.Load()
	g.accumulate = accumulate
	g.n, g.k, g.ldc = n, k, ldc
	g.bp = p.data
	g.packB = false
	g.lda = lda
	if m == 1 {
		// A single row already is a packed [k][1] micro-panel.
		g.m = 1
		g.ap = a[:k]
		g.a = a
		g.c = c
		g.packA = false
		g.execute()
		putCtx(g)
		return
	}
	mch := max(mr, aBudget/k/mr*mr)
	abuf, ap := getBuf(&aPool, min(m, mch)*k)
	for i0 := 0; i0 < m; i0 += mch {
		mm := min(mch, m-i0)
		g.m = mm
		g.ap = ap[:mm*k]
		g.a = a[i0*lda:]
		g.c = c[i0*ldc:]
		g.packA = true
		g.execute()
	}
	putBuf(&aPool, abuf)
	putCtx(g)
}

// gemmCtx is one blocked product C[m×n] (+)= A[m×k]·B[k×n] on packed
// operands, split into a packing phase and a compute phase that run on
// parallelDynamic. It is pooled so that the hot path does not allocate.
type gemmCtx struct {
	asm        bool
	accumulate bool
	compute    bool // phase: false = packing, true = tiles

	m, n, k int
	a       []float32
	lda     int
	b       []float32
	ldb     int
	transB  bool
	c       []float32
	ldc     int

	ap, bp       []float32 // packed A (m rows × k) and B (⌈n/nr⌉ panels × k × nr)
	packA, packB bool
	npA, npB     int // micro-panels of A and B
	nPackA       int // packing tasks for A (A tasks come first)

	kc, mc, nc     int
	tilesM, tilesN int
}

var ctxPool = sync.Pool{New: func() any { return new(gemmCtx) }}

func getCtx() *gemmCtx { return ctxPool.Get().(*gemmCtx) }

func putCtx(g *gemmCtx) {
	*g = gemmCtx{}
	ctxPool.Put(g)
}

// packGroupA is how many A micro-panels one packing task handles.
const packGroupA = 4

func (g *gemmCtx) setPack() {
	g.npA = (g.m + mr - 1) / mr
	g.npB = (g.n + nr - 1) / nr
	g.nPackA = 0
	if g.packA {
		g.nPackA = (g.npA + packGroupA - 1) / packGroupA
	}
}

func (g *gemmCtx) packTasks() int {
	t := g.nPackA
	if g.packB {
		t += g.npB
	}
	return t
}

// execute packs what needs packing, then computes all tiles.
func (g *gemmCtx) execute() {
	g.setPack()
	flops := 2 * float64(g.m) * float64(g.n) * float64(g.k)
	if nt := g.packTasks(); nt > 0 {
		g.compute = false
		// packing moves ~8 bytes per element; weigh it like ~16 flops
		work := float64(g.m*g.k) * 16
		if g.packB {
			work += float64(g.n*g.k) * 16
		}
		parallelDynamic(nt, workersFor(work, nt), g)
	}
	g.plan()
	g.compute = true
	parallelDynamic(g.tilesM*g.tilesN, workersFor(flops, g.tilesM*g.tilesN), g)
}

// plan chooses the blocking for the compute phase.
func (g *gemmCtx) plan() {
	m, k := g.m, g.k
	if m <= mr {
		g.kc = k // one A micro-panel: no reuse of B panels to protect
	} else {
		nkb := (k + kcMax - 1) / kcMax
		g.kc = (k + nkb - 1) / nkb
	}
	nmb := (m + mcMax - 1) / mcMax
	g.mc = roundUp((m+nmb-1)/nmb, mr)
	g.tilesM = (m + g.mc - 1) / g.mc

	w := workersFor(2*float64(m)*float64(g.n)*float64(k), 1<<30)
	tilesN := (g.npB*nr + ncMax - 1) / ncMax
	// enough tiles for the workers to balance
	if want := (4*w + g.tilesM - 1) / g.tilesM; w > 1 && tilesN < want {
		tilesN = want
	}
	tilesN = min(tilesN, g.npB)
	pp := (g.npB + tilesN - 1) / tilesN // B panels per tile
	g.nc = pp * nr
	g.tilesN = (g.npB + pp - 1) / pp
}

func (g *gemmCtx) run(i int) {
	if g.compute {
		g.tile(i)
		return
	}
	if i < g.nPackA {
		p0 := i * packGroupA
		p1 := min(p0+packGroupA, g.npA)
		for ip := p0; ip < p1; ip++ {
			g.packAPanel(ip)
		}
		return
	}
	g.packBPanel(i - g.nPackA)
}

func (g *gemmCtx) packAPanel(ip int) {
	i0 := ip * mr
	rows := min(mr, g.m-i0)
	k := g.k
	dst := g.ap[i0*k : i0*k+rows*k]
	src := g.a[i0*g.lda:]
	if g.asm && rows == mr && k >= 8 {
		k8 := k &^ 7
		_ = src[(mr-1)*g.lda+k-1]
		packA6(k8, &src[0], g.lda, &dst[0])
		for p := k8; p < k; p++ {
			d := dst[p*mr : p*mr+mr]
			for r := range d {
				d[r] = src[r*g.lda+p]
			}
		}
		return
	}
	packAGo(dst, src, g.lda, rows, k)
}

func (g *gemmCtx) packBPanel(jp int) {
	j0 := jp * nr
	cols := min(nr, g.n-j0)
	k := g.k
	dst := g.bp[jp*nr*k : (jp+1)*nr*k]
	if !g.transB {
		packBNGo(dst, g.b[j0:], g.ldb, cols, k)
		return
	}
	src := g.b[j0*g.ldb:]
	if g.asm && cols == nr && k >= 8 {
		k8 := k &^ 7
		_ = src[(nr-1)*g.ldb+k-1]
		packBT16(k8, &src[0], g.ldb, &dst[0])
		packBTGo(dst, src, g.ldb, cols, k8, k)
		return
	}
	packBTGo(dst, src, g.ldb, cols, 0, k)
}

// tile computes one mc×nc tile of C: for each kc-deep slice of K, for each
// B micro-panel (kept in L1), run the microkernel down the A micro-panels of
// the tile (the A block stays in L2).
func (g *gemmCtx) tile(t int) {
	tm, tn := t/g.tilesN, t%g.tilesN
	i0 := tm * g.mc
	i1 := min(g.m, i0+g.mc)
	pp := g.nc / nr
	jp0 := tn * pp
	jp1 := min(g.npB, jp0+pp)
	nfull := (i1 - i0) / mr
	rem := (i1 - i0) - nfull*mr
	irem := i0 + nfull*mr
	k, ldc := g.k, g.ldc
	ap, bp, c := g.ap, g.bp, g.c
	for pc := 0; pc < k; pc += g.kc {
		kc := min(g.kc, k-pc)
		acc := g.accumulate || pc > 0
		iacc := 0
		if acc {
			iacc = 1
		}
		for jp := jp0; jp < jp1; jp++ {
			j := jp * nr
			cols := min(nr, g.n-j)
			bpan := bp[jp*nr*k+pc*nr : jp*nr*k+(pc+kc)*nr]
			if !g.asm {
				for i := i0; i < i1; i += mr {
					rows := min(mr, i1-i)
					kernelGo(rows, cols, kc, ap[i*k+pc*rows:], bpan, c[i*ldc+j:], ldc, acc)
				}
				continue
			}
			if cols == nr {
				if nfull > 0 {
					_ = c[(i0+nfull*mr-1)*ldc+j+nr-1]
					_ = ap[(i0+nfull*mr)*k-1]
					sgemmKernel6x16N(kc, &ap[i0*k+pc*mr], &bpan[0], &c[i0*ldc+j], ldc, iacc, nfull, mr*k)
				}
				if rem > 0 {
					_ = c[(irem+rem-1)*ldc+j+nr-1]
					_ = ap[irem*k+(pc+kc)*rem-1]
					kernelAsm(rem, kc, &ap[irem*k+pc*rem], &bpan[0], &c[irem*ldc+j], ldc, iacc)
				}
				continue
			}
			// ragged right edge: compute into a scratch tile, copy cols
			var tmp [mr * nr]float32
			for i := i0; i < i1; i += mr {
				rows := min(mr, i1-i)
				_ = ap[i*k+(pc+kc)*rows-1]
				kernelAsm(rows, kc, &ap[i*k+pc*rows], &bpan[0], &tmp[0], nr, 0)
				for r := 0; r < rows; r++ {
					cr := c[(i+r)*ldc+j : (i+r)*ldc+j+cols]
					tr := tmp[r*nr : r*nr+cols]
					if acc {
						for jj, v := range tr {
							cr[jj] += v
						}
					} else {
						copy(cr, tr)
					}
				}
			}
		}
	}
}

// gemvJob handles Sgemm with very few rows of A without packing: each task
// owns a block of output columns and streams the matching part of B once.
type gemvJob struct {
	asm        bool
	transB     bool
	accumulate bool
	m, n, k    int
	a          []float32
	lda        int
	b          []float32
	ldb        int
	c          []float32
	ldc        int
	block      int // output columns per task
}

var gemvPool = sync.Pool{New: func() any { return new(gemvJob) }}

func gemv(asm, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool) {
	j := gemvPool.Get().(*gemvJob)
	*j = gemvJob{asm: asm, transB: transB, accumulate: accumulate, m: m, n: n, k: k,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc}
	flops := 2 * float64(m) * float64(n) * float64(k)
	if transB {
		j.block = 64
	} else {
		j.block = 256
	}
	w := workersFor(flops, (n+j.block-1)/j.block)
	if w > 1 {
		// spread evenly: a few tasks per worker, each a multiple of 16 columns
		per := roundUp((n+4*w-1)/(4*w), 16)
		if transB {
			j.block = min(j.block, max(per, 16))
		} else {
			j.block = min(j.block, max(per, 64))
		}
	} else {
		j.block = n
	}
	parallelDynamic((n+j.block-1)/j.block, w, j)
	*j = gemvJob{}
	gemvPool.Put(j)
}

func (g *gemvJob) run(t int) {
	j0 := t * g.block
	j1 := min(g.n, j0+g.block)
	k := g.k
	if g.transB {
		var out [4]float32
		for j := j0; j < j1; j += 4 {
			if j+4 > j1 {
				for jj := j; jj < j1; jj++ {
					w := g.b[jj*g.ldb : jj*g.ldb+k]
					for i := 0; i < g.m; i++ {
						s := dotSel(g.asm, g.a[i*g.lda:i*g.lda+k], w)
						if g.accumulate {
							g.c[i*g.ldc+jj] += s
						} else {
							g.c[i*g.ldc+jj] = s
						}
					}
				}
				break
			}
			w := g.b[j*g.ldb:]
			for i := 0; i < g.m; i++ {
				dot4(g.asm, k, g.a[i*g.lda:], w, g.ldb, &out)
				cr := g.c[i*g.ldc+j : i*g.ldc+j+4]
				if g.accumulate {
					cr[0] += out[0]
					cr[1] += out[1]
					cr[2] += out[2]
					cr[3] += out[3]
				} else {
					cr[0], cr[1], cr[2], cr[3] = out[0], out[1], out[2], out[3]
				}
			}
		}
		return
	}
	w := j1 - j0
	if !g.accumulate {
		for i := 0; i < g.m; i++ {
			clear(g.c[i*g.ldc+j0 : i*g.ldc+j1])
		}
	}
	for p := 0; p < k; p++ {
		brow := g.b[p*g.ldb+j0 : p*g.ldb+j1]
		for i := 0; i < g.m; i++ {
			crow := g.c[i*g.ldc+j0 : i*g.ldc+j0+w]
			av := g.a[i*g.lda+p]
			if g.asm && w >= 8 {
				w8 := w &^ 7
				axpyAVX2(w8, av, &brow[0], &crow[0])
				for jj := w8; jj < w; jj++ {
					crow[jj] += av * brow[jj]
				}
			} else {
				axpyGo(av, brow, crow)
			}
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// Packing buffers are pooled per operand so their sizes stay stable.
var aPool, bPool sync.Pool

type floatBuf struct{ raw []float32 }

// getBuf returns a pooled buffer and a 64-byte aligned view of n floats.
func getBuf(pool *sync.Pool, n int) (*floatBuf, []float32) {
	fb, _ := pool.Get().(*floatBuf)
	if fb == nil || cap(fb.raw) < n+16 {
		fb = &floatBuf{raw: make([]float32, n+16)}
	}
	raw := fb.raw[:cap(fb.raw)]
	off := alignOff(raw)
	return fb, raw[off : off+n]
}

func putBuf(pool *sync.Pool, fb *floatBuf) { pool.Put(fb) }

func alignOff(raw []float32) int {
	return int((64-uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%64)%64) / 4
}

// alignedFloats allocates n floats starting on a 64-byte boundary.
func alignedFloats(n int) []float32 {
	raw := make([]float32, n+16)
	off := alignOff(raw)
	return raw[off : off+n : off+n]
}
