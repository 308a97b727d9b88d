package quant

import (
	"fmt"

	"llmq/tensor"
)

// Packed storage.
//
// Codes wider than 4 bits take one byte each: 8-bit signed codes as two's
// complement (a []byte holding int8 values; convert with int8(b)), unsigned
// codes and FP8 bit patterns as they are. Codes of at most 4 bits (INT4,
// INT2/INT3 and FP4) are packed two per byte:
//
//	byte i = code[2i] | code[2i+1] << 4
//
// i.e. the even index in the low nibble, the odd index in the high nibble,
// so a kernel reads element 2i with b & 0xF and element 2i+1 with b >> 4.
// This is the order of GPTQ-style packing (element k at bits 4k of a
// little-endian word) and of torch's float4_e2m1fn_x2 (first element in the
// low bits); llama.cpp's Q4_0, which pairs element j with j+16, differs and
// needs a shuffle on export. An odd count leaves the last high nibble zero. Signed nibbles are two's complement in 4 bits ([−8, 7]) and
// are sign-extended on unpacking; smaller signed widths fit inside that.
//
// Length mismatches are programming errors and panic; out-of-range values
// are input errors and are returned as errors (nothing is silently masked).

// PackedLen is the number of bytes holding n codes of the given width:
// ceil(n/2) for widths ≤ 4, n otherwise.
func PackedLen(n, bits int) int {
	if bits <= 4 {
		return (n + 1) / 2
	}
	return n
}

// Nibble returns the 4-bit field of element i (low nibble for even i).
func Nibble(data []byte, i int) uint8 {
	return data[i>>1] >> (uint(i&1) << 2) & 0xF
}

// SetNibble stores the low 4 bits of v as element i.
func SetNibble(data []byte, i int, v uint8) {
	sh := uint(i&1) << 2
	b := &data[i>>1]
	*b = *b&^(0xF<<sh) | (v&0xF)<<sh
}

// SignExtend4 interprets a nibble as a two's complement value in [−8, 7].
func SignExtend4(v uint8) int8 { return int8(v<<4) >> 4 }

func packLen(what string, dst int, n, bits int) {
	if dst != PackedLen(n, bits) {
		panic(fmt.Sprintf("quant.%s: dst has %d bytes, %d codes need %d", what, dst, n, PackedLen(n, bits)))
	}
}

func unpackLen(what string, src int, n, bits int) {
	if src < PackedLen(n, bits) {
		panic(fmt.Sprintf("quant.%s: src has %d bytes, %d codes need %d", what, src, n, PackedLen(n, bits)))
	}
}

// PackInt4 packs signed values in [−8, 7] two per byte. len(dst) must be
// PackedLen(len(src), 4).
func PackInt4(dst []byte, src []int8) error {
	packLen("PackInt4", len(dst), len(src), 4)
	clear(dst)
	for i, v := range src {
		if v < -8 || v > 7 {
			return fmt.Errorf("quant.PackInt4: value %d at %d outside [-8, 7]", v, i)
		}
		dst[i>>1] |= uint8(v) & 0xF << (uint(i&1) << 2)
	}
	return nil
}

// UnpackInt4 unpacks len(dst) signed nibbles.
func UnpackInt4(dst []int8, src []byte) {
	unpackLen("UnpackInt4", len(src), len(dst), 4)
	for i := range dst {
		dst[i] = SignExtend4(Nibble(src, i))
	}
}

// PackUint4 packs unsigned values in [0, 15] two per byte. len(dst) must be
// PackedLen(len(src), 4).
func PackUint4(dst []byte, src []uint8) error {
	packLen("PackUint4", len(dst), len(src), 4)
	clear(dst)
	for i, v := range src {
		if v > 15 {
			return fmt.Errorf("quant.PackUint4: value %d at %d outside [0, 15]", v, i)
		}
		dst[i>>1] |= v << (uint(i&1) << 2)
	}
	return nil
}

// UnpackUint4 unpacks len(dst) unsigned nibbles.
func UnpackUint4(dst []uint8, src []byte) {
	unpackLen("UnpackUint4", len(src), len(dst), 4)
	for i := range dst {
		dst[i] = Nibble(src, i)
	}
}

