package recipe

import (
	"fmt"
	"sort"
	"strings"

	"llmq/quant"
	"llmq/quant/methods"
)

// QuantArgs is compressed-tensors' QuantizationArgs, the block that
// describes weights or input_activations in a config group.
type QuantArgs struct {
	NumBits   *int   `yaml:"num_bits"` // default 8
	Type      string `yaml:"type"`     // int | float
	Symmetric *bool  `yaml:"symmetric"`
	Strategy  string `yaml:"strategy"` // tensor | channel | group | token
	GroupSize *int   `yaml:"group_size"`
	Dynamic   *bool  `yaml:"dynamic"`
	// ActOrder is GPTQ's column reordering: group / weight / true select it.
	ActOrder any `yaml:"actorder"`
	// Observer picks weight ranges: minmax, or mse (the shrink search of
	// GPTQ's reference quantizer, quant.Spec.ParamsMSE).
	Observer string `yaml:"observer"`
	// ScaleConstraint is an llmq extension for ZeroQuant-FP: pow2 (M1) or
	// pow2ratio (M2).
	ScaleConstraint string `yaml:"scale_constraint"`
	// FullRange is an llmq extension: symmetric integer grid [−2^(b−1), 2^(b−1)−1].
	FullRange bool `yaml:"full_range"`
}

// spec converts the arguments to a quant.Spec; acts selects the activation
// defaults (per-token) instead of the weight defaults (per-channel).
func (a *QuantArgs) spec(acts bool) (quant.Spec, error) {
	s := quant.Spec{Symmetric: true}
	if a.Symmetric != nil {
		s.Symmetric = *a.Symmetric
	}
	bits := 8
	if a.NumBits != nil {
		bits = *a.NumBits
	}
	groupSize := 0
	if a.GroupSize != nil {
		if groupSize = *a.GroupSize; groupSize <= 0 {
			return s, fmt.Errorf("group_size %d must be positive", groupSize)
		}
	}
	switch strings.ToLower(a.Type) {
	case "", "int":
		if bits < 2 || bits > 8 {
			return s, fmt.Errorf("num_bits %d is out of range: integer quantization takes 2 to 8 bits", bits)
		}
		s.Format, s.Bits = quant.FormatInt, bits
	case "float":
		switch bits {
		case 8:
			s.Format, s.Bits = quant.FormatFP8E4M3, 8
		case 4:
			s.Format, s.Bits = quant.FormatFP4E2M1, 4
		default:
			return s, fmt.Errorf("num_bits %d is not supported with type float (8 = FP8 E4M3, 4 = FP4 E2M1)", bits)
		}
		if !s.Symmetric {
			return s, fmt.Errorf("float formats are symmetric")
		}
	default:
		return s, fmt.Errorf("type %q is not supported (int, float)", a.Type)
	}
	strategy := a.Strategy
	if strategy == "" {
		strategy = "channel"
		if acts {
			strategy = "token"
		}
		if groupSize > 0 {
			strategy = "group"
		}
	}
	switch strategy {
	case "tensor":
		s.Granularity = quant.PerTensor
	case "channel":
		s.Granularity = quant.PerChannel
	case "token":
		s.Granularity = quant.PerToken
	case "group":
		if groupSize <= 0 {
			return s, fmt.Errorf("strategy group needs a positive group_size")
		}
		s.Granularity, s.GroupSize = quant.PerGroup, groupSize
	default:
		return s, fmt.Errorf("strategy %q is not supported (tensor, channel, group, token)", strategy)
	}
	if strategy != "group" && groupSize > 0 {
		return s, fmt.Errorf("group_size %d given with strategy %s", groupSize, strategy)
	}
	switch a.ScaleConstraint {
	case "", "none":
	case "pow2", "m1":
		s.Scale = quant.ScalePow2
	case "pow2ratio", "m2":
		s.Scale = quant.ScalePow2Ratio
	default:
		return s, fmt.Errorf("scale_constraint %q: want pow2 or pow2ratio", a.ScaleConstraint)
	}
	switch a.Observer {
	case "", "minmax":
	case "mse":
		if acts {
			return s, fmt.Errorf("observer mse applies to weights only")
		}
	default:
		return s, fmt.Errorf("observer %q is not supported (minmax, mse)", a.Observer)
	}
	s.FullRange = a.FullRange
	if _, err := quant.ParseSpec(s.String()); err != nil {
		return s, err
	}
	return s, nil
}

// actOrder interprets the actorder field: GPTQ's descending-Hessian column order.
func (a *QuantArgs) actOrder() (bool, error) {
	switch v := a.ActOrder.(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	case string:
		switch v {
		case "group", "weight", "static", "true":
			return true, nil
		case "false", "none":
			return false, nil
		}
	}
	return false, fmt.Errorf("actorder %v: want group, weight, static, true or false", a.ActOrder)
}

// ConfigGroup is one entry of config_groups: which layers, quantized how.
type ConfigGroup struct {
	Targets           []string   `yaml:"targets"`
	Weights           *QuantArgs `yaml:"weights"`
	InputActivations  *QuantArgs `yaml:"input_activations"`
	OutputActivations *QuantArgs `yaml:"output_activations"`
	Format            string     `yaml:"format"`
}

