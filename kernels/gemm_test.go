package kernels

import (
	"fmt"
	"math"
	"math/rand"
	"sync"
	"testing"
)

// paths lists the implementations to test: the pure-Go one always, the
// assembly one where the CPU supports it.
func paths(t testing.TB) []bool {
	if HasAsm() {
		return []bool{false, true}
	}
	t.Log("assembly kernels unavailable; testing pure Go only")
	return []bool{false}
}

func pathName(asm bool) string {
	if asm {
		return "asm"
	}
	return "go"
}

// withAsm runs f with the assembly kernels switched on or off.
func withAsm(asm bool, f func()) {
	prev := SetAsm(asm)
	defer SetAsm(prev)
	f()
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// refGemm computes the float64 reference of C (+)= A·op(B) and, for the error
// bound, Σ|a·b| per element.
func refGemm(transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c0 []float32, ldc int, accumulate bool) (ref, mag []float64) {
	ref = make([]float64, m*n)
	mag = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sa float64
			for p := 0; p < k; p++ {
				var bv float32
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				prod := float64(a[i*lda+p]) * float64(bv)
				s += prod
				sa += math.Abs(prod)
			}
			if accumulate {
				s += float64(c0[i*ldc+j])
				sa += math.Abs(float64(c0[i*ldc+j]))
			}
			ref[i*n+j] = s
			mag[i*n+j] = sa
		}
	}
	return ref, mag
}

// checkC compares C against the reference and checks that the padding
// between rows (columns n..ldc-1) and past the end was not touched.
func checkC(t *testing.T, what string, m, n, k int, c, c0 []float32, ldc int, ref, mag []float64) {
	t.Helper()
	tol := 2e-6 * math.Sqrt(float64(k)+1)
	bad := 0
	for i := 0; i < m; i++ {
		for j := 0; j < ldc; j++ {
			got := c[i*ldc+j]
			if j >= n {
				if got != c0[i*ldc+j] && !(math.IsNaN(float64(got)) && math.IsNaN(float64(c0[i*ldc+j]))) {
					t.Errorf("%s: padding C[%d,%d] modified: %v -> %v", what, i, j, c0[i*ldc+j], got)
					return
				}
				continue
			}
			want := ref[i*n+j]
			if d := math.Abs(float64(got) - want); !(d <= tol*mag[i*n+j]+1e-30) {
				bad++
				if bad <= 3 {
					t.Errorf("%s: C[%d,%d] = %v, want %v (|diff| %.3g, bound %.3g)", what, i, j, got, want, d, tol*mag[i*n+j])
				}
			}
		}
	}
	for i := m * ldc; i < len(c); i++ {
		if c[i] != c0[i] {
			t.Errorf("%s: C past the end modified at %d", what, i)
			return
		}
	}
}

type gemmCase struct {
	m, n, k          int
	padA, padB, padC int // extra leading-dimension padding
}

func gemmCases() []gemmCase {
	var cs []gemmCase
	for _, m := range []int{1, 2, 3, 4, 5, 6, 7, 12, 13, 19} {
		for _, n := range []int{1, 3, 15, 16, 17, 40} {
			for _, k := range []int{0, 1, 5, 8, 9, 17, 64} {
				cs = append(cs, gemmCase{m: m, n: n, k: k})
			}
		}
	}
	cs = append(cs,
		gemmCase{m: 1, n: 100, k: 33, padA: 3, padB: 5, padC: 7},
		gemmCase{m: 2, n: 257, k: 300, padA: 1, padB: 2, padC: 3},
		gemmCase{m: 7, n: 33, k: 513, padA: 8, padB: 0, padC: 16},
		gemmCase{m: 64, n: 64, k: 64},
		gemmCase{m: 65, n: 100, k: 257, padA: 2, padB: 3, padC: 4},
		gemmCase{m: 150, n: 270, k: 600, padA: 5, padB: 1, padC: 9},
		gemmCase{m: 301, n: 47, k: 1030},
		gemmCase{m: 33, n: 530, k: 255, padC: 1},
		gemmCase{m: 4, n: 1000, k: 1000},
		gemmCase{m: 24, n: 61, k: 520, padA: 1, padB: 2, padC: 3},
		gemmCase{m: 47, n: 35, k: 515},
		gemmCase{m: 50, n: 40, k: 600},
	)
	return cs
}

