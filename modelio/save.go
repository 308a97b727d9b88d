// Package modelio saves quantized models and loads every kind of model
// llmq reads: Hugging Face folders, llama2.c checkpoints and llmq's own
// quantized folders.
//
// A quantized folder is a Hugging Face folder whose config.json carries
//
//	"quantization_config": {"quant_method": "llmq", "format_version": 1, "recipe": …}
//
// and whose model.safetensors keeps every tensor under its checkpoint name,
// FP32 for what is not quantized (norms may have absorbed smoothing
// factors), and for each quantized linear NAME:
//
//	NAME.weight_packed     U8  [out × row bytes]  codes, two per byte below 5 bits (low nibble first)
//	NAME.weight_scale      F32 [param rows × param cols]
//	NAME.weight_zero_point U8  (asymmetric grids only)
//	NAME.bias              F32 (if any)
//	NAME.input_scale       F32 [1]  static activation scale (+ input_zero_point)
//	NAME.lorc_a, NAME.lorc_b  F32  LoRC factors (A: out × r, B: r × in)
//
// Norms hold the weight they apply: for Gemma's (1 + w) norms that is
// 1 + w, and "llmq.norms": "applied" says so.
// The safetensors metadata entry "llmq.layers" maps each non-FP linear to
// its kind and formats (quant.Spec strings), so loading needs no recipe.
// When a recipe quantized a head tied to the embedding, the embedding
// table is not stored: "llmq.embedding" names the head whose dequantized
// rows are the embeddings. "llmq.attention" maps block indices to their
// attention quantization (KV cache format, static scales, quantized BMMs),
// reinstalled on load.
// Tokenizer files are copied, making the folder self-contained.
package modelio

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"llmq/checkpoint"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
	"llmq/quant/methods"
)

// FormatVersion is written to quantization_config.format_version.
const FormatVersion = 1

// LayerInfo describes how one linear is stored.
type LayerInfo struct {
	Kind      string  `json:"kind"` // quant | lorc | llm.int8
	Out       int     `json:"out"`
	In        int     `json:"in"`
	Weights   string  `json:"weights,omitempty"`
	Acts      string  `json:"acts,omitempty"`
	Static    bool    `json:"static_acts,omitempty"`
	Rank      int     `json:"rank,omitempty"`
	LoRCBits  int     `json:"lorc_bits,omitempty"`
	Threshold float64 `json:"threshold,omitempty"`
	KeepFP    bool    `json:"keep_fp,omitempty"`
}

