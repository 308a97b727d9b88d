//go:build !amd64 || purego

package kernels

func q4A16Asm(rows, ng, gk int, a *float32, w *uint32, sz *float32, xs *float32, c *float32, ldc int, accum int) {
	noAsm()
}
func q4A8Asm(rows, ng, gk int, a *byte, w *uint32, sz *float32, zi *int32, as *int32, c *float32, ldc int, accum int) {
	noAsm()
}

// No AVX-512 kernels in this build.
var cpuHasAVX512, q4AVX512 = false, false