func runGemmCase(t *testing.T, r *rand.Rand, tc gemmCase, transB, accumulate bool, tag string) {
	m, n, k := tc.m, tc.n, tc.k
	lda, ldc := k+tc.padA, n+tc.padC
	var ldb, bl int
	if transB {
		ldb = k + tc.padB
		bl = max(0, (n-1)*ldb+k)
	} else {
		ldb = n + tc.padB
		bl = max(0, (k-1)*ldb+n)
	}
	a := randSlice(r, max(0, (m-1)*lda+k))
	b := randSlice(r, bl)
	c0 := randSlice(r, m*ldc+3) // +3: guard past the end
	ref, mag := refGemm(transB, m, n, k, a, lda, b, ldb, c0, ldc, accumulate)
	for _, asm := range paths(t) {
		c := append([]float32(nil), c0...)
		withAsm(asm, func() {
			Sgemm(transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate)
		})
		what := fmt.Sprintf("%s Sgemm[%s] m=%d n=%d k=%d ld=(%d,%d,%d) transB=%v acc=%v", tag, pathName(asm), m, n, k, lda, ldb, ldc, transB, accumulate)
		checkC(t, what, m, n, k, c, c0, ldc, ref, mag)
	}
}

func TestSgemm(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, tc := range gemmCases() {
		for _, transB := range []bool{true, false} {
			for _, acc := range []bool{false, true} {
				runGemmCase(t, r, tc, transB, acc, "")
			}
		}
	}
}

// TestSgemmForcedPaths runs the same cases with the small-m shortcut off (so
// 1–3 row products go through the packed kernels) and with tiny packing
// budgets (so A and B are packed in many chunks).
func TestSgemmForcedPaths(t *testing.T) {
	saved := []int{smallMT, smallMN, aBudget, bBudget}
	defer func() {
		smallMT, smallMN, aBudget, bBudget = saved[0], saved[1], saved[2], saved[3]
		forceSmall = false
	}()
	r := rand.New(rand.NewSource(2))
	smallMT, smallMN = 0, 0
	for _, tc := range gemmCases() {
		if tc.m > 7 {
			continue
		}
		for _, transB := range []bool{true, false} {
			runGemmCase(t, r, tc, transB, tc.k%2 == 1, "nosmall")
		}
	}
	// every transB product through the dot-product path
	smallMT, forceSmall = 1<<30, true
	for _, tc := range gemmCases() {
		if tc.m < 4 || tc.k < 8 {
			continue
		}
		runGemmCase(t, r, tc, true, tc.n%2 == 0, "alldot")
	}
	smallMT, smallMN, forceSmall = saved[0], saved[1], false
	aBudget, bBudget = 500, 700
	for _, tc := range gemmCases() {
		if tc.m*tc.n*tc.k < 5000 {
			continue
		}
		for _, transB := range []bool{true, false} {
			runGemmCase(t, r, tc, transB, tc.n%2 == 1, "chunked")
		}
	}
}

func TestMatMulPacked(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	type sh struct{ m, n, k int }
	shapes := []sh{{1, 1, 1}, {1, 16, 8}, {1, 17, 9}, {2, 33, 100}, {5, 31, 7}, {6, 16, 16},
		{7, 50, 300}, {13, 1, 5}, {1, 0, 5}, {0, 5, 5}, {3, 5, 0}, {100, 100, 100}, {130, 200, 520}, {1, 300, 1000}}
	for _, s := range shapes {
		m, n, k := s.m, s.n, s.k
		w := randSlice(r, n*k)
		a := randSlice(r, m*k)
		c0 := randSlice(r, m*n)
		ref, mag := refGemm(true, m, n, k, a, k, w, k, c0, n, false)
		for _, asm := range paths(t) {
			var p *PackedB
			c := append([]float32(nil), c0...)
			cs := append([]float32(nil), c0...)
			withAsm(asm, func() {
				p = PackB(w, n, k)
				MatMulPacked(c, a, m, p)
				Sgemm(true, m, n, k, a, k, w, k, cs, n, false)
			})
			if p.N() != n || p.K() != k {
				t.Fatalf("PackB dims: got %d×%d want %d×%d", p.N(), p.K(), n, k)
			}
			what := fmt.Sprintf("MatMulPacked[%s] m=%d n=%d k=%d", pathName(asm), m, n, k)
			checkC(t, what, m, n, k, c, c0, n, ref, mag)
			// MatMulPacked and Sgemm agree to rounding
			tol := 2e-6 * math.Sqrt(float64(k)+1)
			for i := range c {
				if d := math.Abs(float64(c[i] - cs[i])); d > 2*tol*mag[i]+1e-30 {
					t.Errorf("%s: differs from Sgemm at %d: %v vs %v", what, i, c[i], cs[i])
					break
				}
			}
		}
	}
}

