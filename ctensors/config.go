package ctensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// The quantization_config of a compressed-tensors checkpoint, as the
// library's pydantic models define it (compressed_tensors/quantization:
// QuantizationConfig, QuantizationScheme, QuantizationArgs). Reading
// follows the models' defaults (num_bits 8, type int, symmetric, strategy
// inferred from group_size, static); writing spells every field out, with
// only the fields every library version accepts (QuantizationArgs and
// QuantizationScheme forbid unknown keys).

// Compression formats (compressed_tensors.config.CompressionFormat values)
// this package writes and reads.
const (
	FormatPack   = "pack-quantized"
	FormatInt    = "int-quantized"
	FormatNaive  = "naive-quantized"
	FormatFloat  = "float-quantized"
	FormatMixed  = "mixed-precision" // per-group formats
	QuantMethod  = "compressed-tensors"
	StatusCompr  = "compressed"
	typeInt      = "int"
	typeFloat    = "float"
	targetLinear = "Linear" // the module class every linear layer matches
)

// Args is one QuantizationArgs block (weights or input_activations), with
// the defaults resolved.
type Args struct {
	NumBits   int
	Type      string // "int" or "float"
	Symmetric bool
	Strategy  string // tensor | channel | group | token
	GroupSize int    // strategy group only
	Dynamic   bool
	// ActOrder is the GPTQ activation-ordering mode ("", "group", "weight");
	// "group" checkpoints carry NAME.weight_g_idx.
	ActOrder string
}

// argsJSON is the written form of Args: every field of QuantizationArgs
// that all versions of the library know, in its declaration order.
type argsJSON struct {
	NumBits        int            `json:"num_bits"`
	Type           string         `json:"type"`
	Symmetric      bool           `json:"symmetric"`
	GroupSize      *int           `json:"group_size"`
	Strategy       string         `json:"strategy"`
	BlockStructure *[]int         `json:"block_structure"`
	Dynamic        bool           `json:"dynamic"`
	ActOrder       *string        `json:"actorder"`
	Observer       *string        `json:"observer"`
	ObserverKwargs map[string]any `json:"observer_kwargs"`
}

func (a *Args) MarshalJSON() ([]byte, error) {
	j := argsJSON{NumBits: a.NumBits, Type: a.Type, Symmetric: a.Symmetric, Strategy: a.Strategy, Dynamic: a.Dynamic, ObserverKwargs: map[string]any{}}
	if a.Strategy == "group" {
		g := a.GroupSize
		j.GroupSize = &g
	}
	if a.ActOrder != "" {
		s := a.ActOrder
		j.ActOrder = &s
	}
	if !a.Dynamic {
		// The observer that chose static parameters; dynamic parameters have
		// none (the library warns about any other value).
		o := "minmax"
		j.Observer = &o
	}
	return json.Marshal(j)
}

// rawArgs is the read form: pointers tell absent fields from zero values;
// fields this package does not interpret are ignored.
type rawArgs struct {
	NumBits        *int            `json:"num_bits"`
	Type           *string         `json:"type"`
	Symmetric      *bool           `json:"symmetric"`
	GroupSize      *int            `json:"group_size"`
	Strategy       *string         `json:"strategy"`
	BlockStructure json.RawMessage `json:"block_structure"`
	Dynamic        json.RawMessage `json:"dynamic"`
	ActOrder       json.RawMessage `json:"actorder"`
}

