package kernels_test

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"llmq/kernels"
	"llmq/quant"
)

// q4Case is an int4 weight quantized by llmq/quant and packed for the
// kernels, with what the references need.
type q4Case struct {
	t     *quant.QTensor
	p     *kernels.PackedQ4
	deq   []float32 // dequantized W [n×k], as quant computes it
	u     []int32   // unsigned codes u = q − qmin·[sym] ∈ [0, 15]
	z     []int32   // zero-point per (row, group) on the u scale
	gs    int
	n, k  int
	label string
}

func newQ4Case(t *testing.T, r *rand.Rand, spec string, n, k int) *q4Case {
	t.Helper()
	sp := quant.MustParseSpec(spec)
	w := make([]float32, n*k)
	for i := range w {
		w[i] = float32(r.NormFloat64()) * 0.02
		if r.Intn(100) == 0 {
			w[i] *= 10
		}
	}
	qt, err := quant.QuantizeWeight(w, n, k, sp)
	if err != nil {
		t.Fatal(err)
	}
	gs := sp.GroupCols(k)
	c := &q4Case{t: qt, deq: qt.Dequantize(), gs: gs, n: n, k: k, label: fmt.Sprintf("%s n=%d k=%d", spec, n, k)}
	c.p = kernels.PackQ4(qt.Data, n, k, gs, qt.Scales, qt.Zeros)
	codes := qt.Codes()
	ng := k / gs
	c.u = make([]int32, n*k)
	c.z = make([]int32, n*ng)
	for j := 0; j < n; j++ {
		for g := 0; g < ng; g++ {
			z := int32(8)
			if qt.Zeros != nil {
				z = int32(qt.Zeros[j*ng+g])
			}
			c.z[j*ng+g] = z
			for p := g * gs; p < (g+1)*gs; p++ {
				u := codes[j*k+p]
				if qt.Zeros == nil {
					u += 8
				}
				c.u[j*k+p] = u
			}
		}
	}
	return c
}

// checkA16 compares C = A·dequant(W)ᵀ with the float64 reference, within
// float32 summation rounding: the kernel sums x·u and subtracts z·Σx per
// group, so the bound is on Σ|x|·s·(u + z) rather than Σ|x·w|.
func (c *q4Case) checkA16(t *testing.T, what string, m int, a, got []float32) {
	t.Helper()
	n, k, gs := c.n, c.k, c.gs
	ng := k / gs
	tol := 4e-7 * math.Sqrt(float64(k)+16)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var ref, mag float64
			for p := 0; p < k; p++ {
				x := float64(a[i*k+p])
				ref += x * float64(c.deq[j*k+p])
				g := p / gs
				mag += math.Abs(x) * float64(c.t.Scales[j*ng+g]) * float64(c.u[j*k+p]+c.z[j*ng+g])
			}
			if d := math.Abs(float64(got[i*n+j]) - ref); d > tol*mag+1e-30 {
				t.Fatalf("%s %s: C[%d][%d] = %v, want %v (diff %.3g, bound %.3g)", what, c.label, i, j, got[i*n+j], ref, d, tol*mag)
			}
		}
	}
}

var q4Specs = []struct {
	spec string
	k    int
}{
	{"int4-asym-g32", 96},       // 3 groups
	{"int4-sym-g32", 160},       // 5 groups
	{"int4-asym-g64", 192},      // 3 groups
	{"int4-sym-g64", 320},       // 5 groups
	{"int4-asym-g128", 384},     // 3 groups: the 25M model's width
	{"int4-sym-g128", 128},      // 1 group
	{"int4-sym-full-g128", 256}, // −8 codes
	{"int4-asym-g20", 60},       // groups padded 20 → 24
	{"int4-sym-channel", 77},    // one group of odd width
	{"int4-asym-g7", 21},        // groups of 7: one nibble of padding each
}

