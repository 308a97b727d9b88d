// Package gguf reads and writes GGUF version 3 files, the single-file model
// format of ggml and llama.cpp, as specified in ggml's docs/gguf.md:
//
//	header       "GGUF" magic, uint32 version (3), uint64 tensor count,
//	             uint64 metadata key/value count
//	metadata     per pair: string key, uint32 value type, value (arrays:
//	             uint32 element type, uint64 count, elements)
//	tensor infos per tensor: string name, uint32 n_dims, uint64 dims
//	             (ne[0] first: the contiguous, innermost dimension), uint32
//	             ggml type, uint64 offset into the data section
//	padding      zeros up to a multiple of the alignment
//	data         each tensor at its offset, a multiple of the alignment
//
// Everything is little-endian; strings are a uint64 byte length followed by
// UTF-8 bytes without a terminator. The alignment is the uint32 metadata
// value general.alignment, 32 when absent.
//
// Note that ggml lists dimensions innermost first: a PyTorch weight of shape
// [out, in] (row-major) is a GGUF tensor with dims [in, out].
//
// Tensor types: F32, F16, BF16 and the block formats Q8_0 and Q4_0, whose
// encoders follow ggml's reference quantizers (quantize_row_q8_0_ref,
// quantize_row_q4_0_ref) bit for bit, so a file written here holds the same
// bytes llama.cpp's tools would write for the same FP32 input (blocks.go).
//
// Files, one concept each: types.go (type enums and sizes), value.go
// (metadata values), reader.go (parsing and validation), writer.go
// (streaming writer), blocks.go (tensor data encodings).
package gguf
