package modelio

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"llmq/checkpoint"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
	"llmq/quant/methods"
)

// Options tune Load.
type Options struct {
	// Reference keeps quantized layers on the reference path (dequantize,
	// then FP32 GEMM) instead of the low-bit kernels — for debugging, and
	// to check the kernels against.
	Reference bool
}

// Load opens any model llmq reads: a Hugging Face folder, a llama2.c .bin,
// or a quantized folder written by Save (recognised by its
// quantization_config), whose quantized layers come back as they were saved
// and run on the low-bit kernels where the kernels cover their formats.
func Load(path string) (*model.Model, error) { return LoadWith(path, Options{}) }

// LoadWith is Load with options.
func LoadWith(path string, opt Options) (*model.Model, error) {
	if IsGGUF(path) {
		return loadGGUF(path) // a llama.cpp file: see gguf.go
	}
	cfgPath := filepath.Join(path, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return model.Load(path) // not a HF folder: let model.Load explain or load llama2.c
	}
	var probe struct {
		Q *struct {
			Method  string `json:"quant_method"`
			Version int    `json:"format_version"`
		} `json:"quantization_config"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil || probe.Q == nil {
		return model.Load(path)
	}
	if probe.Q.Method != "llmq" {
		return nil, fmt.Errorf("%s: quantization_config.quant_method %q is not supported (llmq reads its own quantized folders; import of other formats is separate)", cfgPath, probe.Q.Method)
	}
	if probe.Q.Version != FormatVersion {
		return nil, fmt.Errorf("%s: llmq format version %d, this build reads %d", cfgPath, probe.Q.Version, FormatVersion)
	}
	cfg, err := checkpoint.ReadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	st, err := checkpoint.OpenDir(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := checkShardMetadata(st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var layers map[string]LayerInfo
	if err := json.Unmarshal([]byte(st.Metadata()["llmq.layers"]), &layers); err != nil {
		return nil, fmt.Errorf("%s: metadata llmq.layers is missing or invalid: %v", path, err)
	}
	q := &qstore{Store: st, layers: layers, built: map[string]nn.Linear{}}
	embedFrom := st.Metadata()["llmq.embedding"] // a quantized head the embedding is tied to
	if embedFrom != "" {
		names, ok := model.TensorNamesOf(cfg.ModelType)
		if _, stored := layers[embedFrom]; !ok || !stored {
			return nil, fmt.Errorf("%s: metadata llmq.embedding names %q, which is not a stored quantized head", path, embedFrom)
		}
		q.alias = map[string]string{names.Embed: embedFrom + ".weight"}
	}
	// Build every stored layer first; the family binder then only checks
	// their shapes (qstore.Deferred) and Load puts them in place.
	for _, name := range sortedKeys(layers) {
		l, err := q.build(name, layers[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		q.built[name] = l
	}
	m, err := model.LoadFrom(cfg, q)
	if err != nil {
		return nil, err
	}
	used := 0
	for i, b := range m.Blocks {
		for _, nl := range b.Linears() {
			if l, ok := q.built[m.LinearName(i, nl.Role)]; ok {
				*nl.Linear = runtimeLayer(l, opt)
				used++
			}
		}
	}
	if names, ok := m.TensorNames(); ok {
		if l, ok := q.built[names.Head]; ok {
			m.Head = runtimeLayer(l, opt)
			used++
			if embedFrom == names.Head {
				rows, ok := m.Head.(model.RowSource)
				if !ok {
					return nil, fmt.Errorf("%s: the head %s (%T) cannot serve the tied embedding", path, names.Head, m.Head)
				}
				m.Embed, m.EmbedRows = nil, rows
			}
		}
	}
	if raw := st.Metadata()["llmq.attention"]; raw != "" {
		var attn map[string]nn.AttnQuant
		if err := json.Unmarshal([]byte(raw), &attn); err != nil {
			return nil, fmt.Errorf("%s: metadata llmq.attention: %v", path, err)
		}
		for key, aq := range attn {
			var i int
			if _, err := fmt.Sscan(key, &i); err != nil || i < 0 || i >= len(m.Blocks) {
				return nil, fmt.Errorf("%s: metadata llmq.attention: no block %q", path, key)
			}
			if err := methods.InstallAttnQuant(&m.Blocks[i].Attn, &aq); err != nil {
				return nil, fmt.Errorf("%s: block %d attention: %w", path, i, err)
			}
		}
	}
	if used != len(layers) {
		return nil, fmt.Errorf("%s: %d quantized layers stored but %d belong to the model", path, len(layers), used)
	}
	if m.Head == nil || m.Embed == nil && m.EmbedRows == nil {
		return nil, fmt.Errorf("%s: the head or the embedding is neither stored nor tied to a stored layer", path)
	}
	return m, nil
}

// checkShardMetadata checks that the shards of a sharded folder agree on
// llmq's metadata. Model-free quantization writes it into every shard
// (modelfree.go); a folder carrying it in one shard only is read as well
// (Store.Metadata merges), but two shards giving different values were not
// written together.
func checkShardMetadata(st *checkpoint.Store) error {
	seen, from := map[string]string{}, map[string]string{}
	for _, f := range st.Shards() {
		for k, v := range f.Metadata {
			if !strings.HasPrefix(k, "llmq.") {
				continue
			}
			if prev, ok := seen[k]; ok && prev != v {
				return fmt.Errorf("shards %s and %s disagree on metadata %s: not one quantized model", from[k], filepath.Base(f.Path), k)
			}
			seen[k], from[k] = v, filepath.Base(f.Path)
		}
	}
	return nil
}

// qstore serves a quantized folder's tensors to the family binder: a
// quantized linear's NAME.weight is its dequantized FP32 weight.
type qstore struct {
	*checkpoint.Store
	layers map[string]LayerInfo
	built  map[string]nn.Linear
	alias  map[string]string // tensor name → the name that serves it (tied embedding)
}

func (q *qstore) weightOf(name string) (nn.Linear, bool) {
	if a, ok := q.alias[name]; ok {
		name = a
	}
	const suffix = ".weight"
	if len(name) <= len(suffix) || name[len(name)-len(suffix):] != suffix {
		return nil, false
	}
	l, ok := q.built[name[:len(name)-len(suffix)]]
	return l, ok
}

// Deferred tells the family binder not to read the weights of stored
// layers (and an embedding served by a quantized head): Load puts the
// layers themselves in place afterwards.
// NormsApplied: see model.AppliedNorms.
func (q *qstore) NormsApplied() bool { return q.Metadata()["llmq.norms"] == model.NormsApplied }

func (q *qstore) Deferred(name string) bool {
	_, ok := q.weightOf(name)
	return ok
}

func (q *qstore) Info(name string) (checkpoint.TensorInfo, bool) {
	if l, ok := q.weightOf(name); ok {
		return checkpoint.TensorInfo{Name: name, DType: checkpoint.F32, Shape: []int{l.Out(), l.In()}, End: int64(4 * l.Out() * l.In())}, true
	}
	return q.Store.Info(name)
}

func (q *qstore) Float32(name string) ([]float32, checkpoint.TensorInfo, error) {
	if l, ok := q.weightOf(name); ok {
		info, _ := q.Info(name)
		return dequantized(l), info, nil
	}
	return q.Store.Float32(name)
}

// dequantized returns the FP32 weight a stored layer computes with.
func dequantized(l nn.Linear) []float32 {
	switch v := l.(type) {
	case *quant.QuantLinear:
		return v.Weight().Dequantize() // not DequantizedWeight: that would keep a cache
	case *methods.LowRankLinear:
		return dequantized(v.Base)
	case *methods.Int8Linear:
		if fp := v.FPWeight(); fp != nil {
			return append([]float32(nil), fp...)
		}
		codes, scales := v.Weight()
		w := make([]float32, len(codes))
		in := v.In()
		for i, c := range codes {
			w[i] = float32(c) * scales[i/in]
		}
		return w
	}
	return nil
}

// build reconstructs one stored layer.
func (q *qstore) build(name string, info LayerInfo) (nn.Linear, error) {
	bias, err := q.optionalF32(name + ".bias")
	if err != nil {
		return nil, err
	}
	switch info.Kind {
	case "quant", "lorc":
		ql, err := q.quantLinear(name, info, bias)
		if err != nil || info.Kind == "quant" {
			return ql, err
		}
		a, ai, err := q.Store.Float32(name + ".lorc_a")
		if err != nil {
			return nil, err
		}
		b, bi, err := q.Store.Float32(name + ".lorc_b")
		if err != nil {
			return nil, err
		}
		if len(ai.Shape) != 2 || len(bi.Shape) != 2 || ai.Shape[1] != info.Rank || bi.Shape[0] != info.Rank {
			return nil, fmt.Errorf("LoRC factors of shapes %v and %v do not match rank %d", ai.Shape, bi.Shape, info.Rank)
		}
		lr, err := methods.NewLowRankLinear(ql, a, b, info.Rank)
		if err != nil {
			return nil, err
		}
		lr.Bits = info.LoRCBits
		return lr, nil
	case "llm.int8":
		if info.KeepFP {
			w, wi, err := q.Store.Float32(name + ".weight")
			if err != nil {
				return nil, err
			}
			if len(wi.Shape) != 2 || wi.Shape[0] != info.Out || wi.Shape[1] != info.In {
				return nil, fmt.Errorf("weight has shape %v, want [%d %d]", wi.Shape, info.Out, info.In)
			}
			return methods.NewInt8Linear(w, bias, info.Out, info.In, info.Threshold, true)
		}
		raw, ti, err := q.Store.Raw(name + ".weight")
		if err != nil {
			return nil, err
		}
		if ti.DType != checkpoint.I8 || len(ti.Shape) != 2 || ti.Shape[0] != info.Out || ti.Shape[1] != info.In {
			return nil, fmt.Errorf("LLM.int8 weight must be an I8 tensor [%d %d], have %s %v", info.Out, info.In, ti.DType, ti.Shape)
		}
		scales, _, err := q.Store.Float32(name + ".weight_scale")
		if err != nil {
			return nil, err
		}
		if len(scales) != info.Out {
			return nil, fmt.Errorf("%d weight scales for %d rows", len(scales), info.Out)
		}
		w := make([]float32, info.Out*info.In)
		for i, c := range raw {
			w[i] = float32(int8(c)) * scales[i/info.In]
		}
		// Requantizing on-grid weights reproduces the stored codes exactly.
		return methods.NewInt8Linear(w, bias, info.Out, info.In, info.Threshold, false)
	}
	return nil, fmt.Errorf("unknown layer kind %q", info.Kind)
}

func (q *qstore) optionalF32(name string) ([]float32, error) {
	if _, ok := q.Store.Info(name); !ok {
		return nil, nil
	}
	v, _, err := q.Store.Float32(name)
	return v, err
}

func (q *qstore) quantLinear(name string, info LayerInfo, bias []float32) (*quant.QuantLinear, error) {
	spec, err := quant.ParseSpec(info.Weights)
	if err != nil {
		return nil, err
	}
	packed, pi, err := q.Store.Raw(name + ".weight_packed")
	if err != nil {
		return nil, err
	}
	if pi.DType != checkpoint.U8 || len(pi.Shape) != 2 {
		return nil, fmt.Errorf("weight_packed must be a 2-D U8 tensor, have %s %v", pi.DType, pi.Shape)
	}
	scales, si, err := q.Store.Float32(name + ".weight_scale")
	if err != nil {
		return nil, err
	}
	if len(si.Shape) != 2 {
		return nil, fmt.Errorf("weight_scale must be 2-D, have %v", si.Shape)
	}
	rows, cols := info.Out, info.In
	if pi.Shape[0] != rows || rows <= 0 || cols <= 0 {
		return nil, fmt.Errorf("weight_packed has %d rows, the layer %d×%d", pi.Shape[0], rows, cols)
	}
	if bias != nil && len(bias) != rows {
		return nil, fmt.Errorf("bias has %d values for %d rows", len(bias), rows)
	}
	if err := spec.Validate(rows, cols); err != nil {
		return nil, err
	}
	if pr, pc := spec.ParamShape(rows, cols); si.Shape[0] != pr || si.Shape[1] != pc {
		return nil, fmt.Errorf("weight_scale has shape %v, %v on %d×%d needs [%d %d]", si.Shape, spec, rows, cols, pr, pc)
	}
	t := &quant.QTensor{Rows: rows, Cols: cols, Spec: spec, Data: append([]byte(nil), packed...), Scales: scales}
	if spec.HasZero() {
		zraw, _, err := q.Store.Raw(name + ".weight_zero_point")
		if err != nil {
			return nil, err
		}
		if len(zraw) != len(scales) {
			return nil, fmt.Errorf("%d zero-points for %d scales", len(zraw), len(scales))
		}
		t.Zeros = append([]uint8(nil), zraw...)
	}
	if len(t.Data) != rows*t.RowBytes() {
		return nil, fmt.Errorf("weight_packed holds %d bytes, %d×%d %v needs %d", len(t.Data), rows, cols, spec, rows*t.RowBytes())
	}
	if err := spec.CheckParams(t.Params(), rows, cols); err != nil {
		return nil, err
	}
	var act *quant.ActQuant
	if info.Acts != "" {
		as, err := quant.ParseSpec(info.Acts)
		if err != nil {
			return nil, err
		}
		act = quant.DynamicAct(as)
		if info.Static {
			sc, _, err := q.Store.Float32(name + ".input_scale")
			if err != nil {
				return nil, err
			}
			zraw, _, err := q.Store.Raw(name + ".input_zero_point")
			if err != nil {
				return nil, err
			}
			if len(sc) != 1 || len(zraw) != 4 {
				return nil, fmt.Errorf("input_scale / input_zero_point must hold one value")
			}
			act = &quant.ActQuant{Spec: as, Static: true, Params: quant.Params{Scale: sc[0], Zero: int32(binary.LittleEndian.Uint32(zraw))}}
		}
	}
	return quant.NewQuantLinear(t, bias, act)
}

// runtimeLayer puts a stored layer on the low-bit kernels when they cover
// its formats (and the options allow it).
func runtimeLayer(l nn.Linear, opt Options) nn.Linear {
	if opt.Reference {
		return l
	}
	switch v := l.(type) {
	case *quant.QuantLinear:
		if f := quant.Fast(v); f != nil {
			return f
		}
	case *methods.LowRankLinear:
		if ql, ok := v.Base.(*quant.QuantLinear); ok {
			if f := quant.Fast(ql); f != nil {
				v.Base = f
			}
		}
	}
	return l
}