// q4Impls lists the W4A16 implementations: pure Go, the AVX2 kernels, and
// the AVX-512 one-row kernel where the CPU has it.
func q4Impls(t testing.TB) []string {
	impls := []string{"go"}
	if kernels.HasAsm() {
		impls = append(impls, "avx2")
		if kernels.HasQ4AVX512() {
			impls = append(impls, "avx512")
		}
	}
	return impls
}

func withQ4Impl(impl string, f func()) {
	defer kernels.UseQ4AVX512(impl == "avx512")()
	withImpl(impl != "go", f)
}

// TestQ4MatMul checks W4A16 against the float64 reference and against
// dequantize-then-Sgemm, for symmetric and asymmetric grids and several
// group sizes, on every implementation.
func TestQ4MatMul(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	for _, sc := range q4Specs {
		for _, n := range []int{1, 16, 37} {
			c := newQ4Case(t, r, sc.spec, n, sc.k)
			for _, m := range []int{1, 2, 3, 4, 5, 6, 7, 13} {
				a := make([]float32, m*sc.k)
				for i := range a {
					a[i] = float32(r.NormFloat64())
				}
				want := make([]float32, m*n)
				kernels.Sgemm(true, m, n, sc.k, a, sc.k, c.deq, sc.k, want, n, false)
				for _, impl := range q4Impls(t) {
					withQ4Impl(impl, func() {
						got := make([]float32, m*n+1)
						got[m*n] = 42
						c.p.MatMul(got, a, m)
						if got[m*n] != 42 {
							t.Fatalf("%s: wrote past C", c.label)
						}
						what := fmt.Sprintf("%s m=%d", impl, m)
						c.checkA16(t, what, m, a, got)
						for i := range want { // and vs dequantize-then-Sgemm
							if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(math.Abs(float64(want[i]))+0.05) {
								t.Fatalf("%s %s: C[%d] = %v, Sgemm on dequantized W %v", what, c.label, i, got[i], want[i])
							}
						}
					})
				}
			}
		}
	}
}

// TestQ4MatMulBlocking forces several row tiles, k blocks and column tiles,
// with a ragged last pair of outputs.
func TestQ4MatMulBlocking(t *testing.T) {
	restore := kernels.SetQ4Blocking(12, 64, 32)
	defer restore()
	r := rand.New(rand.NewSource(12))
	for _, spec := range []string{"int4-asym-g32", "int4-sym-g64", "int4-asym-g20"} {
		k := 256
		if spec == "int4-asym-g20" {
			k = 240
		}
		n := 75
		c := newQ4Case(t, r, spec, n, k)
		for _, m := range []int{1, 11, 25, 40} {
			a := make([]float32, m*k)
			for i := range a {
				a[i] = float32(r.NormFloat64())
			}
			for _, asm := range implPaths(t) {
				withImpl(asm, func() {
					got := make([]float32, m*n)
					c.p.MatMul(got, a, m)
					c.checkA16(t, fmt.Sprintf("%s m=%d", implName(asm), m), m, a, got)
				})
			}
		}
	}
}

// TestQ4MatMulLarge covers the default blocking with a realistic width and
// enough rows for several tiles and k blocks.
func TestQ4MatMulLarge(t *testing.T) {
	r := rand.New(rand.NewSource(13))
	c := newQ4Case(t, r, "int4-asym-g128", 40, 1024)
	m := 100
	a := make([]float32, m*1024)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	var prev []float32
	for _, asm := range implPaths(t) {
		withImpl(asm, func() {
			got := make([]float32, m*40)
			c.p.MatMul(got, a, m)
			c.checkA16(t, implName(asm), m, a, got)
			if prev != nil { // asm vs Go: summation-order differences only
				for i := range got {
					if d := math.Abs(float64(got[i] - prev[i])); d > 1e-4*(math.Abs(float64(prev[i]))+0.05) {
						t.Fatalf("asm %v vs go %v at %d", got[i], prev[i], i)
					}
				}
			}
			prev = got
		})
	}
}

