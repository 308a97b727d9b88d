package kernels

import (
	"fmt"
	"math/bits"
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

	// Sgemm with m ≤ smallMT (transB) or m ≤ smallMN (B not transposed)
	// skips packing and streams B once (see smallJob). smallMN ≤ mr.
	smallMT    = 48
	smallMN    = 6
	forceSmall = false // tests: take the small path whenever m ≤ smallMT

	kbN = 32 // rows of B per pass in the small-m, B-not-transposed path
)

// useSmallT reports whether Sgemm with transB should take the dot-product
// path: it saves packing B (O(n·k)) but pays a horizontal reduction per
// element of C (O(m·n)), so it wins for few rows and deep k.
func useSmallT(m, k int) bool {
	if m > smallMT {
		return false
	}
	return forceSmall || m <= 4 || (m <= 16 && k >= 256) || k >= 512
}

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
	if transB && useSmallT(m, k) || !transB && m <= smallMN {
		gemmSmall(asm, transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate)
		return
	}

	g := getCtx()
	g.asm = asm
	g.accumulate = accumulate
	g.ldc = ldc
	g.k = k
	mch := max(mr, aBudget/k/mr*mr)
	nch := max(nr, bBudget/k/nr*nr)
	abuf, ap := getBuf(min(m, mch) * k)
	bbuf, bp := getBuf(roundUp(min(n, nch), nr) * k)
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
	putBuf(abuf)
	putBuf(bbuf)
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
	abuf, ap := getBuf(min(m, mch) * k)
	for i0 := 0; i0 < m; i0 += mch {
		mm := min(mch, m-i0)
		g.m = mm
		g.ap = ap[:mm*k]
		g.a = a[i0*lda:]
		g.c = c[i0*ldc:]
		g.packA = true
		g.execute()
	}
	putBuf(abuf)
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

// smallJob handles Sgemm with few rows of A without packing B, streaming B
// once. With transB: for m ≤ 2, whole-row dot products (sgemmDotRows);
// otherwise tiles of C[≤3×4] of dot products of rows of A and rows of B
// (sgemmDotT*). Without transB (m ≤ 6): the mr×16 kernel reads B rows in
// place (sgemmKernel*x16S) against a packed A panel. Each task owns a block of
// output columns.
type smallJob struct {
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
	ap         []float32 // packed A for the !transB case
	block      int       // output columns per task
}

var smallPool = sync.Pool{New: func() any { return new(smallJob) }}

func gemmSmall(asm, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool) {
	j := smallPool.Get().(*smallJob)
	*j = smallJob{asm: asm, transB: transB, accumulate: accumulate, m: m, n: n, k: k,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc}
	var abuf *floatBuf
	if asm && !transB {
		if m == 1 {
			j.ap = a[:k]
		} else {
			abuf, j.ap = getBuf(m * k)
			packAGo(j.ap, a, lda, m, k)
		}
	}
	unit, maxBlock := 4, 64 // columns: a multiple of the tile width
	if !transB || m <= 2 {
		// long sequential runs of B per task (prefetcher friendly)
		unit, maxBlock = nr, 1<<30
	}
	flops := 2 * float64(m) * float64(n) * float64(k)
	w := workersFor(flops, (n+unit-1)/unit)
	if w > 1 {
		// a few tasks per worker so that they balance
		j.block = min(maxBlock, roundUp((n+4*w-1)/(4*w), unit))
	} else {
		j.block = n
	}
	parallelDynamic((n+j.block-1)/j.block, w, j)
	if abuf != nil {
		putBuf(abuf)
	}
	*j = smallJob{}
	smallPool.Put(j)
}

func (g *smallJob) run(t int) {
	j0 := t * g.block
	j1 := min(g.n, j0+g.block)
	if g.transB {
		g.runT(j0, j1)
	} else {
		g.runN(j0, j1)
	}
}

func (g *smallJob) set(i, j int, v float32) {
	if g.accumulate {
		g.c[i*g.ldc+j] += v
	} else {
		g.c[i*g.ldc+j] = v
	}
}

