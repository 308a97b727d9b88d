package kernels_test

import (
	"math"
	"math/rand"
	"testing"

	"llmq/kernels"
)

// SumSquares against a float64 sum, ScaleMul bit for bit against the
// definition, on every length 0…70 (full blocks, the 8-block and masked
// tails) and every implementation.
func TestSumSquaresScaleMul(t *testing.T) {
	r := rand.New(rand.NewSource(31))
	for n := 0; n <= 70; n++ {
		x := make([]float32, n)
		w := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * 10)
			w[i] = float32(r.NormFloat64())
		}
		var want float64
		for _, v := range x {
			want += float64(v) * float64(v)
		}
		const s = float32(0.37)
		for _, asm := range implPaths(t) {
			withImpl(asm, func() {
				if got := kernels.SumSquares(x); math.Abs(got-want) > 1e-12*want {
					t.Fatalf("%s n=%d: SumSquares %v, want %v", implName(asm), n, got, want)
				}
				y := make([]float32, n+1)
				y[n] = 42
				kernels.ScaleMul(y[:n], x, w, s)
				for i := range x {
					if v := x[i] * s * w[i]; y[i] != v {
						t.Fatalf("%s n=%d: y[%d] = %v, want %v", implName(asm), n, i, y[i], v)
					}
				}
				if y[n] != 42 {
					t.Fatalf("%s n=%d: wrote past the end", implName(asm), n)
				}
			})
		}
	}
}
