package kernels_test

import (
	"fmt"
	"math"
	"math/rand"
	"sync"
	"testing"

	"llmq/kernels"
	"llmq/quant"
)

// implPaths lists the implementations to test: pure Go always, the assembly
// kernels where this build and CPU have them.
func implPaths(t testing.TB) []bool {
	if kernels.HasAsm() {
		return []bool{false, true}
	}
	t.Log("assembly kernels unavailable; testing pure Go only")
	return []bool{false}
}

func implName(asm bool) string {
	if asm {
		return "asm"
	}
	return "go"
}

func withImpl(asm bool, f func()) {
	prev := kernels.SetAsm(asm)
	defer kernels.SetAsm(prev)
	f()
}

// s8Impls lists the INT8 GEMM implementations to test: pure Go, and every
// assembly kernel set this CPU runs (AVX-512 VNNI, AVX2).
func s8Impls(t testing.TB) []string {
	impls := []string{"go"}
	if kernels.HasAsm() {
		impls = append(impls, kernels.S8Sets()...)
	}
	if len(impls) < 3 {
		t.Logf("INT8 kernel sets tested: %v (the others need CPU features this machine lacks)", impls)
	}
	return impls
}

// withS8Impl runs f with the named INT8 implementation.
func withS8Impl(name string, f func()) {
	if name == "go" {
		withImpl(false, f)
		return
	}
	prev := kernels.SetAsm(true)
	defer kernels.SetAsm(prev)
	defer kernels.UseS8Set(name)()
	f()
}

// randS8 returns n int8 values: uniform over the full range, with a share of
// the extremes −128, −127 and 127 mixed in when extremes is set.
func randS8(r *rand.Rand, n int, extremes bool) []int8 {
	x := make([]int8, n)
	for i := range x {
		x[i] = int8(r.Intn(256) - 128)
		if extremes && r.Intn(4) == 0 {
			x[i] = []int8{-128, -127, 127}[r.Intn(3)]
		}
	}
	return x
}

// refS8 is C = A·Bᵀ in wrapping int32 arithmetic, the plain triple loop.
func refS8(m, n, k int, a []int8, lda int, b []int8, ldb int) []int32 {
	c := make([]int32, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s int32
			for p := 0; p < k; p++ {
				s += int32(a[i*lda+p]) * int32(b[j*ldb+p])
			}
			c[i*n+j] = s
		}
	}
	return c
}

// refScaled is the epilogue of GemmS8Scaled applied to exact sums.
func refScaled(m, n int, acc []int32, aScale, bScale, bias []float32) []float32 {
	c := make([]float32, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			v := float32(float32(acc[i*n+j]) * float32(aScale[i]*bScale[j]))
			if bias != nil {
				v += bias[j]
			}
			c[i*n+j] = v
		}
	}
	return c
}

const sentinel = -0x5a5a5a5a

