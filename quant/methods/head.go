package methods

import (
	"fmt"

	"llmq/model"
	"llmq/nn"
	"llmq/quant"
)

// The head (lm_head).
//
// Like llm-compressor, a recipe whose targets reach the head's name
// ("Linear" does unless the recipe ignores lm_head, as every llmq preset
// except the *-lmhead ones does) quantizes it too. The head reads the final
// norm's output, outside the decoder blocks, so it is quantized once after
// them, round-to-nearest with the scheme's weight observer and dynamic
// activations — for GPTQ as well (its Hessian pass covers the blocks).
//
// In a model with tied embeddings (Llama-style small models, OPT, GPT-2)
// the head's weight is the embedding table. Quantizing the head then
// quantizes the table, as one tensor: the embedding lookups read the
// quantized rows back (model.Model.EmbedRows), and the FP32 table is
// dropped. With per-channel weights this is a per-row quantized embedding,
// which is what ZeroQuant-HERO's INT8 embedding is; for a 25M-parameter
// Llama with a 32000-token vocabulary it is half the weights.

// headName returns the checkpoint name of the model's head.
func headName(m *model.Model) string {
	if names, ok := m.TensorNames(); ok && names.Head != "" {
		return names.Head
	}
	return "lm_head"
}

// quantizeHead quantizes m.Head with the scheme if sel selects it. A nil
// Selector (every decoder-block linear) leaves the head alone: only a
// recipe's explicit targets reach it.
func quantizeHead(m *model.Model, s Scheme, sel *Selector) error {
	name := headName(m)
	if m.Head == nil || sel == nil || !sel.Selected(name) {
		return nil
	}
	if lz, ok := m.Head.(*model.LazyDense); ok { // an untied head still in the checkpoint
		d, err := lz.Materialize()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		m.Head = d
	}
	d, ok := m.Head.(*nn.Dense)
	if !ok {
		return fmt.Errorf("%s is already quantized (%T)", name, m.Head)
	}
	if s.StaticActs {
		return fmt.Errorf("%s: static activation scales are not supported for the head (its input is not calibrated); add %s to ignore or use dynamic activations", name, name)
	}
	tied := m.HeadShared()
	qt, err := HeadWeight(s, d.W, d.Out(), d.In())
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	act := HeadActs(s)
	q, err := quant.NewQuantLinear(qt, d.B, act)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	m.Head = q
	if tied {
		m.Embed, m.EmbedRows = nil, q
	}
	return nil
}

// HeadWeight is the head's weight quantization, w [rows×cols]: the
// scheme's observer and rounding, without the power-of-two refinement of
// block weights (RTNWeight). Model-free quantization calls it for a
// selected head, so both paths store the same codes; rows are independent
// as in RTNWeight.
func HeadWeight(s Scheme, w []float32, rows, cols int) (*quant.QTensor, error) {
	params, err := s.WeightParams(w, rows, cols)
	if err != nil {
		return nil, err
	}
	return quant.QuantizeWithParams(w, rows, cols, s.Weights, params)
}

// HeadActs is the head's activation quantization under s: dynamic with the
// scheme's format (its input is not calibrated), nil when weight-only.
func HeadActs(s Scheme) *quant.ActQuant {
	if s.Acts == nil {
		return nil
	}
	return quant.DynamicAct(*s.Acts)
}

// ApplyModel quantizes the head when the recipe selects it (see above).
// Composite methods that restrict RTN to some roles never do.
func (r *RTN) ApplyModel(m *model.Model) error {
	if r.roles != nil {
		return nil
	}
	return quantizeHead(m, r.Scheme, r.Select)
}

// ApplyModel quantizes the head round-to-nearest when the recipe selects it.
func (g *GPTQ) ApplyModel(m *model.Model) error { return quantizeHead(m, g.Scheme, g.Select) }
