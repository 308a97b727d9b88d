package recipe

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"llmq/model"
	"llmq/quant"
	"llmq/quant/methods"
)

func init() {
	modifiers["QuantizationModifier"] = buildQuantization
	modifiers["SmoothQuantModifier"] = buildSmoothQuant
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
func buildQuantization(body *yaml.Node) (func(*model.Model, []methods.Method) ([]methods.Method, error), error) {
	var f quantFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	targets, err := f.resolve()
	if err != nil {
		return nil, err
	}
	kv, err := f.kvCache()
	if err != nil {
		return nil, err
	}
	return func(_ *model.Model, prev []methods.Method) ([]methods.Method, error) {
		for _, t := range targets {
			if t.actOrder {
				return nil, fmt.Errorf("actorder needs GPTQModifier")
			}
			prev = append(prev, &methods.RTN{Scheme: t.scheme, Select: t.sel})
		}
		return appendKV(prev, kv), nil
	}, nil
}

// smoothQuantFields are SmoothQuantModifier's settings. smoothing_strength
// may be "search" (an llmq extension) to pick α per block on calibration
// loss, scored with search_scheme (default W8A8_O2: per-tensor dynamic
// activations, the level smoothing matters most for).
type smoothQuantFields struct {
	SmoothingStrength yaml.Node `yaml:"smoothing_strength"`
	Mappings          [][]any   `yaml:"mappings"`
	Ignore            []string  `yaml:"ignore"`
	NumCalibSteps     *int      `yaml:"num_calibration_steps"`
	SearchScheme      string    `yaml:"search_scheme"`
}

func buildSmoothQuant(body *yaml.Node) (func(*model.Model, []methods.Method) ([]methods.Method, error), error) {
	var f smoothQuantFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	sq := &methods.SmoothQuant{Alpha: 0.5}
	switch {
	case f.SmoothingStrength.Kind == 0:
	case f.SmoothingStrength.Value == "search" || f.SmoothingStrength.Value == "auto":
		sq.Search = true
	default:
		if err := f.SmoothingStrength.Decode(&sq.Alpha); err != nil || sq.Alpha < 0 || sq.Alpha > 1 {
			return nil, fmt.Errorf("smoothing_strength must be a number in [0, 1] or \"search\"")
		}
	}
	if f.NumCalibSteps != nil {
		return nil, fmt.Errorf("num_calibration_steps is not supported: calibration size is set with --calib-samples")
	}
	if len(f.Ignore) > 0 {
		return nil, fmt.Errorf("ignore is not supported for SmoothQuantModifier; list the mappings to smooth instead")
	}
	schemeName := f.SearchScheme
	if schemeName == "" {
		schemeName = "W8A8_O2"
	}
	sc, err := SchemeByName(schemeName)
	if err != nil {
		return nil, fmt.Errorf("search_scheme: %w", err)
	}
	sq.SearchScheme = sc
	type rawMapping struct {
		balance []string
		smooth  string
	}
	var raws []rawMapping
	for i, mp := range f.Mappings {
		if len(mp) != 2 {
			return nil, fmt.Errorf("mappings[%d]: want [[balance layers…], smooth layer]", i)
		}
		var rm rawMapping
		bal, ok := mp[0].([]any)
		if !ok {
			return nil, fmt.Errorf("mappings[%d]: the first entry must list the balance layers", i)
		}
		for _, b := range bal {
			s, ok := b.(string)
			if !ok {
				return nil, fmt.Errorf("mappings[%d]: layer patterns must be strings", i)
			}
			rm.balance = append(rm.balance, s)
		}
		if rm.smooth, ok = mp[1].(string); !ok {
			return nil, fmt.Errorf("mappings[%d]: the second entry must be the smooth layer pattern", i)
		}
		for _, p := range append(append([]string(nil), rm.balance...), rm.smooth) {
			if rest, ok := strings.CutPrefix(p, "re:"); ok {
				if _, err := regexp.Compile(rest); err != nil {
					return nil, fmt.Errorf("mappings[%d]: pattern %q: %w", i, p, err)
				}
			}
		}
		raws = append(raws, rm)
	}
	return func(m *model.Model, prev []methods.Method) ([]methods.Method, error) {
		if len(raws) > 0 {
			for _, rm := range raws {
				mp, err := resolveMapping(m, rm.balance, rm.smooth)
				if err != nil {
					return nil, err
				}
				sq.Mappings = append(sq.Mappings, mp)
			}
		}
		return append(prev, sq), nil
	}, nil
}

// resolveMapping finds the roles of block 0 that a name-pattern mapping
// designates (every block has the same roles).
func resolveMapping(m *model.Model, balance []string, smooth string) (methods.Mapping, error) {
	var mp methods.Mapping
	roles := []string{"norm1", "norm2", "q", "k", "v", "o", "gate", "up", "down"}
	match := func(pattern string, candidates []string) []string {
		sel, _ := methods.NewSelector([]string{pattern}, nil)
		var hits []string
		for _, r := range candidates {
			if r == "gate" && m.Blocks[0].Gate == nil {
				continue
			}
			if sel.Selected(m.LinearName(0, r)) {
				hits = append(hits, r)
			}
		}
		return hits
	}
	sm := match(smooth, roles)
	if len(sm) != 1 {
		return mp, fmt.Errorf("smooth layer pattern %q matches %d modules of %s (want exactly 1)", smooth, len(sm), m.Blocks[0].Name)
	}
	mp.Smooth = sm[0]
	for _, p := range balance {
		hits := match(p, roles[2:])
		if len(hits) == 0 {
			return mp, fmt.Errorf("balance layer pattern %q matches no linear of %s", p, m.Blocks[0].Name)
		}
		mp.Balance = append(mp.Balance, hits...)
	}
	return mp, nil
}

func init() {
	modifiers["GPTQModifier"] = buildGPTQ
	modifiers["LoRCModifier"] = buildLoRC
}

// gptqFields are GPTQModifier's settings (llm-compressor's names).
type gptqFields struct {
	quantFields      `yaml:",inline"`
	DampeningFrac    *float64 `yaml:"dampening_frac"`
	BlockSize        int      `yaml:"block_size"`
	ActOrder         any      `yaml:"actorder"`
	SequentialUpdate *bool    `yaml:"sequential_update"`
	TrueSequential   *bool    `yaml:"true_sequential"`
	OffloadHessians  *bool    `yaml:"offload_hessians"` // accepted; Hessians live in RAM one block at a time anyway
}

func buildGPTQ(body *yaml.Node) (func(*model.Model, []methods.Method) ([]methods.Method, error), error) {
	var f gptqFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	targets, err := f.resolve()
	if err != nil {
		return nil, err
	}
	if f.DampeningFrac != nil && (*f.DampeningFrac < 0 || *f.DampeningFrac > 1) {
		return nil, fmt.Errorf("dampening_frac %v must be in [0, 1]", *f.DampeningFrac)
	}
	if f.BlockSize < 0 {
		return nil, fmt.Errorf("block_size %d must be positive", f.BlockSize)
	}
	topAO, err := (&QuantArgs{ActOrder: f.ActOrder}).actOrder()
	if err != nil {
		return nil, err
	}
	kv, err := f.kvCache()
	if err != nil {
		return nil, err
	}
	return func(_ *model.Model, prev []methods.Method) ([]methods.Method, error) {
		for _, t := range targets {
			g := methods.NewGPTQ(t.scheme, t.sel)
			if f.DampeningFrac != nil {
				g.DampFrac = *f.DampeningFrac
			}
			if f.BlockSize > 0 {
				g.BlockSize = f.BlockSize
			}
			g.ActOrder = t.actOrder || topAO
			for _, b := range []*bool{f.SequentialUpdate, f.TrueSequential} {
				if b != nil {
					g.TrueSequential = *b
				}
			}
			prev = append(prev, g)
		}
		return appendKV(prev, kv), nil
	}, nil
}

// LoRCModifier (llmq): ZeroQuant-V2's low-rank compensation of the
// quantization error of the modifier before it, which it wraps.
type lorcFields struct {
	Rank int `yaml:"rank"`
	Bits int `yaml:"bits"`
}

func buildLoRC(body *yaml.Node) (func(*model.Model, []methods.Method) ([]methods.Method, error), error) {
	var f lorcFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	if f.Rank <= 0 {
		return nil, fmt.Errorf("rank must be positive")
	}
	if f.Bits != 0 && (f.Bits < 2 || f.Bits > 8) {
		return nil, fmt.Errorf("bits must be 0 (FP32 factors) or 2…8")
	}
	return func(_ *model.Model, prev []methods.Method) ([]methods.Method, error) {
		wrapped := 0
		for i := len(prev) - 1; i >= 0 && isQuantizer(prev[i]); i-- {
			prev[i] = &methods.LoRC{Rank: f.Rank, Bits: f.Bits, Base: prev[i]}
			wrapped++
		}
		if wrapped == 0 {
			return nil, fmt.Errorf("LoRCModifier must follow a quantizing modifier (QuantizationModifier, GPTQModifier, AWQModifier)")
		}
		return prev, nil
	}, nil
}

// isQuantizer reports whether a method replaces linears by quantized ones
// (so LoRC and LKD can wrap it; LoRC may wrap LKD, not the reverse).
func isQuantizer(m methods.Method) bool {
	switch m.(type) {
	case *methods.RTN, *methods.GPTQ, *methods.AWQ, *methods.LKD:
		return true
	}
	return false
}

func init() {
	modifiers["AWQModifier"] = buildAWQ
	modifiers["LLMInt8Modifier"] = buildLLMInt8
}

// awqFields are AWQModifier's settings. mappings follow llm-compressor's
// AWQMapping: {smooth_layer: pattern, balance_layers: [patterns]}.
type awqFields struct {
	quantFields `yaml:",inline"`
	Mappings    []struct {
		SmoothLayer   string   `yaml:"smooth_layer"`
		BalanceLayers []string `yaml:"balance_layers"`
	} `yaml:"mappings"`
	NGrid     int   `yaml:"n_grid"`
	ApplyClip *bool `yaml:"apply_clip"`
	// DuoScaling is llm-compressor's option to also use weight magnitudes
	// in the scales; only the paper's activation-only form is implemented.
	DuoScaling *bool `yaml:"duo_scaling"`
}

func buildAWQ(body *yaml.Node) (func(*model.Model, []methods.Method) ([]methods.Method, error), error) {
	var f awqFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	targets, err := f.resolve()
	if err != nil {
		return nil, err
	}
	if f.DuoScaling != nil && *f.DuoScaling {
		return nil, fmt.Errorf("duo_scaling is not supported (set it to false: scales are s_X^α as in the paper)")
	}
	if f.NGrid < 0 {
		return nil, fmt.Errorf("n_grid must be positive")
	}
	kv, err := f.kvCache()
	if err != nil {
		return nil, err
	}
	return func(m *model.Model, prev []methods.Method) ([]methods.Method, error) {
		var mappings []methods.Mapping
		for _, mp := range f.Mappings {
			r, err := resolveMapping(m, mp.BalanceLayers, mp.SmoothLayer)
			if err != nil {
				return nil, err
			}
			mappings = append(mappings, r)
		}
		for _, t := range targets {
			if t.actOrder {
				return nil, fmt.Errorf("actorder needs GPTQModifier")
			}
			a := methods.NewAWQ(t.scheme)
			a.Select, a.Mappings = t.sel, mappings
			if f.NGrid > 0 {
				a.Grid = f.NGrid
			}
			if f.ApplyClip != nil {
				a.Clip = *f.ApplyClip
			}
			prev = append(prev, a)
		}
		return appendKV(prev, kv), nil
	}, nil
}

// LLMInt8Modifier (llmq): LLM.int8()'s vector-wise int8 with FP outlier
// decomposition.
type llmInt8Fields struct {
	Targets         stringList `yaml:"targets"`
	Ignore          []string   `yaml:"ignore"`
	Threshold       *float64   `yaml:"threshold"`
	DequantOutliers bool       `yaml:"dequant_outliers"`
}

func buildLLMInt8(body *yaml.Node) (func(*model.Model, []methods.Method) ([]methods.Method, error), error) {
	var f llmInt8Fields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	sel, err := methods.NewSelector(f.Targets, f.Ignore)
	if err != nil {
		return nil, err
	}
	m := &methods.LLMInt8{Threshold: 6, Select: sel, DequantOutliers: f.DequantOutliers}
	if f.Threshold != nil {
		if !(*f.Threshold > 0) {
			return nil, fmt.Errorf("threshold must be positive (use .inf to disable the decomposition)")
		}
		m.Threshold = *f.Threshold
	}
	return func(_ *model.Model, prev []methods.Method) ([]methods.Method, error) {
		return append(prev, m), nil
	}, nil
}

// appendKV adds the KV-cache stage, if any.
func appendKV(prev []methods.Method, kv *methods.KVCache) []methods.Method {
	if kv == nil {
		return prev
	}
	return append(prev, kv)
}

func init() { modifiers["KVCacheModifier"] = buildKVCache }

// KVCacheModifier (llmq): KV-cache quantization, and optionally the
// attention batched matmuls (Q·Kᵀ and P·V) in 8 bits.
type kvFields struct {
	Format string `yaml:"format"` // int8 (default), int4, fp8e4m3
	Static bool   `yaml:"static"` // one calibrated scale per layer for K and for V
	BMM    bool   `yaml:"bmm"`
}

func buildKVCache(body *yaml.Node) (func(*model.Model, []methods.Method) ([]methods.Method, error), error) {
	var f kvFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	if f.Format == "" {
		f.Format = "int8"
	}
	switch f.Format {
	case "int8", "int4", "fp8e4m3":
	default:
		return nil, fmt.Errorf("format %q: want int8, int4 or fp8e4m3", f.Format)
	}
	kv := &methods.KVCache{Format: f.Format, Static: f.Static, BMM: f.BMM}
	return func(_ *model.Model, prev []methods.Method) ([]methods.Method, error) {
		return append(prev, kv), nil
	}, nil
}

func init() { modifiers["ZeroQuantHEROModifier"] = buildHERO }

// ZeroQuantHEROModifier (llmq): a named mixed-precision W8A8 level of
// ZeroQuant-HERO (see methods.HERO).
type heroFields struct {
	Level int `yaml:"level"`
}

func buildHERO(body *yaml.Node) (func(*model.Model, []methods.Method) ([]methods.Method, error), error) {
	var f heroFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	h, err := methods.NewHERO(f.Level)
	if err != nil {
		return nil, err
	}
	return func(_ *model.Model, prev []methods.Method) ([]methods.Method, error) {
		return append(prev, h), nil
	}, nil
}

func init() { modifiers["LKDModifier"] = buildLKD }

// LKDModifier (llmq): ZeroQuant's layer-wise knowledge distillation of the
// quantizing modifier before it, which it wraps.
type lkdFields struct {
	Steps int     `yaml:"steps"`
	LR    float64 `yaml:"lr"`
	Batch int     `yaml:"batch"`
	Seqs  int     `yaml:"seqs"`
	Seed  uint64  `yaml:"seed"`
}

func buildLKD(body *yaml.Node) (func(*model.Model, []methods.Method) ([]methods.Method, error), error) {
	var f lkdFields
	if err := decodeStrict(body, &f); err != nil {
		return nil, err
	}
	if f.Steps < 0 || f.LR < 0 || f.Batch < 0 || f.Seqs < 0 {
		return nil, fmt.Errorf("steps, lr, batch and seqs must not be negative")
	}
	return func(_ *model.Model, prev []methods.Method) ([]methods.Method, error) {
		wrapped := 0
		for i := len(prev) - 1; i >= 0 && isQuantizer(prev[i]); i-- {
			prev[i] = &methods.LKD{Base: prev[i], Steps: f.Steps, LR: f.LR, Batch: f.Batch, Seqs: f.Seqs, Seed: f.Seed}
			wrapped++
		}
		if wrapped == 0 {
			return nil, fmt.Errorf("LKDModifier must follow a quantizing modifier (QuantizationModifier, GPTQModifier, AWQModifier)")
		}
		return prev, nil
	}, nil
}
