package kernels

import (
	"fmt"
	"math/rand"
	"testing"
)

func reportGFLOPS(b *testing.B, m, n, k int) {
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
}

type benchShape struct {
	name    string
	m, n, k int
}

// Shapes are M (rows of activations) × N (outputs) × K (inputs).
var benchShapes = []benchShape{
	{"linear_m512_n1024_k1024", 512, 1024, 1024},
	{"gemv_m1_n4096_k1024", 1, 4096, 1024},
	{"gemv_m1_n1024_k4096", 1, 1024, 4096},
	{"gemv_m1_n32000_k384", 1, 32000, 384},
	{"lmhead_m512_n32000_k384", 512, 32000, 384},
}

func BenchmarkSgemm(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	for _, s := range benchShapes {
		a := randSlice(r, s.m*s.k)
		w := randSlice(r, s.n*s.k)
		c := make([]float32, s.m*s.n)
		b.Run(s.name+"_transB", func(b *testing.B) {
			for b.Loop() {
				Sgemm(true, s.m, s.n, s.k, a, s.k, w, s.k, c, s.n, false)
			}
			reportGFLOPS(b, s.m, s.n, s.k)
		})
	}
	// the non-transposed layout (B stored k×n)
	s := benchShapes[0]
	a := randSlice(r, s.m*s.k)
	w := randSlice(r, s.n*s.k)
	c := make([]float32, s.m*s.n)
	b.Run(s.name+"_noTrans", func(b *testing.B) {
		for b.Loop() {
			Sgemm(false, s.m, s.n, s.k, a, s.k, w, s.n, c, s.n, false)
		}
		reportGFLOPS(b, s.m, s.n, s.k)
	})
}

func BenchmarkMatMulPacked(b *testing.B) {
	r := rand.New(rand.NewSource(2))
	for _, s := range benchShapes {
		a := randSlice(r, s.m*s.k)
		p := PackB(randSlice(r, s.n*s.k), s.n, s.k)
		c := make([]float32, s.m*s.n)
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				MatMulPacked(c, a, s.m, p)
			}
			reportGFLOPS(b, s.m, s.n, s.k)
		})
	}
}

// BenchmarkSgemmPureGo measures the fallback on the linear-layer shape.
func BenchmarkSgemmPureGo(b *testing.B) {
	r := rand.New(rand.NewSource(3))
	s := benchShapes[0]
	a := randSlice(r, s.m*s.k)
	w := randSlice(r, s.n*s.k)
	c := make([]float32, s.m*s.n)
	prev := SetAsm(false)
	defer SetAsm(prev)
	b.Run(s.name+"_transB", func(b *testing.B) {
		for b.Loop() {
			Sgemm(true, s.m, s.n, s.k, a, s.k, w, s.k, c, s.n, false)
		}
		reportGFLOPS(b, s.m, s.n, s.k)
	})
}

// BenchmarkSgemmSmall covers the attention-sized products.
func BenchmarkSgemmSmall(b *testing.B) {
	r := rand.New(rand.NewSource(4))
	for _, s := range []benchShape{{"qk_m64_n64_k64", 64, 64, 64}, {"qk_m128_n128_k64", 128, 128, 64}, {"m16_n1024_k1024", 16, 1024, 1024}} {
		a := randSlice(r, s.m*s.k)
		w := randSlice(r, s.n*s.k)
		c := make([]float32, s.m*s.n)
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				Sgemm(true, s.m, s.n, s.k, a, s.k, w, s.k, c, s.n, false)
			}
			reportGFLOPS(b, s.m, s.n, s.k)
		})
	}
}

func BenchmarkPackB(b *testing.B) {
	r := rand.New(rand.NewSource(5))
	n, k := 1024, 1024
	w := randSlice(r, n*k)
	for b.Loop() {
		PackB(w, n, k)
	}
	b.ReportMetric(float64(n*k*4*b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

func BenchmarkDot(b *testing.B) {
	for _, n := range []int{64, 1024} {
		r := rand.New(rand.NewSource(6))
		x, y := randSlice(r, n), randSlice(r, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var s float32
			for b.Loop() {
				s += Dot(x, y)
			}
			_ = s
			b.ReportMetric(2*float64(n*b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}

// BenchmarkMicrokernel runs the 6×16 kernel on L1-resident panels (kc = 256),
// single-threaded: the per-core ceiling for everything above.
func BenchmarkMicrokernel(b *testing.B) {
	if !HasAsm() {
		b.Skip("no assembly kernels")
	}
	r := rand.New(rand.NewSource(7))
	const kc = 256
	a := randSlice(r, kc*mr)
	bp := alignedFloats(kc * nr)
	copy(bp, randSlice(r, kc*nr))
	c := make([]float32, mr*nr)
	for b.Loop() {
		sgemmKernel6x16N(kc, &a[0], &bp[0], &c[0], nr, 0, 1, 0)
	}
	reportGFLOPS(b, mr, nr, kc)
}
