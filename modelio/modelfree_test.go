package modelio

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"llmq/checkpoint"
	"llmq/internal/shared"
	"llmq/model"
	"llmq/quant/methods"
	"llmq/recipe"
)

// mfRecipes are the data-free recipes the model-free path is checked on:
// the presets' schemes with groups of 8 (the tiny fixtures' widths are not
// multiples of 128), the head included or not, and the observers and scale
// constraints that change RTN's parameters.
var mfRecipes = map[string]string{
	"w8a8": "", // the preset itself
	"w4a16-g8": `
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      ignore: [lm_head, 're:.*mlp\.gate$', 're:.*block_sparse_moe\.gate$']
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 8}
`,
	"fp8-dynamic-lmhead": `
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      targets: [Linear]
      ignore: ['re:.*mlp\.gate$', 're:.*block_sparse_moe\.gate$']
      scheme: FP8_DYNAMIC
`,
	"w4-mse-pow2-two-groups": `
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      ignore: [lm_head]
      config_groups:
        attention:
          targets: ['re:.*self_attn.*']
          weights: {num_bits: 4, type: float, strategy: group, group_size: 8, scale_constraint: pow2}
          input_activations: {num_bits: 8, type: float, strategy: token, dynamic: true}
        mlp:
          targets: ['re:.*(mlp|block_sparse_moe|fc1|fc2).*']
          weights: {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 8, observer: mse}
`,
}

