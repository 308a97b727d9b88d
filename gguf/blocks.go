package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"llmq/tensor"
)

// Encode converts FP32 values to type t's bytes. len(src) must be a whole
// number of blocks. Non-finite inputs are refused: ggml would store them
// (or, for the block formats, produce undefined codes), and a weight that is
// not finite is a bug upstream, not something to export.
func Encode(t Type, src []float32) ([]byte, error) {
	n, err := t.RowBytes(int64(len(src)))
	if err != nil {
		return nil, err
	}
	for i, x := range src {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("value %d is %v: cannot encode as %v", i, x, t)
		}
	}
	dst := make([]byte, n)
	switch t {
	case F32:
		for i, x := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(x))
		}
	case F16:
		for i, x := range src {
			h := tensor.F32ToF16(x)
			if h&0x7c00 == 0x7c00 {
				return nil, fmt.Errorf("value %d (%v) overflows F16", i, x)
			}
			binary.LittleEndian.PutUint16(dst[2*i:], h)
		}
	case BF16:
		for i, x := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], tensor.F32ToBF16(x))
		}
	case Q8_0:
		for b := 0; b < len(src)/QK; b++ {
			if err := encodeQ8_0(dst[b*(2+QK):(b+1)*(2+QK)], src[b*QK:(b+1)*QK]); err != nil {
				return nil, fmt.Errorf("block %d: %w", b, err)
			}
		}
	case Q4_0:
		for b := 0; b < len(src)/QK; b++ {
			if err := encodeQ4_0(dst[b*(2+QK/2):(b+1)*(2+QK/2)], src[b*QK:(b+1)*QK]); err != nil {
				return nil, fmt.Errorf("block %d: %w", b, err)
			}
		}
	}
	return dst, nil
}

// Decode converts n values of type t from src (exactly their bytes) to FP32.
func Decode(t Type, src []byte, n int) ([]float32, error) {
	want, err := t.RowBytes(int64(n))
	if err != nil {
		return nil, err
	}
	if int64(len(src)) != want {
		return nil, fmt.Errorf("%d %v values need %d bytes, have %d", n, t, want, len(src))
	}
	dst := make([]float32, n)
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		tensor.DecodeF16(dst, src)
	case BF16:
		tensor.DecodeBF16(dst, src)
	case Q8_0:
		for b := 0; b < n/QK; b++ {
			blk := src[b*(2+QK):]
			d := tensor.F16ToF32(binary.LittleEndian.Uint16(blk))
			for j := 0; j < QK; j++ {
				dst[b*QK+j] = float32(int8(blk[2+j])) * d
			}
		}
	case Q4_0:
		for b := 0; b < n/QK; b++ {
			blk := src[b*(2+QK/2):]
			d := tensor.F16ToF32(binary.LittleEndian.Uint16(blk))
			for j := 0; j < QK/2; j++ {
				q := blk[2+j]
				dst[b*QK+j] = float32(int(q&0x0f)-8) * d
				dst[b*QK+j+QK/2] = float32(int(q>>4)-8) * d
			}
		}
	}
	return dst, nil
}

// Round returns what src becomes after a round trip through type t: the
// values llama.cpp computes with when it loads the encoded tensor. It is the
// in-process twin of writing a GGUF file and reading it back.
func Round(t Type, src []float32) ([]float32, error) {
	b, err := Encode(t, src)
	if err != nil {
		return nil, err
	}
	return Decode(t, b, len(src))
}

// encodeQ8_0 is ggml's quantize_row_q8_0_ref for one block of 32:
//
//	amax = max|x|,  d = amax/127,  id = d ? 1/d : 0
//	y.d  = fp16(d)                  (stored scale, rounded to nearest even)
//	q[j] = roundf(x[j]*id)          (half away from zero, with the FP32 id)
//
// Codes are chosen with the unrounded FP32 scale and dequantized with the
// stored FP16 one, x̂ = q·fp16(d); both roundings are reproduced here. Every
// product is forced to float32 (an explicit conversion) so that the Go
// compiler cannot fuse it with the next operation, which C's float arithmetic
// would not do either.
func encodeQ8_0(dst []byte, x []float32) error {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	h := tensor.F32ToF16(d)
	if h&0x7c00 == 0x7c00 {
		return fmt.Errorf("Q8_0 scale %v overflows F16 (|x| up to %v)", d, amax)
	}
	binary.LittleEndian.PutUint16(dst, h)
	for j, v := range x {
		q := math.Round(float64(float32(v * id)))
		// |v·id| ≤ 127 up to rounding; the clamp only matters when 1/d
		// overflows for denormal blocks, where C's conversion is undefined.
		if q != q {
			q = 0
		}
		q = min(max(q, -127), 127)
		dst[2+j] = byte(int8(q))
	}
	return nil
}

// encodeQ4_0 is ggml's quantize_row_q4_0_ref for one block of 32:
//
//	max  = the element of largest magnitude, with its sign (first one wins)
//	d    = max / -8,  id = d ? 1/d : 0,  y.d = fp16(d)
//	q[j] = min(15, (int8_t)(x[j]*id + 8.5f))      (C truncation toward 0)
//	qs[j] = q[j] | q[j+16] << 4                   (j < 16)
//
// so the largest-magnitude element lands exactly on code 0 (value -8·d =
// max) and the grid spans [-8d, 7d] with d of the opposite sign to max: the
// 16th level goes to the side of the largest value. x̂ = (q − 8)·fp16(d).
func encodeQ4_0(dst []byte, x []float32) error {
	var amax, mx float32
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); amax < a {
			amax, mx = a, v
		}
	}
	d := mx / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	h := tensor.F32ToF16(d)
	if h&0x7c00 == 0x7c00 {
		return fmt.Errorf("Q4_0 scale %v overflows F16 (|x| up to %v)", d, amax)
	}
	binary.LittleEndian.PutUint16(dst, h)
	code := func(v float32) byte {
		f := float32(float32(v*id) + 8.5)
		switch {
		case !(f >= 0): // NaN only arises from an overflowed id (denormal blocks)
			return 0
		case f >= 15:
			return 15
		}
		return byte(int(f)) // truncates toward zero, like C's (int8_t) cast
	}
	for j := 0; j < QK/2; j++ {
		dst[2+j] = code(x[j]) | code(x[j+QK/2])<<4
	}
	return nil
}