func TestGemmPackedStrided(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	for _, s := range []struct{ m, n, k, padA, padC int }{{1, 40, 33, 2, 3}, {9, 17, 65, 1, 5}, {70, 90, 300, 7, 2}} {
		w := randSlice(r, s.n*s.k)
		lda, ldc := s.k+s.padA, s.n+s.padC
		a := randSlice(r, (s.m-1)*lda+s.k)
		c0 := randSlice(r, s.m*ldc)
		for _, acc := range []bool{false, true} {
			ref, mag := refGemm(true, s.m, s.n, s.k, a, lda, w, s.k, c0, ldc, acc)
			for _, asm := range paths(t) {
				c := append([]float32(nil), c0...)
				withAsm(asm, func() { GemmPacked(s.m, a, lda, PackB(w, s.n, s.k), c, ldc, acc) })
				checkC(t, fmt.Sprintf("GemmPacked[%s] %+v acc=%v", pathName(asm), s, acc), s.m, s.n, s.k, c, c0, ldc, ref, mag)
			}
		}
	}
}

// TestAsmMatchesGo checks the two paths against each other on a larger
// product (they differ by rounding only: FMA vs separate multiply-add).
func TestAsmMatchesGo(t *testing.T) {
	if !HasAsm() {
		t.Skip("no assembly kernels")
	}
	r := rand.New(rand.NewSource(5))
	m, n, k := 97, 211, 700
	a, b := randSlice(r, m*k), randSlice(r, n*k)
	cg, ca := make([]float32, m*n), make([]float32, m*n)
	withAsm(false, func() { Sgemm(true, m, n, k, a, k, b, k, cg, n, false) })
	withAsm(true, func() { Sgemm(true, m, n, k, a, k, b, k, ca, n, false) })
	for i := range cg {
		if d := math.Abs(float64(cg[i] - ca[i])); d > 1e-4*math.Sqrt(float64(k)) {
			t.Fatalf("asm and Go differ at %d: %v vs %v", i, ca[i], cg[i])
		}
	}
}

