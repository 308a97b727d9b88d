// Package tensor holds the small amount of dense-array machinery llmq needs:
// conversions between the storage formats of checkpoints (IEEE FP16, bfloat16)
// and the float32 the numeric core computes in, and a shaped float32 array.
package tensor

import "math"

// BF16ToF32 widens a bfloat16 bit pattern. bfloat16 is the top half of an
// IEEE float32, so widening is exact: shift the 16 bits into the high half.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 narrows to bfloat16 with round-to-nearest-even, as PyTorch does.
// NaN stays NaN (quiet); values that overflow round to ±Inf.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep sign, force a quiet mantissa bit
		return uint16(b>>16) | 0x40
	}
	// Add 0x7fff plus the lowest kept bit: ties go to the even neighbour.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32 widens an IEEE 754 binary16 bit pattern (1 sign, 5 exponent,
// 10 mantissa bits, bias 15) exactly, subnormals, infinities and NaN included.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: value = mant * 2^-24. Normalise into float32.
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToF16 narrows to binary16 with round-to-nearest-even, producing
// subnormals below 2^-14 and ±Inf above 65504 (after rounding).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // Inf / NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal or zero in half precision.
		if e < -10 {
			return sign
		}
		mant |= 0x800000 // implicit leading one
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := mant >> shift
		rem := mant & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, which is the correct rounding (up to Inf)
	}
	return sign | uint16(r)
}

// DecodeF16 widens len(dst) little-endian IEEE half-precision values from
// raw (2 bytes each) into dst.
func DecodeF16(dst []float32, raw []byte) {
	raw = raw[:2*len(dst)]
	for i := range dst {
		dst[i] = F16ToF32(uint16(raw[2*i]) | uint16(raw[2*i+1])<<8)
	}
}

// DecodeBF16 widens len(dst) little-endian bfloat16 values from raw.
func DecodeBF16(dst []float32, raw []byte) {
	raw = raw[:2*len(dst)]
	for i := range dst {
		dst[i] = BF16ToF32(uint16(raw[2*i]) | uint16(raw[2*i+1])<<8)
	}
}