func (g *smallJob) runT(j0, j1 int) {
	m, k, lda, ldb, ldc := g.m, g.k, g.lda, g.ldb, g.ldc
	a, b, c := g.a, g.b, g.c
	j := j0
	if g.asm && k >= 8 && m <= 2 {
		// Row by row: consecutive rows of B stream sequentially. Blocks of
		// 8 rows of B stay cached while the (at most 2) rows of A pass.
		k8 := k &^ 7
		iacc := 0
		if g.accumulate {
			iacc = 1
		}
		step := 8
		if m == 1 {
			step = j1 - j0
		}
		for jb := j0; jb < j1; jb += step {
			je := min(jb+step, j1)
			_ = b[(je-1)*ldb+k-1]
			for i := 0; i < m; i++ {
				_ = a[i*lda+k-1]
				_ = c[i*ldc+je-1]
				sgemmDotRows(k8, &a[i*lda], &b[jb*ldb], ldb, je-jb, &c[i*ldc+jb], iacc)
				if k8 < k {
					ar := a[i*lda+k8 : i*lda+k]
					for jj := jb; jj < je; jj++ {
						c[i*ldc+jj] += dotGo(ar, b[jj*ldb+k8:jj*ldb+k])
					}
				}
			}
		}
		return
	}
	if g.asm && k >= 8 {
		k8 := k &^ 7
		iacc := 0
		if g.accumulate {
			iacc = 1
		}
		for ; j+4 <= j1; j += 4 {
			_ = b[(j+3)*ldb+k-1]
			for i := 0; i < m; i += 3 {
				rows := min(3, m-i)
				_ = a[(i+rows-1)*lda+k-1]
				_ = c[(i+rows-1)*ldc+j+3]
				dotTileAsm(rows, k8, &a[i*lda], lda, &b[j*ldb], ldb, &c[i*ldc+j], ldc, iacc)
			}
			if k8 < k {
				for i := 0; i < m; i++ {
					ar := a[i*lda+k8 : i*lda+k]
					cr := c[i*ldc+j : i*ldc+j+4]
					for jj := range cr {
						cr[jj] += dotGo(ar, b[(j+jj)*ldb+k8:(j+jj)*ldb+k])
					}
				}
			}
		}
	}
	for ; j < j1; j++ {
		w := b[j*ldb : j*ldb+k]
		for i := 0; i < m; i++ {
			g.set(i, j, dotSel(g.asm, a[i*lda:i*lda+k], w))
		}
	}
}

func (g *smallJob) runN(j0, j1 int) {
	m, k, lda, ldb, ldc := g.m, g.k, g.lda, g.ldb, g.ldc
	a, b, c := g.a, g.b, g.c
	if !g.asm {
		if !g.accumulate {
			for i := 0; i < m; i++ {
				clear(c[i*ldc+j0 : i*ldc+j1])
			}
		}
		for p := 0; p < k; p++ {
			brow := b[p*ldb+j0 : p*ldb+j1]
			for i := 0; i < m; i++ {
				axpyGo(a[i*lda+p], brow, c[i*ldc+j0:i*ldc+j1])
			}
		}
		return
	}
	// Rows of B are consumed kbN at a time across all panels of the block,
	// so B streams as kbN long row segments instead of 64-byte pieces.
	np := (j1 - j0) / nr
	j := j0 + np*nr
	if np > 0 {
		_ = b[(k-1)*ldb+j-1]
		_ = c[(m-1)*ldc+j-1]
		for p0 := 0; p0 < k; p0 += kbN {
			kb := min(kbN, k-p0)
			iacc := 0
			if g.accumulate || p0 > 0 {
				iacc = 1
			}
			kernelStridedAsm(m, kb, &g.ap[p0*m], &b[p0*ldb+j0], ldb, &c[j0], ldc, iacc, np)
		}
	}
	if j == j1 {
		return
	}
	// ragged right edge: fewer than 16 columns
	for i := 0; i < m; i++ {
		cr := c[i*ldc+j : i*ldc+j1]
		if !g.accumulate {
			clear(cr)
		}
		for p := 0; p < k; p++ {
			av := a[i*lda+p]
			br := b[p*ldb+j : p*ldb+j1]
			for jj, bv := range br {
				cr[jj] += av * bv
			}
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// Packing buffers are pooled by power-of-two size class, so that products of
// different shapes (and concurrent calls) reuse buffers instead of
// reallocating them.
var bufPools [40]sync.Pool

type floatBuf struct {
	raw   []float32
	class int
}

// getBuf returns a pooled buffer and a 64-byte aligned view of n floats.
func getBuf(n int) (*floatBuf, []float32) {
	class := bits.Len(uint(n + 15)) // 2^class ≥ n+16: room to align
	fb, _ := bufPools[class].Get().(*floatBuf)
	if fb == nil {
		fb = &floatBuf{raw: make([]float32, 1<<class), class: class}
	}
	off := alignOff(fb.raw)
	return fb, fb.raw[off : off+n]
}

func putBuf(fb *floatBuf) { bufPools[fb.class].Put(fb) }

func alignOff(raw []float32) int {
	return int((64-uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%64)%64) / 4
}

// alignedFloats allocates n floats starting on a 64-byte boundary.
func alignedFloats(n int) []float32 {
	raw := make([]float32, n+16)
	off := alignOff(raw)
	return raw[off : off+n : off+n]
}
