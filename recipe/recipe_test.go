package recipe

import (
	"strings"
	"testing"

	"llmq/internal/shared"
	"llmq/model"
	"llmq/quant/methods"
)

func TestPresetsParse(t *testing.T) {
	if len(Presets()) == 0 {
		t.Fatal("no presets embedded")
	}
	for _, name := range Presets() {
		if _, err := Load(name); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
	}
}

// Recipes as llm-compressor users write them must parse unchanged.
func TestLLMCompressorRecipes(t *testing.T) {
	cases := map[string]string{
		"gptq config_groups": `
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      ignore: ["lm_head"]
      config_groups:
        group_0:
          weights:
            num_bits: 4
            type: "int"
            symmetric: true
            strategy: "group"
            group_size: 128
          targets: ["Linear"]
`,
		"smoothquant with mappings": `
sparsity_stage:
  run_type: oneshot
  sparsity_modifiers:
    SmoothQuantModifier:
      smoothing_strength: 0.8
      mappings:
        - [["re:.*q_proj", "re:.*k_proj", "re:.*v_proj"], "re:.*input_layernorm"]
        - [["re:.*gate_proj", "re:.*up_proj"], "re:.*post_attention_layernorm"]
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      targets: Linear
      ignore: [lm_head]
      scheme: W8A8
`,
		"scheme map": `
s_stage:
  q_modifiers:
    QuantizationModifier:
      ignore: [lm_head]
      scheme:
        W8A8: ["re:.*self_attn.*"]
        W4A16: ["re:.*mlp.*"]
`,
	}
	// Lazily: building a recipe needs the layers' names and shapes only.
	m, err := model.LoadLazy(shared.Path(t, "models", "wiki-llama-25m"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for name, y := range cases {
		r, err := Parse(name, []byte(y))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		ms, err := r.Build(m)
		if err != nil {
			t.Errorf("%s: build: %v", name, err)
			continue
		}
		if name == "smoothquant with mappings" {
			sq := ms[0].(*methods.SmoothQuant)
			if sq.Alpha != 0.8 || len(sq.Mappings) != 2 || sq.Mappings[0].Smooth != "norm1" || len(sq.Mappings[1].Balance) != 2 {
				t.Errorf("smoothquant resolved to α %v, mappings %v", sq.Alpha, sq.Mappings)
			}
		}
		if name == "scheme map" && len(ms) != 2 {
			t.Errorf("scheme map: %d methods, want 2", len(ms))
		}
	}
}

func TestRecipeErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown modifier", "s_stage:\n  m_modifiers:\n    FooModifier: {}\n", "unknown modifier"},
		{"unknown key", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme: W8A8\n      colour: blue\n", "colour"},
		{"unknown scheme", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme: W5A5\n", "unknown scheme"},
		{"bad top level", "quant:\n  m_modifiers: {}\n", "unknown top-level key"},
		{"both scheme and groups", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme: W8A8\n      config_groups:\n        g:\n          weights: {num_bits: 8}\n", "exactly one"},
		{"bad strategy", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 4, strategy: row}\n", "strategy"},
		{"group without size", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 4, strategy: group}\n", "group_size"},
		{"bad strength", "s_stage:\n  m_modifiers:\n    SmoothQuantModifier:\n      smoothing_strength: 1.5\n", "smoothing_strength"},
		{"bad regexp", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      targets: [\"re:(\"]\n      scheme: W8A8\n", "pattern"},
		{"static per-token acts", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 8}\n          input_activations: {num_bits: 8, strategy: token, dynamic: false}\n", "static"},
		{"unknown observer", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 4, group_size: 128, observer: percentile}\n", "observer"},
		{"mse observer on activations", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 8}\n          input_activations: {num_bits: 8, observer: mse}\n", "weights only"},
		{"empty", "", "empty"},
		{"not yaml", "s_stage: [\n", "yaml"},
	}
	for _, c := range cases {
		_, err := Parse("test.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml") {
			t.Errorf("%s: error %v, want one naming test.yaml and containing %q", c.name, err, c.want)
		}
	}
}

// Errors that depend on the model surface at build or run time, naming the layer.
func TestRecipeModelErrors(t *testing.T) {
	m, err := model.Load(shared.Path(t, "models", "tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	// tiny-llama's MLP width 344 is not a multiple of 128: the recipe is
	// refused when it is built, before any calibration.
	r, err := Parse("g.yaml", []byte("s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme: W4A16\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Build(m)
	if err == nil || !strings.Contains(err.Error(), "g.yaml:3") || !strings.Contains(err.Error(), "model.layers.0.mlp.down_proj") ||
		!strings.Contains(err.Error(), "group_size 128") || !strings.Contains(err.Error(), "344") {
		t.Errorf("want a build error naming g.yaml, down_proj, the group size and the columns, got %v", err)
	}
	// Ignoring the layers it does not divide makes the recipe run.
	r, _ = Parse("g.yaml", []byte("s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme: W4A16\n      ignore: [lm_head, down_proj]\n"))
	ms, err := r.Build(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := methods.Run(m, nil, ms, nil); err != nil {
		t.Errorf("W4A16 without down_proj: %v", err)
	}
	r, _ = Parse("m.yaml", []byte("s_stage:\n  m_modifiers:\n    SmoothQuantModifier:\n      mappings:\n        - [[\"re:.*q_proj\"], \"re:.*nonexistent\"]\n"))
	if _, err := r.Build(m); err == nil || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("want an unresolvable-mapping error, got %v", err)
	}
}

// Values out of range are errors naming the recipe file and the key, not
// silently replaced by defaults.
func TestRecipeValueErrors(t *testing.T) {
	group := func(weights string) string {
		return "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          targets: [Linear]\n          weights: " + weights + "\n"
	}
	cases := []struct{ name, yaml, want string }{
		{"num_bits 0", group("{num_bits: 0}"), "num_bits 0"},
		{"num_bits 1", group("{num_bits: 1}"), "num_bits 1"},
		{"num_bits 9", group("{num_bits: 9}"), "num_bits 9"},
		{"num_bits -4", group("{num_bits: -4}"), "num_bits -4"},
		{"float num_bits 6", group("{num_bits: 6, type: float}"), "num_bits 6"},
		{"group_size 0", group("{num_bits: 4, strategy: group, group_size: 0}"), "group_size 0"},
		{"group_size -128", group("{num_bits: 4, group_size: -128}"), "group_size -128"},
		{"group_size -1 with channel", group("{num_bits: 4, strategy: channel, group_size: -1}"), "group_size -1"},
		{"strategy typo", group("{num_bits: 4, strategy: chanel}"), `strategy "chanel"`},
		{"strategy block", group("{num_bits: 4, strategy: block}"), `strategy "block"`},
		{"type typo", group("{num_bits: 4, type: integer}"), `type "integer"`},
		{"activation num_bits 0", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 8}\n          input_activations: {num_bits: 0}\n", "input_activations: num_bits 0"},
		{"kv num_bits 0", "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme: W8A8\n      kv_cache_scheme: {num_bits: 0, strategy: tensor, dynamic: false}\n", "num_bits 0"},
	}
	for _, c := range cases {
		_, err := Parse("test.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml") {
			t.Errorf("%s: error %v, want one naming test.yaml and containing %q", c.name, err, c.want)
		}
	}
	// An omitted num_bits is 8, as in llm-compressor.
	r, err := Parse("ok.yaml", []byte(group("{strategy: channel}")))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Modifiers) != 1 {
		t.Fatalf("%d modifiers", len(r.Modifiers))
	}
}

// A recipe whose targets select no layer of the model is refused, with the
// targets and the names the model's layers have.
func TestRecipeTargetsMatchNothing(t *testing.T) {
	m, err := model.Load(shared.Path(t, "models", "tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"rtn Conv2d":       "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      targets: [Conv2d]\n      scheme: W8A8\n",
		"gptq typo":        "s_stage:\n  m_modifiers:\n    GPTQModifier:\n      targets: [\"re:.*qproj\"]\n      scheme: W8A16\n",
		"all ignored":      "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      targets: [q_proj]\n      ignore: [\"re:.*self_attn.*\"]\n      scheme: W8A8\n",
		"llm.int8 target":  "s_stage:\n  m_modifiers:\n    LLMInt8Modifier:\n      targets: [Conv2d]\n",
		"scheme map entry": "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme:\n        W8A8: [\"re:.*self_attn.*\"]\n        W8A16: [\"re:.*feed_forward.*\"]\n",
	}
	for name, y := range cases {
		r, err := Parse("t.yaml", []byte(y))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		_, err = r.Build(m)
		if err == nil || !strings.Contains(err.Error(), "t.yaml:3") || !strings.Contains(err.Error(), "match no linear layer") ||
			!strings.Contains(err.Error(), "model.layers.0.self_attn.q_proj") {
			t.Errorf("%s: error %v, want one naming the file, the targets and the model's layers", name, err)
		}
	}
	// lm_head alone is a layer (the head), for the methods that quantize it.
	r, _ := Parse("h.yaml", []byte("s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      targets: [lm_head]\n      scheme: W8A16\n"))
	if _, err := r.Build(m); err != nil {
		t.Errorf("targets [lm_head]: %v", err)
	}
}

// Building a recipe twice gives the same methods (eval checks a recipe on
// the model before it quantizes a second copy).
func TestRecipeBuildTwice(t *testing.T) {
	m, err := model.Load(shared.Path(t, "models", "tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse("sq.yaml", []byte("s_stage:\n  m_modifiers:\n    SmoothQuantModifier:\n      mappings:\n        - [[\"re:.*q_proj\", \"re:.*k_proj\", \"re:.*v_proj\"], \"re:.*input_layernorm\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		ms, err := r.Build(m)
		if err != nil {
			t.Fatal(err)
		}
		if sq := ms[0].(*methods.SmoothQuant); len(sq.Mappings) != 1 {
			t.Errorf("build %d: %d mappings, want 1", i+1, len(sq.Mappings))
		}
	}
}

// YAML errors give the file's own line and the recipe's own key names,
// not lines counted from the modifier or Go type names.
func TestRecipeErrorLines(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme: W8A8\n      colour: blue\n",
			`r.yaml:5: QuantizationModifier: unknown key "colour" (known keys: config_groups, ignore, kv_cache_scheme, scheme, targets)`},
		{"s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: abc}\n",
			`r.yaml:6: QuantizationModifier: config_groups.g.weights.num_bits: "abc" where an integer is expected`},
		{"s_stage:\n  m_modifiers:\n    GPTQModifier:\n      scheme: W8A8\n\n      # the block\n      block_size: [1]\n",
			`r.yaml:7: GPTQModifier: block_size: a list where an integer is expected`},
		{"s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights:\n            num_bits: 4\n\n            colour: 1\n",
			`r.yaml:9: QuantizationModifier: unknown key "config_groups.g.weights.colour"`},
		{"s_stage:\n  m_modifiers:\n    LoRCModifier:\n      rank: 8\n      bits: eight\n",
			`r.yaml:5: LoRCModifier: bits: "eight" where an integer is expected`},
	}
	for _, c := range cases {
		_, err := Parse("r.yaml", []byte(c.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "recipe.") {
			t.Errorf("error %v\nwant %s", err, c.want)
		}
	}
}

// Any bytes: Parse returns a recipe or an error naming the source, never
// panics.
func FuzzParse(f *testing.F) {
	for _, name := range Presets() {
		text, _ := PresetText(name)
		f.Add([]byte(text))
	}
	f.Add([]byte("s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 0}\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Parse("fuzz.yaml", raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Errorf("error %q does not name the recipe", err)
			}
			return
		}
		if len(r.Modifiers) == 0 {
			t.Error("a recipe without modifiers was accepted")
		}
	})
}
