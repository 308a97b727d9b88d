package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// Config is a Hugging Face config.json. Families read the fields they need
// through the typed getters, which accept alternative names (GPT-2 says
// n_embd where Llama says hidden_size) and report missing or mistyped
// fields as errors that name the file and the field.
type Config struct {
	Path      string
	ModelType string
	fields    map[string]json.RawMessage
	file      string // for an Object of a file: the file's path
}

// ReadConfig parses config.json (or any JSON object) at path.
func ReadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, raw)
}

// ParseConfig parses config JSON; path is used in error messages.
func ParseConfig(path string, raw []byte) (*Config, error) {
	c := &Config{Path: path}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&c.fields); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	if c.fields == nil {
		return nil, fmt.Errorf("%s: config must be a JSON object", path)
	}
	if _, ok := c.fields["model_type"]; !ok {
		return nil, fmt.Errorf("%s: missing \"model_type\" (cannot tell the architecture)", path)
	}
	mt, err := c.String("model_type")
	if err != nil {
		return nil, err
	}
	c.ModelType = mt
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Has reports whether any of the names is present and not null.
func (c *Config) Has(names ...string) bool {
	_, _, ok := c.lookup(names)
	return ok
}

func (c *Config) lookup(names []string) (string, json.RawMessage, bool) {
	for _, n := range names {
		if v, ok := c.fields[n]; ok && string(v) != "null" {
			return n, v, true
		}
	}
	return "", nil, false
}

func (c *Config) missing(names []string) error {
	return fmt.Errorf("%s: missing required field %q", c.Path, names[0])
}

// Int reads a required positive-or-zero integer field (first name found).
func (c *Config) Int(names ...string) (int, error) {
	n, v, ok := c.lookup(names)
	if !ok {
		return 0, c.missing(names)
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil || f != math.Trunc(f) || f < 0 || f > 1<<40 {
		return 0, fmt.Errorf("%s: field %q must be a non-negative integer, got %s", c.Path, n, v)
	}
	return int(f), nil
}

// IntOr reads an optional integer field.
func (c *Config) IntOr(def int, names ...string) (int, error) {
	if !c.Has(names...) {
		return def, nil
	}
	return c.Int(names...)
}

// Float reads a required number.
func (c *Config) Float(names ...string) (float64, error) {
	n, v, ok := c.lookup(names)
	if !ok {
		return 0, c.missing(names)
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s: field %q must be a number, got %s", c.Path, n, v)
	}
	return f, nil
}

// FloatOr reads an optional number.
func (c *Config) FloatOr(def float64, names ...string) (float64, error) {
	if !c.Has(names...) {
		return def, nil
	}
	return c.Float(names...)
}

// BoolOr reads an optional boolean.
func (c *Config) BoolOr(def bool, names ...string) (bool, error) {
	n, v, ok := c.lookup(names)
	if !ok {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, fmt.Errorf("%s: field %q must be true or false, got %s", c.Path, n, v)
	}
	return b, nil
}

// Decode unmarshals field name into v, reporting whether it was present
// (and not null).
func (c *Config) Decode(name string, v any) (bool, error) {
	raw, ok := c.fields[name]
	if !ok || string(raw) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("%s: field %q: %v", c.Path, name, err)
	}
	return true, nil
}

// String reads a required string.
func (c *Config) String(names ...string) (string, error) {
	n, v, ok := c.lookup(names)
	if !ok {
		return "", c.missing(names)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s: field %q must be a string, got %s", c.Path, n, v)
	}
	return s, nil
}

// StringOr reads an optional string.
func (c *Config) StringOr(def string, names ...string) (string, error) {
	if !c.Has(names...) {
		return def, nil
	}
	return c.String(names...)
}

// Present reports whether name is a key of the object, even with a null
// value (transformers tells a missing key from a null one in places).
func (c *Config) Present(name string) bool {
	_, ok := c.fields[name]
	return ok
}

// Keys returns the object's keys in no particular order.
func (c *Config) Keys() []string {
	keys := make([]string, 0, len(c.fields))
	for k := range c.fields {
		keys = append(keys, k)
	}
	return keys
}

// Object reads the nested JSON object name as a Config of its own, whose
// errors name the file and the path to the field ("config.json:
// rope_parameters.full_attention: field ..."). ok is false when the field
// is absent or null.
func (c *Config) Object(name string) (sub *Config, ok bool, err error) {
	v, present := c.fields[name]
	if !present || string(v) == "null" {
		return nil, false, nil
	}
	sub = &Config{Path: c.Path + ": " + name, ModelType: c.ModelType, file: c.Path}
	if c.file != "" {
		sub.Path, sub.file = c.Path+"."+name, c.file
	}
	if err := json.Unmarshal(v, &sub.fields); err != nil || sub.fields == nil {
		return nil, false, fmt.Errorf("%s: field %q must be an object, got %s", c.Path, name, v)
	}
	return sub, true, nil
}

// Floats reads a required list of numbers.
func (c *Config) Floats(names ...string) ([]float64, error) {
	n, v, ok := c.lookup(names)
	if !ok {
		return nil, c.missing(names)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		return nil, fmt.Errorf("%s: field %q must be a list of numbers, got %s", c.Path, n, v)
	}
	out := make([]float64, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil || math.IsNaN(out[i]) || math.IsInf(out[i], 0) {
			return nil, fmt.Errorf("%s: field %q must be a list of numbers, element %d is %s", c.Path, n, i, r)
		}
	}
	return out, nil
}

// Strings reads a required list of strings.
func (c *Config) Strings(names ...string) ([]string, error) {
	n, v, ok := c.lookup(names)
	if !ok {
		return nil, c.missing(names)
	}
	var out []string
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, fmt.Errorf("%s: field %q must be a list of strings, got %s", c.Path, n, v)
	}
	return out, nil
}

// ConfigObject decodes a config.json into a generic map for rewriting,
// keeping every number as it was written (json.Number): a plain decode
// turns 30.0 into float64 30, which marshals back as 30, and transformers'
// strict config classes refuse an integer where a float field stands
// (Gemma 2's final_logit_softcapping, Mixtral's router_jitter_noise).
func ConfigObject(path string, raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var cfg map[string]any
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %v", path, err)
	}
	if cfg == nil {
		return nil, fmt.Errorf("%s: not a JSON object", path)
	}
	return cfg, nil
}
