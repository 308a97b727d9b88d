package ctensors

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/checkpoint"
	"llmq/internal/shared"
	"llmq/model"
	"llmq/modelio"
	"llmq/quant"
	"llmq/quant/methods"
	"llmq/recipe"
)

// calibSeqs are deterministic token sequences for recipes that calibrate.
func calibSeqs(n, T, vocab int) [][]int {
	out := make([][]int, n)
	for i := range out {
		out[i] = make([]int, T)
		for t := range out[i] {
			out[i][t] = (i*7919 + t*104729 + 17) % vocab
		}
	}
	return out
}

// quantizeTiny quantizes tiny-llama with the given stages (or the recipe
// YAML / preset when stages is nil) and saves it as an llmq quantized
// folder, returning the folder and the source.
func quantizeTiny(t *testing.T, recipeText string, stages []methods.Method) (qdir, src string) {
	return quantizeFixture(t, "tiny-llama", recipeText, stages)
}

// quantizeFixture is quantizeTiny for any fixture of ../shared/models.
func quantizeFixture(t *testing.T, fixture, recipeText string, stages []methods.Method) (qdir, src string) {
	t.Helper()
	src = shared.Path(t, "models", fixture)
	m, err := model.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if stages == nil {
		var r *recipe.Recipe
		if strings.Contains(recipeText, "\n") {
			r, err = recipe.Parse("test recipe", []byte(recipeText))
		} else {
			r, err = recipe.Load(recipeText)
		}
		if err != nil {
			t.Fatal(err)
		}
		if stages, err = r.Build(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := methods.Run(m, calibSeqs(4, 32, m.Vocab), stages, nil); err != nil {
		t.Fatal(err)
	}
	qdir = filepath.Join(t.TempDir(), "q")
	if err := modelio.Save(m, src, qdir, "test"); err != nil {
		t.Fatal(err)
	}
	return qdir, src
}

// groupRecipe is a QuantizationModifier recipe with one config group.
func groupRecipe(weights, acts string) string {
	r := "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      ignore: [lm_head]\n      config_groups:\n        group_0:\n          targets: [Linear]\n          weights: " + weights + "\n"
	if acts != "" {
		r += "          input_activations: " + acts + "\n"
	}
	return r
}

// The expectations below are compressed-tensors' own definitions: the
// preset schemes of quant_scheme.py (W8A8 = int8 per-channel symmetric
// weights with int8 per-token dynamic activations, FP8_DYNAMIC likewise in
// FP8, W4A16_ASYM = int4 asymmetric groups) and the format rule of
// infer_quantization_format (weight-only int4/int8 → pack-quantized, other
// weight-only → naive-quantized, int weights with activations →
// int-quantized, FP8 weights with activations → float-quantized).
func TestExportRoundTrip(t *testing.T) {
	type want struct {
		format  string
		weights Args
		input   *Args
	}
	tok8 := &Args{NumBits: 8, Type: typeInt, Symmetric: true, Strategy: "token", Dynamic: true}
	cases := []struct {
		name   string
		recipe string
		want   want
	}{
		{"w8a8 preset", "w8a8", want{FormatInt, Args{NumBits: 8, Type: typeInt, Symmetric: true, Strategy: "channel"}, tok8}},
		{"w4a16 asym g8", groupRecipe("{num_bits: 4, symmetric: false, strategy: group, group_size: 8}", ""),
			want{FormatPack, Args{NumBits: 4, Type: typeInt, Strategy: "group", GroupSize: 8}, nil}},
		{"w4a16 sym channel full range", groupRecipe("{num_bits: 4, symmetric: true, strategy: channel, full_range: true}", ""),
			want{FormatPack, Args{NumBits: 4, Type: typeInt, Symmetric: true, Strategy: "channel"}, nil}},
		{"w8a16 asym tensor", groupRecipe("{num_bits: 8, symmetric: false, strategy: tensor}", ""),
			want{FormatPack, Args{NumBits: 8, Type: typeInt, Strategy: "tensor"}, nil}},
		{"w3a16 asym g8", groupRecipe("{num_bits: 3, symmetric: false, strategy: group, group_size: 8}", ""),
			want{FormatNaive, Args{NumBits: 3, Type: typeInt, Strategy: "group", GroupSize: 8}, nil}},
		{"w4a8 g8", groupRecipe("{num_bits: 4, strategy: group, group_size: 8}", "{num_bits: 8, strategy: token, dynamic: true}"),
			want{FormatInt, Args{NumBits: 4, Type: typeInt, Symmetric: true, Strategy: "group", GroupSize: 8}, tok8}},
		{"w8a8 tensor static", "w8a8-tensor-static",
			want{FormatInt, Args{NumBits: 8, Type: typeInt, Symmetric: true, Strategy: "tensor"}, &Args{NumBits: 8, Type: typeInt, Symmetric: true, Strategy: "tensor"}}},
		{"w8a8 asym static acts", groupRecipe("{num_bits: 8, strategy: channel}", "{num_bits: 8, symmetric: false, strategy: tensor, dynamic: false}"),
			want{FormatInt, Args{NumBits: 8, Type: typeInt, Symmetric: true, Strategy: "channel"}, &Args{NumBits: 8, Type: typeInt, Strategy: "tensor"}}},
		{"fp8 dynamic", groupRecipe("{num_bits: 8, type: float, strategy: channel}", "{num_bits: 8, type: float, strategy: token, dynamic: true}"),
			want{FormatFloat, Args{NumBits: 8, Type: typeFloat, Symmetric: true, Strategy: "channel"}, &Args{NumBits: 8, Type: typeFloat, Symmetric: true, Strategy: "token", Dynamic: true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want.weights.Type == typeFloat && dtypeF8E4M3.Size() != 1 {
				t.Skip("package checkpoint does not know the safetensors dtype F8_E4M3 yet")
			}
			qdir, _ := quantizeTiny(t, tc.recipe, nil)
			out := filepath.Join(t.TempDir(), "ct")
			if err := Export(qdir, out); err != nil {
				t.Fatal(err)
			}
			f, err := Read(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Config.Schemes) != 1 {
				t.Fatalf("%d config groups, want 1", len(f.Config.Schemes))
			}
			s := f.Config.Schemes[0]
			if s.Format != tc.want.format || f.Config.Format != tc.want.format {
				t.Errorf("format %q (group %q), want %q", f.Config.Format, s.Format, tc.want.format)
			}
			if s.Weights != tc.want.weights {
				t.Errorf("weights %+v, want %+v", s.Weights, tc.want.weights)
			}
			if (s.Input == nil) != (tc.want.input == nil) || s.Input != nil && *s.Input != *tc.want.input {
				t.Errorf("input_activations %+v, want %+v", s.Input, tc.want.input)
			}
			if strings.Join(s.Targets, ",") != "Linear" || strings.Join(f.Config.Ignore, ",") != "lm_head" {
				t.Errorf("targets %q, ignore %q; want [Linear], [lm_head]", s.Targets, f.Config.Ignore)
			}
			compareWithLLMQ(t, qdir, out, f)
		})
	}
}

// compareWithLLMQ checks an export against the llmq folder it came from:
// the same quantized layers, each dequantizing to exactly llmq's weight
// (bit for bit), the same static activation parameters, and every other
// tensor with exactly the same values.
func compareWithLLMQ(t *testing.T, qdir, out string, f *Folder) {
	t.Helper()
	m, err := modelio.LoadWith(qdir, modelio.Options{Reference: true})
	if err != nil {
		t.Fatal(err)
	}
	lin, err := linears(m)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*Layer{}
	for _, l := range f.Layers {
		byName[l.Name] = l
	}
	nq := 0
	for _, nl := range lin {
		ql, _ := nl.layer.(*quant.QuantLinear)
		l := byName[nl.name]
		if ql == nil {
			if l != nil {
				t.Errorf("%s is FP32 in llmq but quantized in the export", nl.name)
			}
			continue
		}
		nq++
		if l == nil {
			t.Errorf("%s is quantized in llmq but missing from the export", nl.name)
			continue
		}
		want := ql.Weight().Dequantize()
		got := l.Dequantize()
		if l.Rows != ql.Out() || l.Cols != ql.In() {
			t.Fatalf("%s: shape %d×%d, llmq %d×%d", nl.name, l.Rows, l.Cols, ql.Out(), ql.In())
		}
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: weight[%d, %d] = %v, llmq %v", nl.name, i/l.Cols, i%l.Cols, got[i], want[i])
			}
		}
		if a := ql.ActSpec(); a != nil && a.Static {
			wantZero := int32(0)
			if !a.Spec.Symmetric {
				wantZero = a.Params.Zero - codeOffset(a.Spec.Bits)
			}
			if l.InputScale != a.Params.Scale || l.InputZero != wantZero {
				t.Errorf("%s: input scale/zero %v/%d, llmq %v/%d (shifted to the signed grid)", nl.name, l.InputScale, l.InputZero, a.Params.Scale, wantZero)
			}
		}
	}
	if nq != len(f.Layers) || nq == 0 {
		t.Fatalf("export has %d quantized layers, llmq %d", len(f.Layers), nq)
	}

	// Everything else (embedding, norms, the FP head) is carried over with
	// the same values, whatever dtype it is stored in.
	src, err := checkpoint.OpenDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := checkpoint.OpenDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	fusedPart := map[string]bool{}
	for _, nl := range lin {
		for _, p := range nl.parts {
			fusedPart[p] = true
		}
	}
	offsets := normOffsets(m) // Gemma's norms: llmq holds 1 + w, the export w
	for _, name := range src.Names() {
		if i := strings.LastIndex(name, "."); i > 0 && (byName[name[:i]] != nil || fusedPart[name[:i]]) {
			continue
		}
		a, _, err := src.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a {
			a[i] -= offsets[name]
		}
		b, _, err := dst.Float32(name)
		if err != nil {
			t.Fatalf("export lacks %s: %v", name, err)
		}
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("%s[%d] = %v, llmq %v", name, i, b[i], a[i])
			}
		}
	}
}

