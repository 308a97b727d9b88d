//go:build amd64 && !purego

package kernels

// quantErrPow24AVX2 is QuantErrPow24 over n values (n a positive multiple
// of 8), in pow24_amd64.s.
//
//go:noescape
func quantErrPow24AVX2(x *float32, n int, s, z, qmin, qmax float32, bound float64) float64
