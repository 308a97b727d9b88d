// Package nn holds the building blocks every transformer family is made of:
// the Linear seam through which all weight matmuls go (so quantized and
// low-bit layers slot in without touching model code), RMSNorm and
// LayerNorm, rotary position embeddings in both conventions, causal
// grouped-query attention over a KV cache, and the MLP activations.
//
// Tensors are plain row-major []float32 slices with explicit row counts:
// an activation matrix of T tokens and width d is x[t*d+j].
package nn