// TestQ4MatMulS8 checks W4A8 against the float64 reference built from the
// exact integer group sums, including −128 activations.
func TestQ4MatMulS8(t *testing.T) {
	r := rand.New(rand.NewSource(14))
	for _, sc := range q4Specs {
		n := 37
		c := newQ4Case(t, r, sc.spec, n, sc.k)
		k, gs := sc.k, c.gs
		ng := k / gs
		for _, m := range []int{1, 3, 4, 5, 9} {
			a := randS8(r, m*k, true)
			as := randScales(r, m)
			for _, asm := range implPaths(t) {
				withImpl(asm, func() {
					got := make([]float32, m*n)
					c.p.MatMulS8(got, a, as, m)
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							var ref, mag float64
							for g := 0; g < ng; g++ {
								var s int64
								for p := g * gs; p < (g+1)*gs; p++ {
									s += int64(a[i*k+p]) * int64(c.u[j*k+p]-c.z[j*ng+g])
								}
								v := float64(c.t.Scales[j*ng+g]) * float64(s)
								ref += v
								mag += math.Abs(v)
							}
							ref *= float64(as[i])
							mag *= float64(as[i])
							if d := math.Abs(float64(got[i*n+j]) - ref); d > 1e-6*mag*math.Sqrt(float64(ng)+1)+1e-30 {
								t.Fatalf("%s %s m=%d: C[%d][%d] = %v, want %v", implName(asm), c.label, m, i, j, got[i*n+j], ref)
							}
						}
					}
				})
			}
		}
	}
}

// TestQ4MatMulS8Exact: with unit scales the W4A8 result is the exact
// integer Σ a·(u − z) (all partial sums below 2^24).
func TestQ4MatMulS8Exact(t *testing.T) {
	r := rand.New(rand.NewSource(15))
	n, k, gs := 33, 256, 64
	ng := k / gs
	data := make([]byte, n*k/2)
	r.Read(data)
	scales := make([]float32, n*ng)
	zeros := make([]uint8, n*ng)
	for i := range scales {
		scales[i] = 1
		zeros[i] = uint8(r.Intn(16))
	}
	p := kernels.PackQ4(data, n, k, gs, scales, zeros)
	m := 6
	a := randS8(r, m*k, true)
	ones := make([]float32, m)
	for i := range ones {
		ones[i] = 1
	}
	for _, asm := range implPaths(t) {
		withImpl(asm, func() {
			got := make([]float32, m*n)
			p.MatMulS8(got, a, ones, m)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var s int64
					for q := 0; q < k; q++ {
						u := int64(quant.Nibble(data[j*k/2:], q))
						s += int64(a[i*k+q]) * (u - int64(zeros[j*ng+q/gs]))
					}
					if got[i*n+j] != float32(s) {
						t.Fatalf("%s: C[%d][%d] = %v, want %d", implName(asm), i, j, got[i*n+j], s)
					}
				}
			}
		})
	}
}

// TestPackQ4Validation checks the argument checks.
func TestPackQ4Validation(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Fatalf("%s: no panic", name)
			}
		}()
		f()
	}
	mustPanic("group does not divide", func() { kernels.PackQ4(make([]byte, 8), 2, 8, 3, make([]float32, 4), nil) })
	mustPanic("short scales", func() { kernels.PackQ4(make([]byte, 8), 2, 8, 4, make([]float32, 3), nil) })
	mustPanic("zero-point > 15", func() { kernels.PackQ4(make([]byte, 8), 2, 8, 8, make([]float32, 2), []uint8{3, 16}) })
	p := kernels.PackQ4(make([]byte, 8), 2, 8, 8, []float32{1, 1}, nil)
	if p.N() != 2 || p.K() != 8 || p.GroupSize() != 8 {
		t.Fatalf("accessors: %d %d %d", p.N(), p.K(), p.GroupSize())
	}
	p.MatMul(nil, nil, 0)
}
