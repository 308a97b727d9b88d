package nn

import (
	"math"
	"testing"
)

func TestExp32(t *testing.T) {
	var worst float64
	for x := float32(-103); x < 88.7; x += 0.001731 {
		got := float64(Exp32(x))
		want := math.Exp(float64(x))
		rel := math.Abs(got-want) / want
		if want < 1.1754944e-38 { // subnormal results carry fewer bits
			rel = math.Abs(got-want) / 1e-45
			if rel > 2 {
				t.Fatalf("Exp32(%v) = %g, want %g", x, got, want)
			}
			continue
		}
		worst = math.Max(worst, rel)
	}
	if worst > 4e-7 {
		t.Errorf("worst relative error %.3g > 4e-7", worst)
	}
	cases := []struct{ x, want float32 }{
		{0, 1},
		{float32(math.Inf(-1)), 0},
		{float32(math.Inf(1)), float32(math.Inf(1))},
		{100, float32(math.Inf(1))},
		{-200, 0},
	}
	for _, c := range cases {
		if got := Exp32(c.x); got != c.want {
			t.Errorf("Exp32(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	if !math.IsNaN(float64(Exp32(float32(math.NaN())))) {
		t.Error("Exp32(NaN) must be NaN")
	}
}

func benchInput() []float32 {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = -float32(i) * 0.005
	}
	return x
}

func BenchmarkExp32(b *testing.B) {
	x := benchInput()
	y := make([]float32, len(x))
	for i := 0; i < b.N; i++ {
		for j, v := range x {
			y[j] = Exp32(v)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/exp")
}

func BenchmarkMathExp(b *testing.B) {
	x := benchInput()
	y := make([]float32, len(x))
	for i := 0; i < b.N; i++ {
		for j, v := range x {
			y[j] = float32(math.Exp(float64(v)))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/exp")
}
