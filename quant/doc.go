// Package quant is the quantization-formats layer of llmq: the number
// formats, granularities, parameter rules, packed storage and the reference
// quantized linear layer that quantization methods (RTN, GPTQ, AWQ,
// SmoothQuant, …) are built on. It implements no method itself; it gives
// methods the pieces they need:
//
//   - parameters from statistics: [Spec.ParamsMinMax], [Spec.ParamsAbsMax],
//     [Spec.ConstrainRow], [ComputeParams];
//   - cheap single-value, slice and column operations for inner loops:
//     [Quantizer] (built once per group by [Spec.Quantizer]) and
//     [FakeQuantizeColumn];
//   - the final artefact: [QuantizeWeight] (round-to-nearest),
//     [QuantizeWithParams] (codes from externally chosen parameters), the
//     packed [QTensor], and [QuantLinear], an nn.Linear over it.
//
// Every format is a scaled grid. For integers (int.go)
//
//	q = clip(round(x/s) + z, qmin, qmax),   x̂ = s·(q − z)
//
// and for the minifloats FP8 E4M3, FP8 E5M2 and FP4 E2M1 (fp.go)
//
//	x̂ = s·fp(x/s),   s = absmax/fpmax,
//
// where round is round-half-to-even (torch.round) and fp rounds to the
// nearest representable value, ties to even, saturating at ±fpmax.
//
// Matrices are row-major []float32 with explicit row and column counts. For a
// weight W [out×in] (the nn.Linear layout) a row is an output channel and a
// column an input feature; for activations X [tokens×in] a row is a token.
// All granularities group along a row: one scale for the tensor, one per
// row, or one per g consecutive columns of a row (granularity.go).
//
// Files, one concept each: int.go (integer grids), fp.go (minifloats),
// granularity.go (Spec and its string form), quantizer.go (per-group
// quantizer), scale.go (ZeroQuant-FP scale constraints, FP4→FP8 casting),
// pack.go (packed storage), tensor.go (QTensor, RTN, fake quantization),
// linear.go (QuantLinear).
package quant