// A model whose layers need different formats gets one group per scheme,
// targeted by name, and the mixed-precision format with per-group formats.
func TestExportMixedPrecision(t *testing.T) {
	r := `quant_stage:
  quant_modifiers:
    QuantizationModifier:
      ignore: [lm_head]
      config_groups:
        group_0:
          targets: ["re:.*self_attn.*"]
          weights: {num_bits: 4, symmetric: false, strategy: group, group_size: 8}
        group_1:
          targets: ["re:.*mlp.*"]
          weights: {num_bits: 8, strategy: channel}
          input_activations: {num_bits: 8, strategy: token, dynamic: true}
`
	qdir, _ := quantizeTiny(t, r, nil)
	out := filepath.Join(t.TempDir(), "ct")
	if err := Export(qdir, out); err != nil {
		t.Fatal(err)
	}
	f, err := Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if f.Config.Format != FormatMixed || len(f.Config.Schemes) != 2 {
		t.Fatalf("format %q with %d groups, want %s with 2", f.Config.Format, len(f.Config.Schemes), FormatMixed)
	}
	for _, l := range f.Layers {
		wantFormat := FormatInt
		if strings.Contains(l.Name, "self_attn") {
			wantFormat = FormatPack
		}
		if l.Scheme.Format != wantFormat {
			t.Errorf("%s: format %s, want %s", l.Name, l.Scheme.Format, wantFormat)
		}
		if len(l.Scheme.Targets) != 3*4 && len(l.Scheme.Targets) != 3*3 {
			t.Errorf("%s: group %s targets %d layers by name, want one per layer of its kind", l.Name, l.Scheme.Name, len(l.Scheme.Targets))
		}
	}
	compareWithLLMQ(t, qdir, out, f)
}

