package inspect

import (
	"llmq/model"
	"llmq/nn"
	"llmq/quant/methods"
)

// To measure a quantized linear's error, it must be compared with the
// full-precision linear it replaced *in the same basis*: SmoothQuant and
// AWQ rescale input channels (W·diag(s), with diag(s)⁻¹ folded into the
// norm or linear before), so the original checkpoint weights read
// different inputs than the quantized layer does. Methods scale the
// *nn.Dense in place and then put a quantized layer in its slot, leaving
// the Dense untouched from then on; so the Dense a slot held just before a
// stage replaced it is exactly the rescaled full-precision reference.
// references wraps each stage of a recipe to keep those.

// references maps block index → role → the FP layer a stage replaced.
type references map[int]map[string]*nn.Dense

// capture is a recipe stage that records the FP layers it replaces.
type capture struct {
	methods.Method
	refs references
}

func (c *capture) ApplyLayer(l *methods.Layer) error {
	before := map[string]nn.Linear{}
	for _, nl := range l.Block.Linears() {
		before[nl.Role] = *nl.Linear
	}
	if err := c.Method.ApplyLayer(l); err != nil {
		return err
	}
	for _, nl := range l.Block.Linears() {
		d, wasDense := before[nl.Role].(*nn.Dense)
		if _, isDense := (*nl.Linear).(*nn.Dense); !wasDense || isDense {
			continue
		}
		if c.refs[l.Index] == nil {
			c.refs[l.Index] = map[string]*nn.Dense{}
		}
		c.refs[l.Index][nl.Role] = d
	}
	return nil
}

// captureModel also forwards the model-level part of a stage.
type captureModel struct {
	*capture
	mm methods.ModelMethod
}

func (c *captureModel) ApplyModel(m *model.Model) error { return c.mm.ApplyModel(m) }

// wrapStages returns the stages wrapped to record into refs.
func wrapStages(stages []methods.Method, refs references) []methods.Method {
	out := make([]methods.Method, len(stages))
	for i, s := range stages {
		c := &capture{Method: s, refs: refs}
		if mm, ok := s.(methods.ModelMethod); ok {
			out[i] = &captureModel{c, mm}
		} else {
			out[i] = c
		}
	}
	return out
}

// fpBlock is block l of the quantized model with every quantized linear
// replaced by its full-precision reference: the model as the recipe's
// rescaling left it, before rounding. Its norms are the quantized model's
// (which carry the folded factors); its attention is the FP model's (no
// KV-cache or batched-matmul quantization), so the block computes the FP
// function.
func fpBlock(fp, q *model.Model, refs references, l int) *model.Block {
	b := q.Blocks[l].Clone()
	b.Attn = fp.Blocks[l].Attn
	for _, nl := range b.Linears() {
		if d := refs[l][nl.Role]; d != nil {
			*nl.Linear = d
		}
	}
	return b
}

// quantized reports whether role of block l was replaced by the recipe.
func (r references) quantized(l int, role string) bool { return r[l][role] != nil }
