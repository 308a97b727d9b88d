package quant

import "math"

// Minifloat formats.
//
// A minifloat with E exponent bits, M mantissa bits and bias B encodes a code
// with sign S, exponent field e and mantissa field m as
//
//	e > 0 (normal):     (−1)^S · 2^(e−B) · (1 + m/2^M)
//	e = 0 (subnormal):  (−1)^S · 2^(1−B) · (m/2^M)
//
// except for the codes a format reserves for Inf/NaN. The three formats here:
//
//	FP8 E4M3 (OCP "E4M3FN"): E=4 M=3 B=7. No Inf; the only NaNs are S.1111.111
//	  (0x7F, 0xFF), so exponent 15 is an ordinary binade up to
//	  2^8·1.75 = 448 (0x7E). Smallest subnormal 2^−9 (0x01), smallest
//	  normal 2^−6 (0x08).
//	FP8 E5M2: E=5 M=2 B=15, IEEE-like: exponent 31 holds ±Inf (m = 0) and NaN
//	  (m ≠ 0). Max 2^15·1.75 = 57344 (0x7B), smallest subnormal 2^−16.
//	FP4 E2M1 (OCP MX FP4): E=2 M=1 B=1, no Inf or NaN; the values are
//	  ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}.
//
// Encoding rounds to the nearest representable value, ties to the even code
// (mantissa LSB 0), producing subnormals and signed zeros, like the hardware
// conversions (torch .to(float8_e4m3fn), cvt.rn.satfinite). Overflow:
//
//   - Encode saturates: anything whose rounded magnitude exceeds the largest
//     finite value, ±Inf included, becomes ±max. For E4M3 and E2M1 this is the
//     only sensible choice (no Inf). For E5M2 it is a choice: IEEE rounding
//     would give Inf, but a quantizer must never manufacture Inf from a finite
//     (merely clipped) input, and "satfinite" is what the quantized-GEMM
//     conversions use; so E5M2 saturates too by default.
//   - EncodeIEEE does not saturate: a value that rounds beyond max becomes
//     ±Inf where the format has it (E5M2), NaN where it does not but has a NaN
//     (E4M3, as the OCP spec's non-saturating mode), and saturates for E2M1,
//     which has neither.
//
// NaN encodes to the format's NaN (0x7F for E4M3, 0x7E for E5M2, sign kept);
// E2M1 has no NaN and encodes it as +0 — quantizers reject NaN beforehand.
//
// Scaled FP quantization puts a real scale in front: x̂ = s·fp(x/s) with
// s = absmax/fpmax, so the group's largest magnitude maps onto the largest
// finite value. Unlike the integer grid the error is relative: for |x/s| in
// the normal range |x − x̂| ≤ 2^−(M+1)·|x|, and below it the absolute error is
// at most half a subnormal step, s·2^(1−B−M)/2.

// FPFormat is one minifloat format. Use the package values E4M3, E5M2 and
// E2M1; the zero value is not usable.
type FPFormat struct {
	name     string
	expBits  int
	manBits  int
	bias     int
	ieee     bool    // top exponent reserved for Inf/NaN (E5M2)
	fnNaN    bool    // only S.1…1.1…1 is NaN (E4M3FN)
	max      float32 // largest finite value
	maxCode  uint8   // its positive code
	emax     int     // unbiased exponent of max
	width    int     // total bits
	decode   [256]float32
	nanCode  uint8 // positive NaN code (0 if none)
	infCode  uint8 // positive Inf code (0 if none)
	hasNaN   bool
	hasInf   bool
	minSub   float32 // smallest positive subnormal
	minNorml float32 // smallest positive normal
}

// The three minifloat formats.
var (
	E4M3 = newFPFormat("e4m3", 4, 3, 7, false, true)
	E5M2 = newFPFormat("e5m2", 5, 2, 15, true, false)
	E2M1 = newFPFormat("e2m1", 2, 1, 1, false, false)
)

func newFPFormat(name string, e, m, bias int, ieee, fn bool) *FPFormat {
	f := &FPFormat{name: name, expBits: e, manBits: m, bias: bias, ieee: ieee, fnNaN: fn, width: 1 + e + m}
	topExp := 1<<e - 1
	switch {
	case ieee: // top binade reserved
		f.emax = topExp - 1 - bias
		f.maxCode = uint8((topExp-1)<<m | (1<<m - 1))
		f.hasInf, f.infCode = true, uint8(topExp<<m)
		f.hasNaN, f.nanCode = true, uint8(topExp<<m|1<<(m-1)) // quiet NaN
	case fn: // only all-ones is NaN
		f.emax = topExp - bias
		f.maxCode = uint8(topExp<<m | (1<<m - 2))
		f.hasNaN, f.nanCode = true, uint8(topExp<<m|(1<<m-1))
	default: // every code finite
		f.emax = topExp - bias
		f.maxCode = uint8(topExp<<m | (1<<m - 1))
	}
	for c := 0; c < 1<<f.width; c++ {
		f.decode[c] = f.decodeSlow(uint8(c))
	}
	f.max = f.decode[f.maxCode]
	f.minSub = float32(math.Ldexp(1, 1-bias-m))
	f.minNorml = float32(math.Ldexp(1, 1-bias))
	return f
}