// Layers compressed-tensors cannot express are refused with an error naming
// the layer and the reason, and nothing is left in the output's parent.
func TestExportUnsupported(t *testing.T) {
	int4 := methods.Scheme{Weights: quant.MustParseSpec("int4-asym-channel")}
	cases := []struct {
		name   string
		stages []methods.Method
		want   string
	}{
		{"lorc", []methods.Method{&methods.LoRC{Rank: 4, Bits: 8, Base: &methods.RTN{Scheme: int4}}}, "LoRC"},
		{"llm.int8", []methods.Method{&methods.LLMInt8{Threshold: 6}}, "LLM.int8"},
		{"fp8 e5m2", []methods.Method{&methods.RTN{Scheme: methods.Scheme{Weights: quant.MustParseSpec("fp8e5m2-channel")}}}, "fp8e5m2-channel weights have no compressed-tensors form"},
		{"fp4", []methods.Method{&methods.RTN{Scheme: methods.Scheme{Weights: quant.MustParseSpec("fp4e2m1-g8")}}}, "fp4e2m1-g8 weights have no compressed-tensors form"},
		{"full-range dynamic acts", []methods.Method{&methods.RTN{Scheme: methods.Scheme{Weights: quant.MustParseSpec("int8-sym-channel"), Acts: ptrSpec("int8-sym-full-token")}}}, "not expressible"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			qdir, _ := quantizeTiny(t, "", tc.stages)
			parent := t.TempDir()
			err := Export(qdir, filepath.Join(parent, "ct"))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "model.layers.0.") {
				t.Fatalf("error %v, want one naming a layer and %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("a failed export left %d entries in the output's parent", len(ents))
			}
		})
	}
}

