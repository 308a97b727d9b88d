package kernels_test

import (
	"fmt"
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
