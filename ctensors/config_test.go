package ctensors

import (
	"strings"
	"testing"
)

// qcfg wraps a quantization_config body into a config.json.
func qcfg(body string) []byte {
	return []byte(`{"model_type": "llama", "quantization_config": {` + body + `}}`)
}

// A config as llm-compressor saves a W4A16 GPTQ model (the fields of
// QuantizationConfig / QuantizationScheme / QuantizationArgs), and the
// library's defaults for fields left out.
func TestParseConfig(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		weights Args
		input   *Args
		format  string
	}{
		{"llm-compressor w4a16", `"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "pack-quantized",
			"config_groups": {"group_0": {"targets": ["Linear"], "input_activations": null, "output_activations": null,
			"weights": {"num_bits": 4, "type": "int", "symmetric": true, "group_size": 128, "strategy": "group", "block_structure": null,
			"dynamic": false, "actorder": null, "observer": "minmax", "observer_kwargs": {}}}},
			"ignore": ["lm_head"], "kv_cache_scheme": null, "global_compression_ratio": null, "sparsity_config": {}, "version": "0.9.0"`,
			Args{NumBits: 4, Type: "int", Symmetric: true, Strategy: "group", GroupSize: 128}, nil, FormatPack},
		{"defaults: 8-bit int symmetric per tensor, static", `"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "int-quantized",
			"config_groups": {"g": {"targets": ["Linear"], "weights": {}}}`,
			Args{NumBits: 8, Type: "int", Symmetric: true, Strategy: "tensor"}, nil, FormatInt},
		{"strategy from group_size -1: channel; dynamic token acts", `"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "int-quantized",
			"config_groups": {"g": {"targets": ["Linear"], "weights": {"group_size": -1}, "input_activations": {"strategy": "token", "dynamic": true}}}`,
			Args{NumBits: 8, Type: "int", Symmetric: true, Strategy: "channel"}, &Args{NumBits: 8, Type: "int", Symmetric: true, Strategy: "token", Dynamic: true}, FormatInt},
		{"strategy from group_size: group; actorder alias dynamic", `"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "pack-quantized",
			"config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 4, "group_size": 32, "actorder": "dynamic", "symmetric": false}}}`,
			Args{NumBits: 4, Type: "int", Strategy: "group", GroupSize: 32, ActOrder: "group"}, nil, FormatPack},
		{"per-group format under mixed-precision", `"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "mixed-precision",
			"config_groups": {"g": {"targets": ["Linear"], "format": "float-quantized", "weights": {"type": "FLOAT", "strategy": "channel"}}}`,
			Args{NumBits: 8, Type: "float", Symmetric: true, Strategy: "channel"}, nil, FormatFloat},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig("config.json", qcfg(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			s := c.Schemes[0]
			if s.Weights != tc.weights {
				t.Errorf("weights %+v, want %+v", s.Weights, tc.weights)
			}
			if (s.Input == nil) != (tc.input == nil) || s.Input != nil && *s.Input != *tc.input {
				t.Errorf("input %+v, want %+v", s.Input, tc.input)
			}
			if s.Format != tc.format {
				t.Errorf("format %q, want %q", s.Format, tc.format)
			}
		})
	}
}

