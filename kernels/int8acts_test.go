package kernels_test

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"llmq/kernels"
)

// Prepared activations give exactly what quantizing and multiplying in one
// call gives, on every kernel set, including shapes that chunk and ragged
// edges.
func TestMatMulActs(t *testing.T) {
	r := rand.New(rand.NewSource(21))
	for _, sh := range []struct{ m, n, k int }{{1, 16, 32}, {7, 33, 70}, {64, 48, 384}, {130, 200, 259}} {
		x := make([]float32, sh.m*sh.k)
		for i := range x {
			x[i] = float32(r.NormFloat64() * 2)
		}
		w := randS8(r, sh.n*sh.k, true)
		bs := make([]float32, sh.n)
		bias := make([]float32, sh.n)
		for j := range bs {
			bs[j] = r.Float32() + 0.01
			bias[j] = float32(r.NormFloat64())
		}
		p := kernels.PackS8(w, sh.n, sh.k)
		for _, impl := range s8Impls(t) {
			withS8Impl(impl, func() {
				qx := make([]int8, sh.m*sh.k)
				sx := make([]float32, sh.m)
				kernels.QuantizeRowsS8(qx, sx, x, sh.m, sh.k)
				want := make([]float32, sh.m*sh.n)
				p.MatMulScaled(want, qx, sx, sh.m, bs, bias)
				a := kernels.PrepareActsS8(x, sh.m, sh.k)
				defer a.Release()
				for rep := 0; rep < 2; rep++ { // a prepared input serves several products
					got := make([]float32, sh.m*sh.n)
					p.MatMulActs(got, a, bs, bias)
					checkF32Exact(t, fmt.Sprintf("%s %v", impl, sh), got, want)
				}
			})
		}
	}
}

// Per-tensor prepared activations (static scale, or dynamic from the whole
// input) are the symmetric int8 grid of one scale, clamp(round-half-even(
// x/s), −127, 127), checked against that definition through an identity
// weight, on every kernel set; values beyond a static range and ±Inf
// saturate, NaN maps to 0.
func TestPrepareActsS8PerTensor(t *testing.T) {
	r := rand.New(rand.NewSource(22))
	for _, sh := range []struct {
		m, k   int
		static float32
	}{{1, 40, 0}, {9, 70, 0}, {300, 260, 0}, {5, 64, 0.01}, {300, 260, 0.02}} {
		x := make([]float32, sh.m*sh.k)
		for i := range x {
			x[i] = float32(r.NormFloat64() * 2)
		}
		x[3] = float32(math.NaN())
		x[5] = float32(math.Inf(-1))
		if sh.m > 1 {
			x[sh.k+1] = 9 // the tensor's largest value sits in row 1
		}
		s := sh.static
		if s == 0 {
			var am float64
			for _, v := range x {
				if !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
					am = math.Max(am, math.Abs(float64(v)))
				}
			}
			s = float32(2 * am / 254)
		}
		// Identity weight [k×k] with unit scales: output = s·code.
		id := make([]int8, sh.k*sh.k)
		ones := make([]float32, sh.k)
		for j := 0; j < sh.k; j++ {
			id[j*sh.k+j], ones[j] = 1, 1
		}
		p := kernels.PackS8(id, sh.k, sh.k)
		for _, impl := range s8Impls(t) {
			withS8Impl(impl, func() {
				a := kernels.PrepareActsS8PerTensor(x, sh.m, sh.k, sh.static)
				defer a.Release()
				for i, sc := range a.Scales() {
					if sc != s {
						t.Fatalf("%s %v: row %d scale %v, want %v", impl, sh, i, sc, s)
					}
				}
				got := make([]float32, sh.m*sh.k)
				p.MatMulActs(got, a, ones, nil)
				for i, v := range x {
					c := math.RoundToEven(float64(v / s))
					if v != v {
						c = 0
					}
					c = math.Max(-127, math.Min(127, c))
					if want := float32(c) * s; got[i] != want {
						t.Fatalf("%s %v: element %d (x=%v) gives %v, want %v", impl, sh, i, v, got[i], want)
					}
				}
			})
		}
	}
}

// DequantizeRowsS8 is float32(code)·scale element by element, with and
// without the assembly kernels, for row lengths around the 32-wide blocks
// and strided rows, scales and output (an INT8 KV cache head's layout).
func TestDequantizeRowsS8(t *testing.T) {
	r := rand.New(rand.NewSource(23))
	src := make([]int8, 4000)
	for i := range src {
		src[i] = int8(r.Intn(256) - 128)
	}
	scales := make([]float32, 40)
	for i := range scales {
		scales[i] = r.Float32()
	}
	for _, asm := range []bool{false, true} {
		prev := kernels.SetAsm(asm)
		for _, c := range []struct{ rows, cols, lds, ldd, sstride int }{
			{1, 0, 0, 0, 1}, {1, 1, 1, 1, 1}, {1, 31, 31, 31, 1}, {3, 32, 32, 32, 1},
			{5, 33, 40, 50, 2}, {7, 64, 128, 64, 2}, {2, 95, 100, 96, 3}, {9, 200, 300, 201, 4},
		} {
			n := max(0, (c.rows-1)*c.ldd+c.cols)
			dst := make([]float32, n+1)
			for i := range dst {
				dst[i] = 7 // gaps between rows and past the end stay untouched
			}
			kernels.DequantizeRowsS8(dst, c.ldd, src, c.lds, scales, c.sstride, c.rows, c.cols)
			for i := range dst {
				row, col := i/max(1, c.ldd), i%max(1, c.ldd)
				want := float32(7)
				if row < c.rows && col < c.cols {
					want = float32(src[row*c.lds+col]) * scales[row*c.sstride]
				}
				if dst[i] != want {
					t.Fatalf("asm %v, %+v: dst[%d] = %v, want %v", asm, c, i, dst[i], want)
				}
			}
		}
		kernels.SetAsm(prev)
	}
}
