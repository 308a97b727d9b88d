package kernels_test

import (
	"fmt"
	"math/rand"
	"runtime"
	"sync"
	"testing"

	"llmq/kernels"
	"llmq/quant"
)

// BenchmarkInt8Peak measures what the INT8 peak derivation needs on the
// machine at hand:
//
//	clock:       a chain of dependent single-cycle adds → GHz
//	s8method:    the arithmetic of the 5×16 microkernel on registers only
//	             (VPSIGNB, VPMADDUBSW, VPMADDWD, VPADDD per 32 MACs) →
//	             GOPS on one core, and on all cores at once (·P)
//
//	vnni:        16 independent VPDPBUSD zmm per iteration on registers
//	             only (CPUs with AVX-512 VNNI) → the VNNI peak, GOPS
//
// The theoretical ceiling of the AVX2 method is 64 int8 ops/cycle/core (one
// 32-MAC block per cycle: two multiply pipes for VPMADDUBSW+VPMADDWD, four
// ALU pipes for the four µops); GOPS/(GHz·64) is the fraction reached.
func BenchmarkInt8Peak(b *testing.B) {
	if !kernels.HasAsm() {
		b.Skip("no assembly kernels")
	}
	const n = 1 << 14
	b.Run("clock", func(b *testing.B) {
		for b.Loop() {
			kernels.ClockLoop(n)
		}
		b.ReportMetric(64*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GHz")
	})
	b.Run("s8method_1core", func(b *testing.B) {
		for b.Loop() {
			kernels.S8PeakLoop(n)
		}
		b.ReportMetric(640*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOPS")
	})
	// long runs per goroutine, so that start-up latency does not count
	const nLong = 1 << 20
	p := runtime.GOMAXPROCS(0)
	if kernels.HasVNNI() {
		// VPDPBUSD zmm: 64 multiply-adds = 128 ops per instruction.
		b.Run("vnni_1core", func(b *testing.B) {
			for b.Loop() {
				kernels.S8VPeakLoop(n)
			}
			b.ReportMetric(16*128*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOPS")
		})
		b.Run(fmt.Sprintf("vnni_%dcores", p), func(b *testing.B) {
			for b.Loop() {
				var wg sync.WaitGroup
				for w := 0; w < p; w++ {
					wg.Add(1)
					go func() { defer wg.Done(); kernels.S8VPeakLoop(nLong / 4) }()
				}
				wg.Wait()
			}
			b.ReportMetric(16*128*float64(nLong/4)*float64(p)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOPS")
		})
	}
	b.Run(fmt.Sprintf("s8method_%dcores", p), func(b *testing.B) {
		for b.Loop() {
			var wg sync.WaitGroup
			for w := 0; w < p; w++ {
				wg.Add(1)
				go func() { defer wg.Done(); kernels.S8PeakLoop(nLong) }()
			}
			wg.Wait()
		}
		b.ReportMetric(640*float64(nLong)*float64(p)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOPS")
	})
}

// llmShape is a linear layer y = x·Wᵀ: m rows (tokens), k inputs, n outputs.
type llmShape struct {
	name    string
	m, k, n int
}

// Shapes written m×k×n: Llama-7B-sized layers and the 25M model's
// (hidden 384, MLP 1024, vocabulary 32000).
var llmShapes = []llmShape{
	{"m1_k4096_n4096", 1, 4096, 4096},
	{"m16_k4096_n11008", 16, 4096, 11008},
	{"m512_k4096_n4096", 512, 4096, 4096},
	{"m512_k384_n1024", 512, 384, 1024},
	{"m1_k384_n1024", 1, 384, 1024},
	{"m1_k1024_n384", 1, 1024, 384},
	{"m1_k384_n32000", 1, 384, 32000},
}

func reportGOPS(b *testing.B, s llmShape) {
	b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOPS")
}

// BenchmarkLLMShapes runs every kernel on each shape side by side (ops are
// 2·m·n·k for all, flops or int ops):
//
//	fp32_sgemm    Sgemm(transB) on the FP32 weight
//	fp32_packed   MatMulPacked on the prepacked FP32 weight
//	int8_gemm     GemmS8Scaled on the int8 weight [n×k] (packs B per call)
//	int8_packed   PackedS8.MatMulScaled (W8A8, fused per-channel epilogue)
//	int4_a16      PackedQ4.MatMul, int4-asym-g128 weight, FP32 activations
//	int4_a8       PackedQ4.MatMulS8, int4-asym-g128 weight, int8 activations
//
// The INT8 and W4A8 timings exclude activation quantization
// (BenchmarkQuantizeRowsS8 measures it).
func BenchmarkLLMShapes(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	for _, s := range llmShapes {
		x := make([]float32, s.m*s.k)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		w := make([]float32, s.n*s.k)
		for i := range w {
			w[i] = float32(r.NormFloat64()) * 0.02
		}
		c := make([]float32, s.m*s.n)
		b.Run(s.name+"/fp32_sgemm", func(b *testing.B) {
			for b.Loop() {
				kernels.Sgemm(true, s.m, s.n, s.k, x, s.k, w, s.k, c, s.n, false)
			}
			reportGOPS(b, s)
		})
		pw := kernels.PackB(w, s.n, s.k)
		b.Run(s.name+"/fp32_packed", func(b *testing.B) {
			for b.Loop() {
				kernels.MatMulPacked(c, x, s.m, pw)
			}
			reportGOPS(b, s)
		})
		pw = nil
		qa := make([]int8, s.m*s.k)
		as := make([]float32, s.m)
		kernels.QuantizeRowsS8(qa, as, x, s.m, s.k)
		qw := make([]int8, s.n*s.k)
		ws := make([]float32, s.n)
		kernels.QuantizeRowsS8(qw, ws, w, s.n, s.k) // per-channel weight scales
		bias := make([]float32, s.n)
		b.Run(s.name+"/int8_gemm", func(b *testing.B) {
			for b.Loop() {
				kernels.GemmS8Scaled(s.m, s.n, s.k, qa, s.k, as, qw, s.k, ws, bias, c, s.n)
			}
			reportGOPS(b, s)
		})
		p8 := kernels.PackS8(qw, s.n, s.k)
		qw = nil
		b.Run(s.name+"/int8_packed", func(b *testing.B) {
			for b.Loop() {
				p8.MatMulScaled(c, qa, as, s.m, ws, bias)
			}
			reportGOPS(b, s)
		})
		p8 = nil
		qt, err := quant.QuantizeWeight(w, s.n, s.k, quant.MustParseSpec("int4-asym-g128"))
		if err != nil {
			b.Fatal(err)
		}
		w = nil
		p4 := kernels.PackQ4(qt.Data, s.n, s.k, 128, qt.Scales, qt.Zeros)
		qt = nil
		b.Run(s.name+"/int4_a16", func(b *testing.B) {
			for b.Loop() {
				p4.MatMul(c, x, s.m)
			}
			reportGOPS(b, s)
		})
		b.Run(s.name+"/int4_a8", func(b *testing.B) {
			for b.Loop() {
				p4.MatMulS8(c, qa, as, s.m)
			}
			reportGOPS(b, s)
		})
	}
}

// BenchmarkQuantizeRowsS8 measures per-token activation quantization.
func BenchmarkQuantizeRowsS8(b *testing.B) {
	r := rand.New(rand.NewSource(2))
	for _, sh := range [][2]int{{1, 4096}, {512, 4096}} {
		rows, cols := sh[0], sh[1]
		x := make([]float32, rows*cols)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		q := make([]int8, rows*cols)
		s := make([]float32, rows)
		b.Run(fmt.Sprintf("%dx%d", rows, cols), func(b *testing.B) {
			for b.Loop() {
				kernels.QuantizeRowsS8(q, s, x, rows, cols)
			}
			b.ReportMetric(float64(rows*cols*4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkGEMVCold is the 1×4096×4096 decode GEMV with the weights out of
// cache: each iteration uses the next of several packed copies, together
// larger than the 32 MiB L3, so every weight byte comes from DRAM (in
// BenchmarkLLMShapes the 8–16 MiB int4/int8 matrices stay in L3 between
// iterations, the 64 MiB FP32 one does not). GB/s counts weight bytes.
func BenchmarkGEMVCold(b *testing.B) {
	const m, k, n = 1, 4096, 4096
	const l3 = 48 << 20 // bytes of weights to cycle through, > L3
	r := rand.New(rand.NewSource(3))
	x := make([]float32, m*k)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	w := make([]float32, n*k)
	for i := range w {
		w[i] = float32(r.NormFloat64()) * 0.02
	}
	c := make([]float32, m*n)
	report := func(b *testing.B, bytes int) {
		s := b.Elapsed().Seconds()
		b.ReportMetric(2*float64(m*n*k)*float64(b.N)/s/1e9, "GOPS")
		b.ReportMetric(float64(bytes)*float64(b.N)/s/1e9, "GB/s")
	}
	pw := kernels.PackB(w, n, k)
	b.Run("fp32_packed", func(b *testing.B) {
		for b.Loop() {
			kernels.MatMulPacked(c, x, m, pw)
		}
		report(b, 4*n*k)
	})
	pw = nil
	qa := make([]int8, m*k)
	as := make([]float32, m)
	kernels.QuantizeRowsS8(qa, as, x, m, k)
	qw := make([]int8, n*k)
	ws := make([]float32, n)
	kernels.QuantizeRowsS8(qw, ws, w, n, k)
	p8 := make([]*kernels.PackedS8, (l3+n*k-1)/(n*k))
	for i := range p8 {
		p8[i] = kernels.PackS8(qw, n, k)
	}
	b.Run(fmt.Sprintf("int8_packed_x%d", len(p8)), func(b *testing.B) {
		i := 0
		for b.Loop() {
			p8[i%len(p8)].MatMulScaled(c, qa, as, m, ws, nil)
			i++
		}
		report(b, n*k+4*n)
	})
	p8 = nil
	qt, err := quant.QuantizeWeight(w, n, k, quant.MustParseSpec("int4-asym-g128"))
	if err != nil {
		b.Fatal(err)
	}
	one := kernels.PackQ4(qt.Data, n, k, 128, qt.Scales, qt.Zeros)
	p4 := make([]*kernels.PackedQ4, (l3+one.Bytes()-1)/one.Bytes())
	for i := range p4 {
		p4[i] = kernels.PackQ4(qt.Data, n, k, 128, qt.Scales, qt.Zeros)
	}
	bytes4 := n*k/2 + n*(k/128)*8 // codes + the scales and zero-points MatMul reads
	b.Run(fmt.Sprintf("int4_a16_x%d", len(p4)), func(b *testing.B) {
		i := 0
		for b.Loop() {
			p4[i%len(p4)].MatMul(c, x, m)
			i++
		}
		report(b, bytes4)
	})
	b.Run(fmt.Sprintf("int4_a8_x%d", len(p4)), func(b *testing.B) {
		i := 0
		for b.Loop() {
			p4[i%len(p4)].MatMulS8(c, qa, as, m)
			i++
		}
		report(b, bytes4)
	})
}

// BenchmarkPrepareActsS8 measures quantizing and packing one linear's input
// for the INT8 GEMM (W8A8 prefill at wiki-llama-25m's widths): GB/s counts
// the float32 input read.
func BenchmarkPrepareActsS8(b *testing.B) {
	r := rand.New(rand.NewSource(3))
	for _, sh := range [][2]int{{512, 384}, {512, 1024}} {
		rows, cols := sh[0], sh[1]
		x := make([]float32, rows*cols)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		b.Run(fmt.Sprintf("%dx%d", rows, cols), func(b *testing.B) {
			for b.Loop() {
				kernels.PrepareActsS8(x, rows, cols).Release()
			}
			b.ReportMetric(float64(rows*cols*4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
