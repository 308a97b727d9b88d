//go:build !amd64 || purego

package kernels

func quantErrPow24AVX2(x *float32, n int, s, z, qmin, qmax float32, bound float64) float64 {
	noAsm()
	return 0
}