// decodeSlow evaluates the bit-layout formula; it fills the decode table.
func (f *FPFormat) decodeSlow(c uint8) float32 {
	m := int(c) & (1<<f.manBits - 1)
	e := int(c>>f.manBits) & (1<<f.expBits - 1)
	neg := c>>(f.expBits+f.manBits)&1 == 1
	top := 1<<f.expBits - 1
	var v float64
	switch {
	case f.ieee && e == top && m == 0:
		v = math.Inf(1)
	case f.ieee && e == top, f.fnNaN && e == top && m == 1<<f.manBits-1:
		return float32(math.NaN())
	case e == 0:
		v = math.Ldexp(float64(m), 1-f.bias-f.manBits)
	default:
		v = math.Ldexp(float64(1<<f.manBits+m), e-f.bias-f.manBits)
	}
	if neg {
		v = -v
	}
	return float32(v)
}

func (f *FPFormat) String() string { return f.name }

// Bits is the code width: 8 or 4.
func (f *FPFormat) Bits() int { return f.width }

// ExpBits, ManBits and Bias describe the layout.
func (f *FPFormat) ExpBits() int { return f.expBits }
func (f *FPFormat) ManBits() int { return f.manBits }
func (f *FPFormat) Bias() int    { return f.bias }

// Max is the largest finite value (448, 57344, 6).
func (f *FPFormat) Max() float32 { return f.max }

// MaxCode is the positive code of Max (0x7E, 0x7B, 0x7).
func (f *FPFormat) MaxCode() uint8 { return f.maxCode }

// MinSubnormal and MinNormal are the smallest positive subnormal and normal
// values (2^(1−B−M) and 2^(1−B)).
func (f *FPFormat) MinSubnormal() float32 { return f.minSub }
func (f *FPFormat) MinNormal() float32    { return f.minNorml }

// NaNCode reports the positive quiet-NaN code, if the format has one.
func (f *FPFormat) NaNCode() (uint8, bool) { return f.nanCode, f.hasNaN }

// InfCode reports the +Inf code, if the format has one.
func (f *FPFormat) InfCode() (uint8, bool) { return f.infCode, f.hasInf }

// Decode returns the value of a code (the low Bits() bits of c are used).
func (f *FPFormat) Decode(c uint8) float32 { return f.decode[c&uint8(1<<f.width-1)] }

// IsNaN reports whether code c is a NaN encoding.
func (f *FPFormat) IsNaN(c uint8) bool { v := f.Decode(c); return v != v }

// Encode rounds x to the nearest code, ties to even, saturating at ±Max.
func (f *FPFormat) Encode(x float32) uint8 { return f.encode(x, true) }

// EncodeIEEE rounds like Encode but does not saturate: overflow gives ±Inf
// (E5M2), NaN (E4M3) or, for E2M1 which has neither, ±Max.
func (f *FPFormat) EncodeIEEE(x float32) uint8 { return f.encode(x, false) }

// Round returns Decode(Encode(x)): x rounded onto the format, saturating.
func (f *FPFormat) Round(x float32) float32 { return f.decode[f.encode(x, true)] }

func (f *FPFormat) encode(x float32, saturate bool) uint8 {
	sign := uint8(math.Float32bits(x)>>31) << (f.width - 1)
	a := math.Abs(float64(x))
	switch {
	case a != a:
		if f.hasNaN {
			return sign | f.nanCode
		}
		return 0
	case a == 0:
		return sign
	case math.IsInf(a, 1):
		return sign | f.overflow(saturate)
	}
	M := f.manBits
	_, exp := math.Frexp(a) // a = frac·2^exp, frac ∈ [0.5, 1): a ∈ [2^(exp−1), 2^exp)
	e := exp - 1
	if emin := 1 - f.bias; e < emin {
		e = emin // subnormal range: fixed quantum 2^(emin−M)
	}
	// Significand in units of the quantum 2^(e−M): exact (power-of-two
	// scaling of a float32), then rounded half to even.
	m := int(math.RoundToEven(math.Ldexp(a, M-e)))
	if m == 2<<M { // rounded up into the next binade
		m, e = 1<<M, e+1
	}
	if e > f.emax || e == f.emax && m > int(f.maxCode)&(1<<M-1)|1<<M {
		return sign | f.overflow(saturate)
	}
	if m < 1<<M { // subnormal (or zero): exponent field 0
		return sign | uint8(m)
	}
	return sign | uint8(e+f.bias)<<M | uint8(m-1<<M)
}

func (f *FPFormat) overflow(saturate bool) uint8 {
	switch {
	case saturate:
		return f.maxCode
	case f.hasInf:
		return f.infCode
	case f.hasNaN:
		return f.nanCode
	}
	return f.maxCode
}

// FPParamsAbsMax returns the scale s = absmax/fpmax that maps the group's
// largest magnitude onto the format's largest finite value, floored at
// minScale (> 0) so that an all-zero group gets a finite positive scale and
// dequantizes to exact zeros.
func FPParamsAbsMax(absmax float32, f *FPFormat, minScale float32) float32 {
	return clampScale(math.Abs(float64(absmax))/float64(f.max), minScale)
}

// QuantizeFP returns the code of x/s: Encode(x/s), saturating.
func QuantizeFP(x, scale float32, f *FPFormat) uint8 { return f.encode(x/scale, true) }

// DequantizeFP returns x̂ = s·Decode(c).
func DequantizeFP(c uint8, scale float32, f *FPFormat) float32 { return scale * f.Decode(c) }

// fpFormatOf maps a Format to its FPFormat (nil for FormatInt).
func fpFormatOf(k Format) *FPFormat {
	switch k {
	case FormatFP8E4M3:
		return E4M3
	case FormatFP8E5M2:
		return E5M2
	case FormatFP4E2M1:
		return E2M1
	}
	return nil
}

// FP returns the minifloat format of k, or nil for FormatInt.
func (k Format) FP() *FPFormat { return fpFormatOf(k) }