// resolve applies QuantizationArgs' defaults and validation rules.
func (r *rawArgs) resolve() (Args, error) {
	a := Args{NumBits: 8, Type: typeInt, Symmetric: true}
	if r.NumBits != nil {
		a.NumBits = *r.NumBits
	}
	if r.Type != nil {
		a.Type = strings.ToLower(*r.Type)
	}
	if r.Symmetric != nil {
		a.Symmetric = *r.Symmetric
	}
	switch a.Type {
	case typeInt:
		if a.NumBits < 1 || a.NumBits > 8 {
			return a, fmt.Errorf("int num_bits %d is not supported (1…8)", a.NumBits)
		}
	case typeFloat:
		if a.NumBits != 8 {
			return a, fmt.Errorf("float num_bits %d is not supported (8: FP8 E4M3; NVFP4/MXFP4 layouts are not read)", a.NumBits)
		}
		if !a.Symmetric {
			return a, fmt.Errorf("asymmetric float quantization is not supported")
		}
	default:
		return a, fmt.Errorf("type %q: want int or float", a.Type)
	}
	if len(r.BlockStructure) > 0 && string(r.BlockStructure) != "null" {
		return a, fmt.Errorf("block_structure (strategy block) is not supported")
	}
	switch d := strings.TrimSpace(string(r.Dynamic)); d {
	case "", "null", "false":
	case "true":
		a.Dynamic = true
	default:
		return a, fmt.Errorf("dynamic %s is not supported (true or false)", d)
	}
	switch o := strings.TrimSpace(string(r.ActOrder)); o {
	case "", "null", "false":
	case `"group"`, `"dynamic"`, "true":
		a.ActOrder = "group"
	case `"weight"`, `"static"`:
		a.ActOrder = "weight"
	default:
		return a, fmt.Errorf("actorder %s is not supported", o)
	}
	gs := 0
	if r.GroupSize != nil {
		gs = *r.GroupSize
	}
	if r.Strategy != nil {
		a.Strategy = strings.ToLower(*r.Strategy)
	} else {
		switch {
		case r.GroupSize == nil:
			a.Strategy = "tensor"
		case gs > 0:
			a.Strategy = "group"
		case gs == -1:
			a.Strategy = "channel"
		default:
			return a, fmt.Errorf("group_size %d is invalid", gs)
		}
	}
	switch a.Strategy {
	case "tensor", "channel", "token":
		if gs > 0 {
			return a, fmt.Errorf("group_size %d requires strategy group, have %s", gs, a.Strategy)
		}
	case "group":
		if gs <= 0 {
			return a, fmt.Errorf("strategy group needs a positive group_size, have %d", gs)
		}
		a.GroupSize = gs
	default:
		return a, fmt.Errorf("strategy %q is not supported (tensor, channel, group, token)", a.Strategy)
	}
	if a.Strategy == "token" && !a.Dynamic {
		return a, fmt.Errorf("static token quantization is invalid (token strategy needs dynamic: true)")
	}
	return a, nil
}

// Scheme is one config group: which modules, quantized how, stored how.
type Scheme struct {
	Name    string // group name, e.g. "group_0"
	Targets []string
	Weights Args
	// Input is the input-activation quantization, nil for weight-only.
	Input *Args
	// Format is the compression format of the group's layers (the group's
	// own "format", else the config's).
	Format string

	targets []matcher
}

// Config is a parsed quantization_config.
type Config struct {
	Format  string
	Status  string
	Ignore  []string
	Schemes []*Scheme // sorted by group name
	// KVCache is the kv_cache_scheme, nil if the cache is not quantized.
	KVCache *Args

	ignore []matcher
}

// matcher matches module names the way compressed-tensors does: "re:P" is a
// regular expression matched at the start of the name (Python re.match),
// anything else an exact name, or — for class names such as "Linear" — any
// linear layer.
type matcher struct {
	s     string
	re    *regexp.Regexp
	class bool
}

func newMatcher(s string) (matcher, error) {
	if p, ok := strings.CutPrefix(s, "re:"); ok {
		re, err := regexp.Compile(`^(?:` + p + `)`)
		if err != nil {
			return matcher{}, fmt.Errorf("target %q: %v", s, err)
		}
		return matcher{s: s, re: re}, nil
	}
	return matcher{s: s, class: s == targetLinear}, nil
}

// name reports a match on the module name (exact or regular expression).
func (m matcher) name(module string) bool {
	if m.re != nil {
		return m.re.MatchString(module)
	}
	return m.s == module
}

// SchemeFor returns the scheme of a linear module, or nil if none targets
// it or it is ignored. As in vLLM's target matching, a match on the name
// (exact or regular expression) wins over a match on the class, and the
// first group in name order wins among equals.
func (c *Config) SchemeFor(module string) *Scheme {
	for _, m := range c.ignore {
		if m.name(module) {
			return nil
		}
	}
	for _, s := range c.Schemes {
		for _, m := range s.targets {
			if m.name(module) {
				return s
			}
		}
	}
	for _, s := range c.Schemes {
		for _, m := range s.targets {
			if m.class {
				return s
			}
		}
	}
	return nil
}