// Corrupt or unsupported configs give one-line errors naming the file and
// the problem.
func TestParseConfigErrors(t *testing.T) {
	const ok = `"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "pack-quantized"`
	cases := []struct {
		name string
		raw  []byte
		want string
	}{
		{"not JSON", []byte(`{"quantization_config": {`), "invalid JSON"},
		{"no quantization_config", []byte(`{"model_type": "llama"}`), "no quantization_config"},
		{"other method", qcfg(`"quant_method": "gptq"`), `quant_method "gptq"`},
		{"wrong field type", qcfg(ok + `, "config_groups": {"g": {"targets": "Linear"}}`), "cannot unmarshal"},
		{"not compressed", qcfg(`"quant_method": "compressed-tensors", "quantization_status": "frozen", "config_groups": {}`), "quantization_status \"frozen\""},
		{"no groups", qcfg(ok), "config_groups is missing"},
		{"preset group", qcfg(ok + `, "config_groups": {"W4A16": ["Linear"]}`), "preset-name groups"},
		{"no targets", qcfg(ok + `, "config_groups": {"g": {"weights": {}}}`), "no targets"},
		{"no weights", qcfg(ok + `, "config_groups": {"g": {"targets": ["Linear"]}}`), "no weights"},
		{"group without size", qcfg(ok + `, "config_groups": {"g": {"targets": ["Linear"], "weights": {"strategy": "group"}}}`), "positive group_size"},
		{"size without group", qcfg(ok + `, "config_groups": {"g": {"targets": ["Linear"], "weights": {"strategy": "channel", "group_size": 64}}}`), "requires strategy group"},
		{"bits", qcfg(ok + `, "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 16}}}`), "num_bits 16"},
		{"fp4", qcfg(ok + `, "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "float"}}}`), "float num_bits 4"},
		{"block", qcfg(ok + `, "config_groups": {"g": {"targets": ["Linear"], "weights": {"strategy": "block", "block_structure": [128, 128]}}}`), "block"},
		{"static token", qcfg(ok + `, "config_groups": {"g": {"targets": ["Linear"], "weights": {}, "input_activations": {"strategy": "token"}}}`), "static token"},
		{"output acts", qcfg(ok + `, "config_groups": {"g": {"targets": ["Linear"], "weights": {}, "output_activations": {}}}`), "output_activations"},
		{"bad regex", qcfg(ok + `, "config_groups": {"g": {"targets": ["re:("], "weights": {}}}`), "re:("},
		{"unknown format", qcfg(`"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "marlin-24", "config_groups": {"g": {"targets": ["Linear"], "weights": {}}}`), `format "marlin-24"`},
		{"mixed without group format", qcfg(`"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "mixed-precision", "config_groups": {"g": {"targets": ["Linear"], "weights": {}}}`), "needs a format in every group"},
		{"pack float", qcfg(ok + `, "config_groups": {"g": {"targets": ["Linear"], "weights": {"type": "float"}}}`), "holds integer weights"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("dir/config.json", tc.raw)
			if err == nil {
				t.Fatalf("accepted; want an error with %q", tc.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "dir/config.json: ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line naming dir/config.json and %q", msg, tc.want)
			}
		})
	}
}

// Target matching follows compressed-tensors and vLLM: ignore first, then a
// match on the name (exact, or re: at the start), then the Linear class.
func TestSchemeFor(t *testing.T) {
	c, err := ParseConfig("config.json", qcfg(`"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "mixed-precision",
		"ignore": ["lm_head", "re:.*layers\\.0\\.mlp\\.down_proj$"],
		"config_groups": {
		  "a": {"targets": ["Linear"], "format": "int-quantized", "weights": {}},
		  "b": {"targets": ["re:.*self_attn\\.(q|k)_proj"], "format": "pack-quantized", "weights": {"num_bits": 4, "group_size": 128}},
		  "c": {"targets": ["model.layers.1.mlp.up_proj"], "format": "pack-quantized", "weights": {"num_bits": 8, "group_size": -1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for module, want := range map[string]string{
		"lm_head":                          "",
		"model.layers.0.mlp.down_proj":     "",
		"model.layers.1.mlp.down_proj":     "a",
		"model.layers.0.self_attn.q_proj":  "b",
		"model.layers.3.self_attn.k_proj":  "b",
		"model.layers.3.self_attn.v_proj":  "a",
		"model.layers.1.mlp.up_proj":       "c",
		"model.layers.11.mlp.up_proj":      "a",
		"xmodel.layers.0.self_attn.q_proj": "b", // re.match anchors at the start only; ".*" absorbs the prefix
	} {
		got := ""
		if s := c.SchemeFor(module); s != nil {
			got = s.Name
		}
		if got != want {
			t.Errorf("SchemeFor(%s) = %q, want %q", module, got, want)
		}
	}
}
