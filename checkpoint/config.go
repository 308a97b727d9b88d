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

// Rope reads the rotary-embedding settings in either spelling:
// transformers ≥ 5 writes rope_parameters {rope_theta, rope_type,
// partial_rotary_factor}; older checkpoints write top-level rope_theta
// (and GPT-NeoX rotary_pct / rotary_emb_base). Only the "default" rope type
// (no frequency scaling) is supported; others are refused rather than
// silently computed wrong.
func (c *Config) Rope(defTheta float64) (theta, partial float64, err error) {
	theta, partial = defTheta, 1
	if v, ok := c.fields["rope_parameters"]; ok && string(v) != "null" {
		sub := &Config{Path: c.Path + ": rope_parameters"}
		if err := json.Unmarshal(v, &sub.fields); err != nil || sub.fields == nil {
			return 0, 0, fmt.Errorf("%s: rope_parameters must be an object", c.Path)
		}
		if t, err := sub.StringOr("default", "rope_type", "type"); err != nil {
			return 0, 0, err
		} else if t != "default" {
			return 0, 0, fmt.Errorf("%s: rope_type %q is not supported (only \"default\")", c.Path, t)
		}
		if theta, err = sub.FloatOr(theta, "rope_theta"); err != nil {
			return 0, 0, err
		}
		if partial, err = sub.FloatOr(1, "partial_rotary_factor"); err != nil {
			return 0, 0, err
		}
		return theta, partial, checkRope(c.Path, theta, partial)
	}
	if v, ok := c.fields["rope_scaling"]; ok && string(v) != "null" {
		return 0, 0, fmt.Errorf("%s: rope_scaling is not supported", c.Path)
	}
	if theta, err = c.FloatOr(theta, "rope_theta", "rotary_emb_base"); err != nil {
		return 0, 0, err
	}
	if partial, err = c.FloatOr(1, "partial_rotary_factor", "rotary_pct"); err != nil {
		return 0, 0, err
	}
	return theta, partial, checkRope(c.Path, theta, partial)
}

func checkRope(path string, theta, partial float64) error {
	if theta <= 0 {
		return fmt.Errorf("%s: rope_theta must be positive, got %v", path, theta)
	}
	if partial <= 0 || partial > 1 {
		return fmt.Errorf("%s: partial_rotary_factor must be in (0, 1], got %v", path, partial)
	}
	return nil
}
