package kernels_test

import (
	"fmt"
	"math/rand"
	"testing"

	"llmq/kernels"
	"llmq/nn"
)

// The benchmarks below compare, per element, the AVX2 kernels ("asm"), their
// pure-Go twins ("go") and the scalar loops over nn.Exp32 they replace
// ("scalar"). Run with -bench 'SumExp|ExpShift|SiLU|MaxF32'.

func benchData(n int, scale float64, seed int64) []float32 {
	r := rand.New(rand.NewSource(seed))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * scale)
	}
	return x
}

func perElem(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/elem")
}

// variants runs f under "asm" (where available), "go" and "scalar"; f gets
// scalar = true for the last.
func variants(b *testing.B, f func(b *testing.B, scalar bool)) {
	if kernels.HasAsm() {
		b.Run("asm", func(b *testing.B) {
			prev := kernels.SetAsm(true)
			defer kernels.SetAsm(prev)
			f(b, false)
		})
	}
	b.Run("go", func(b *testing.B) {
		prev := kernels.SetAsm(false)
		defer kernels.SetAsm(prev)
		f(b, false)
	})
	b.Run("scalar", func(b *testing.B) { f(b, true) })
}

// BenchmarkSumExp is the log-sum-exp of a 32000-word vocabulary row.
func BenchmarkSumExp(b *testing.B) {
	const n = 32000
	x := benchData(n, 3, 1)
	m := kernels.MaxF32(x)
	variants(b, func(b *testing.B, scalar bool) {
		var s float64
		for b.Loop() {
			if scalar {
				var t float64
				for _, v := range x {
					t += float64(nn.Exp32(v - m))
				}
				s += t
			} else {
				s += kernels.SumExp(x, m)
			}
		}
		_ = s
		perElem(b, n)
	})
}

// BenchmarkExpShift is the softmax numerator of attention rows.
func BenchmarkExpShift(b *testing.B) {
	for _, n := range []int{64, 512} {
		x := benchData(n, 8, 2)
		y := make([]float32, n)
		m := kernels.MaxF32(x)
		const scale = 0.125
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			variants(b, func(b *testing.B, scalar bool) {
				var s float64
				for b.Loop() {
					if scalar {
						for i, v := range x {
							e := nn.Exp32((v - m) * scale)
							y[i] = e
							s += float64(e)
						}
					} else {
						s += kernels.ExpShift(y, x, m, scale)
					}
				}
				_ = s
				perElem(b, n)
			})
		})
	}
}

// BenchmarkSiLUMul is the SwiGLU gate, SiLU(g)⊙u, over 16 rows of an
// intermediate size of 1024. The inputs are restored each time (a copy,
// included in the time) so repeated SiLU does not drift into subnormals.
func BenchmarkSiLUMul(b *testing.B) {
	const n = 16 * 1024
	src := benchData(n, 2, 3)
	u := benchData(n, 1, 4)
	g := make([]float32, n)
	variants(b, func(b *testing.B, scalar bool) {
		for b.Loop() {
			copy(g, src)
			if scalar {
				for i, v := range g {
					g[i] = v / (1 + nn.Exp32(-v)) * u[i]
				}
			} else {
				kernels.SiLUMul(g, u)
			}
		}
		perElem(b, n)
	})
}

// BenchmarkSiLU is SiLU alone (the non-gated MLPs), same shape as above.
func BenchmarkSiLU(b *testing.B) {
	const n = 16 * 1024
	src := benchData(n, 2, 3)
	g := make([]float32, n)
	variants(b, func(b *testing.B, scalar bool) {
		for b.Loop() {
			copy(g, src)
			if scalar {
				for i, v := range g {
					g[i] = v / (1 + nn.Exp32(-v))
				}
			} else {
				kernels.SiLU(g)
			}
		}
		perElem(b, n)
	})
}

// BenchmarkMaxF32 is the shift of a vocabulary row.
func BenchmarkMaxF32(b *testing.B) {
	const n = 32000
	x := benchData(n, 3, 5)
	variants(b, func(b *testing.B, scalar bool) {
		var s float32
		for b.Loop() {
			if scalar {
				m := x[0]
				for _, v := range x {
					if v > m {
						m = v
					}
				}
				s += m
			} else {
				s += kernels.MaxF32(x)
			}
		}
		_ = s
		perElem(b, n)
	})
}
