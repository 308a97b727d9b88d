// Package recipe reads quantization recipes and turns them into the
// methods to run. The format is llm-compressor's recipe YAML, so an
// existing recipe runs unchanged:
//
//	quant_stage:
//	  quant_modifiers:
//	    SmoothQuantModifier:
//	      smoothing_strength: 0.5
//	    GPTQModifier:
//	      targets: [Linear]
//	      ignore: [lm_head]
//	      scheme: W8A8
//
// Stages run in file order and the modifiers of a stage in order; each
// modifier becomes one or more methods applied block by block. Methods that
// llm-compressor lacks get modifiers in the same style (LLMInt8Modifier,
// LoRCModifier, …). Unknown modifiers and unknown keys are errors: a typo
// must not silently change what gets quantized.
package recipe

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"llmq/model"
	"llmq/quant/methods"
)

// Recipe is a parsed recipe: modifiers in execution order.
type Recipe struct {
	Source    string
	Modifiers []Modifier
}

// Modifier is one parsed modifier.
type Modifier struct {
	Kind  string // e.g. "GPTQModifier"
	Stage string
	Line  int
	build buildFunc
}

// Load reads a recipe file, or a built-in preset when name has no path
// separator and no .yaml suffix (see Presets).
func Load(name string) (*Recipe, error) {
	if !strings.ContainsAny(name, "/\\") && !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
		raw, err := presetFS.ReadFile("presets/" + name + ".yaml")
		if err != nil {
			return nil, fmt.Errorf("no recipe file or preset named %q (presets: %s)", name, strings.Join(Presets(), ", "))
		}
		return Parse("preset "+name, raw)
	}
	raw, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return Parse(name, raw)
}

//go:embed presets/*.yaml
var presetFS embed.FS

// Presets lists the built-in recipe names.
func Presets() []string {
	entries, _ := presetFS.ReadDir("presets")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), path.Ext(e.Name())))
	}
	sort.Strings(out)
	return out
}

// PresetText returns the YAML of a built-in recipe.
func PresetText(name string) (string, error) {
	raw, err := presetFS.ReadFile("presets/" + name + ".yaml")
	return string(raw), err
}

// Parse reads recipe YAML; source names it in errors.
func Parse(source string, raw []byte) (*Recipe, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	r := &Recipe{Source: source}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty recipe", source)
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: a recipe is a mapping of stages", source, top.Line)
	}
	for i := 0; i < len(top.Content); i += 2 {
		stageKey, stage := top.Content[i], top.Content[i+1]
		if stageKey.Value == "version" || stageKey.Value == "metadata" {
			continue
		}
		if !strings.HasSuffix(stageKey.Value, "_stage") {
			return nil, fmt.Errorf("%s:%d: unknown top-level key %q (stages are named *_stage)", source, stageKey.Line, stageKey.Value)
		}
		if stage.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: stage %s must be a mapping", source, stage.Line, stageKey.Value)
		}
		for j := 0; j < len(stage.Content); j += 2 {
			groupKey, group := stage.Content[j], stage.Content[j+1]
			if groupKey.Value == "run_type" || groupKey.Value == "start" || groupKey.Value == "end" {
				continue
			}
			if !strings.HasSuffix(groupKey.Value, "_modifiers") {
				return nil, fmt.Errorf("%s:%d: unknown key %q in stage %s (modifier groups are named *_modifiers)", source, groupKey.Line, groupKey.Value, stageKey.Value)
			}
			if group.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("%s:%d: %s must map modifier names to their settings", source, group.Line, groupKey.Value)
			}
			for k := 0; k < len(group.Content); k += 2 {
				modKey, body := group.Content[k], group.Content[k+1]
				mod, err := parseModifier(modKey.Value, body)
				if err != nil {
					line := modKey.Line
					var le *lineError
					if errors.As(err, &le) {
						line = le.line
					}
					return nil, fmt.Errorf("%s:%d: %s: %w", source, line, modKey.Value, err)
				}
				mod.Kind, mod.Stage, mod.Line = modKey.Value, stageKey.Value, modKey.Line
				r.Modifiers = append(r.Modifiers, mod)
			}
		}
	}
	if len(r.Modifiers) == 0 {
		return nil, fmt.Errorf("%s: the recipe has no modifiers", source)
	}
	return r, nil
}

// builder parses a modifier's settings and returns how to build its methods.
type builder func(body *yaml.Node) (buildFunc, error)

var modifiers = map[string]builder{}

// Modifiers lists the modifier names recipes may use.
func Modifiers() []string {
	var s []string
	for k := range modifiers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func parseModifier(name string, body *yaml.Node) (Modifier, error) {
	b, ok := modifiers[name]
	if !ok {
		return Modifier{}, fmt.Errorf("unknown modifier (known: %s)", strings.Join(Modifiers(), ", "))
	}
	if body.Kind == yaml.ScalarNode && body.Tag == "!!null" {
		body = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	build, err := b(body)
	if err != nil {
		return Modifier{}, err
	}
	return Modifier{build: build}, nil
}

// Build resolves the recipe against a model into methods to run in order.
func (r *Recipe) Build(m *model.Model) ([]methods.Method, error) {
	var out []methods.Method
	for _, mod := range r.Modifiers {
		ms, err := mod.build(m, out)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", r.Source, mod.Line, mod.Kind, err)
		}
		out = ms
	}
	return out, nil
}

// stringList accepts a YAML string or a list of strings.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = []string{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}