func ptrSpec(s string) *quant.Spec { v := quant.MustParseSpec(s); return &v }

// Export refuses inputs that are not llmq quantized folders, and an
// existing output.
func TestExportBadInput(t *testing.T) {
	src := shared.Path(t, "models", "tiny-llama")
	dir := t.TempDir()
	if err := Export(src, filepath.Join(dir, "ct")); err == nil || !strings.Contains(err.Error(), "not an llmq quantized folder") {
		t.Errorf("FP folder: error %v", err)
	}
	if err := Export(filepath.Join(dir, "missing"), filepath.Join(dir, "ct")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing folder: error %v", err)
	}
	if err := Export(src, dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("existing output: error %v", err)
	}
}

// The exported config.json is the source's, with a quantization_config
// whose fields are those compressed-tensors' pydantic models accept, and
// tensors are stored as the spec's layouts say.
func TestExportLayout(t *testing.T) {
	qdir, _ := quantizeTiny(t, groupRecipe("{num_bits: 4, symmetric: false, strategy: group, group_size: 8}", ""), nil)
	out := filepath.Join(t.TempDir(), "ct")
	if err := Export(qdir, out); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["model_type"] != "llama" || cfg["vocab_size"] != 512.0 {
		t.Errorf("source fields lost: model_type %v vocab_size %v", cfg["model_type"], cfg["vocab_size"])
	}
	qc := cfg["quantization_config"].(map[string]any)
	for k, v := range map[string]any{"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": "pack-quantized"} {
		if qc[k] != v {
			t.Errorf("quantization_config.%s = %v, want %v", k, qc[k], v)
		}
	}
	w := qc["config_groups"].(map[string]any)["group_0"].(map[string]any)["weights"].(map[string]any)
	allowed := map[string]bool{"num_bits": true, "type": true, "symmetric": true, "group_size": true, "strategy": true, "block_structure": true, "dynamic": true, "actorder": true, "observer": true, "observer_kwargs": true}
	for k := range w {
		if !allowed[k] {
			t.Errorf("weights has field %q, which QuantizationArgs does not define", k)
		}
	}
	st, err := checkpoint.OpenDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// q_proj: 128×128, int4 in groups of 8: 16 words per row, 16 groups,
	// zero points packed 8 rows to a word.
	for name, want := range map[string]struct {
		dt    checkpoint.DType
		shape []int
	}{
		"model.layers.0.self_attn.q_proj.weight_packed":     {checkpoint.I32, []int{128, 16}},
		"model.layers.0.self_attn.q_proj.weight_shape":      {checkpoint.I64, []int{2}},
		"model.layers.0.self_attn.q_proj.weight_scale":      {checkpoint.F32, []int{128, 16}},
		"model.layers.0.self_attn.q_proj.weight_zero_point": {checkpoint.I32, []int{16, 16}},
		"model.layers.0.mlp.down_proj.weight_packed":        {checkpoint.I32, []int{128, 43}},
		"lm_head.weight":                        {checkpoint.F32, []int{512, 128}},
		"model.layers.0.input_layernorm.weight": {checkpoint.F32, []int{128}},
	} {
		info, ok := st.Info(name)
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if info.DType != want.dt || len(info.Shape) != len(want.shape) || info.Shape[0] != want.shape[0] || info.Shape[len(info.Shape)-1] != want.shape[len(want.shape)-1] {
			t.Errorf("%s: %s %v, want %s %v", name, info.DType, info.Shape, want.dt, want.shape)
		}
	}
	for _, gone := range []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.input_scale"} {
		if _, ok := st.Info(gone); ok {
			t.Errorf("%s should not be stored", gone)
		}
	}
	if _, ok := st.Metadata()["llmq.layers"]; ok {
		t.Error("llmq's private metadata was carried into the export")
	}
	for _, f := range []string{"tokenizer.model", "generation_config.json"} {
		if _, err := os.Stat(filepath.Join(qdir, f)); err == nil {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("%s not copied: %v", f, err)
			}
		}
	}
}