// checkS8C compares C (row stride ldc, padding holding sentinel) with ref.
func checkS8C(t *testing.T, what string, m, n int, c []int32, ldc int, ref []int32) {
	t.Helper()
	bad := 0
	for i := 0; i < m; i++ {
		for j := 0; j < ldc; j++ {
			got := c[i*ldc+j]
			if j >= n {
				if got != sentinel {
					t.Fatalf("%s: padding C[%d][%d] overwritten: %d", what, i, j, got)
				}
				continue
			}
			if want := ref[i*n+j]; got != want {
				if bad < 5 {
					t.Errorf("%s: C[%d][%d] = %d, want %d", what, i, j, got, want)
				}
				bad++
			}
		}
	}
	for i := m * ldc; i < len(c); i++ {
		if c[i] != sentinel {
			t.Fatalf("%s: C past the end overwritten at %d", what, i)
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d elements differ", what, bad, m*n)
	}
}

func newC32(m, ldc int) []int32 {
	c := make([]int32, m*ldc+3)
	for i := range c {
		c[i] = sentinel
	}
	return c
}

// TestGemmS8Fuzz checks bit-exact int32 results on random shapes (m, n, k
// in 1..70, ragged in every direction, padded strides) with full-range
// values, −128 included on both sides, on every implementation.
func TestGemmS8Fuzz(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for iter := 0; iter < 120; iter++ {
		m, n, k := 1+r.Intn(70), 1+r.Intn(70), 1+r.Intn(70)
		lda, ldb, ldc := k+r.Intn(3), k+r.Intn(3), n+r.Intn(3)
		ext := iter%2 == 0
		a := randS8(r, (m-1)*lda+k, ext)
		b := randS8(r, (n-1)*ldb+k, ext)
		ref := refS8(m, n, k, a, lda, b, ldb)
		for _, asm := range s8Impls(t) {
			withS8Impl(asm, func() {
				c := newC32(m, ldc)
				kernels.GemmS8(m, n, k, a, lda, b, ldb, c, ldc)
				checkS8C(t, fmt.Sprintf("%s m=%d n=%d k=%d", asm, m, n, k), m, n, c, ldc, ref)
			})
		}
	}
}

// TestGemmS8Extremes runs constant and alternating matrices of −128, −127
// and 127 with k up to 5000 (sums up to 5000·128·128 ≈ 8.2e7), and a k past
// 2³¹/128² where the int32 sum wraps exactly like the reference.
func TestGemmS8Extremes(t *testing.T) {
	vals := []int8{-128, -127, 127}
	r := rand.New(rand.NewSource(2))
	type shape struct{ m, n, k int }
	shapes := []shape{{1, 1, 1}, {5, 16, 4}, {6, 17, 5}, {3, 40, 5000}, {11, 33, 4097}, {2, 3, 140000}}
	for _, s := range shapes {
		for _, va := range vals {
			for _, vb := range vals {
				a := make([]int8, s.m*s.k)
				b := make([]int8, s.n*s.k)
				for i := range a {
					a[i] = va
				}
				for i := range b {
					b[i] = vb
					if r.Intn(3) == 0 {
						b[i] = vals[r.Intn(3)]
					}
				}
				ref := refS8(s.m, s.n, s.k, a, s.k, b, s.k)
				for _, asm := range s8Impls(t) {
					withS8Impl(asm, func() {
						c := newC32(s.m, s.n)
						kernels.GemmS8(s.m, s.n, s.k, a, s.k, b, s.k, c, s.n)
						checkS8C(t, fmt.Sprintf("%s %v a=%d b=%d", asm, s, va, vb), s.m, s.n, c, s.n, ref)
					})
				}
			}
		}
	}
}

// TestGemmS8DeepK checks long reductions with random data on the packed
// (m > 4) and the dot-product (m ≤ 4) paths, small blocking included.
func TestGemmS8DeepK(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for _, k := range []int{1023, 1024, 3001, 5000} {
		for _, m := range []int{1, 4, 7, 23} {
			n := 37
			a := randS8(r, m*k, true)
			b := randS8(r, n*k, true)
			ref := refS8(m, n, k, a, k, b, k)
			for _, asm := range s8Impls(t) {
				withS8Impl(asm, func() {
					c := newC32(m, n)
					kernels.GemmS8(m, n, k, a, k, b, k, c, n)
					checkS8C(t, fmt.Sprintf("%s m=%d k=%d", asm, m, k), m, n, c, n, ref)
				})
			}
		}
	}
}

// TestGemmS8Blocking forces k blocks, several row and column tiles, chunked
// packing of A and B and the packed path for m = 1, on ragged shapes.
func TestGemmS8Blocking(t *testing.T) {
	restore := kernels.SetS8Blocking(3, 10, 32, 0, 5*4*40, 4*64*20)
	defer restore()
	r := rand.New(rand.NewSource(4))
	for iter := 0; iter < 30; iter++ {
		m, n, k := 1+r.Intn(60), 1+r.Intn(90), 1+r.Intn(150)
		a := randS8(r, m*k, true)
		b := randS8(r, n*k, true)
		ref := refS8(m, n, k, a, k, b, k)
		for _, asm := range s8Impls(t) {
			withS8Impl(asm, func() {
				c := newC32(m, n+1)
				kernels.GemmS8(m, n, k, a, k, b, k, c, n+1)
				checkS8C(t, fmt.Sprintf("%s m=%d n=%d k=%d", asm, m, n, k), m, n, c, n+1, ref)
			})
		}
	}
}

func randScales(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.Exp(r.NormFloat64())) / 127
	}
	return s
}