func loadRecipe(t *testing.T, name string) *recipe.Recipe {
	t.Helper()
	var r *recipe.Recipe
	var err error
	if text := mfRecipes[name]; text != "" {
		r, err = recipe.Parse(name, []byte(text))
	} else {
		r, err = recipe.Load(name)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// quantizeModelFree runs the model-free path as llmq quantize does.
func quantizeModelFree(t *testing.T, src, out string, r *recipe.Recipe, opt ModelFreeOptions) *ModelFreeReport {
	t.Helper()
	mf, err := OpenModelFree(src)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	stages, err := r.Build(mf.Model)
	if err != nil {
		t.Fatal(err)
	}
	if why := ModelFreeBlocker(stages); why != "" {
		t.Fatalf("not model-free: %s", why)
	}
	rep, err := mf.Quantize(out, stages, r.Source, opt)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// The model-free path writes what quantizing the loaded model with
// methods.RTN and saving it writes: the same quantized layers (llmq.layers)
// with bit-identical codes, scales and zero-points, the same other tensors
// with the same values (at the source dtype instead of FP32), the same tied
// embedding, and a folder that loads into a model computing the same
// logits bit for bit. Shards and row slices are forced small, so sharding
// and slicing are covered: neither may change a byte.
func TestModelFreeMatchesRTN(t *testing.T) {
	families := []string{"tiny-llama3", "tiny-mistral", "tiny-qwen2", "tiny-qwen3", "tiny-phi3", "tiny-mixtral", "tiny-qwen3moe", "tiny-gemma2", "tiny-opt"}
	names := []string{"w8a8", "w4a16-g8", "fp8-dynamic-lmhead", "w4-mse-pow2-two-groups"}
	if testing.Short() {
		families = []string{"tiny-phi3", "tiny-mixtral", "tiny-opt"}
	}
	for _, fam := range families {
		for _, name := range names {
			t.Run(fam+"/"+name, func(t *testing.T) {
				src := shared.Path(t, "models", fam)
				r := loadRecipe(t, name)
				// The ordinary path, as llmq quantize runs it.
				m, err := model.LoadLazy(src)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				stages, err := r.Build(m)
				if err != nil {
					t.Fatal(err)
				}
				if err := methods.Run(m, nil, stages, nil); err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				a, b := filepath.Join(dir, "model"), filepath.Join(dir, "free")
				if err := Save(m, src, a, r.Source); err != nil {
					t.Fatal(err)
				}
				rep := quantizeModelFree(t, src, b, r, ModelFreeOptions{ShardBytes: 40_000, ChunkElems: 1000})
				if rep.Shards < 2 || len(rep.Dropped) != 0 {
					t.Errorf("report %+v", rep)
				}
				compareFolders(t, src, a, b)
				ma, err := LoadWith(a, Options{Reference: true})
				if err != nil {
					t.Fatal(err)
				}
				mb, err := LoadWith(b, Options{Reference: true})
				if err != nil {
					t.Fatal(err)
				}
				probe := seqs(1, 24, m.Vocab)[0]
				la, _ := ma.Forward(ma.NewState(24), probe, model.Options{})
				lb, err := mb.Forward(mb.NewState(24), probe, model.Options{})
				if err != nil {
					t.Fatal(err)
				}
				for i := range la {
					if math.Float32bits(la[i]) != math.Float32bits(lb[i]) {
						t.Fatalf("logit %d: %v from the model-free folder, %v from the saved model", i, lb[i], la[i])
					}
				}
				// And on the kernels, as llmq runs it.
				if _, err := Load(b); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// compareFolders checks folder b (model-free) against a (Save) tensor by
// tensor; src is the checkpoint both came from.
func compareFolders(t *testing.T, src, a, b string) {
	t.Helper()
	sa, err := checkpoint.OpenDir(a)
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	sb, err := checkpoint.OpenDir(b)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ss, err := checkpoint.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	ma, mb := sa.Metadata(), sb.Metadata()
	var la, lb map[string]LayerInfo
	json.Unmarshal([]byte(ma["llmq.layers"]), &la)
	json.Unmarshal([]byte(mb["llmq.layers"]), &lb)
	if len(la) == 0 || !reflect.DeepEqual(la, lb) {
		t.Fatalf("llmq.layers differ:\n save:       %s\n model-free: %s", ma["llmq.layers"], mb["llmq.layers"])
	}
	for _, k := range []string{"llmq.embedding", "llmq.format", "llmq.attention"} {
		if ma[k] != mb[k] {
			t.Errorf("metadata %s: %q from Save, %q model-free", k, ma[k], mb[k])
		}
	}
	for _, f := range sb.Shards() {
		if f.Metadata["llmq.layers"] != mb["llmq.layers"] {
			t.Errorf("%s lacks the llmq metadata", filepath.Base(f.Path))
		}
	}
	if !reflect.DeepEqual(sa.Names(), sb.Names()) {
		t.Errorf("tensors differ:\n save:       %v\n model-free: %v", sa.Names(), sb.Names())
	}
	quantized := []string{".weight_packed", ".weight_scale", ".weight_zero_point"}
	for _, name := range sa.Names() {
		isQ := false
		for _, s := range quantized {
			isQ = isQ || strings.HasSuffix(name, s)
		}
		if isQ {
			ra, _, _ := sa.Raw(name)
			rb, ib, err := sb.Raw(name)
			if err != nil || string(ra) != string(rb) {
				t.Errorf("%s: model-free bytes differ from Save's (%v, %s)", name, err, ib.DType)
			}
			continue
		}
		va, _, _ := sa.Float32(name)
		vb, ib, err := sb.Float32(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if ma["llmq.norms"] != "" && strings.Contains(name, "norm") {
			continue // Save stores Gemma's 1 + w, the model-free path the checkpoint's w
		}
		if !reflect.DeepEqual(va, vb) {
			t.Errorf("%s: values differ", name)
		}
		if is, ok := ss.Info(name); ok && is.DType != ib.DType {
			t.Errorf("%s: stored as %s, the checkpoint has %s", name, ib.DType, is.DType)
		}
	}
}

// Recipes that need the model or calibration are not model-free, and say
// why; data-free RTN presets are.
func TestModelFreeBlocker(t *testing.T) {
	mf, err := OpenModelFree(shared.Path(t, "models", "tiny-llama3"))
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	for name, want := range map[string]string{
		"w8a8": "", "rtn-w3a16": "", "rtn-w4a16-lmhead": "", "zeroquant-w8a8": "",
		"smoothquant-o1":      "smoothquant",
		"w8a8-tensor-static":  "calibration",
		"gptq-w4a16-actorder": "gptq",
		"kv-int8":             "kv",
	} {
		r, err := recipe.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := r.Build(mf.Model)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := ModelFreeBlocker(ms)
		if want == "" && got != "" || want != "" && !strings.Contains(strings.ToLower(got), want) {
			t.Errorf("%s: blocker %q, want %q", name, got, want)
		}
	}
	// Families llmq does not write back, GGUF files and quantized folders
	// are not opened.
	for _, src := range []string{shared.Path(t, "models", "tiny-gpt2"), shared.Path(t, "models", "stories260K")} {
		if _, err := OpenModelFree(src); err == nil {
			t.Errorf("%s opened for model-free quantization", src)
		}
	}
}

// A checkpoint with a NaN fails the write and leaves no folder; tensors the
// family does not bind are reported and left out, as Save leaves them out.
func TestModelFreeBadInputs(t *testing.T) {
	src := shared.Path(t, "models", "tiny-llama3")
	st, err := checkpoint.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var ts []checkpoint.WriteTensor
	for _, name := range st.Names() {
		raw, info, _ := st.Raw(name)
		ts = append(ts, checkpoint.WriteTensor{Name: name, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	st.Close()
	cfg, _ := os.ReadFile(filepath.Join(src, "config.json"))
	write := func(ts []checkpoint.WriteTensor) string {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
		if err := checkpoint.WriteSafetensors(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	extra := append(append([]checkpoint.WriteTensor(nil), ts...), checkpoint.WriteTensor{Name: "model.rotary_emb.inv_freq", DType: checkpoint.F32, Shape: []int{1}, Data: make([]byte, 4)})
	out := filepath.Join(t.TempDir(), "q")
	rep := quantizeModelFree(t, write(extra), out, loadRecipe(t, "w8a8"), ModelFreeOptions{})
	if !reflect.DeepEqual(rep.Dropped, []string{"model.rotary_emb.inv_freq"}) || rep.Shards != 1 {
		t.Errorf("report %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err != nil {
		t.Error(err)
	}
	for _, target := range []string{"model.layers.1.mlp.up_proj.weight", "model.norm.weight"} {
		bad := append([]checkpoint.WriteTensor(nil), ts...)
		for i := range bad {
			if bad[i].Name == target {
				d := append([]byte(nil), bad[i].Data...)
				d[10], d[11] = 0xc0, 0x7f // BF16 NaN
				bad[i].Data = d
			}
		}
		mf, err := OpenModelFree(write(bad))
		if err != nil {
			t.Fatal(err)
		}
		stages, _ := loadRecipe(t, "w8a8").Build(mf.Model)
		parent := t.TempDir()
		_, err = mf.Quantize(filepath.Join(parent, "q"), stages, "w8a8", ModelFreeOptions{})
		mf.Close()
		if err == nil || !strings.Contains(err.Error(), "non-finite") {
			t.Errorf("NaN in %s: %v", target, err)
		}
		if entries, _ := os.ReadDir(parent); len(entries) != 0 {
			t.Errorf("a failed write left %v", entries)
		}
	}
}

// Shards of one folder must agree on llmq's metadata.
func TestShardMetadataMustAgree(t *testing.T) {
	src := shared.Path(t, "models", "tiny-llama3")
	out := filepath.Join(t.TempDir(), "q")
	quantizeModelFree(t, src, out, loadRecipe(t, "w8a8"), ModelFreeOptions{ShardBytes: 100_000})
	if _, err := Load(out); err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(out, "model-*.safetensors"))
	sort.Strings(shards)
	if len(shards) < 2 {
		t.Fatalf("%d shards", len(shards))
	}
	// Rewrite the last shard with a different llmq.layers.
	f, err := checkpoint.OpenSafetensors(shards[len(shards)-1])
	if err != nil {
		t.Fatal(err)
	}
	var ts []checkpoint.WriteTensor
	for _, name := range f.Names() {
		raw, info, _ := f.Raw(name)
		ts = append(ts, checkpoint.WriteTensor{Name: name, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	meta := map[string]string{}
	for k, v := range f.Metadata {
		meta[k] = v
	}
	f.Close()
	meta["llmq.layers"] = "{}"
	if err := checkpoint.WriteSafetensors(shards[len(shards)-1], ts, meta); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(out); err == nil || !strings.Contains(err.Error(), "disagree on metadata llmq.layers") {
		t.Errorf("disagreeing shards: %v", err)
	}
}
