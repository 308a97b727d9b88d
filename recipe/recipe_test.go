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
	m, err := model.Load(shared.Path(t, "models", "tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
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
	// tiny-llama's MLP width 344 is not a multiple of 128.
	r, err := Parse("g.yaml", []byte("s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme: W4A16\n"))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := r.Build(m)
	if err != nil {
		t.Fatal(err)
	}
	err = methods.Run(m, nil, ms, nil)
	if err == nil || !strings.Contains(err.Error(), "down_proj") || !strings.Contains(err.Error(), "group") {
		t.Errorf("want an error naming down_proj and the group size, got %v", err)
	}
	r, _ = Parse("m.yaml", []byte("s_stage:\n  m_modifiers:\n    SmoothQuantModifier:\n      mappings:\n        - [[\"re:.*q_proj\"], \"re:.*nonexistent\"]\n"))
	if _, err := r.Build(m); err == nil || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("want an unresolvable-mapping error, got %v", err)
	}
}