// TestGemmS8Scaled checks the fused epilogue bit for bit, with and without
// bias, through GemmS8Scaled and PackedS8.MatMulScaled, and PackedS8.MatMul.
func TestGemmS8Scaled(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	for iter := 0; iter < 40; iter++ {
		m, n, k := 1+r.Intn(70), 1+r.Intn(70), 1+r.Intn(300)
		if iter < 4 {
			m = []int{1, 2, 5, 6}[iter]
		}
		a := randS8(r, m*k, iter%3 == 0)
		b := randS8(r, n*k, true)
		as, bs := randScales(r, m), randScales(r, n)
		var bias []float32
		if iter%2 == 0 {
			bias = randScales(r, n)
		}
		acc := refS8(m, n, k, a, k, b, k)
		ref := refScaled(m, n, acc, as, bs, bias)
		pb := kernels.PackS8(b, n, k)
		for _, asm := range s8Impls(t) {
			withS8Impl(asm, func() {
				name := fmt.Sprintf("%s m=%d n=%d k=%d bias=%v", asm, m, n, k, bias != nil)
				c := make([]float32, m*n)
				kernels.GemmS8Scaled(m, n, k, a, k, as, b, k, bs, bias, c, n)
				checkF32Exact(t, "GemmS8Scaled "+name, c, ref)
				c2 := make([]float32, m*n)
				pb.MatMulScaled(c2, a, as, m, bs, bias)
				checkF32Exact(t, "MatMulScaled "+name, c2, ref)
				c3 := make([]int32, m*n)
				pb.MatMul(c3, a, m)
				checkS8C(t, "PackedS8.MatMul "+name, m, n, c3, n, acc)
			})
		}
	}
}

