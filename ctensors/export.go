package ctensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"llmq/checkpoint"
	"llmq/model"
	"llmq/modelio"
	"llmq/nn"
	"llmq/quant"
	"llmq/quant/methods"
	"llmq/tensor"
)

// dtypeF8E4M3 is safetensors' name for torch.float8_e4m3fn.
const dtypeF8E4M3 = checkpoint.DType("F8_E4M3")

// llmqSuffixes are the tensors modelio stores for a quantized linear NAME
// (besides NAME.bias, which both formats share).
var llmqSuffixes = []string{".weight_packed", ".weight_scale", ".weight_zero_point", ".input_scale", ".input_zero_point"}

// Export converts the llmq quantized folder src (written by llmq quantize)
// into a compressed-tensors folder out, which must not exist. The folder is
// assembled under a temporary name beside out and renamed into place when
// complete, so an interrupted export leaves nothing behind.
func Export(src, out string) error {
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s already exists; choose a new output folder", out)
	}
	cfgPath := filepath.Join(src, "config.json")
	cfgRaw, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("%s: an llmq quantized folder is needed (llmq quantize --out DIR writes one): %w", src, err)
	}
	cfg, err := checkpoint.ConfigObject(cfgPath, cfgRaw)
	if err != nil {
		return err
	}
	if qc, _ := cfg["quantization_config"].(map[string]any); qc == nil || qc["quant_method"] != "llmq" {
		return fmt.Errorf("%s: not an llmq quantized folder (quantization_config.quant_method is not \"llmq\"); quantize it first with llmq quantize", cfgPath)
	}
	m, err := modelio.LoadWith(src, modelio.Options{Reference: true})
	if err != nil {
		return err
	}
	lin, err := linears(m)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	st, err := checkpoint.OpenDir(src)
	if err != nil {
		return err
	}
	defer st.Close()

	narrow := narrowDType(cfg)
	var tensors []checkpoint.WriteTensor
	var ignore []string
	replaced := map[string]bool{} // llmq tensors the conversion replaces
	var layers []converted
	var head *quant.QuantLinear
	for _, l := range lin {
		ql, err := quantLinearOf(l.name, l.layer)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		for _, part := range l.parts { // the fused layer replaces its parts
			for _, s := range append(llmqSuffixes, ".weight", ".bias") {
				replaced[part+s] = true
			}
		}
		if ql == nil {
			ignore = append(ignore, l.name)
			if l.parts != nil { // stacked here: not in the folder under its name
				d := l.layer.(*nn.Dense)
				fp := []checkpoint.WriteTensor{{Name: l.name + ".weight", DType: checkpoint.F32, Shape: []int{d.Out(), d.In()}, Data: f32Bytes(d.W)}}
				if d.B != nil {
					fp = append(fp, checkpoint.WriteTensor{Name: l.name + ".bias", DType: checkpoint.F32, Shape: []int{d.Out()}, Data: f32Bytes(d.B)})
				}
				for _, t := range fp {
					if narrow != "" {
						t = narrowTensor(t, narrow)
					}
					tensors = append(tensors, t)
				}
			}
			continue
		}
		if l.layer == m.Head {
			head = ql
		}
		c, err := convert(l.name, ql)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		stored := l.name
		if l.parts != nil {
			stored = l.parts[0]
			if b := ql.Bias(); b != nil {
				c.tensors = append(c.tensors, checkpoint.WriteTensor{Name: l.name + ".bias", DType: checkpoint.F32, Shape: []int{len(b)}, Data: f32Bytes(b)})
			}
		}
		if _, ok := st.Info(stored + ".weight_packed"); !ok {
			return fmt.Errorf("%s: quantized layer %s has no %s.weight_packed in the checkpoint", src, l.name, stored)
		}
		for _, s := range llmqSuffixes {
			replaced[l.name+s] = true
		}
		layers = append(layers, c)
		tensors = append(tensors, c.tensors...)
	}
	if len(layers) == 0 {
		return fmt.Errorf("%s: no quantized linear layers to export", src)
	}
	if names, _ := m.TensorNames(); !hasTensor(st, names.Embed) {
		// llmq stores an embedding tied to a quantized head once, as the
		// head. compressed-tensors models keep the embedding table, so it is
		// written dequantized (the values llmq embeds with) and the tie cut.
		if head == nil {
			return fmt.Errorf("%s: the checkpoint has no %s and no quantized head to take it from", src, names.Embed)
		}
		t := head.Weight()
		tensors = append(tensors, checkpoint.WriteTensor{Name: names.Embed, DType: checkpoint.F32, Shape: []int{t.Rows, t.Cols}, Data: f32Bytes(t.Dequantize())})
		cfg["tie_word_embeddings"] = false
	}
	// A folder saved from a model holds Gemma's norms as applied (1 + w,
	// llmq.norms says so); one written model-free holds the checkpoint's w,
	// copied as it was.
	offsets := map[string]float32{}
	if st.Metadata()["llmq.norms"] == model.NormsApplied {
		offsets = normOffsets(m)
	}
	for _, name := range st.Names() {
		if replaced[name] {
			continue
		}
		if off, ok := offsets[name]; ok { // llmq holds 1 + w; the checkpoint w
			v, info, err := st.Float32(name)
			if err != nil {
				return err
			}
			for i := range v {
				v[i] -= off
			}
			t := checkpoint.WriteTensor{Name: name, DType: checkpoint.F32, Shape: info.Shape, Data: f32Bytes(v)}
			if narrow != "" {
				t = narrowTensor(t, narrow)
			}
			tensors = append(tensors, t)
			continue
		}
		raw, info, err := st.Raw(name)
		if err != nil {
			return err
		}
		t := checkpoint.WriteTensor{Name: name, DType: info.DType, Shape: info.Shape, Data: raw}
		if info.DType == checkpoint.F32 && narrow != "" {
			t = narrowTensor(t, narrow)
		}
		tensors = append(tensors, t)
	}

	qc, err := buildConfig(layers, ignore)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	cfg["quantization_config"] = qc
	cfgOut, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}

	return checkpoint.WriteDirAtomic(out, func(tmp string) error {
		if err := checkpoint.WriteSafetensors(filepath.Join(tmp, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "config.json"), append(cfgOut, '\n'), 0o644); err != nil {
			return err
		}
		return copySidecars(src, tmp)
	})
}

