//go:build amd64 && !purego

package kernels

import (
	"math/rand"
	"testing"
)

// Single-core microkernel benchmarks on L1/L2-resident operands: the
// per-core ceilings of the INT8 and int4 drivers (compare BenchmarkMicrokernel
// for FP32 and BenchmarkInt8Peak for the register-only INT8 op mix).

// BenchmarkS8Microkernel runs the 5×16 INT8 kernel over a kc = 1024 block.
func BenchmarkS8Microkernel(b *testing.B) {
	if !HasAsm() {
		b.Skip("no assembly kernels")
	}
	r := rand.New(rand.NewSource(1))
	const k4 = 256
	a := alignedBytes(k4 * s8MRows * 4)
	bp := alignedBytes(k4 * s8PanelB)
	r.Read(a)
	r.Read(bp)
	clampAS8(a)
	c := make([]int32, s8MRows*s8NR)
	for b.Loop() {
		s8Kernel5x16(k4, &a[0], &bp[0], &c[0], s8NR, 0, 1, 0)
	}
	b.ReportMetric(2*float64(s8MRows*s8NR*4*k4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOPS")
}

// BenchmarkQ4Microkernel runs the W4A16 (6 rows and 1 row) and W4A8 (4
// rows) kernels over 16 outputs × k = 1024 in groups of 128.
func BenchmarkQ4Microkernel(b *testing.B) {
	if !HasAsm() {
		b.Skip("no assembly kernels")
	}
	r := rand.New(rand.NewSource(2))
	const k, gs = 1024, 128
	ng, gk := k/gs, gs/8
	w := alignedUint32s(k / 8 * q4BlkDw)
	for i := range w {
		w[i] = r.Uint32()
	}
	sz := alignedFloats(ng * q4SzPer)
	for i := range sz {
		sz[i] = 0.01
	}
	zi := make([]int32, ng*q4ZiPer)
	c := make([]float32, q4Rows*q4NR)
	for _, R := range []int{1, 2, 3, 4, 5, 6} {
		a := alignedFloats(k * R)
		xs := make([]float32, ng*R)
		b.Run("a16_rows"+string(rune('0'+R)), func(b *testing.B) {
			for b.Loop() {
				q4A16Asm(R, ng, gk, &a[0], &w[0], &sz[0], &xs[0], &c[0], q4NR, 0)
			}
			b.ReportMetric(2*float64(R*q4NR*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
	for _, R := range []int{1, 4} {
		a8 := alignedBytes(k * R)
		as := make([]int32, ng*R)
		b.Run("a8_rows"+string(rune('0'+R)), func(b *testing.B) {
			for b.Loop() {
				q4A8Asm(R, ng, gk, &a8[0], &w[0], &sz[0], &zi[0], &as[0], &c[0], q4NR, 0)
			}
			b.ReportMetric(2*float64(R*q4NR*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOPS")
		})
	}
}
