//go:build !amd64 || purego

package kernels

// cpuHasAsm is false: this build has no assembly kernels.
const cpuHasAsm = false

func noAsm() { panic("kernels: assembly kernel called in a build without it") }

func sgemmKernel6x16N(k int, a, b, c *float32, ldc int, accum int, np int, astride int) { noAsm() }
func dotAVX2(n int, x, y *float32) float32                                              { noAsm(); return 0 }
func axpyAVX2(n int, alpha float32, x, y *float32)                                      { noAsm() }
func sgemmDotRows(k int, x *float32, w *float32, ldw int, nrows int, c *float32, accum int) {
	noAsm()
}
func packBT16(k int, src *float32, ld int, dst *float32)          { noAsm() }
func packA6(k int, src *float32, ld int, dst *float32)            { noAsm() }
func kernelAsm(rows, k int, a, b, c *float32, ldc int, accum int) { noAsm() }
func dotTileAsm(rows, k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, accum int) {
	noAsm()
}
func kernelStridedAsm(rows, k int, a, b *float32, ldb int, c *float32, ldc int, accum int, np int) {
	noAsm()
}
