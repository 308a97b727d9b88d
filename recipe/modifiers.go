package recipe

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"llmq/model"
	"llmq/quant"
	"llmq/quant/methods"
)

// buildFunc resolves a parsed modifier against a model: it receives the
// methods of the modifiers before it and returns the list with its own.
type buildFunc = func(m *model.Model, prev []methods.Method) ([]methods.Method, error)

// appendMethods is the buildFunc of a modifier that adds fixed methods.
func appendMethods(ms ...methods.Method) buildFunc {
	return func(_ *model.Model, prev []methods.Method) ([]methods.Method, error) {
		return append(prev, ms...), nil
	}
}

// wrapQuantizers is the buildFunc of a modifier that refines the
// quantizing modifier before it (LoRC, LKD): each of that modifier's
// methods is replaced by wrap(method).
func wrapQuantizers(kind string, wrap func(methods.Method) methods.Method) buildFunc {
	return func(_ *model.Model, prev []methods.Method) ([]methods.Method, error) {
		wrapped := 0
		for i := len(prev) - 1; i >= 0 && isQuantizer(prev[i]); i-- {
			prev[i] = wrap(prev[i])
			wrapped++
		}
		if wrapped == 0 {
			return nil, fmt.Errorf("%s must follow a quantizing modifier (QuantizationModifier, GPTQModifier, AWQModifier)", kind)
		}
		return prev, nil
	}
}

// quantFields are the settings every quantizing modifier shares.
type quantFields struct {
	Targets      stringList             `yaml:"targets"`
	Ignore       []string               `yaml:"ignore"`
	Scheme       yaml.Node              `yaml:"scheme"`
	ConfigGroups map[string]ConfigGroup `yaml:"config_groups"`
	// KVCacheScheme quantizes the KV cache: strategy tensor with dynamic
	// false (the usual compressed-tensors form) calibrates one scale per
	// layer for K and one for V; strategy token quantizes dynamically per
	// token and head.
	KVCacheScheme *QuantArgs `yaml:"kv_cache_scheme"`
}

// kvCache converts kv_cache_scheme into a method (nil when absent).
func (q *quantFields) kvCache() (*methods.KVCache, error) {
	a := q.KVCacheScheme
	if a == nil {
		return nil, nil
	}
	spec, err := a.spec(true)
	if err != nil {
		return nil, fmt.Errorf("kv_cache_scheme: %w", err)
	}
	kv := &methods.KVCache{}
	switch {
	case spec.Format == quant.FormatInt && (spec.Bits == 8 || spec.Bits == 4) && spec.Symmetric:
		kv.Format = fmt.Sprintf("int%d", spec.Bits)
	case spec.Format == quant.FormatFP8E4M3:
		kv.Format = "fp8e4m3"
	default:
		return nil, fmt.Errorf("kv_cache_scheme: %v is not supported (symmetric int8/int4 or float 8-bit)", spec)
	}
	switch {
	case spec.Granularity == quant.PerTensor && a.Dynamic != nil && !*a.Dynamic:
		kv.Static = true
	case spec.Granularity == quant.PerToken:
	default:
		return nil, fmt.Errorf("kv_cache_scheme: use strategy tensor with dynamic: false (calibrated), or strategy token (dynamic per token and head)")
	}
	return kv, nil
}

// target is one resolved (layers, scheme) pair of a quantizing modifier.
type target struct {
	sel      *methods.Selector
	scheme   methods.Scheme
	actOrder bool
}

// resolve turns scheme / config_groups into targets. scheme is either a
// preset name applied to targets, or a map from preset names to target
// lists; config_groups spell the arguments out.
func (q *quantFields) resolve() ([]target, error) {
	var out []target
	add := func(targets []string, g ConfigGroup) error {
		sc, ao, err := g.scheme()
		if err != nil {
			return err
		}
		sel, err := methods.NewSelector(targets, q.Ignore)
		if err != nil {
			return err
		}
		out = append(out, target{sel, sc, ao})
		return nil
	}
	hasScheme := q.Scheme.Kind != 0
	if hasScheme == (len(q.ConfigGroups) > 0) {
		return nil, fmt.Errorf("give exactly one of scheme and config_groups")
	}
	if len(q.ConfigGroups) > 0 {
		names := make([]string, 0, len(q.ConfigGroups))
		for n := range q.ConfigGroups {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			g := q.ConfigGroups[n]
			targets := g.Targets
			if len(targets) == 0 {
				targets = q.Targets
			}
			if err := add(targets, g); err != nil {
				return nil, fmt.Errorf("config_groups.%s: %w", n, err)
			}
		}
		return out, nil
	}
	switch q.Scheme.Kind {
	case yaml.ScalarNode:
		g, ok := presetSchemes[strings.ToUpper(q.Scheme.Value)]
		if !ok {
			return nil, fmt.Errorf("unknown scheme %q (known: %s)", q.Scheme.Value, strings.Join(PresetSchemes(), ", "))
		}
		return out, add(q.Targets, g)
	case yaml.MappingNode:
		var m map[string]stringList
		if err := q.Scheme.Decode(&m); err != nil {
			return nil, fmt.Errorf("scheme: %w", err)
		}
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			g, ok := presetSchemes[strings.ToUpper(n)]
			if !ok {
				return nil, fmt.Errorf("unknown scheme %q (known: %s)", n, strings.Join(PresetSchemes(), ", "))
			}
			if err := add(m[n], g); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("scheme must be a preset name or a map of preset names to targets")
}

// QuantizationModifier: round-to-nearest quantization (no weight
// calibration) with the given schemes.
// smoothQuantFields are SmoothQuantModifier's settings. smoothing_strength
// may be "search" (an llmq extension) to pick α per block on calibration
// loss, scored with search_scheme (default W8A8_O2: per-tensor dynamic
// activations, the level smoothing matters most for).
// resolveMapping finds the roles of block 0 that a name-pattern mapping
// designates (every block has the same roles).
// gptqFields are GPTQModifier's settings (llm-compressor's names).
// LoRCModifier (llmq): ZeroQuant-V2's low-rank compensation of the
// quantization error of the modifier before it, which it wraps.
// isQuantizer reports whether a method replaces linears by quantized ones
// (so LoRC and LKD can wrap it; LoRC may wrap LKD, not the reverse).
func isQuantizer(m methods.Method) bool {
	switch m.(type) {
	case *methods.RTN, *methods.GPTQ, *methods.AWQ, *methods.LKD:
		return true
	}
	return false
}

// awqFields are AWQModifier's settings. mappings follow llm-compressor's
// AWQMapping: {smooth_layer: pattern, balance_layers: [patterns]}.
// LLMInt8Modifier (llmq): LLM.int8()'s vector-wise int8 with FP outlier
// decomposition.
// appendKV adds the KV-cache stage, if any.
func appendKV(prev []methods.Method, kv *methods.KVCache) []methods.Method {
	if kv == nil {
		return prev
	}
	return append(prev, kv)
}

// KVCacheModifier (llmq): KV-cache quantization, and optionally the
// attention batched matmuls (Q·Kᵀ and P·V) in 8 bits.
// ZeroQuantHEROModifier (llmq): a named mixed-precision W8A8 level of
// ZeroQuant-HERO (see methods.HERO).
// LKDModifier (llmq): ZeroQuant's layer-wise knowledge distillation of the
// quantizing modifier before it, which it wraps.
