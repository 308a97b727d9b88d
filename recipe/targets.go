package recipe

import (
	"errors"
	"fmt"
	"strings"

	"llmq/model"
	"llmq/quant"
	"llmq/quant/methods"
)

// A recipe is checked against the model when it is built, before any
// calibration: every target list must pick at least one linear layer (a
// recipe that quantizes nothing is a mistake, not a success), and the
// weight format must apply to the shape of every layer it picks (a group
// size must divide the layer's input columns).

// pickedLinear is one linear layer a target list selects.
type pickedLinear struct {
	name    string
	out, in int
}

// headModuleName is the checkpoint name of the model's head.
func headModuleName(m *model.Model) string {
	if names, ok := m.TensorNames(); ok && names.Head != "" {
		return names.Head
	}
	return "lm_head"
}

// picked lists the linears sel selects: decoder-block linears, and the
// head when the method quantizes a selected head (withHead).
func picked(m *model.Model, sel *methods.Selector, withHead bool) []pickedLinear {
	var out []pickedLinear
	for i, b := range m.Blocks {
		for _, nl := range b.Linears() {
			if name := m.LinearName(i, nl.Role); sel.Selected(name) {
				l := *nl.Linear
				out = append(out, pickedLinear{name, l.Out(), l.In()})
			}
		}
	}
	if withHead && m.Head != nil {
		if name := headModuleName(m); sel.Selected(name) {
			out = append(out, pickedLinear{name, m.Head.Out(), m.Head.In()})
		}
	}
	return out
}

// linearExamples names the model's linears for an error message: those of
// the first block, and the head.
func linearExamples(m *model.Model) string {
	var names []string
	if len(m.Blocks) > 0 {
		for _, nl := range m.Blocks[0].Linears() {
			names = append(names, m.LinearName(0, nl.Role))
		}
	}
	s := strings.Join(names, ", ")
	if len(m.Blocks) > 1 {
		s += fmt.Sprintf(" (the same in blocks 1 to %d)", len(m.Blocks)-1)
	}
	if m.Head != nil {
		s += ", " + headModuleName(m)
	}
	return s
}

// checkTarget verifies a target list against m (see above); withHead says
// whether the method quantizes the head when it is selected.
func checkTarget(m *model.Model, sel *methods.Selector, spec *quant.Spec, withHead bool) error {
	layers := picked(m, sel, withHead)
	if len(layers) == 0 {
		ign := ""
		if len(sel.Ignore) > 0 {
			ign = fmt.Sprintf(" with ignore %v", sel.Ignore)
		}
		return fmt.Errorf("targets %v%s match no linear layer of the model; its linears are %s", sel.Targets, ign, linearExamples(m))
	}
	if spec == nil {
		return nil
	}
	var bad []string
	cols := 0
	for _, l := range layers {
		if err := spec.Validate(l.out, l.in); err != nil {
			if !errors.Is(err, quant.ErrGroupSize) {
				return fmt.Errorf("%s: %w", l.name, err)
			}
			if len(bad) == 0 {
				cols = l.in
			}
			bad = append(bad, l.name)
		}
	}
	if len(bad) > 0 {
		more := ""
		if len(bad) > 3 {
			more = fmt.Sprintf(" and %d more", len(bad)-3)
			bad = bad[:3]
		}
		return fmt.Errorf("group_size %d does not divide the %d input columns of %s%s: choose a group size that does, or add these layers to ignore",
			spec.GroupSize, cols, strings.Join(bad, ", "), more)
	}
	return nil
}
