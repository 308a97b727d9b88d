package kernels

import "math"

// Pow24 and QuantErrPow24: the error norm of the MSE range search of GPTQ's
// reference quantizer and llm-compressor's "mse" observer, Σ|x − Q(x)|^2.4
// over a group, without math.Pow (hundreds of nanoseconds a call).
//
// A normal float32 is d = m·2^k with m ∈ [1, 2), so
//
//	|d|^2.4 = m^2.4 · 2^(2.4k)
//
// The power of two is a table entry (exact to float64 rounding) and m^2.4
// the degree-7 Chebyshev interpolant in t = 2m − 3 ∈ [−1, 1) (relative
// error 6.1e-9), evaluated in float64. Both implementations — the AVX2+FMA
// kernel, 8 values at a time with the polynomial in two 4-lane float64
// halves, and the pure-Go one — are within 1e-8 relative of math.Pow for
// normal |d| (they differ from each other in the last bits: fused
// multiply-adds, summation order). Zeros and subnormals (|d| < 2^−126,
// whose 2.4th power is below 1e-91) count exactly in Pow24 and as 0 in
// QuantErrPow24: an absolute error below 1e-91 per value.

// Monomial coefficients of the Chebyshev interpolant of ((t+3)/2)^2.4 on
// [−1, 1] at 8 nodes.
const (
	pow24C0 = 2.6461778054503781106
	pow24C1 = 2.116942239544754028
	pow24C2 = 0.49395303704667430452
	pow24C3 = 0.021953507024686095106
	pow24C4 = -0.0010969176651934684005
	pow24C5 = 0.00011692690037265116348
	pow24C6 = -0.000018098281067832114011
	pow24C7 = 3.1470215216549382944e-6
)

// pow24Table[k] = 2^(2.4·(k − 127)) for the biased float32 exponents k;
// entry 0 (zeros, subnormals) is 0 and entry 255 (a difference that
// overflowed float32) +Inf. The assembly reads it in place.
var pow24Table = func() (t [256]float64) {
	for k := 1; k < 255; k++ {
		t[k] = math.Pow(2, 2.4*float64(k-127))
	}
	t[255] = math.Inf(1)
	return t
}()

// pow24Vec holds the kernel's constants as 32-byte vectors: masks for |d|
// and the mantissa, the bits of 1.0 and 3.0 (float32 × 8), then c0…c7
// (float64 × 4 each).
var pow24Vec = func() (v [4*8 + 8*4]uint64) {
	u32 := func(i int, x uint32) {
		for j := 0; j < 4; j++ {
			v[i*4+j] = uint64(x) | uint64(x)<<32
		}
	}
	u32(0, 0x7fffffff)
	u32(1, 0x007fffff)
	u32(2, math.Float32bits(1))
	u32(3, math.Float32bits(3))
	for i, c := range [8]float64{pow24C0, pow24C1, pow24C2, pow24C3, pow24C4, pow24C5, pow24C6, pow24C7} {
		for j := 0; j < 4; j++ {
			v[16+i*4+j] = math.Float64bits(c)
		}
	}
	return v
}()

// Pow24 is |d|^2.4 in float64 with relative error below 1e-8 (exact for
// zeros and subnormals, +Inf for ±Inf).
func Pow24(d float32) float64 {
	b := math.Float32bits(d) &^ (1 << 31)
	if b < 1<<23 {
		if b == 0 {
			return 0
		}
		return math.Pow(float64(math.Float32frombits(b)), 2.4)
	}
	return pow24Poly(b) * pow24Table[b>>23]
}

// pow24Poly is the interpolant of m^2.4 at the mantissa of the float32 bits
// b (Horner).
func pow24Poly(b uint32) float64 {
	t := 2*float64(math.Float32frombits(b&0x7fffff|0x3f800000)) - 3
	p := pow24C7
	p = p*t + pow24C6
	p = p*t + pow24C5
	p = p*t + pow24C4
	p = p*t + pow24C3
	p = p*t + pow24C2
	p = p*t + pow24C1
	return p*t + pow24C0
}

// QuantErrPow24 returns Σ |x_i − Q(x_i)|^2.4 over x (float64 sum), with Q
// the fake quantization onto the integer grid of scale s and zero-point z:
//
//	Q(x) = s·(clip(round(x/s) + z, qmin, qmax) − z)
//
// computed in the float32 steps of quant.QuantizeInt (x/s in float32,
// ties to even), so each difference is exactly the one quant's Fake gives;
// only its 2.4th power is approximate (see above). The sum is checked
// against bound after every 8 values and returned, at least bound, as soon
// as it reaches it (callers scanning candidates for the smallest error
// abandon a candidate there). s must be positive and finite, qmin ≤ qmax
// and z integers below 2^24.
func QuantErrPow24(x []float32, s, z, qmin, qmax float32, bound float64) float64 {
	n8 := len(x) &^ 7
	var e float64
	i := 0
	if asmOn.Load() && n8 > 0 {
		e = quantErrPow24AVX2(&x[0], n8, s, z, qmin, qmax, bound)
		if e >= bound {
			return e
		}
		i = n8
	}
	for ; i < len(x); i += 8 {
		for _, v := range x[i:min(i+8, len(x))] {
			r := float32(math.RoundToEven(float64(v/s))) + z
			r = min(max(r, qmin), qmax)
			b := math.Float32bits(v-float32(s*(r-z))) &^ (1 << 31) // no fused multiply-add: d as quant computes it
			if b >= 1<<23 {
				e += pow24Poly(b) * pow24Table[b>>23]
			}
		}
		if e >= bound {
			return e
		}
	}
	return e
}
