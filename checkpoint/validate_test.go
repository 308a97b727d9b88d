package checkpoint

import (
	"strings"
	"testing"
)

// Hyper-parameters that would compute NaN or allocate without bound are
// refused when the config is parsed, naming the file and the field.
func TestConfigValidation(t *testing.T) {
	bad := map[string]string{
		`{"model_type":"llama","rms_norm_eps":-1}`:                               "rms_norm_eps",
		`{"model_type":"llama","rms_norm_eps":0}`:                                "rms_norm_eps",
		`{"model_type":"opt","layer_norm_eps":-0.5}`:                             "layer_norm_eps",
		`{"model_type":"gpt2","layer_norm_epsilon":"x"}`:                         "layer_norm_epsilon",
		`{"model_type":"llama","num_hidden_layers":1e9}`:                         "num_hidden_layers",
		`{"model_type":"llama","num_hidden_layers":0}`:                           "num_hidden_layers",
		`{"model_type":"gpt2","n_layer":100000}`:                                 "n_layer",
		`{"model_type":"llama","max_position_embeddings":1e12}`:                  "max_position_embeddings",
		`{"model_type":"llama","hidden_size":0}`:                                 "hidden_size",
		`{"model_type":"llama","vocab_size":1e10}`:                               "vocab_size",
		`{"model_type":"llama","num_attention_heads":6,"num_key_value_heads":4}`: "num_key_value_heads",
		`{"model_type":"llama","hidden_size":100,"num_attention_heads":6}`:       "not a multiple of 6",
	}
	for raw, want := range bad {
		_, err := ParseConfig("cfg.json", []byte(raw))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "cfg.json") {
			t.Errorf("%s: %v, want an error naming cfg.json and %q", raw, err, want)
		}
	}
	good := []string{
		`{"model_type":"llama","rms_norm_eps":1e-6,"num_hidden_layers":8,"hidden_size":384,"num_attention_heads":6,"num_key_value_heads":2}`,
		`{"model_type":"qwen3","hidden_size":100,"num_attention_heads":6,"head_dim":48}`,
		`{"model_type":"gpt2","n_inner":null}`,
	}
	for _, raw := range good {
		if _, err := ParseConfig("cfg.json", []byte(raw)); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

// The config's layer count must match the layers the weights hold.
func TestCheckLayers(t *testing.T) {
	names := func(prefix string, layers int) []string {
		out := []string{"model.embed_tokens.weight", "lm_head.weight"}
		for i := 0; i < layers; i++ {
			out = append(out, prefix+"."+itoa(i)+".mlp.down_proj.weight", prefix+"."+itoa(i)+".input_layernorm.weight")
		}
		return out
	}
	cfg := func(n int) *Config {
		c, err := ParseConfig("config.json", []byte(`{"model_type":"llama","num_hidden_layers":`+itoa(n)+`}`))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := CheckLayers(cfg(3), names("model.layers", 3)); err != nil {
		t.Error(err)
	}
	if err := CheckLayers(cfg(2), names("model.layers", 3)); err == nil || !strings.Contains(err.Error(), "left out") || !strings.Contains(err.Error(), "num_hidden_layers is 2") {
		t.Errorf("2 layers over 3: %v", err)
	}
	if err := CheckLayers(cfg(1000), names("model.layers", 3)); err == nil || !strings.Contains(err.Error(), "only 3 layers") {
		t.Errorf("1000 layers over 3: %v", err)
	}
	gpt2, _ := ParseConfig("config.json", []byte(`{"model_type":"gpt2","n_layer":2}`))
	if err := CheckLayers(gpt2, names("transformer.h", 3)); err == nil {
		t.Error("gpt2: 2 layers over 3 accepted")
	}
	if err := CheckLayers(cfg(2), []string{"tok_embeddings.weight"}); err != nil {
		t.Errorf("unknown layout: %v", err)
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// Any bytes: ParseConfig returns a config or an error, never panics, and a
// config it accepts has its layer count in bounds.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"model_type":"llama","num_hidden_layers":8,"rms_norm_eps":1e-6,"hidden_size":384,"num_attention_heads":6}`))
	f.Add([]byte(`{"model_type":"llama","num_hidden_layers":1e9}`))
	f.Add([]byte(`{"model_type":"gpt2","n_layer":-1,"layer_norm_epsilon":null}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseConfig("config.json", raw)
		if err != nil {
			return
		}
		if n := c.firstInt(layerFields...); n < 0 || n > maxLayers {
			t.Errorf("accepted %d layers", n)
		}
		CheckLayers(c, []string{"model.layers.0.x", "model.layers.7.x"})
	})
}
