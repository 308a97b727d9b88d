package methods

import (
	"fmt"

	"llmq/nn"
	"llmq/quant"
)

// KVCache quantizes what attention keeps and multiplies:
//
//   - the KV cache: every key and value vector entering the cache is
//     quantized, dynamically per token and per head (one scale per head_dim
//     values, the granularity that keeps one outlier head from flattening
//     the others), or — Static — with one scale for the keys and one for
//     the values of each layer, calibrated offline (vLLM's k_scale and
//     v_scale). int8 halves the cache's memory against FP16, the dominant
//     memory cost of long contexts; FP8 E4M3 is the other common choice;
//   - optionally the attention batched matmuls (BMM: SmoothQuant's and
//     ZeroQuant-HERO's "attention in INT8"): queries like keys, so Q·Kᵀ is
//     an integer product, and the softmax probabilities on an unsigned
//     8-bit grid (QuantizeProbs), so P·V is too. Softmax itself stays in FP.
//
// Dynamic int8 (the kv-int8 preset) is stored for real: the cache keeps
// int8 codes and one scale per token and head (nn.KVCache, a quarter of the
// FP32 memory) and dequantizes the rows attention reads — exactly the values
// the simulated path computes. With BMM too (smoothquant-o3-bmm, HERO level
// 3) both batched matmuls run on the INT8 GEMM: Q·Kᵀ on the query and key
// codes with their scales in the epilogue, P·V on the value codes with the
// per-token value scales folded into the probabilities before their uint8
// quantization (nn/attention_int8.go: those scales lie on P·V's reduction
// axis, so only folded can the sum stay integer). The other formats and
// static scales are simulated (values rounded to the grid, kept as floats,
// multiplied in FP32; QuantizeProbs for P).
type KVCache struct {
	// Format is the element format: "int8", "int4" or "fp8e4m3".
	Format string
	// Static uses one calibrated scale per layer for K and one for V.
	Static bool
	// BMM also quantizes Q (like K) and the probabilities P (uint8 per row).
	BMM bool
	// Scales records the static scales chosen, "<block> k|v" → scale.
	Scales map[string]float32
}

func (k *KVCache) Name() string {
	n := "kv-" + k.Format
	if k.Static {
		n += "-static"
	}
	if k.BMM {
		n += "+bmm"
	}
	return n
}

func (k *KVCache) NeedsCalibration() bool { return k.Static }

// spec is the format with the given granularity suffix ("g64", "tensor").
func (k *KVCache) spec(gran string) (quant.Spec, error) {
	name := k.Format + "-" + gran
	if k.Format == "int8" || k.Format == "int4" {
		name = k.Format + "-sym-" + gran
	}
	s, err := quant.ParseSpec(name)
	if err != nil {
		return s, fmt.Errorf("KV cache format %q: %w", k.Format, err)
	}
	return s, nil
}

// dynamic fake-quantizes [rows × width] in place per token and head.
func dynamic(spec quant.Spec, width int) func(x []float32, rows int) {
	return func(x []float32, rows int) {
		// Non-finite values are left as they are (they surface in the
		// logits) rather than hidden.
		_ = quant.FakeQuantizeInto(x[:rows*width], x[:rows*width], rows, width, spec)
	}
}

func (k *KVCache) ApplyLayer(l *Layer) error {
	a := &l.Block.Attn
	q := &nn.AttnQuant{Format: k.Format, BMM: k.BMM}
	if k.Static {
		var err error
		if q.KScale, q.VScale, err = k.calibrate(l); err != nil {
			return err
		}
		if k.Scales == nil {
			k.Scales = map[string]float32{}
		}
		k.Scales[l.Block.Name+" k"], k.Scales[l.Block.Name+" v"] = q.KScale, q.VScale
	}
	return InstallAttnQuant(a, q)
}

// InstallAttnQuant sets an attention's quantization hooks from their
// description (also how a saved model gets them back).
func InstallAttnQuant(a *nn.Attention, q *nn.AttnQuant) error {
	k := &KVCache{Format: q.Format}
	head, err := k.spec(fmt.Sprintf("g%d", a.HeadDim))
	if err != nil {
		return err
	}
	kw := a.KVHeads * a.HeadDim
	a.QuantK, a.QuantV = dynamic(head, kw), dynamic(head, kw)
	if (q.KScale > 0) != (q.VScale > 0) || q.KScale < 0 || q.VScale < 0 {
		return fmt.Errorf("KV cache scales k=%v v=%v: both static (positive) or both dynamic (0)", q.KScale, q.VScale)
	}
	if q.KScale > 0 {
		tensor, err := k.spec("tensor")
		if err != nil {
			return err
		}
		static := func(s float32) func(x []float32, rows int) {
			qz := tensor.Quantizer(quant.Params{Scale: s})
			return func(x []float32, rows int) { qz.FakeSlice(x[:rows*kw], x[:rows*kw]) }
		}
		a.QuantK, a.QuantV = static(q.KScale), static(q.VScale)
	}
	a.QuantQ, a.QuantP = nil, nil
	if q.BMM {
		a.QuantQ = dynamic(head, a.Heads*a.HeadDim)
		a.QuantP = QuantizeProbs
	}
	c := *q
	a.Quant = &c
	return nil
}

// calibrate runs the block over the calibration inputs recording the
// largest |k| and |v| entering the cache, and returns the static
// per-tensor scales of those ranges.
func (k *KVCache) calibrate(l *Layer) (kScale, vScale float32, err error) {
	if l.Inputs == nil {
		return 0, 0, fmt.Errorf("%s: static KV scales need calibration data", l.Block.Name)
	}
	a := &l.Block.Attn
	kw := a.KVHeads * a.HeadDim
	var kmax, vmax float32
	record := func(m *float32) func(x []float32, rows int) {
		return func(x []float32, rows int) { *m = max(*m, quant.AbsMax(x[:rows*kw])) }
	}
	a.QuantK, a.QuantV = record(&kmax), record(&vmax)
	x := make([]float32, l.Inputs.T*l.Model.Hidden)
	for _, seq := range l.Inputs.X {
		copy(x, seq)
		l.Runner.Run(l.Index, x, l.Inputs.T)
	}
	a.QuantK, a.QuantV = nil, nil
	tensor, err := k.spec("tensor")
	if err != nil {
		return 0, 0, err
	}
	if kmax == 0 || vmax == 0 {
		return 0, 0, fmt.Errorf("%s: calibration k or v values are all zero", l.Block.Name)
	}
	return tensor.ParamsAbsMax(kmax).Scale, tensor.ParamsAbsMax(vmax).Scale, nil
}

// QuantizeProbs puts a row of attention probabilities on an unsigned 8-bit
// grid scaled to the row's largest probability, s = max(p)/255. A fixed
// 1/255 grid (one scale for every row) would flush most probabilities of a
// long context — each well below 1/255 — to zero; the per-row scale is one
// more multiply in the P·V epilogue.
func QuantizeProbs(p []float32) {
	m := quant.AbsMax(p)
	if !(m > 0) {
		return
	}
	q := probSpec.Quantizer(quant.Params{Scale: m / 255})
	q.FakeSlice(p, p)
}

var probSpec = quant.MustParseSpec("int8-asym-tensor")
