package model

import (
	"fmt"
	"slices"
	"strings"

	"llmq/checkpoint"
	"llmq/nn"
)

// RoPE settings as Hugging Face transformers 5 reads them from config.json.
//
// Two spellings exist. transformers 5 writes
//
//	"rope_parameters": {"rope_type": …, "rope_theta": …, "partial_rotary_factor": …, <type's parameters>}
//
// — keyed by layer type where layers differ (Gemma 3: {"full_attention":
// {…}, "sliding_attention": {…}}). Older checkpoints write a top-level
// rope_theta (GPT-NeoX: rotary_emb_base), partial_rotary_factor (GPT-NeoX:
// rotary_pct) and "rope_scaling": {"type" or "rope_type": …, parameters}
// (null for none). transformers converts the old form on loading, with
// these precedences, which ropeFor follows:
//   - a non-empty rope_scaling replaces rope_parameters;
//   - rope_theta and partial_rotary_factor inside the dict win over the
//     top-level ones;
//   - for llama3, yarn and longrope, a top-level
//     original_max_position_embeddings wins over the dict's (Phi-3 keeps it
//     there; Phi3Config even defaults it to 4096), else the dict's, else
//     max_position_embeddings — top-level only for an unkeyed dict;
//   - Gemma 3's old form (rope_theta, rope_local_base_freq, rope_scaling)
//     means full-attention layers get rope_theta (default 1e6) and
//     rope_scaling, sliding-window layers the plain rope with
//     rope_local_base_freq (default 1e4).

// defaultMaxPos is max_position_embeddings when config.json has none.
const defaultMaxPos = 2048

// ropeFamily holds what some config classes of transformers default or
// rename for rope.
type ropeFamily struct {
	maxPos, origMaxPos int               // class defaults (0: none)
	aliases            map[string]string // rope_type renames
}

var ropeFamilies = map[string]ropeFamily{
	// Phi3Config: original_max_position_embeddings is a field with default
	// 4096, so it always overrides the dict's; "su" and "yarn" are read as
	// longrope.
	"phi3": {maxPos: 4096, origMaxPos: 4096, aliases: map[string]string{"su": "longrope", "yarn": "longrope"}},
}

// ropeLayerTypes are the keys that mark rope_parameters as keyed by layer
// type, besides the config's own layer_types.
var ropeLayerTypes = []string{"full_attention", "sliding_attention", "chunked_attention", "linear_attention"}

// ropeDict looks rope fields up in its sources in order (Gemma 3's
// rope_scaling over its full_attention entry; otherwise one dict).
type ropeDict []*checkpoint.Config

func (d ropeDict) find(name string) *checkpoint.Config {
	for _, c := range d {
		if c != nil && c.Has(name) {
			return c
		}
	}
	return nil
}

// float reads an optional number; ok is false when absent or null.
func (d ropeDict) float(name string) (v float64, ok bool, err error) {
	c := d.find(name)
	if c == nil {
		return 0, false, nil
	}
	v, err = c.Float(name)
	return v, err == nil, err
}

// present reports whether the key is there, even as null.
func (d ropeDict) present(name string) bool {
	for _, c := range d {
		if c != nil && c.Present(name) {
			return true
		}
	}
	return false
}

// where names the dict in errors.
func (d ropeDict) where(fallback string) string {
	for _, c := range d {
		if c != nil {
			return c.Path
		}
	}
	return fallback
}

