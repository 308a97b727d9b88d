// Package methods implements the post-training quantization methods of the
// literature, one file each. A method transforms one decoder block at a
// time, given the calibration activations entering it (see package calib
// for the layer-by-layer protocol): it may rescale weights (SmoothQuant,
// AWQ), replace linears by quantized ones (RTN, GPTQ), add corrections
// (LoRC) or fine-tune (LKD). Methods see every model family through the
// same model.Block fields, so none of them has per-family code.
package methods

import (
	"fmt"
	"regexp"
	"strings"

	"llmq/calib"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
)

// Layer is what a method sees of one decoder block.
type Layer struct {
	Model  *model.Model
	Index  int
	Block  *model.Block
	Runner *model.BlockRunner
	// Inputs are the calibration activations entering the block, computed
	// through the already-quantized blocks before it (nil when no method of
	// the recipe needs calibration).
	Inputs *calib.Activations
}

// Name is the checkpoint name of one of the block's linears.
func (l *Layer) Name(role string) string { return l.Model.LinearName(l.Index, role) }

// Collect gathers input statistics of the block's linears over the
// calibration data (see calib.Collect).
func (l *Layer) Collect(roles []string, opt calib.Options) (map[string]*calib.Stats, error) {
	if l.Inputs == nil {
		return nil, fmt.Errorf("%s: this method needs calibration data", l.Block.Name)
	}
	return calib.Collect(l.Model, l.Runner, l.Index, l.Inputs, roles, opt)
}

// Method is one stage of a recipe, applied block by block.
type Method interface {
	// Name identifies the method in logs and errors.
	Name() string
	// NeedsCalibration reports whether ApplyLayer reads l.Inputs.
	NeedsCalibration() bool
	// ApplyLayer transforms one block in place.
	ApplyLayer(l *Layer) error
}

// ModelMethod is implemented by methods that also change parts outside the
// decoder blocks (the KV cache, the embedding, the head); ApplyModel runs
// once, after every block has been through ApplyLayer.
type ModelMethod interface {
	ApplyModel(m *model.Model) error
}

// Selector chooses linears by their checkpoint names, with llm-compressor's
// conventions: a target is "Linear" (every linear layer), "re:<regexp>"
// (matched against the full name), or a name suffix ("q_proj" matches
// "model.layers.0.self_attn.q_proj"). Ignore removes matches the same way.
// Decoder-block linears are the only candidates; the head (lm_head) and
// embeddings stay unquantized unless a method says otherwise.
type Selector struct {
	Targets []string
	Ignore  []string
	re      map[string]*regexp.Regexp
}

// NewSelector compiles the patterns; an empty target list means "Linear".
func NewSelector(targets, ignore []string) (*Selector, error) {
	s := &Selector{Targets: targets, Ignore: ignore, re: map[string]*regexp.Regexp{}}
	if len(s.Targets) == 0 {
		s.Targets = []string{"Linear"}
	}
	for _, p := range append(append([]string(nil), s.Targets...), ignore...) {
		if rest, ok := strings.CutPrefix(p, "re:"); ok {
			re, err := regexp.Compile(rest)
			if err != nil {
				return nil, fmt.Errorf("pattern %q: %w", p, err)
			}
			s.re[p] = re
		}
	}
	return s, nil
}

func (s *Selector) match(p, name string) bool {
	if re, ok := s.re[p]; ok {
		return re.MatchString(name)
	}
	if p == "Linear" {
		return true
	}
	return name == p || strings.HasSuffix(name, "."+p)
}

// Selected reports whether the linear named name is targeted and not ignored.
func (s *Selector) Selected(name string) bool {
	if s == nil {
		return true
	}
	hit := false
	for _, p := range s.Targets {
		if s.match(p, name) {
			hit = true
			break
		}
	}
	if !hit {
		return false
	}
	for _, p := range s.Ignore {
		if s.match(p, name) {
			return false
		}
	}
	return true
}

// Roles returns the block's linear roles the selector picks, in execution order.
func (s *Selector) Roles(l *Layer) []string {
	var out []string
	for _, nl := range l.Block.Linears() {
		if s.Selected(l.Name(nl.Role)) {
			out = append(out, nl.Role)
		}
	}
	return out
}

// Scheme is how a linear is quantized: its weight format, and optionally
// its input activations' (nil: weight-only, the "W4A16" family). Static
// activations are per-tensor with the range calibrated offline.
type Scheme struct {
	Weights quant.Spec
	// MSEWeights picks each weight group's range by the shrink search of
	// quant.Spec.ParamsMSE (observer "mse") instead of min/max.
	MSEWeights bool
	Acts       *quant.Spec
	StaticActs bool
}

// WeightParams computes the weight parameters of w [rows×cols] with the
// scheme's observer.
func (s Scheme) WeightParams(w []float32, rows, cols int) ([]quant.Params, error) {
	if s.MSEWeights {
		return quant.ComputeParamsMSE(w, rows, cols, s.Weights)
	}
	return quant.ComputeParams(w, rows, cols, s.Weights)
}

// String names the scheme, e.g. "W int8-sym-channel, A dynamic int8-sym-token".
func (s Scheme) String() string {
	a := "none"
	if s.Acts != nil {
		a = "dynamic " + s.Acts.String()
		if s.StaticActs {
			a = "static " + s.Acts.String()
		}
	}
	return fmt.Sprintf("W %v, A %s", s.Weights, a)
}

// NeedsCalibration: static activation ranges come from calibration data.
func (s Scheme) NeedsCalibration() bool { return s.Acts != nil && s.StaticActs }

// ActQuant builds the activation quantizer of a linear whose calibrated
// input statistics are st (used for static ranges only; may be nil for
// dynamic schemes).
func (s Scheme) ActQuant(st *calib.Stats) (*quant.ActQuant, error) {
	if s.Acts == nil {
		return nil, nil
	}
	if !s.StaticActs {
		return quant.DynamicAct(*s.Acts), nil
	}
	if st == nil {
		return nil, fmt.Errorf("static activation quantization needs calibration statistics")
	}
	m := st.Max()
	return quant.StaticAct(*s.Acts, -m, m)
}

// dense returns the FP32 layer in a slot, or an error naming the layer if a
// previous stage already replaced it.
func dense(l *Layer, role string) (*nn.Dense, error) {
	slot := l.Block.Linear(role)
	if slot == nil {
		return nil, fmt.Errorf("%s: block has no %q linear", l.Block.Name, role)
	}
	d, ok := (*slot).(*nn.Dense)
	if !ok {
		return nil, fmt.Errorf("%s is already quantized (%T); weight transforms must come before quantization in the recipe", l.Name(role), *slot)
	}
	return d, nil
}

// statsFor collects static-activation statistics for roles when the scheme
// needs them (nil map otherwise).
func statsFor(l *Layer, s Scheme, roles []string) (map[string]*calib.Stats, error) {
	if !s.NeedsCalibration() {
		return nil, nil
	}
	return l.Collect(roles, calib.Options{})
}