// scheme converts a config group; actOrder reports the weights' actorder.
func (g *ConfigGroup) scheme() (methods.Scheme, bool, error) {
	var sc methods.Scheme
	if g.Weights == nil {
		return sc, false, fmt.Errorf("config group has no weights")
	}
	if g.OutputActivations != nil {
		return sc, false, fmt.Errorf("output_activations quantization is not supported")
	}
	if g.Weights.Dynamic != nil && *g.Weights.Dynamic {
		return sc, false, fmt.Errorf("weights cannot be dynamic")
	}
	w, err := g.Weights.spec(false)
	if err != nil {
		return sc, false, fmt.Errorf("weights: %w", err)
	}
	if w.Granularity == quant.PerToken {
		return sc, false, fmt.Errorf("weights: strategy token applies to activations only")
	}
	sc.Weights = w
	sc.MSEWeights = g.Weights.Observer == "mse"
	ao, err := g.Weights.actOrder()
	if err != nil {
		return sc, false, fmt.Errorf("weights: %w", err)
	}
	if a := g.InputActivations; a != nil {
		as, err := a.spec(true)
		if err != nil {
			return sc, false, fmt.Errorf("input_activations: %w", err)
		}
		sc.Acts = &as
		sc.StaticActs = a.Dynamic != nil && !*a.Dynamic
		if sc.StaticActs && as.Granularity != quant.PerTensor {
			return sc, false, fmt.Errorf("input_activations: static (dynamic: false) activations must use strategy tensor")
		}
	}
	return sc, ao, nil
}

func ptr[T any](v T) *T { return &v }

// presetSchemes are compressed-tensors' named schemes (quant_scheme.py),
// plus llmq's names for the configurations of the papers.
var presetSchemes = map[string]ConfigGroup{
	"W8A16":       {Weights: &QuantArgs{NumBits: ptr(8), Strategy: "channel"}},
	"W4A16":       {Weights: &QuantArgs{NumBits: ptr(4), Strategy: "group", GroupSize: ptr(128)}},
	"W4A16_ASYM":  {Weights: &QuantArgs{NumBits: ptr(4), Strategy: "group", GroupSize: ptr(128), Symmetric: ptr(false)}},
	"W3A16":       {Weights: &QuantArgs{NumBits: ptr(3), Strategy: "group", GroupSize: ptr(128)}},
	"W3A16_ASYM":  {Weights: &QuantArgs{NumBits: ptr(3), Strategy: "group", GroupSize: ptr(128), Symmetric: ptr(false)}},
	"W8A8":        {Weights: &QuantArgs{NumBits: ptr(8), Strategy: "channel"}, InputActivations: &QuantArgs{NumBits: ptr(8), Strategy: "token", Dynamic: ptr(true)}},
	"INT8":        {Weights: &QuantArgs{NumBits: ptr(8), Strategy: "channel"}, InputActivations: &QuantArgs{NumBits: ptr(8), Strategy: "token", Dynamic: ptr(true)}},
	"W4A8":        {Weights: &QuantArgs{NumBits: ptr(4), Strategy: "group", GroupSize: ptr(128)}, InputActivations: &QuantArgs{NumBits: ptr(8), Strategy: "token", Dynamic: ptr(true)}},
	"FP8":         {Weights: &QuantArgs{NumBits: ptr(8), Type: "float", Strategy: "tensor"}, InputActivations: &QuantArgs{NumBits: ptr(8), Type: "float", Strategy: "tensor", Dynamic: ptr(false)}},
	"FP8_DYNAMIC": {Weights: &QuantArgs{NumBits: ptr(8), Type: "float", Strategy: "channel"}, InputActivations: &QuantArgs{NumBits: ptr(8), Type: "float", Strategy: "token", Dynamic: ptr(true)}},
	// llmq: SmoothQuant's levels (activation granularity), per-channel weights.
	"W8A8_O1": {Weights: &QuantArgs{NumBits: ptr(8), Strategy: "channel"}, InputActivations: &QuantArgs{NumBits: ptr(8), Strategy: "token", Dynamic: ptr(true)}},
	"W8A8_O2": {Weights: &QuantArgs{NumBits: ptr(8), Strategy: "channel"}, InputActivations: &QuantArgs{NumBits: ptr(8), Strategy: "tensor", Dynamic: ptr(true)}},
	"W8A8_O3": {Weights: &QuantArgs{NumBits: ptr(8), Strategy: "channel"}, InputActivations: &QuantArgs{NumBits: ptr(8), Strategy: "tensor", Dynamic: ptr(false)}},
	// llmq: the naive W8A8 baseline, per-tensor weights and static per-tensor activations.
	"W8A8_TENSOR_STATIC": {Weights: &QuantArgs{NumBits: ptr(8), Strategy: "tensor"}, InputActivations: &QuantArgs{NumBits: ptr(8), Strategy: "tensor", Dynamic: ptr(false)}},
	// llmq: ZeroQuant-FP W4A8 in floating point (FP4 E2M1 weights g128, FP8 E4M3 per-token activations).
	"W4A8_FP": {Weights: &QuantArgs{NumBits: ptr(4), Type: "float", Strategy: "group", GroupSize: ptr(128)}, InputActivations: &QuantArgs{NumBits: ptr(8), Type: "float", Strategy: "token", Dynamic: ptr(true)}},
}

// PresetSchemes lists the scheme names a recipe's scheme: field accepts.
func PresetSchemes() []string {
	var s []string
	for k := range presetSchemes {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// SchemeByName resolves a preset scheme name.
func SchemeByName(name string) (methods.Scheme, error) {
	g, ok := presetSchemes[strings.ToUpper(name)]
	if !ok {
		return methods.Scheme{}, fmt.Errorf("unknown scheme %q (known: %s)", name, strings.Join(PresetSchemes(), ", "))
	}
	sc, _, err := g.scheme()
	return sc, err
}
