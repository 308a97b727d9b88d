//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// The AVX-512 VNNI INT8 kernels, implemented in int8vnni_amd64.s (generated
// by gen_asm.go).

//go:noescape
func s8VKernel1x16(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, corr *int32)

//go:noescape
func s8VKernel2x16(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, corr *int32)

//go:noescape
func s8VKernel3x16(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, corr *int32)

//go:noescape
func s8VKernel4x16(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, corr *int32)

//go:noescape
func s8VKernel5x16(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, corr *int32)

//go:noescape
func s8VKernel1x32(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, bstride int, corr *int32)

//go:noescape
func s8VKernel2x32(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, bstride int, corr *int32)

//go:noescape
func s8VKernel3x32(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, bstride int, corr *int32)

//go:noescape
func s8VKernel4x32(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, bstride int, corr *int32)

//go:noescape
func s8VKernel5x32(k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, bstride int, corr *int32)

func s8VPeakLoop(n int)

// cpuHasVNNI reports whether the AVX-512 VNNI kernels can run here:
// VPDPBUSD on zmm needs AVX512_VNNI and AVX512F (x/sys/cpu also checks that
// the OS saves the ZMM state); the set's dotRows is the AVX2 one.
var cpuHasVNNI = cpuHasAsm && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VNNI

// s8VTileAsm runs the rows×16 VNNI microkernel (1 ≤ rows ≤ s8MR) over np A
// micro-panels.
func s8VTileAsm(rows, k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, corr *int32) {
	switch rows {
	case 1:
		s8VKernel1x16(k4, a, b, c, ldc, accum, np, astride, corr)
	case 2:
		s8VKernel2x16(k4, a, b, c, ldc, accum, np, astride, corr)
	case 3:
		s8VKernel3x16(k4, a, b, c, ldc, accum, np, astride, corr)
	case 4:
		s8VKernel4x16(k4, a, b, c, ldc, accum, np, astride, corr)
	case 5:
		s8VKernel5x16(k4, a, b, c, ldc, accum, np, astride, corr)
	default:
		panic("kernels: bad INT8 microkernel height")
	}
}

// s8VTile2Asm is s8VTileAsm on two B micro-panels (32 columns), the second
// bstride bytes after the first.
func s8VTile2Asm(rows, k4 int, a, b *byte, c *int32, ldc int, accum int, np int, astride int, bstride int, corr *int32) {
	switch rows {
	case 1:
		s8VKernel1x32(k4, a, b, c, ldc, accum, np, astride, bstride, corr)
	case 2:
		s8VKernel2x32(k4, a, b, c, ldc, accum, np, astride, bstride, corr)
	case 3:
		s8VKernel3x32(k4, a, b, c, ldc, accum, np, astride, bstride, corr)
	case 4:
		s8VKernel4x32(k4, a, b, c, ldc, accum, np, astride, bstride, corr)
	case 5:
		s8VKernel5x32(k4, a, b, c, ldc, accum, np, astride, bstride, corr)
	default:
		panic("kernels: bad INT8 microkernel height")
	}
}

// s8VNNI is the AVX-512 VNNI kernel set: one VPDPBUSD per 64 multiply-adds
// on offset-binary activations (see int8.go), the AVX2 GEMV for few rows.
var s8VNNI = &s8Set{
	name:      "avx512vnni",
	tile:      s8VTileAsm,
	tile2:     s8VTile2Asm,
	dotRows:   s8DotRows,
	unsignedA: true,
}