// normOffsets maps the weight tensor of every (Offset + w) norm of m
// (Gemma's) to its offset: llmq's folders store the weight applied, the
// checkpoint format w.
func normOffsets(m *model.Model) map[string]float32 {
	out := map[string]float32{}
	add := func(module string, n nn.Norm) {
		if r, ok := n.(*nn.RMSNorm); ok && r.Offset != 0 {
			out[module+".weight"] = r.Offset
		}
	}
	for l, b := range m.Blocks {
		for _, p := range b.Norms() {
			add(m.LinearName(l, p.Role), *p.Norm)
		}
	}
	if names, ok := m.TensorNames(); ok && m.Norm != nil {
		add(names.Norm, m.Norm)
	}
	return out
}

func hasTensor(st *checkpoint.Store, name string) bool {
	_, ok := st.Info(name)
	return ok
}

// namedLinear is one linear layer of a model and its module name; parts
// names the modules of the llmq folder it was fused from (nil: none).
type namedLinear struct {
	name  string
	layer nn.Linear
	parts []string
}

// linears lists every linear layer of m (blocks in order, then the head)
// under its checkpoint module name. The parts of a projection the family's
// checkpoints fuse (Phi-3's qkv_proj) are stacked back into it, as the
// serving engines load it.
func linears(m *model.Model) ([]namedLinear, error) {
	names, ok := m.TensorNames()
	if !ok {
		return nil, fmt.Errorf("%s models cannot be exported (their checkpoints fuse or transpose block weights)", m.Arch)
	}
	fused := m.FusedModules()
	var out []namedLinear
	for i, b := range m.Blocks {
		inFused := map[string]bool{}
		for _, module := range sortedKeys(fused) {
			var parts []nn.Linear
			var partNames []string
			for _, role := range fused[module] {
				if slot := b.Linear(role); slot != nil {
					parts = append(parts, *slot)
					partNames = append(partNames, m.LinearName(i, role))
					inFused[role] = true
				}
			}
			if len(parts) == 0 {
				continue
			}
			name := b.Name + "." + module
			l, err := fuseRows(name, parts)
			if err != nil {
				return nil, err
			}
			out = append(out, namedLinear{name, l, partNames})
		}
		for _, nl := range b.Linears() {
			if !inFused[nl.Role] {
				out = append(out, namedLinear{m.LinearName(i, nl.Role), *nl.Linear, nil})
			}
		}
	}
	return append(out, namedLinear{names.Head, m.Head, nil}), nil
}