// Every family exports under its checkpoint's own module names: each
// weight of the Hugging Face source is in the export, quantized
// (weight_packed / weight) or carried over — per-expert names as the
// checkpoint had them, Phi-3's projections fused back — and nothing else
// is; the quantized layers dequantize to llmq's weights bit for bit.
func TestExportFamilies(t *testing.T) {
	recipes := map[string]string{
		"w8a8":     "w8a8",
		"w4a16 g8": groupRecipe("{num_bits: 4, symmetric: false, strategy: group, group_size: 8}", ""),
	}
	for _, fam := range []string{"tiny-llama3", "tiny-mistral", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-mixtral", "tiny-qwen3moe"} {
		for _, rn := range []string{"w8a8", "w4a16 g8"} {
			t.Run(fam+"/"+rn, func(t *testing.T) {
				qdir, src := quantizeFixture(t, fam, recipes[rn], nil)
				out := filepath.Join(t.TempDir(), "ct")
				if err := Export(qdir, out); err != nil {
					t.Fatal(err)
				}
				f, err := Read(out)
				if err != nil {
					t.Fatal(err)
				}
				compareWithLLMQ(t, qdir, out, f)
				hf, err := checkpoint.OpenDir(src)
				if err != nil {
					t.Fatal(err)
				}
				defer hf.Close()
				ct, err := checkpoint.OpenDir(out)
				if err != nil {
					t.Fatal(err)
				}
				defer ct.Close()
				modules := map[string]bool{} // what the export holds, by module
				for _, n := range ct.Names() {
					for _, s := range []string{".weight_packed", ".weight", ".bias"} {
						if m, ok := strings.CutSuffix(n, s); ok {
							modules[m+s] = true
							if s == ".weight_packed" {
								modules[m+".weight"] = true
							}
						}
					}
				}
				want := map[string]bool{}
				for _, n := range hf.Names() {
					want[n] = true
					if !modules[n] {
						t.Errorf("%s of the source is not in the export", n)
					}
				}
				for n := range modules {
					if strings.HasSuffix(n, ".weight_packed") {
						continue
					}
					if !want[n] {
						t.Errorf("the export holds %s, which the source checkpoint has not", n)
					}
				}
			})
		}
	}
}

// A Gemma folder written model-free holds the checkpoint's norm weights w
// (not llmq.norms' applied 1 + w) and exports the same tensors as the
// folder saved from the quantized model.
func TestExportModelFreeFolder(t *testing.T) {
	saved, src := quantizeFixture(t, "tiny-gemma2", "w8a8", nil)
	mf, err := modelio.OpenModelFree(src)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	r, _ := recipe.Load("w8a8")
	stages, err := r.Build(mf.Model)
	if err != nil {
		t.Fatal(err)
	}
	free := filepath.Join(t.TempDir(), "free")
	if _, err := mf.Quantize(free, stages, "test", modelio.ModelFreeOptions{}); err != nil {
		t.Fatal(err)
	}
	outs := [2]string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
	for i, q := range []string{saved, free} {
		if err := Export(q, outs[i]); err != nil {
			t.Fatal(err)
		}
	}
	a, err := checkpoint.OpenDir(outs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := checkpoint.OpenDir(outs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if strings.Join(a.Names(), " ") != strings.Join(b.Names(), " ") {
		t.Fatalf("exports differ in tensors:\n%v\n%v", a.Names(), b.Names())
	}
	for _, name := range a.Names() {
		va, _, err := a.Float32(name)
		if err != nil {
			continue // FP8 bit patterns: compared as bytes below
		}
		vb, _, _ := b.Float32(name)
		for i := range va {
			if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
				t.Fatalf("%s[%d]: %v from the model-free folder, %v from the saved one", name, i, vb[i], va[i])
			}
		}
	}
}