func checkF32Exact(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestGemmS8Concurrent runs products from several goroutines at once.
func TestGemmS8Concurrent(t *testing.T) {
	r := rand.New(rand.NewSource(6))
	m, n, k := 37, 200, 300
	a := randS8(r, m*k, true)
	b := randS8(r, n*k, true)
	ref := refS8(m, n, k, a, k, b, k)
	pb := kernels.PackS8(b, n, k)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := make([]int32, m*n)
			for it := 0; it < 5; it++ {
				if g%2 == 0 {
					kernels.GemmS8(m, n, k, a, k, b, k, c, n)
				} else {
					pb.MatMul(c, a, m)
				}
				for i := range ref {
					if c[i] != ref[i] {
						errs <- fmt.Sprintf("goroutine %d: C[%d] = %d, want %d", g, i, c[i], ref[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestGemmS8Degenerate covers k = 0 and empty products.
func TestGemmS8Degenerate(t *testing.T) {
	c := []int32{7, 7, 7, 7}
	kernels.GemmS8(2, 2, 0, nil, 0, nil, 0, c, 2)
	for _, v := range c {
		if v != 0 {
			t.Fatalf("k=0: C = %v, want zeros", c)
		}
	}
	cf := []float32{7, 7}
	kernels.GemmS8Scaled(1, 2, 0, nil, 0, []float32{1}, nil, 0, []float32{1, 1}, []float32{0.5, -2}, cf, 2)
	if cf[0] != 0.5 || cf[1] != -2 {
		t.Fatalf("k=0 scaled: %v, want bias", cf)
	}
	kernels.GemmS8(0, 3, 4, nil, 4, make([]int8, 12), 4, nil, 3)
	p := kernels.PackS8(nil, 0, 5)
	p.MatMul(nil, make([]int8, 10), 2)
}

// TestQuantizeRowsS8 checks the per-token quantizer against llmq/quant:
// float32(q)·scale must equal quant.FakeQuantize with int8-sym-token bit for
// bit, and the scales must equal quant's parameters.
func TestQuantizeRowsS8(t *testing.T) {
	spec := quant.MustParseSpec("int8-sym-token")
	r := rand.New(rand.NewSource(7))
	for _, cols := range []int{1, 7, 8, 31, 32, 33, 64, 100, 384, 4096} {
		rows := 9
		x := make([]float32, rows*cols)
		for i := range x {
			x[i] = float32(r.NormFloat64())
			if r.Intn(50) == 0 {
				x[i] *= 40 // outlier channels
			}
		}
		// special rows: all zero, tiny (subnormal scale floor), exact ties, one huge value
		clear(x[1*cols : 2*cols])
		for i := 2 * cols; i < 3*cols; i++ {
			x[i] = float32(r.NormFloat64()) * 1e-39
		}
		for i := 3 * cols; i < 4*cols; i++ {
			x[i] = float32(r.Intn(255)-127) * 0.5 // x/s lands on .5 for s = 0.5·127/127
		}
		x[4*cols] = 3e38
		fake, err := quant.FakeQuantize(x, rows, cols, spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, asm := range implPaths(t) {
			withImpl(asm, func() {
				q := make([]int8, rows*cols)
				s := make([]float32, rows)
				kernels.QuantizeRowsS8(q, s, x, rows, cols)
				for i := 0; i < rows; i++ {
					lo, hi := quant.MinMax(x[i*cols : (i+1)*cols])
					if want := spec.ParamsMinMax(lo, hi).Scale; s[i] != want {
						t.Fatalf("%s cols=%d row %d: scale %v, want %v", implName(asm), cols, i, s[i], want)
					}
					for j := 0; j < cols; j++ {
						v := q[i*cols+j]
						if v < -127 {
							t.Fatalf("%s: code %d outside [−127, 127]", implName(asm), v)
						}
						if got, want := float32(v)*s[i], fake[i*cols+j]; math.Float32bits(got) != math.Float32bits(want) {
							t.Fatalf("%s cols=%d x[%d][%d]=%v: q·s = %v, FakeQuantize %v", implName(asm), cols, i, j, x[i*cols+j], got, want)
						}
					}
				}
			})
		}
	}
}

// TestQuantizeRowsS8NonFinite: non-finite values do not enter the scale;
// NaN quantizes to 0 and ±Inf to ±127, as quant.QuantizeInt does.
func TestQuantizeRowsS8NonFinite(t *testing.T) {
	spec := quant.MustParseSpec("int8-sym-token")
	cols := 70
	x := make([]float32, 2*cols)
	for i := range x {
		x[i] = float32(i%13) - 6
	}
	x[3] = float32(math.NaN())
	x[40] = float32(math.Inf(1))
	x[cols+5] = float32(math.NaN())
	x[cols+69] = float32(math.Inf(-1))
	for _, asm := range implPaths(t) {
		withImpl(asm, func() {
			q := make([]int8, len(x))
			s := make([]float32, 2)
			kernels.QuantizeRowsS8(q, s, x, 2, cols)
			for i := 0; i < 2; i++ {
				lo, hi := quant.MinMax(x[i*cols : (i+1)*cols])
				p := spec.ParamsMinMax(lo, hi)
				if s[i] != p.Scale {
					t.Fatalf("%s row %d: scale %v, want %v", implName(asm), i, s[i], p.Scale)
				}
				for j := 0; j < cols; j++ {
					want := quant.QuantizeInt(x[i*cols+j], p.Scale, 0, -127, 127)
					if int32(q[i*cols+j]) != want {
						t.Fatalf("%s x[%d][%d]=%v: code %d, want %d", implName(asm), i, j, x[i*cols+j], q[i*cols+j], want)
					}
				}
			}
		})
	}
}

// TestW8A8EndToEnd quantizes activations per token and weights per channel
// with llmq/quant and checks the fused INT8 product against the float64
// product of the fake-quantized operands.
func TestW8A8EndToEnd(t *testing.T) {
	r := rand.New(rand.NewSource(8))
	m, n, k := 9, 50, 256
	x := make([]float32, m*k)
	w := make([]float32, n*k)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for i := range w {
		w[i] = float32(r.NormFloat64()) * 0.05
	}
	wt, err := quant.QuantizeWeight(w, n, k, quant.MustParseSpec("int8-sym-channel"))
	if err != nil {
		t.Fatal(err)
	}
	codes := wt.Codes()
	wq := make([]int8, n*k)
	for i, c := range codes {
		wq[i] = int8(c)
	}
	wd := wt.Dequantize()
	xd, err := quant.FakeQuantize(x, m, k, quant.MustParseSpec("int8-sym-token"))
	if err != nil {
		t.Fatal(err)
	}
	pb := kernels.PackS8(wq, n, k)
	for _, asm := range s8Impls(t) {
		withS8Impl(asm, func() {
			q := make([]int8, m*k)
			s := make([]float32, m)
			kernels.QuantizeRowsS8(q, s, x, m, k)
			c := make([]float32, m*n)
			pb.MatMulScaled(c, q, s, m, wt.Scales, nil)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var ref, mag float64
					for p := 0; p < k; p++ {
						v := float64(xd[i*k+p]) * float64(wd[j*k+p])
						ref += v
						mag += math.Abs(v)
					}
					if d := math.Abs(float64(c[i*n+j]) - ref); d > 1e-6*mag+1e-30 {
						t.Fatalf("%s C[%d][%d] = %v, want %v (diff %g)", asm, i, j, c[i*n+j], ref, d)
					}
				}
			}
		})
	}
}