// fuseRows stacks the parts of a fused projection: all quantized alike
// (quant.ConcatRows), or all full precision.
func fuseRows(name string, parts []nn.Linear) (nn.Linear, error) {
	var qs []*quant.QuantLinear
	var w, b []float32
	for _, p := range parts {
		ql, err := quantLinearOf(name, p)
		if err != nil {
			return nil, err
		}
		if ql != nil {
			qs = append(qs, ql)
			continue
		}
		d, ok := p.(*nn.Dense)
		if !ok {
			return nil, fmt.Errorf("%s: a %T part cannot be fused", name, p)
		}
		w, b = append(w, d.W...), append(b, d.B...)
	}
	switch {
	case len(qs) == len(parts):
		q, err := quant.ConcatRows(qs...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return q, nil
	case len(qs) > 0:
		return nil, fmt.Errorf("%s: some of its parts are quantized and some are not; a fused module is one or the other (quantize or ignore all of them)", name)
	}
	if len(b) == 0 {
		b = nil
	}
	return nn.NewDense(w, b, len(w)/parts[0].In(), parts[0].In()), nil
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// quantLinearOf returns the QuantLinear behind a layer, nil for an FP32
// layer, or an error for layer kinds compressed-tensors cannot express.
func quantLinearOf(name string, l nn.Linear) (*quant.QuantLinear, error) {
	switch v := l.(type) {
	case *nn.Dense:
		return nil, nil
	case *quant.QuantLinear:
		return v, nil
	case *quant.FastLinear:
		return v.Quant(), nil
	case *methods.LowRankLinear:
		return nil, fmt.Errorf("%s: LoRC low-rank correction (rank %d) has no compressed-tensors representation; export a recipe without LoRC", name, v.Rank)
	case *methods.Int8Linear:
		return nil, fmt.Errorf("%s: LLM.int8() decomposition (FP outlier columns chosen at run time) has no compressed-tensors representation; use W8A8 (SmoothQuant) instead", name)
	}
	return nil, fmt.Errorf("%s: a %T layer cannot be exported", name, l)
}

// converted is one quantized linear in compressed-tensors form.
type converted struct {
	name    string
	weights Args
	input   *Args
	format  string
	tensors []checkpoint.WriteTensor
}

// convert maps one QuantLinear onto compressed-tensors' scheme and tensors
// (see the package comment for the mapping).
func convert(name string, ql *quant.QuantLinear) (converted, error) {
	t := ql.Weight()
	c := converted{name: name}
	w, err := weightArgs(t.Spec)
	if err != nil {
		return c, fmt.Errorf("%s: %w", name, err)
	}
	c.weights = w
	act := ql.ActSpec()
	if act != nil {
		a, err := inputArgs(act)
		if err != nil {
			return c, fmt.Errorf("%s: %w", name, err)
		}
		c.input = &a
	}
	c.format = formatFor(w, c.input)

	rows, cols := t.Rows, t.Cols
	pr, pc := t.Spec.ParamShape(rows, cols)
	scaleShape := []int{pr, pc}
	if t.Spec.Granularity == quant.PerTensor {
		scaleShape = []int{1}
	}
	add := func(suffix string, dt checkpoint.DType, shape []int, data []byte) {
		c.tensors = append(c.tensors, checkpoint.WriteTensor{Name: name + suffix, DType: dt, Shape: shape, Data: data})
	}
	add(".weight_scale", checkpoint.F32, scaleShape, f32Bytes(t.Scales))

	if w.Type == typeFloat {
		if dtypeF8E4M3.Size() != 1 {
			return c, fmt.Errorf("%s: FP8 weights need the safetensors dtype F8_E4M3, which package checkpoint does not know yet", name)
		}
		add(".weight", dtypeF8E4M3, []int{rows, cols}, codeBytes(t.Codes()))
	} else {
		// llmq's asymmetric codes and zero points are unsigned; compressed-
		// tensors' are signed on the same grid, shifted by 2^(b−1).
		q := t.Codes()
		var zp []int32
		if !t.Spec.Symmetric {
			off := codeOffset(t.Spec.Bits)
			for i := range q {
				q[i] -= off
			}
			zp = make([]int32, len(t.Zeros))
			for i, z := range t.Zeros {
				zp[i] = int32(z) - off
			}
		}
		if c.format == FormatPack {
			words, err := packRows(q, rows, cols, w.NumBits)
			if err != nil {
				return c, fmt.Errorf("%s: %w", name, err)
			}
			add(".weight_packed", checkpoint.I32, []int{rows, len(words) / rows}, u32Bytes(words))
			add(".weight_shape", checkpoint.I64, []int{2}, i64Bytes(int64(rows), int64(cols)))
			if zp != nil {
				if w.Strategy == "tensor" { // stored as is, like the library
					add(".weight_zero_point", checkpoint.I8, []int{1}, codeBytes(zp))
				} else {
					zw, err := packCols(zp, pr, pc, w.NumBits)
					if err != nil {
						return c, fmt.Errorf("%s: zero points: %w", name, err)
					}
					add(".weight_zero_point", checkpoint.I32, []int{len(zw) / pc, pc}, u32Bytes(zw))
				}
			}
		} else {
			add(".weight", checkpoint.I8, []int{rows, cols}, codeBytes(q))
			if zp != nil {
				add(".weight_zero_point", checkpoint.I8, scaleShape, codeBytes(zp))
			}
		}
	}
	if act != nil && act.Static {
		add(".input_scale", checkpoint.F32, []int{1}, f32Bytes([]float32{act.Params.Scale}))
		if !act.Spec.Symmetric {
			add(".input_zero_point", checkpoint.I8, []int{1}, codeBytes([]int32{act.Params.Zero - codeOffset(act.Spec.Bits)}))
		}
	}
	return c, nil
}

// weightArgs maps a weight spec onto QuantizationArgs.
func weightArgs(s quant.Spec) (Args, error) {
	a := Args{NumBits: s.Bits, Symmetric: s.Symmetric, Type: argType(s)}
	if a.Type == "" {
		return a, fmt.Errorf("%v weights have no compressed-tensors form (its float weights are FP8 E4M3, and its FP4 layouts NVFP4/MXFP4 use FP8 or power-of-two scales on groups of 16 or 32)", s)
	}
	switch s.Granularity {
	case quant.PerTensor:
		a.Strategy = "tensor"
	case quant.PerChannel:
		a.Strategy = "channel"
	case quant.PerGroup:
		a.Strategy, a.GroupSize = "group", s.GroupSize
	default:
		return a, fmt.Errorf("%v: %s granularity is not a weight strategy", s, s.Granularity)
	}
	return a, nil
}

// argType is the compressed-tensors type of a grid: "int" for integers,
// "float" for FP8 E4M3 (its one float type); "" for the others.
func argType(s quant.Spec) string {
	switch s.Format {
	case quant.FormatInt:
		return typeInt
	case quant.FormatFP8E4M3:
		return typeFloat
	}
	return ""
}

// inputArgs maps activation quantization onto QuantizationArgs. Dynamic
// scales are computed by the serving runtime, as absmax/(2^(b−1)−1) for
// symmetric integers (vLLM's per-token int8 kernels), absmax/448 for FP8 and
// the zero-including min/max rule for asymmetric integers — llmq's default
// grids; options that change that rule cannot be carried by the config.
func inputArgs(a *quant.ActQuant) (Args, error) {
	s := a.Spec
	out := Args{NumBits: s.Bits, Symmetric: s.Symmetric, Dynamic: !a.Static, Type: argType(s)}
	if out.Type == "" {
		return out, fmt.Errorf("%v activations have no compressed-tensors form", s)
	}
	if !a.Static && (s.FullRange || s.Scale != quant.ScaleAny || s.HalfScales) {
		return out, fmt.Errorf("dynamic activations %v: full-range grids and constrained or FP16 scales are not expressible (the runtime computes absmax/(2^(b−1)−1) scales)", s)
	}
	switch s.Granularity {
	case quant.PerToken:
		out.Strategy = "token"
	case quant.PerTensor:
		out.Strategy = "tensor"
	case quant.PerGroup:
		out.Strategy, out.GroupSize = "group", s.GroupSize
	default:
		return out, fmt.Errorf("%v: %s granularity is not an activation strategy", s, s.Granularity)
	}
	return out, nil
}

// formatFor chooses a layer's compression format by the library's own rule
// (llm-compressor's _get_quant_method): weight-only int4/int8 packs into
// int32, other weight-only layers keep one code per byte, and layers with
// quantized activations are int- or float-quantized by their weight type.
func formatFor(w Args, input *Args) string {
	switch {
	case input == nil && w.Type == typeInt && (w.NumBits == 4 || w.NumBits == 8):
		return FormatPack
	case input == nil:
		return FormatNaive
	case w.Type == typeFloat:
		return FormatFloat
	}
	return FormatInt
}

// group is one config group being built.
type group struct {
	weights Args
	input   *Args
	format  string
	targets []string
}

// buildConfig groups the layers by identical scheme and format and writes
// the quantization_config. One group targets the class "Linear" (with the
// FP layers in ignore), as llm-compressor writes it; several groups target
// their layers by exact name.
func buildConfig(layers []converted, ignore []string) (map[string]any, error) {
	var groups []*group
	key := func(w Args, in *Args, f string) string {
		b, _ := json.Marshal([]any{&w, in, f})
		return string(b)
	}
	index := map[string]*group{}
	for _, l := range layers {
		k := key(l.weights, l.input, l.format)
		g := index[k]
		if g == nil {
			g = &group{weights: l.weights, input: l.input, format: l.format}
			index[k] = g
			groups = append(groups, g)
		}
		g.targets = append(g.targets, l.name)
	}
	format := groups[0].format
	for _, g := range groups {
		if g.format != format {
			format = FormatMixed
		}
	}
	cg := map[string]any{}
	for i, g := range groups {
		targets := g.targets
		if len(groups) == 1 {
			targets = []string{targetLinear}
		}
		w := g.weights
		scheme := map[string]any{"targets": targets, "weights": &w, "input_activations": g.input, "output_activations": nil}
		if format == FormatMixed {
			scheme["format"] = g.format
		}
		cg[fmt.Sprintf("group_%d", i)] = scheme
	}
	if ignore == nil {
		ignore = []string{}
	}
	sort.Strings(ignore)
	return map[string]any{
		"quant_method":             QuantMethod,
		"quantization_status":      StatusCompr,
		"format":                   format,
		"config_groups":            cg,
		"ignore":                   ignore,
		"kv_cache_scheme":          nil,
		"global_compression_ratio": nil,
	}, nil
}

// narrowDType is the 16-bit dtype of the model (config.json "dtype", or
// "torch_dtype" before transformers 5), or "" for FP32 and unknown dtypes.
func narrowDType(cfg map[string]any) checkpoint.DType {
	d, _ := cfg["dtype"].(string)
	if d == "" {
		d, _ = cfg["torch_dtype"].(string)
	}
	switch strings.TrimPrefix(d, "torch.") {
	case "bfloat16":
		return checkpoint.BF16
	case "float16":
		return checkpoint.F16
	}
	return ""
}

// narrowTensor stores an FP32 tensor in the 16-bit dtype d if every value
// survives the conversion exactly (an embedding read from a bf16
// checkpoint, say); otherwise it is returned unchanged.
func narrowTensor(t checkpoint.WriteTensor, d checkpoint.DType) checkpoint.WriteTensor {
	n := len(t.Data) / 4
	out := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		bits := binary.LittleEndian.Uint32(t.Data[4*i:])
		f := math.Float32frombits(bits)
		var h uint16
		var back float32
		if d == checkpoint.BF16 {
			h = tensor.F32ToBF16(f)
			back = tensor.BF16ToF32(h)
		} else {
			h = tensor.F32ToF16(f)
			back = tensor.F16ToF32(h)
		}
		if math.Float32bits(back) != bits {
			return t
		}
		binary.LittleEndian.PutUint16(out[2*i:], h)
	}
	return checkpoint.WriteTensor{Name: t.Name, DType: d, Shape: t.Shape, Data: out}
}

// copySidecars copies the folder's other files (tokenizer, generation
// config) into dst; the weights and config.json are written separately.
func copySidecars(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || n == "config.json" || strings.HasSuffix(n, ".safetensors") || n == checkpoint.IndexFile {
			continue
		}
		if err := copyFile(filepath.Join(src, n), filepath.Join(dst, n)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("%s: %w", dst, err)
	}
	return out.Close()
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func u32Bytes(v []uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

func i64Bytes(v ...int64) []byte {
	var buf bytes.Buffer
	for _, x := range v {
		binary.Write(&buf, binary.LittleEndian, x)
	}
	return buf.Bytes()
}

// codeBytes stores codes one byte each: int8 two's complement, or FP8 bit
// patterns (already in 0…255).
func codeBytes(q []int32) []byte {
	b := make([]byte, len(q))
	for i, v := range q {
		b[i] = byte(v)
	}
	return b
}