// Save writes the quantized model m, loaded from srcDir (whose config.json
// and tokenizer files are carried over), to the folder out. The folder is
// written under a temporary name and renamed into place, so an interrupted
// save leaves nothing; out must not exist yet. The output is deterministic:
// the same model gives the same bytes.
func Save(m *model.Model, srcDir, out string, recipe string) error {
	names, ok := m.TensorNames()
	if !ok {
		return fmt.Errorf("saving %s models is not supported yet (their checkpoints fuse or transpose block weights)", m.Arch)
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s already exists; choose a new output folder", out)
	}
	var ggufFiles map[string][]byte // config.json and tokenizer.model of a GGUF source
	var cfgRaw []byte
	var err error
	if IsGGUF(srcDir) {
		if ggufFiles, err = GGUFSourceFiles(srcDir); err != nil {
			return err
		}
		cfgRaw = ggufFiles["config.json"]
	} else if cfgRaw, err = os.ReadFile(filepath.Join(srcDir, "config.json")); err != nil {
		return fmt.Errorf("%s: a quantized model is saved beside its source config.json: %w", srcDir, err)
	}
	cfgOut, err := quantizedConfig(filepath.Join(srcDir, "config.json"), cfgRaw, recipe)
	if err != nil {
		return err
	}
	w := &tensorWriter{}
	layers := map[string]LayerInfo{}
	// A table tied to a quantized head is stored once, as the head.
	tiedHead := m.EmbedFromHead()
	if !tiedHead {
		w.f32(names.Embed, m.Embed, m.Vocab, m.Hidden)
	}
	if names.Pos != "" {
		w.f32(names.Pos, m.Pos, len(m.Pos)/m.Hidden, m.Hidden)
	}
	for l, b := range m.Blocks {
		for _, p := range b.Parts() {
			name := m.LinearName(l, p.Role)
			if p.Norm != nil {
				w.norm(name, *p.Norm)
				continue
			}
			info, err := w.linear(name, *p.Linear)
			if err != nil {
				return err
			}
			if info != nil {
				layers[name] = *info
			}
		}
	}
	if m.Norm != nil {
		w.norm(names.Norm, m.Norm)
	}
	if !m.HeadShared() {
		info, err := w.linear(names.Head, m.Head)
		if err != nil {
			return err
		}
		if info != nil {
			layers[names.Head] = *info
		}
	}
	if w.err != nil {
		return w.err
	}
	layerJSON, err := json.Marshal(layers) // map keys are sorted: deterministic
	if err != nil {
		return err
	}
	meta := map[string]string{"format": "pt", "llmq.format": fmt.Sprint(FormatVersion), "llmq.layers": string(layerJSON)}
	attn := map[string]nn.AttnQuant{}
	for i, b := range m.Blocks {
		if b.Attn.Quant != nil {
			attn[fmt.Sprint(i)] = *b.Attn.Quant
		} else if b.Attn.QuantK != nil || b.Attn.QuantQ != nil || b.Attn.QuantP != nil {
			return fmt.Errorf("block %d: attention quantization without a description cannot be saved", i)
		}
	}
	if w.offsetNorms {
		meta["llmq.norms"] = model.NormsApplied
	}
	if len(attn) > 0 {
		raw, err := json.Marshal(attn)
		if err != nil {
			return err
		}
		meta["llmq.attention"] = string(raw)
	}
	if tiedHead {
		if _, ok := layers[names.Head]; !ok {
			return fmt.Errorf("the embedding is tied to a head that is not quantized")
		}
		meta["llmq.embedding"] = names.Head // rows of the quantized head
	}
	return checkpoint.WriteDirAtomic(out, func(tmp string) error {
		return writeFolder(tmp, srcDir, w.tensors, meta, cfgOut, ggufFiles)
	})
}

// quantizedConfig is the config.json of a quantized folder: the source's
// (numbers as written) with llmq's quantization_config.
func quantizedConfig(path string, raw []byte, recipe string) ([]byte, error) {
	cfg, err := checkpoint.ConfigObject(path, raw)
	if err != nil {
		return nil, err
	}
	cfg["quantization_config"] = map[string]any{"quant_method": "llmq", "format_version": FormatVersion, "recipe": recipe}
	return json.MarshalIndent(cfg, "", "  ")
}

// writeFolder writes the files of a quantized folder into dir.
func writeFolder(tmp, srcDir string, tensors []checkpoint.WriteTensor, meta map[string]string, cfgOut []byte, ggufFiles map[string][]byte) error {
	if err := checkpoint.WriteSafetensors(filepath.Join(tmp, "model.safetensors"), tensors, meta); err != nil {
		return err
	}
	return writeSidecars(tmp, srcDir, cfgOut, ggufFiles)
}

