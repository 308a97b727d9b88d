package nn

import (
	"math"
	"math/rand"
	"testing"
)

func TestSoftmaxCausal(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, L := range []int{1, 5, 8, 17, 64, 301} {
		for _, n := range []int{1, L / 2, L} {
			if n < 1 {
				continue
			}
			row := make([]float32, L)
			for i := range row {
				row[i] = float32(r.NormFloat64() * 20)
			}
			orig := append([]float32(nil), row...)
			const scale = 0.125
			softmaxCausal(row, n, scale)
			var m float64 = math.Inf(-1)
			for _, v := range orig[:n] {
				m = math.Max(m, float64(v))
			}
			var sum float64
			for _, v := range orig[:n] {
				sum += math.Exp((float64(v) - m) * scale)
			}
			for i, v := range orig {
				want := 0.0
				if i < n {
					want = math.Exp((float64(v)-m)*scale) / sum
				}
				if d := math.Abs(float64(row[i]) - want); d > 2e-6*want+1e-30 || (i >= n && row[i] != 0) {
					t.Fatalf("L=%d n=%d: p[%d] = %v, want %v", L, n, i, row[i], want)
				}
			}
		}
	}
}