// ropeFor builds the rotary embedding for the layers of type layerType
// ("" for configs with one rope; "full_attention"/"sliding_attention" where
// rope_parameters is keyed by layer type — fall back to the unkeyed form if
// the key is absent) from cfg: theta (default defTheta), partial rotary
// factor (rotary dim = headDim × factor, must be even and ≥ 2), and scaling.
// roundFreq is passed through to nn.Rope.RoundFreq (may be nil).
//
// A layer type whose entry is null has no rotary embedding (a NoPE layer):
// ropeFor returns nil and no error. The rope is the "rotate half" layout of
// transformers. Gemma 3's defaults are its config class's (1e6 for full,
// 1e4 for sliding layers), not defTheta.
func ropeFor(cfg *checkpoint.Config, layerType string, headDim int, defTheta float64, roundFreq func(float32) float32) (*nn.Rope, error) {
	fam := ropeFamilies[cfg.ModelType]
	maxPos, err := cfg.IntOr(cmpOr(fam.maxPos, defaultMaxPos), "max_position_embeddings")
	if err != nil {
		return nil, err
	}
	if maxPos <= 0 {
		return nil, fmt.Errorf("%s: max_position_embeddings must be positive, got %d", cfg.Path, maxPos)
	}
	dict, outer, keyed, nope, err := ropeDictFor(cfg, layerType)
	if err != nil || nope {
		return nil, err
	}
	where := dict.where(cfg.Path)

	// theta and the partial rotary factor: the dict's, else the top level's.
	theta := defTheta
	if isGemma3(cfg) {
		theta = 1e6
		if layerType == "sliding_attention" {
			theta = 1e4
		}
	}
	if v, ok, err := dict.float("rope_theta"); err != nil {
		return nil, err
	} else if ok {
		theta = v
	} else {
		names := []string{"rope_theta", "rotary_emb_base"}
		if isGemma3(cfg) && layerType == "sliding_attention" {
			names = []string{"rope_local_base_freq"}
		}
		if theta, err = cfg.FloatOr(theta, names...); err != nil {
			return nil, err
		}
	}
	if !(theta > 0) {
		return nil, fmt.Errorf("%s: rope_theta must be positive, got %v", where, theta)
	}
	partial := 1.0
	if v, ok, err := dict.float("partial_rotary_factor"); err != nil {
		return nil, err
	} else if ok {
		partial = v
	} else if partial, err = cfg.FloatOr(1, "partial_rotary_factor", "rotary_pct"); err != nil {
		return nil, err
	}
	if !(partial > 0 && partial <= 1) {
		return nil, fmt.Errorf("%s: partial_rotary_factor must be in (0, 1], got %v", where, partial)
	}
	// int(head_dim * partial_rotary_factor), as transformers truncates.
	rotDim := int(float64(headDim) * partial)
	if rotDim < 2 || rotDim%2 != 0 {
		return nil, fmt.Errorf("%s: partial_rotary_factor %v gives a rotary dimension of %d for head_dim %d; it must be even and at least 2", where, partial, rotDim, headDim)
	}

	typ := "default"
	for _, n := range []string{"rope_type", "type"} {
		if c := dict.find(n); c != nil {
			if typ, err = c.String(n); err != nil {
				return nil, err
			}
			break
		}
	}
	// transformers moves original_max_position_embeddings into the dict
	// before it renames a family's alias, so an alias (Phi-3's "su") only
	// finds the dict's own.
	moved := typ == "llama3" || typ == "yarn" || typ == "longrope"
	if a, ok := fam.aliases[typ]; ok {
		typ = a
	}
	s := nn.RopeScaling{Type: typ}

	// Pre-training context for the types that use it.
	orig := func() (int, error) {
		if !moved {
			if c := dict.find("original_max_position_embeddings"); c != nil {
				return c.Int("original_max_position_embeddings")
			}
			return 0, fmt.Errorf("%s: rope_type %q needs field \"original_max_position_embeddings\"", where, typ)
		}
		if !keyed {
			if cfg.Has("original_max_position_embeddings") {
				return cfg.Int("original_max_position_embeddings")
			}
			if fam.origMaxPos > 0 {
				return fam.origMaxPos, nil
			}
		}
		if c := dict.find("original_max_position_embeddings"); c != nil {
			return c.Int("original_max_position_embeddings")
		}
		return maxPos, nil
	}
	need := func(name string) (float64, error) {
		v, ok, err := dict.float(name)
		if err == nil && !ok {
			err = fmt.Errorf("%s: rope_type %q needs field %q", where, typ, name)
		}
		return v, err
	}
	positive := func(name string, v float64) error {
		if !(v > 0) {
			return fmt.Errorf("%s: field %q must be positive, got %v", where, name, v)
		}
		return nil
	}

	switch typ {
	case "default":
	case "linear", "dynamic":
		if s.Factor, err = need("factor"); err != nil {
			return nil, err
		}
		if err := positive("factor", s.Factor); err != nil {
			return nil, err
		}
		s.MaxPos = maxPos
	case "llama3":
		for _, f := range []struct {
			dst  *float64
			name string
		}{{&s.Factor, "factor"}, {&s.LowFreqFactor, "low_freq_factor"}, {&s.HighFreqFactor, "high_freq_factor"}} {
			if *f.dst, err = need(f.name); err != nil {
				return nil, err
			}
			if err := positive(f.name, *f.dst); err != nil {
				return nil, err
			}
		}
		if s.HighFreqFactor <= s.LowFreqFactor {
			return nil, fmt.Errorf("%s: high_freq_factor %v must exceed low_freq_factor %v", where, s.HighFreqFactor, s.LowFreqFactor)
		}
		if s.OriginalMaxPos, err = orig(); err != nil {
			return nil, err
		}
	case "yarn":
		if s.OriginalMaxPos, err = orig(); err != nil {
			return nil, err
		}
		// factor is a required key; an explicit null means the ratio of
		// the context lengths.
		if !dict.present("factor") {
			return nil, fmt.Errorf("%s: rope_type \"yarn\" needs field \"factor\"", where)
		}
		f, ok, err := dict.float("factor")
		if err != nil {
			return nil, err
		}
		if !ok {
			f = float64(maxPos) / float64(s.OriginalMaxPos)
		}
		if err := positive("factor", f); err != nil {
			return nil, err
		}
		s.Factor = f
		var mscale, mscaleAll float64
		for _, p := range []struct {
			dst  *float64
			name string
		}{{&s.BetaFast, "beta_fast"}, {&s.BetaSlow, "beta_slow"}, {&mscale, "mscale"}, {&mscaleAll, "mscale_all_dim"}} {
			if *p.dst, _, err = dict.float(p.name); err != nil {
				return nil, err
			}
		}
		if s.BetaFast < 0 || s.BetaSlow < 0 {
			return nil, fmt.Errorf("%s: beta_fast and beta_slow must not be negative, got %v and %v", where, s.BetaFast, s.BetaSlow)
		}
		af, ok, err := dict.float("attention_factor")
		if err != nil {
			return nil, err
		}
		if !ok {
			af = nn.YarnAttentionFactor(s.Factor, mscale, mscaleAll)
		}
		s.AttentionFactor = af
		// transformers reads truncate from the outer rope_parameters dict
		// even when it is keyed by layer type, so a per-layer truncate is
		// not seen there, nor here.
		if outer != nil {
			t, err := outer.BoolOr(true, "truncate")
			if err != nil {
				return nil, err
			}
			s.NoTruncate = !t
		}
	case "longrope":
		if s.OriginalMaxPos, err = orig(); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			dst  *[]float64
			name string
		}{{&s.ShortFactor, "short_factor"}, {&s.LongFactor, "long_factor"}} {
			c := dict.find(f.name)
			if c == nil {
				return nil, fmt.Errorf("%s: rope_type \"longrope\" needs field %q", where, f.name)
			}
			if *f.dst, err = c.Floats(f.name); err != nil {
				return nil, err
			}
			if len(*f.dst) != rotDim/2 {
				return nil, fmt.Errorf("%s: field %q has %d values, want rotary dimension / 2 = %d", c.Path, f.name, len(*f.dst), rotDim/2)
			}
		}
		f, ok, err := dict.float("factor")
		if err != nil {
			return nil, err
		}
		if !ok {
			f = float64(maxPos) / float64(s.OriginalMaxPos)
		}
		if err := positive("factor", f); err != nil {
			return nil, err
		}
		s.Factor = f
		af, ok, err := dict.float("attention_factor")
		if err != nil {
			return nil, err
		}
		if !ok {
			af = nn.LongRopeAttentionFactor(f, s.OriginalMaxPos)
		}
		s.AttentionFactor = af
	default:
		return nil, fmt.Errorf("%s: rope_type %q is not supported (supported: %s)", where, typ, strings.Join(nn.RopeTypes, ", "))
	}
	if (typ == "yarn" || typ == "longrope") && !(s.AttentionFactor > 0) {
		return nil, fmt.Errorf("%s: field \"attention_factor\" must be positive, got %v", where, s.AttentionFactor)
	}
	if s.OriginalMaxPos < 0 || (s.OriginalMaxPos == 0 && (typ == "llama3" || typ == "yarn" || typ == "longrope")) {
		return nil, fmt.Errorf("%s: original_max_position_embeddings must be positive, got %d", where, s.OriginalMaxPos)
	}
	// Tables grow on demand; tabulate a modest prefix up front.
	r, err := nn.NewScaledRope(headDim, rotDim, theta, false, s, min(maxPos, 4096), roundFreq)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	return r, nil
}