// writeSidecars writes config.json and copies the tokenizer files (or
// writes those a GGUF source carried) into a quantized folder.
func writeSidecars(tmp, srcDir string, cfgOut []byte, ggufFiles map[string][]byte) error {
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), append(cfgOut, '\n'), 0o644); err != nil {
		return err
	}
	for name, data := range ggufFiles {
		if name != "config.json" {
			if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
				return err
			}
		}
	}
	for _, f := range []string{"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"} {
		if ggufFiles != nil {
			break
		}
		if err := copyFile(filepath.Join(srcDir, f), filepath.Join(tmp, f)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// tensorWriter collects tensors to write; the first error sticks.
type tensorWriter struct {
	tensors     []checkpoint.WriteTensor
	err         error
	offsetNorms bool // a (1 + w) norm was written as its applied weight
}

func (w *tensorWriter) add(name string, dt checkpoint.DType, shape []int, data []byte) {
	w.tensors = append(w.tensors, checkpoint.WriteTensor{Name: name, DType: dt, Shape: shape, Data: data})
}

func (w *tensorWriter) f32(name string, v []float32, shape ...int) {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	w.add(name, checkpoint.F32, shape, b)
}

func (w *tensorWriter) norm(module string, n nn.Norm) {
	switch v := n.(type) {
	case *nn.RMSNorm:
		// The weight applied, also for Gemma's (1 + w) norms: w = W − 1
		// would not give W back bit for bit after smoothing scaled it
		// (llmq.norms in the metadata says so; exports write w).
		w.f32(module+".weight", v.W, len(v.W))
		if v.Offset != 0 {
			w.offsetNorms = true
		}
	case *nn.LayerNorm:
		w.f32(module+".weight", v.W, len(v.W))
		w.f32(module+".bias", v.B, len(v.B))
	default:
		w.err = fmt.Errorf("%s: cannot save a %T", module, n)
	}
}

// linear writes one linear layer and returns how it is stored (nil: FP32).
func (w *tensorWriter) linear(name string, l nn.Linear) (*LayerInfo, error) {
	if lz, ok := l.(*model.LazyDense); ok { // still in the source checkpoint
		d, err := lz.Materialize()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		l = d
	}
	switch v := l.(type) {
	case *nn.Dense:
		w.f32(name+".weight", v.W, v.Out(), v.In())
		if v.B != nil {
			w.f32(name+".bias", v.B, len(v.B))
		}
		return nil, nil
	case *quant.QuantLinear:
		return w.quantLinear(name, v, "quant")
	case *quant.FastLinear:
		return w.quantLinear(name, v.Quant(), "quant")
	case *methods.LowRankLinear:
		base, ok := v.Base.(*quant.QuantLinear)
		if f, fast := v.Base.(*quant.FastLinear); fast {
			base, ok = f.Quant(), true
		}
		if !ok {
			return nil, fmt.Errorf("%s: LoRC over a %T cannot be saved", name, v.Base)
		}
		info, err := w.quantLinear(name, base, "lorc")
		if err != nil {
			return nil, err
		}
		info.Rank, info.LoRCBits = v.Rank, v.Bits
		w.f32(name+".lorc_a", v.A, base.Out(), v.Rank)
		w.f32(name+".lorc_b", v.B, v.Rank, base.In())
		return info, nil
	case *methods.Int8Linear:
		// With an FP32 copy for the outlier columns, that copy is stored
		// (the int8 codes are recomputed from it exactly); otherwise the
		// codes and scales are.
		info := &LayerInfo{Kind: "llm.int8", Out: v.Out(), In: v.In(), Weights: "int8-sym-channel", Acts: "int8-sym-token", Threshold: v.Threshold()}
		if fp := v.FPWeight(); fp != nil {
			w.f32(name+".weight", fp, v.Out(), v.In())
			info.KeepFP = true
		} else {
			codes, scales := v.Weight()
			b := make([]byte, len(codes))
			for i, c := range codes {
				b[i] = byte(c)
			}
			w.add(name+".weight", checkpoint.I8, []int{v.Out(), v.In()}, b)
			w.f32(name+".weight_scale", scales, v.Out(), 1)
		}
		if bias := v.Bias(); bias != nil {
			w.f32(name+".bias", bias, len(bias))
		}
		return info, nil
	}
	return nil, fmt.Errorf("%s: cannot save a %T layer", name, l)
}

func (w *tensorWriter) quantLinear(name string, q *quant.QuantLinear, kind string) (*LayerInfo, error) {
	t := q.Weight()
	info := &LayerInfo{Kind: kind, Out: t.Rows, In: t.Cols, Weights: t.Spec.String()}
	w.add(name+".weight_packed", checkpoint.U8, []int{t.Rows, t.RowBytes()}, append([]byte(nil), t.Data...))
	pr, pc := t.Spec.ParamShape(t.Rows, t.Cols)
	w.f32(name+".weight_scale", t.Scales, pr, pc)
	if t.Zeros != nil {
		w.add(name+".weight_zero_point", checkpoint.U8, []int{pr, pc}, append([]byte(nil), t.Zeros...))
	}
	if b := q.Bias(); b != nil {
		w.f32(name+".bias", b, len(b))
	}
	if a := q.ActSpec(); a != nil {
		info.Acts, info.Static = a.Spec.String(), a.Static
		if a.Static {
			w.f32(name+".input_scale", []float32{a.Params.Scale}, 1)
			zp := make([]byte, 4)
			binary.LittleEndian.PutUint32(zp, uint32(a.Params.Zero))
			w.add(name+".input_zero_point", checkpoint.I32, []int{1}, zp)
		}
	}
	return info, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return checkpoint.WriteFileAtomic(dst, func(w *bufio.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