func TestConcurrent(t *testing.T) {
	r := rand.New(rand.NewSource(6))
	m, n, k := 50, 120, 300
	a, b := randSlice(r, m*k), randSlice(r, n*k)
	p := PackB(b, n, k)
	want := make([]float32, m*n)
	Sgemm(true, m, n, k, a, k, b, k, want, n, false)
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := make([]float32, m*n)
			for it := 0; it < 20; it++ {
				clear(c)
				if it%2 == 0 {
					Sgemm(true, m, n, k, a, k, b, k, c, n, false)
				} else {
					MatMulPacked(c, a, m, p)
				}
				for i := range c {
					if math.Abs(float64(c[i]-want[i])) > 1e-3 {
						errs <- fmt.Sprintf("goroutine result differs at %d: %v vs %v", i, c[i], want[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestDotAxpy(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for _, n := range []int{0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1000, 4099} {
		x, y := randSlice(r, n), randSlice(r, n+2)
		var want, mag float64
		for i := 0; i < n; i++ {
			want += float64(x[i]) * float64(y[i])
			mag += math.Abs(float64(x[i]) * float64(y[i]))
		}
		alpha := float32(r.NormFloat64())
		for _, asm := range paths(t) {
			var got float32
			yy := append([]float32(nil), y...)
			withAsm(asm, func() {
				got = Dot(x, y)
				Axpy(alpha, x, yy)
			})
			if d := math.Abs(float64(got) - want); d > 2e-6*math.Sqrt(float64(n)+1)*mag+1e-30 {
				t.Errorf("Dot[%s] n=%d = %v want %v", pathName(asm), n, got, want)
			}
			for i := 0; i < n+2; i++ {
				w := float64(y[i])
				if i < n {
					w += float64(alpha) * float64(x[i])
				}
				if d := math.Abs(float64(yy[i]) - w); d > 1e-6*(math.Abs(w)+1) {
					t.Errorf("Axpy[%s] n=%d y[%d] = %v want %v", pathName(asm), n, i, yy[i], w)
					break
				}
			}
		}
	}
}

func TestParallelFor(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 7, 100, 1001} {
		seen := make([]int32, n)
		var mu sync.Mutex
		calls := 0
		ParallelFor(n, func(lo, hi int) {
			mu.Lock()
			calls++
			mu.Unlock()
			if lo >= hi {
				t.Errorf("n=%d: empty chunk [%d,%d)", n, lo, hi)
			}
			for i := lo; i < hi; i++ {
				seen[i]++
			}
		})
		for i, v := range seen {
			if v != 1 {
				t.Fatalf("n=%d: index %d visited %d times", n, i, v)
			}
		}
		if n == 0 && calls != 0 {
			t.Errorf("n=0: f called")
		}
	}
}

func TestBadArgsPanic(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	a, b, c := make([]float32, 12), make([]float32, 12), make([]float32, 12)
	mustPanic("short C", func() { Sgemm(true, 3, 4, 4, a, 4, b, 4, c[:11], 4, false) })
	mustPanic("short A", func() { Sgemm(true, 3, 4, 4, a[:11], 4, b, 4, c, 4, false) })
	mustPanic("short B", func() { Sgemm(false, 3, 3, 4, a, 4, b[:11], 3, c, 3, false) })
	mustPanic("lda<k", func() { Sgemm(true, 3, 4, 4, a, 3, b, 4, c, 4, false) })
	mustPanic("negative", func() { Sgemm(true, -1, 4, 4, a, 4, b, 4, c, 4, false) })
	mustPanic("PackB short", func() { PackB(a, 4, 4) })
}

func TestNoAsmEnv(t *testing.T) {
	// SetAsm(true) is a no-op without CPU support; toggling round-trips.
	prev := SetAsm(false)
	if AsmEnabled() {
		t.Fatal("SetAsm(false) left asm on")
	}
	SetAsm(true)
	if AsmEnabled() != HasAsm() {
		t.Fatal("SetAsm(true) mismatch with HasAsm")
	}
	SetAsm(prev)
}

// TestOverwriteIgnoresC checks that without accumulate the old contents of C
// (here NaN) never leak into the result, on every path.
func TestOverwriteIgnoresC(t *testing.T) {
	r := rand.New(rand.NewSource(8))
	nan := float32(math.NaN())
	for _, s := range [][3]int{{1, 40, 100}, {3, 17, 9}, {5, 33, 600}, {20, 50, 700}, {70, 33, 40}, {9, 5, 3}} {
		m, n, k := s[0], s[1], s[2]
		a, b := randSlice(r, m*k), randSlice(r, n*k)
		p := PackB(b, n, k)
		for _, asm := range paths(t) {
			for call := 0; call < 3; call++ {
				c := make([]float32, m*n)
				for i := range c {
					c[i] = nan
				}
				withAsm(asm, func() {
					switch call {
					case 0:
						Sgemm(true, m, n, k, a, k, b, k, c, n, false)
					case 1:
						Sgemm(false, m, n, k, a, k, b, n, c, n, false)
					case 2:
						MatMulPacked(c, a, m, p)
					}
				})
				for i, v := range c {
					if math.IsNaN(float64(v)) {
						t.Fatalf("[%s] call %d shape %v: C[%d] is NaN", pathName(asm), call, s, i)
					}
				}
			}
		}
	}
}