// ParseConfig extracts and validates the quantization_config of a
// config.json (raw; path names it in errors).
func ParseConfig(path string, raw []byte) (*Config, error) {
	fail := func(format string, a ...any) (*Config, error) {
		return nil, fmt.Errorf("%s: quantization_config: %s", path, fmt.Sprintf(format, a...))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %v", path, err)
	}
	qraw, ok := top["quantization_config"]
	if !ok || string(qraw) == "null" {
		return nil, fmt.Errorf("%s: no quantization_config: not a compressed-tensors checkpoint", path)
	}
	var q struct {
		Method  *string                    `json:"quant_method"`
		Format  *string                    `json:"format"`
		Status  *string                    `json:"quantization_status"`
		Groups  map[string]json.RawMessage `json:"config_groups"`
		Ignore  []string                   `json:"ignore"`
		KVCache *rawArgs                   `json:"kv_cache_scheme"`
	}
	if err := json.Unmarshal(qraw, &q); err != nil {
		return fail("%v", err)
	}
	if q.Method == nil || *q.Method != QuantMethod {
		m := "<missing>"
		if q.Method != nil {
			m = *q.Method
		}
		return fail("quant_method %q, want %q", m, QuantMethod)
	}
	c := &Config{Ignore: q.Ignore}
	if q.Format != nil {
		c.Format = *q.Format
	}
	if q.Status != nil {
		c.Status = *q.Status
	}
	if c.Status != StatusCompr {
		return fail("quantization_status %q: only compressed checkpoints are read", c.Status)
	}
	if len(q.Groups) == 0 {
		return fail("config_groups is missing or empty")
	}
	for _, s := range q.Ignore {
		m, err := newMatcher(s)
		if err != nil {
			return fail("ignore: %v", err)
		}
		c.ignore = append(c.ignore, m)
	}
	if q.KVCache != nil {
		a, err := q.KVCache.resolve()
		if err != nil {
			return fail("kv_cache_scheme: %v", err)
		}
		c.KVCache = &a
	}
	names := make([]string, 0, len(q.Groups))
	for n := range q.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s, err := parseScheme(n, q.Groups[n], c.Format)
		if err != nil {
			return fail("config_groups.%s: %v", n, err)
		}
		c.Schemes = append(c.Schemes, s)
	}
	return c, nil
}

func parseScheme(name string, raw json.RawMessage, format string) (*Scheme, error) {
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		return nil, fmt.Errorf("preset-name groups (a list of targets) are not supported; spell the scheme out")
	}
	var g struct {
		Targets []string        `json:"targets"`
		Weights *rawArgs        `json:"weights"`
		Input   *rawArgs        `json:"input_activations"`
		Output  json.RawMessage `json:"output_activations"`
		Format  *string         `json:"format"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		return nil, err
	}
	s := &Scheme{Name: name, Targets: g.Targets, Format: format}
	if g.Format != nil {
		s.Format = *g.Format
	}
	if len(g.Targets) == 0 {
		return nil, fmt.Errorf("no targets")
	}
	for _, t := range g.Targets {
		m, err := newMatcher(t)
		if err != nil {
			return nil, err
		}
		s.targets = append(s.targets, m)
	}
	if g.Weights == nil {
		return nil, fmt.Errorf("no weights (activation-only groups are not supported)")
	}
	if len(g.Output) > 0 && string(g.Output) != "null" {
		return nil, fmt.Errorf("output_activations are not supported")
	}
	w, err := g.Weights.resolve()
	if err != nil {
		return nil, fmt.Errorf("weights: %v", err)
	}
	if w.Dynamic {
		return nil, fmt.Errorf("weights: dynamic weight quantization is invalid")
	}
	if w.Strategy == "token" {
		return nil, fmt.Errorf("weights: token strategy is for activations")
	}
	s.Weights = w
	if g.Input != nil {
		a, err := g.Input.resolve()
		if err != nil {
			return nil, fmt.Errorf("input_activations: %v", err)
		}
		if a.Strategy == "channel" {
			return nil, fmt.Errorf("input_activations: channel strategy is not supported for activations")
		}
		if !a.Dynamic && a.Strategy != "tensor" {
			return nil, fmt.Errorf("input_activations: static activations must be per tensor, have %s", a.Strategy)
		}
		s.Input = &a
	}
	switch s.Format {
	case FormatPack:
		if w.Type != typeInt {
			return nil, fmt.Errorf("format %s holds integer weights, have %s", s.Format, w.Type)
		}
	case FormatInt, FormatNaive, FormatFloat:
	case FormatMixed:
		return nil, fmt.Errorf("format %s needs a format in every group", s.Format)
	case "":
		return nil, fmt.Errorf("no format given (the config's format or the group's)")
	default:
		return nil, fmt.Errorf("format %q is not supported (pack-quantized, int-quantized, naive-quantized, float-quantized)", s.Format)
	}
	return s, nil
}