// PackInt8 stores int8 codes as two's complement bytes.
func PackInt8(dst []byte, src []int8) {
	packLen("PackInt8", len(dst), len(src), 8)
	for i, v := range src {
		dst[i] = byte(v)
	}
}

// UnpackInt8 reads two's complement bytes back as int8 codes.
func UnpackInt8(dst []int8, src []byte) {
	unpackLen("UnpackInt8", len(src), len(dst), 8)
	for i := range dst {
		dst[i] = int8(src[i])
	}
}

// codeRange is the range of codes storable at a width: two's complement for
// signed, plain unsigned otherwise.
func codeRange(bits int, signed bool) (lo, hi int32) {
	if signed {
		return -1 << (bits - 1), 1<<(bits-1) - 1
	}
	return 0, 1<<bits - 1
}

// PackCodes packs codes (as produced by Quantizer: signed integers for
// symmetric grids, unsigned for asymmetric grids and minifloat bit patterns)
// of the given width (2..8) into dst, len(dst) = PackedLen(len(codes), bits).
func PackCodes(dst []byte, codes []int32, bits int, signed bool) error {
	if bits < 2 || bits > 8 {
		panic("quant.PackCodes: bits outside 2..8")
	}
	packLen("PackCodes", len(dst), len(codes), bits)
	lo, hi := codeRange(bits, signed)
	if bits <= 4 {
		clear(dst)
	}
	for i, c := range codes {
		if c < lo || c > hi {
			return fmt.Errorf("quant.PackCodes: code %d at %d outside [%d, %d]", c, i, lo, hi)
		}
		if bits <= 4 {
			dst[i>>1] |= uint8(c) & 0xF << (uint(i&1) << 2)
		} else {
			dst[i] = uint8(c)
		}
	}
	return nil
}

// UnpackCodes is the inverse of PackCodes for len(dst) codes.
func UnpackCodes(dst []int32, src []byte, bits int, signed bool) {
	unpackLen("UnpackCodes", len(src), len(dst), bits)
	switch {
	case bits <= 4 && signed:
		for i := range dst {
			dst[i] = int32(SignExtend4(Nibble(src, i)))
		}
	case bits <= 4:
		for i := range dst {
			dst[i] = int32(Nibble(src, i))
		}
	case signed:
		for i := range dst {
			dst[i] = int32(int8(src[i]))
		}
	default:
		for i := range dst {
			dst[i] = int32(src[i])
		}
	}
}

// Scale storage. Scales are float32 in memory; with Spec.HalfScales they are
// rounded to IEEE FP16 values (round-to-nearest-even) when computed, stored
// as uint16 bit patterns, and so dequantize identically from either form.
// FP16 covers [2^−24, 65504]: scales below are raised to the smallest
// subnormal MinScaleF16 (an all-zero group still dequantizes to 0; a group of
// weights below ~1e-7 loses them, as it would in any FP16-scale checkpoint),
// scales above are capped at 65504 (its largest values then saturate).
// Scales below 2^−14 are FP16 subnormals with reduced relative precision.

// MinScaleF16 and MaxScaleF16 bound FP16-stored scales.
const (
	MinScaleF16 float32 = 0x1p-24
	MaxScaleF16 float32 = 65504
)

// RoundScaleF16 rounds a positive scale to the nearest FP16 value, clamped to
// [MinScaleF16, MaxScaleF16]. NaN is returned unchanged.
func RoundScaleF16(s float32) float32 {
	if s != s {
		return s
	}
	v := tensor.F16ToF32(tensor.F32ToF16(s))
	return min(max(v, MinScaleF16), MaxScaleF16)
}

// ScalesToF16 converts scales to FP16 bit patterns (round to nearest even;
// values already rounded by RoundScaleF16 convert exactly).
func ScalesToF16(dst []uint16, src []float32) {
	if len(dst) != len(src) {
		panic("quant.ScalesToF16: length mismatch")
	}
	for i, s := range src {
		dst[i] = tensor.F32ToF16(s)
	}
}

// ScalesFromF16 widens FP16 scale bit patterns to float32 (exact).
func ScalesFromF16(dst []float32, src []uint16) {
	if len(dst) != len(src) {
		panic("quant.ScalesFromF16: length mismatch")
	}
	for i, h := range src {
		dst[i] = tensor.F16ToF32(h)
	}
}