// ropeDictFor finds the dict holding layerType's rope settings: dict are
// its sources, outer the whole rope_parameters (or rope_scaling) object,
// keyed whether that is keyed by layer type, nope whether the layer type's
// entry is null.
func ropeDictFor(cfg *checkpoint.Config, layerType string) (dict ropeDict, outer *checkpoint.Config, keyed, nope bool, err error) {
	scaling, hasScaling, err := cfg.Object("rope_scaling")
	if err != nil {
		return nil, nil, false, false, err
	}
	if hasScaling && len(scaling.Keys()) == 0 {
		hasScaling = false // {} is falsy in transformers' "rope_scaling or rope_parameters"
	}
	params, hasParams, err := cfg.Object("rope_parameters")
	if err != nil {
		return nil, nil, false, false, err
	}

	if isGemma3(cfg) {
		// Gemma3TextConfig: rope_parameters keyed by layer type (or
		// built from the old fields), rope_scaling updating full_attention.
		if layerType != "full_attention" && layerType != "sliding_attention" {
			return nil, nil, false, false, fmt.Errorf("%s: Gemma 3 has a rope per layer type; want \"full_attention\" or \"sliding_attention\", got %q", cfg.Path, layerType)
		}
		// An absent or null entry is the plain rope.
		var entry *checkpoint.Config
		if hasParams {
			if entry, _, err = params.Object(layerType); err != nil {
				return nil, nil, false, false, err
			}
		}
		dict = ropeDict{entry}
		if layerType == "full_attention" && hasScaling {
			dict = ropeDict{scaling, entry}
		}
		return dict, params, true, false, nil
	}

	outer = params
	if hasScaling {
		outer = scaling
	}
	if outer == nil {
		return ropeDict{}, nil, false, false, nil
	}
	types := slices.Clone(ropeLayerTypes)
	if lt, err := cfg.Strings("layer_types"); err == nil {
		types = append(types, lt...)
	}
	isKeyed := false
	for _, k := range outer.Keys() {
		if slices.Contains(types, k) {
			isKeyed = true
			break
		}
	}
	if !isKeyed {
		return ropeDict{outer}, outer, false, false, nil
	}
	if layerType == "" {
		return nil, nil, false, false, fmt.Errorf("%s: rope settings are keyed by layer type (%s); a layer type is needed", outer.Path, strings.Join(outer.Keys(), ", "))
	}
	entry, ok, err := outer.Object(layerType)
	switch {
	case err != nil:
		return nil, nil, false, false, err
	case !ok && outer.Present(layerType):
		return nil, outer, true, true, nil // null: no rotary embedding
	case !ok:
		return nil, nil, false, false, fmt.Errorf("%s: no rope settings for layer type %q", outer.Path, layerType)
	}
	return ropeDict{entry}, outer, true, false, nil
}

// isGemma3 reports a Gemma 3 text config, whose class converts the rope
// settings its own way (see the comment at the top of this file).
func isGemma3(cfg *checkpoint.Config) bool {
	return cfg.ModelType == "gemma3_text" || cfg.ModelType == "gemma3"
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}
