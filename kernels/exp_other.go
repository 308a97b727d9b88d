//go:build !amd64 || purego

package kernels

func sumExpAVX2(n int, x *float32, shift float32) float64 { noAsm(); return 0 }
func expShiftAVX2(n int, y, x *float32, shift, scale float32) float64 {
	noAsm()
	return 0
}
func siluAVX2(n int, x *float32)                      { noAsm() }
func siluMulAVX2(n int, x, u *float32)                { noAsm() }
func maxAVX2(n int, x *float32) float32               { noAsm(); return 0 }
func scaleAVX2(n int, a float32, x *float32)          { noAsm() }
func sumSqAVX2(n int, x *float32) float64             { noAsm(); return 0 }
func scaleMulAVX2(n int, y, x, w *float32, s float32) { noAsm() }
