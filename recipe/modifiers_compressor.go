package recipe

// The modifiers of llm-compressor, read with its field names.

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"llmq/model"
	"llmq/quant/methods"
)

func init() {
	modifiers["QuantizationModifier"] = buildQuantization
	modifiers["SmoothQuantModifier"] = buildSmoothQuant
	modifiers["GPTQModifier"] = buildGPTQ
	modifiers["AWQModifier"] = buildAWQ
}

func buildQuantization(body *yaml.Node) (buildFunc, error) {
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
	return func(m *model.Model, prev []methods.Method) ([]methods.Method, error) {
		for _, t := range targets {
			if t.actOrder {
				return nil, fmt.Errorf("actorder needs GPTQModifier")
			}
			if err := checkTarget(m, t.sel, &t.scheme.Weights, true); err != nil {
				return nil, err
			}
			prev = append(prev, &methods.RTN{Scheme: t.scheme, Select: t.sel})
		}
		return appendKV(prev, kv), nil
	}, nil
}

type smoothQuantFields struct {
	SmoothingStrength yaml.Node `yaml:"smoothing_strength"`
	Mappings          [][]any   `yaml:"mappings"`
	Ignore            []string  `yaml:"ignore"`
	NumCalibSteps     *int      `yaml:"num_calibration_steps"`
	SearchScheme      string    `yaml:"search_scheme"`
}

func buildSmoothQuant(body *yaml.Node) (buildFunc, error) {
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
		s := *sq // each Build gets its own method
		s.Mappings = nil
		for _, rm := range raws {
			mp, err := resolveMapping(m, rm.balance, rm.smooth)
			if err != nil {
				return nil, err
			}
			s.Mappings = append(s.Mappings, mp)
		}
		return append(prev, &s), nil
	}, nil
}

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

type gptqFields struct {
	quantFields      `yaml:",inline"`
	DampeningFrac    *float64 `yaml:"dampening_frac"`
	BlockSize        int      `yaml:"block_size"`
	ActOrder         any      `yaml:"actorder"`
	SequentialUpdate *bool    `yaml:"sequential_update"`
	TrueSequential   *bool    `yaml:"true_sequential"`
	OffloadHessians  *bool    `yaml:"offload_hessians"` // accepted; Hessians live in RAM one block at a time anyway
}

func buildGPTQ(body *yaml.Node) (buildFunc, error) {
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
	return func(m *model.Model, prev []methods.Method) ([]methods.Method, error) {
		for _, t := range targets {
			if err := checkTarget(m, t.sel, &t.scheme.Weights, true); err != nil {
				return nil, err
			}
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

func buildAWQ(body *yaml.Node) (buildFunc, error) {
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
			if err := checkTarget(m, t.sel, &t.scheme.Weights, false); err != nil {
				return nil, err
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
