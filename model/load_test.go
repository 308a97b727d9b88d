package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/checkpoint"
	"llmq/internal/shared"
)

// fixture copies tiny-llama into a temp folder, letting the test edit the
// config and choose which tensors to write (and in what shape).
func fixture(t *testing.T, editCfg func(map[string]any), editTensors func([]checkpoint.WriteTensor) []checkpoint.WriteTensor) string {
	t.Helper()
	src := shared.Path(t, "models", "tiny-llama")
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if editCfg != nil {
		editCfg(cfg)
	}
	raw, _ = json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := checkpoint.OpenSafetensors(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []checkpoint.WriteTensor
	for _, n := range f.Names() {
		b, info, _ := f.Raw(n)
		ts = append(ts, checkpoint.WriteTensor{Name: n, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), b...)})
	}
	if editTensors != nil {
		ts = editTensors(ts)
	}
	if err := checkpoint.WriteSafetensors(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func without(name string) func([]checkpoint.WriteTensor) []checkpoint.WriteTensor {
	return func(ts []checkpoint.WriteTensor) []checkpoint.WriteTensor {
		out := ts[:0]
		for _, t := range ts {
			if t.Name != name {
				out = append(out, t)
			}
		}
		return out
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name    string
		cfg     func(map[string]any)
		tensors func([]checkpoint.WriteTensor) []checkpoint.WriteTensor
		corrupt func(dir string) // damage files after writing
		file    string           // the file the error must name
		want    string
	}{
		{name: "unknown architecture", cfg: func(c map[string]any) { c["model_type"] = "mamba" }, file: "config.json", want: `unknown architecture model_type "mamba"`},
		{name: "no model_type", cfg: func(c map[string]any) { delete(c, "model_type") }, file: "config.json", want: "model_type"},
		{name: "mistyped field", cfg: func(c map[string]any) { c["hidden_size"] = "wide" }, file: "config.json", want: `"hidden_size" must be a non-negative integer`},
		{name: "missing field", cfg: func(c map[string]any) { delete(c, "intermediate_size") }, file: "config.json", want: `missing required field "intermediate_size"`},
		{name: "heads vs kv heads", cfg: func(c map[string]any) { c["num_key_value_heads"] = 3 }, file: "config.json", want: "not a multiple"},
		{name: "unsupported rope", cfg: func(c map[string]any) { c["rope_parameters"] = map[string]any{"rope_type": "yarn", "rope_theta": 1e4} }, file: "config.json", want: `rope_type "yarn"`},
		{name: "bad activation", cfg: func(c map[string]any) { c["hidden_act"] = "swoosh" }, file: "config.json", want: "unsupported activation"},
		{name: "missing tensor", tensors: without("model.layers.1.mlp.up_proj.weight"), want: `missing tensor "model.layers.1.mlp.up_proj.weight"`},
		{name: "wrong shape", cfg: func(c map[string]any) { c["intermediate_size"] = 300 }, want: `has shape [344 128], want [300 128]`},
		{name: "truncated weights", corrupt: func(dir string) {
			p := filepath.Join(dir, "model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-100)
		}, file: "model.safetensors", want: "truncated"},
		{name: "invalid config json", corrupt: func(dir string) {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "llama",`), 0o644)
		}, file: "config.json", want: "invalid JSON"},
		{name: "no weights", corrupt: func(dir string) { os.Remove(filepath.Join(dir, "model.safetensors")) }, want: "no model.safetensors"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := fixture(t, c.cfg, c.tensors)
			if c.corrupt != nil {
				c.corrupt(dir)
			}
			_, err := Load(dir)
			if err == nil {
				t.Fatalf("loaded without error; want %q", c.want)
			}
			msg := err.Error()
			where := dir
			if c.file != "" {
				where = filepath.Join(dir, c.file)
			}
			if !strings.Contains(msg, c.want) || !strings.Contains(msg, where) || strings.Contains(msg, "\n") {
				t.Errorf("error %q\nwant one line naming %s and containing %q", msg, where, c.want)
			}
		})
	}
}

func TestLoadSharded(t *testing.T) {
	// Split tiny-llama into two shards with an index, as HF does for big models.
	dir := fixture(t, nil, nil)
	f, err := checkpoint.OpenSafetensors(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var a, b []checkpoint.WriteTensor
	index := map[string]string{}
	for i, n := range f.Names() {
		raw, info, _ := f.Raw(n)
		wt := checkpoint.WriteTensor{Name: n, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)}
		if i%2 == 0 {
			a, index[n] = append(a, wt), "model-00001-of-00002.safetensors"
		} else {
			b, index[n] = append(b, wt), "model-00002-of-00002.safetensors"
		}
	}
	f.Close()
	os.Remove(filepath.Join(dir, "model.safetensors"))
	checkpoint.WriteSafetensors(filepath.Join(dir, "model-00001-of-00002.safetensors"), a, nil)
	checkpoint.WriteSafetensors(filepath.Join(dir, "model-00002-of-00002.safetensors"), b, nil)
	raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": index})
	os.WriteFile(filepath.Join(dir, checkpoint.IndexFile), raw, 0o644)

	sharded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	single, err := Load(shared.Path(t, "models", "tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := []int{1, 5, 9, 200, 17}
	l1, _ := sharded.Forward(sharded.NewState(8), tokens, Options{})
	l2, _ := single.Forward(single.NewState(8), tokens, Options{})
	for i := range l1 {
		if l1[i] != l2[i] {
			t.Fatalf("sharded and single-file logits differ at %d: %v vs %v", i, l1[i], l2[i])
		}
	}

	// An index pointing at a tensor its shard does not hold is an error.
	index["ghost.weight"] = "model-00002-of-00002.safetensors"
	raw, _ = json.Marshal(map[string]any{"weight_map": index})
	os.WriteFile(filepath.Join(dir, checkpoint.IndexFile), raw, 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "ghost.weight") {
		t.Errorf("want an error about ghost.weight, got %v", err)
	}
}

func TestLoadLlama2CErrors(t *testing.T) {
	src := shared.Path(t, "models", "stories260K", "stories260K.bin")
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"short header", raw[:10], "too short"},
		{"truncated", raw[:len(raw)-400], "truncated"},
		{"trailing bytes", append(append([]byte(nil), raw...), 0, 0, 0, 0), "trailing"},
		{"zero heads", append(append(append([]byte(nil), raw[:12]...), 0, 0, 0, 0), raw[16:]...), "n_heads = 0"},
	}
	for _, c := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".bin")
		os.WriteFile(p, c.data, 0o644)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: got %v, want an error naming %s containing %q", c.name, err, p, c.want)
		}
	}
}

// Every fixture's tensors are all bound; a tensor the family does not know
// is reported, not dropped in silence.
func TestUnusedTensors(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-opt", "tiny-gpt2", "tiny-gptneox", "tiny-llama3", "tiny-qwen3", "tiny-mistral", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-mixtral", "tiny-qwen3moe", "wiki-llama-25m"} {
		m, err := Load(shared.Path(t, "models", name))
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Unused) > 0 {
			t.Errorf("%s: unused tensors %v", name, m.Unused)
		}
	}
	src := shared.Path(t, "models", "tiny-llama")
	cfg, err := checkpoint.ReadConfig(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := checkpoint.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := LoadFrom(cfg, extraTensor{st, "model.layers.0.self_attn.q_norm.weight"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Unused) != 1 || m.Unused[0] != "model.layers.0.self_attn.q_norm.weight" {
		t.Errorf("unused %v, want the extra q_norm", m.Unused)
	}
}

// extraTensor adds one name to a tensor source's listing.
type extraTensor struct {
	checkpoint.Tensors
	name string
}

func (e extraTensor) Names() []string { return append(e.Tensors.Names(), e.name) }
