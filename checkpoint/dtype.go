// Package checkpoint reads model files from disk: safetensors (single and
// sharded), Hugging Face config.json, and llama2.c's legacy .bin format.
// It knows file formats, not model semantics: it hands out named tensors and
// typed configuration, and every error names the file and the problem.
package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"

	"llmq/tensor"
)

// DType is the element type of a stored tensor, spelled as in safetensors.
type DType string

const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	Bool DType = "BOOL"
	// FP8 bit patterns (compressed-tensors' float-quantized weights); stored
	// and copied as bytes, not widened by Float32.
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
)

// Size is the number of bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, Bool, F8E4M3, F8E5M2:
		return 1
	}
	return 0
}

// IsFloat reports whether the dtype holds floating-point numbers.
func (d DType) IsFloat() bool { return d == F64 || d == F32 || d == F16 || d == BF16 }

// DecodeFloat32 widens the little-endian bytes raw of dtype d into dst
// (len(dst) elements): what Float32 does, for callers that read a tensor
// piece by piece from Raw.
func DecodeFloat32(dst []float32, raw []byte, d DType) error {
	if len(raw) < len(dst)*d.Size() || d.Size() == 0 {
		return fmt.Errorf("%d bytes of %s for %d values", len(raw), d, len(dst))
	}
	return decodeFloat32(dst, raw, d)
}

// decodeFloat32 widens little-endian raw bytes of dtype d into dst (len = elements).
func decodeFloat32(dst []float32, raw []byte, d DType) error {
	switch d {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case F16:
		tensor.DecodeF16(dst, raw)
	case BF16:
		tensor.DecodeBF16(dst, raw)
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case I64:
		for i := range dst {
			dst[i] = float32(int64(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	case I16:
		for i := range dst {
			dst[i] = float32(int16(binary.LittleEndian.Uint16(raw[2*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = float32(int8(raw[i]))
		}
	case U8, Bool:
		for i := range dst {
			dst[i] = float32(raw[i])
		}
	default:
		return fmt.Errorf("dtype %s cannot be converted to float32", d)
	}
	return nil
}

// decodeInt64 widens little-endian integer bytes of dtype d into dst.
func decodeInt64(dst []int64, raw []byte, d DType) error {
	switch d {
	case I64:
		for i := range dst {
			dst[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	case I32:
		for i := range dst {
			dst[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	case I16:
		for i := range dst {
			dst[i] = int64(int16(binary.LittleEndian.Uint16(raw[2*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = int64(int8(raw[i]))
		}
	case U8, Bool:
		for i := range dst {
			dst[i] = int64(raw[i])
		}
	default:
		return fmt.Errorf("dtype %s is not an integer type", d)
	}
	return nil
}
