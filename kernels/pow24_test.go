package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Pow24 is within 1e-8 of math.Pow(|d|, 2.4) over the float32 mantissas
// (every 5th at exponent 0, a sample at others: the exponent's factor is a
// table entry), exact at zeros and subnormals.
func TestPow24(t *testing.T) {
	worst := 0.0
	for _, k := range []int{-126, -40, -3, 0, 1, 60, 127} {
		step := uint32(1009)
		if k == 0 {
			step = 5
		}
		for m := uint32(0); m < 1<<23; m += step {
			d := math.Float32frombits(uint32(k+127)<<23 | m)
			want := math.Pow(float64(d), 2.4)
			got := Pow24(d)
			if r := math.Abs(got-want) / want; r > worst {
				worst = r
			}
			if m%7 == 0 && Pow24(-d) != got {
				t.Fatalf("Pow24(−%g) ≠ Pow24(%g)", d, d)
			}
		}
	}
	t.Logf("worst relative error %.3g", worst)
	if worst > 1e-8 {
		t.Errorf("Pow24: relative error %.3g > 1e-8", worst)
	}
	for _, d := range []float32{0, float32(math.Copysign(0, -1)), 1e-40, -3e-45} {
		if got, want := Pow24(d), math.Pow(math.Abs(float64(d)), 2.4); got != want {
			t.Errorf("Pow24(%g) = %g, want %g", d, got, want)
		}
	}
	if !math.IsInf(Pow24(float32(math.Inf(1))), 1) {
		t.Error("Pow24(+Inf) is not +Inf")
	}
}

// quantErrRef is Σ|x − Q(x)|^2.4 with math.Pow, Q as quant.QuantizeInt.
func quantErrRef(x []float32, s, z, qmin, qmax float32) float64 {
	var e float64
	for _, v := range x {
		r := math.RoundToEven(float64(v/s)) + float64(z)
		r = math.Max(float64(qmin), math.Min(float64(qmax), r))
		d := v - float32(s*float32(r-float64(z)))
		e += math.Pow(math.Abs(float64(d)), 2.4)
	}
	return e
}

// QuantErrPow24, with and without the assembly, against math.Pow: every
// length (the tail of fewer than 8 values), groups with values on the grid
// (differences 0), clipped outliers, symmetric and asymmetric grids; and
// the early return at the bound.
func TestQuantErrPow24(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 24))
	for _, asm := range []bool{false, true} {
		if asm && !HasAsm() {
			continue
		}
		prev := SetAsm(asm)
		for trial := 0; trial < 3000; trial++ {
			n := 1 + trial%70
			x := make([]float32, n)
			sd := math.Pow(10, -4+5*rng.Float64())
			for i := range x {
				x[i] = float32(rng.NormFloat64() * sd)
			}
			var s, z, qmin, qmax float32
			if trial%2 == 0 { // int4 asymmetric
				qmin, qmax = 0, 15
				s = float32(sd * (3 + 3*rng.Float64()) / 15)
				z = float32(rng.IntN(16))
			} else { // int3 symmetric
				qmin, qmax = -3, 3
				s = float32(sd * (1 + 3*rng.Float64()) / 3)
			}
			switch trial % 7 {
			case 3: // on the grid: zero differences
				for i := range x {
					x[i] = s * float32(rng.IntN(int(qmax-qmin)+1)+int(qmin)-int(z))
				}
			case 5: // an outlier far past the grid
				x[rng.IntN(n)] = float32(100 * sd)
			}
			want := quantErrRef(x, s, z, qmin, qmax)
			got := QuantErrPow24(x, s, z, qmin, qmax, math.Inf(1))
			if !(math.Abs(got-want) <= 1e-8*want+1e-80) {
				t.Fatalf("asm=%v n=%d: %g, math.Pow %g (rel %.3g)", asm, n, got, want, (got-want)/want)
			}
			if want > 0 {
				b := want / 2
				if got := QuantErrPow24(x, s, z, qmin, qmax, b); got < b*(1-1e-8) {
					t.Fatalf("asm=%v n=%d: bound %g, returned %g", asm, n, b, got)
				}
			}
		}
		SetAsm(prev)
	}
}

func BenchmarkQuantErrPow24(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, 128)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for _, asm := range []bool{false, true} {
		name := "go"
		if asm {
			name = "avx2"
		}
		b.Run(name, func(b *testing.B) {
			if asm && !HasAsm() {
				b.Skip("no AVX2")
			}
			prev := SetAsm(asm)
			defer SetAsm(prev)
			for b.Loop() {
				QuantErrPow24(x, 0.4, 8, 0, 15, math.Inf(1))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/value")
		})
	}
}
