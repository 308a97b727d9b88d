package gguf

import (
	"fmt"
	"math"
)

// Type is a ggml tensor type (enum ggml_type of the GGUF spec).
type Type uint32

// The tensor types llmq reads and writes. The numbers are ggml's.
const (
	F32  Type = 0
	F16  Type = 1
	Q4_0 Type = 2
	Q8_0 Type = 8
	BF16 Type = 30
)

// typeNames names every ggml_type the spec lists (removed ones excluded),
// so that a file using a type llmq cannot decode gets a precise error.
var typeNames = map[Type]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
	10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
	16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
	22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
	29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// ParseType reads a type name as llama.cpp spells it (case-insensitive).
func ParseType(s string) (Type, error) {
	for t, n := range typeNames {
		if equalFold(n, s) && t.Supported() {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown GGUF tensor type %q (supported: f32, f16, bf16, q8_0, q4_0)", s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Supported reports whether llmq can encode and decode the type.
func (t Type) Supported() bool {
	_, _, ok := t.layout()
	return ok
}

// Quantized reports whether the type is a block format.
func (t Type) Quantized() bool { return t == Q8_0 || t == Q4_0 }

// layout is ggml's type_traits: elements per block and bytes per block.
//
//	block_q8_0: ggml_half d; int8_t qs[32]      → 2 + 32 = 34 bytes
//	block_q4_0: ggml_half d; uint8_t qs[32/2]   → 2 + 16 = 18 bytes
func (t Type) layout() (blockElems, blockBytes int, ok bool) {
	switch t {
	case F32:
		return 1, 4, true
	case F16, BF16:
		return 1, 2, true
	case Q8_0:
		return QK, 2 + QK, true
	case Q4_0:
		return QK, 2 + QK/2, true
	}
	return 0, 0, false
}

// QK is the block length of Q8_0 and Q4_0 (ggml's QK8_0 and QK4_0).
const QK = 32

// BlockSize is the number of elements per block (1 for the float types).
func (t Type) BlockSize() int {
	n, _, _ := t.layout()
	return n
}

// RowBytes is the size in bytes of n consecutive elements (a row of ne[0]
// elements), or an error when the type is unsupported or n is not a whole
// number of blocks.
func (t Type) RowBytes(n int64) (int64, error) {
	be, bb, ok := t.layout()
	if !ok {
		return 0, fmt.Errorf("tensor type %v is not supported (llmq reads F32, F16, BF16, Q8_0, Q4_0)", t)
	}
	if n < 0 || n%int64(be) != 0 {
		return 0, fmt.Errorf("%v needs rows that are a multiple of %d elements, have %d", t, be, n)
	}
	if n/int64(be) > math.MaxInt64/int64(bb) {
		return 0, fmt.Errorf("%d %v elements overflow a 64-bit size", n, t)
	}
	return n / int64(be) * int64(bb), nil
}

// FileType is general.file_type: llama.cpp's enum llama_ftype for a file
// whose linear weights are mostly of type t (ALL_F32 = 0, MOSTLY_F16 = 1,
// MOSTLY_Q4_0 = 2, MOSTLY_Q8_0 = 7, MOSTLY_BF16 = 32).
func FileType(t Type) (uint32, bool) {
	switch t {
	case F32:
		return 0, true
	case F16:
		return 1, true
	case Q4_0:
		return 2, true
	case Q8_0:
		return 7, true
	case BF16:
		return 32, true
	}
	return 0, false
}

// QuantizationVersion is general.quantization_version, ggml's
// GGML_QNT_VERSION: the revision of the block formats' bit layout (2 since
// the Q4_0/Q8_0 layout change of May 2023). Files with quantized tensors
// must carry it.
const QuantizationVersion = 2
