// Package ctensors writes and reads compressed-tensors checkpoints, the
// quantized Hugging Face layout that llm-compressor saves and that vLLM and
// transformers (through the compressed-tensors library) load.
//
// A compressed-tensors folder is an ordinary Hugging Face folder whose
// config.json carries
//
//	"quantization_config": {
//	  "quant_method": "compressed-tensors",
//	  "quantization_status": "compressed",
//	  "format": "pack-quantized" | "int-quantized" | "naive-quantized" | "float-quantized" | "mixed-precision",
//	  "config_groups": {"group_0": {"targets": ["Linear"], "weights": {…}, "input_activations": {…} | null, …}},
//	  "ignore": ["lm_head", …],
//	  "kv_cache_scheme": null, …}
//
// where weights and input_activations are QuantizationArgs (num_bits, type
// int|float, symmetric, strategy tensor|channel|group|token, group_size,
// dynamic, observer, …) and each targeted linear NAME stores the tensors of
// its compression format:
//
//	pack-quantized   NAME.weight_packed     I32 [out, ⌈in/(32/b)⌉]  b-bit codes, 32/b per word
//	                 NAME.weight_shape      I64 [2]  (out, in)
//	                 NAME.weight_scale      [out, groups] | [out, 1] | [1]
//	                 NAME.weight_zero_point I32 [⌈out/(32/b)⌉, groups], packed along dim 0 (asymmetric only)
//	int-quantized,   NAME.weight            I8 [out, in] (int) or F8_E4M3 [out, in] (float)
//	naive-quantized, NAME.weight_scale      as above
//	float-quantized  NAME.weight_zero_point I8, the scale's shape (asymmetric only)
//	all formats      NAME.input_scale       [1] static activation scale (+ NAME.input_zero_point I8, asymmetric)
//
// Integer codes are signed: a b-bit grid is [−2^(b−1), 2^(b−1)−1] and zero
// points live on the same grid, so a weight is w = (q − zp)·s in the scale's
// dtype. pack_to_int32 adds the offset 2^(b−1) to make codes unsigned and
// puts element j of a row at bits b·(j mod 32/b) of word j/(32/b), little end
// first (compressed_tensors/compressors/quantized_compressors/pack_quantized.py
// in github.com/vllm-project/compressed-tensors); zero points are packed the
// same way down the columns. Which format a layer gets follows the
// library's own rule (llm-compressor's infer_quantization_format): weight-only
// int4/int8 → pack-quantized, other weight-only → naive-quantized, int
// weights with quantized activations → int-quantized, FP8 weights with
// quantized activations → float-quantized.
//
// # What maps from llmq
//
// Export reads an llmq quantized folder (package modelio) and converts every
// linear layer:
//
//	llmq layer                                   compressed-tensors
//	nn.Dense (FP32, e.g. lm_head)                unquantized, listed in ignore
//	QuantLinear int2…int8 weights, sym or asym,  weights {type int, num_bits b, symmetric,
//	  tensor / channel / g<N> granularity          strategy tensor|channel|group, group_size}
//	  (full range, pow2 scales, f16scale too:      asymmetric codes u ∈ [0, 2^b−1] with zero z
//	  the scales are stored, not recomputed)       become q = u − 2^(b−1), zp = z − 2^(b−1)
//	QuantLinear fp8e4m3 weights                  weights {type float, num_bits 8}, F8_E4M3 codes
//	dynamic activations, token / tensor / g<N>   input_activations {dynamic true, strategy token|tensor|group}
//	static per-tensor activations                input_activations {dynamic false, strategy tensor} + input_scale
//	smoothing (SmoothQuant, AWQ)                 nothing: already folded into norms and weights
//
// and rejects, with an error naming the layer, what the format cannot
// express: LoRC low-rank correction factors (an extra A·B term per layer),
// LLM.int8() mixed-precision decomposition (FP16 outlier columns chosen at
// run time), FP8 E5M2 and llmq's FP4 E2M1 weights (compressed-tensors'
// float grids are E4M3, and its FP4 formats are NVFP4/MXFP4 with FP8 or
// power-of-two group scales of 16 or 32), full-range symmetric or
// constrained-scale *dynamic* activations (the activation scale is computed
// by the serving runtime, whose rule is absmax/(2^(b−1)−1) — llmq's default
// restricted grid), and layers quantized by no llmq QuantLinear at all.
// KV-cache quantization is not stored in llmq's quantized folders, so the
// export carries no kv_cache_scheme. An embedding that llmq stores only as
// a quantized head it is tied to is written out dequantized (the values
// llmq embeds with), and tie_word_embeddings is set to false.
//
// Scales are written in FP32 — what llmq computed and used — so the
// dequantized weights of the export equal llmq's bit for bit; loaders cast
// them to the model's dtype. Unquantized tensors are written in the model's
// dtype (config.json "dtype"/"torch_dtype") where that is lossless, FP32
// otherwise (norms that absorbed smoothing factors, say).
//
// Read opens any compressed-tensors folder in the formats above and returns
// each quantized linear's codes, scales and zero points, and its
// dequantized weight computed from the format definition alone (no llmq
// quantization code), which is what the round-trip test compares against
// llmq's own dequantized weights.
//
// Files, one concept each: config.go (quantization_config: QuantizationArgs,
// schemes, target matching), pack.go (int32 packing), fp8.go (E4M3
// decoding), export.go (llmq folder → compressed-tensors), read.go
// (compressed-tensors → dequantized layers).
package ctensors
