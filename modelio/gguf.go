package modelio

// GGUF export and import for Llama-architecture models, in the layout
// llama.cpp's convert_hf_to_gguf.py writes and its "llama" architecture
// reads (metadata keys, tensor names and the q/k row permutation below), so
// a file written here runs in llama.cpp and a file llama.cpp's tools wrote
// loads here.
//
// Which tensors get which type (the same rule for export and for
// RoundLikeGGUF, so the two agree exactly):
//   - 1-D tensors (norm weights, biases) stay F32, the ggml convention;
//   - every 2-D matrix — the block linears, token_embd and output — gets the
//     requested type, as convert_hf_to_gguf.py --outtype q8_0 does; a matrix
//     whose rows are not a whole number of 32-element blocks falls back to
//     F16, as that converter does.

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"llmq/checkpoint"
	"llmq/gguf"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
	"llmq/quant/methods"
	"llmq/tokenizer"
)

// ggufLayerNames maps a Llama block's checkpoint module names (after
// "model.layers.N.") to llama.cpp's tensor names (after "blk.N.").
var ggufLayerNames = []struct{ hf, gguf string }{
	{"input_layernorm", "attn_norm"},
	{"self_attn.q_proj", "attn_q"},
	{"self_attn.k_proj", "attn_k"},
	{"self_attn.v_proj", "attn_v"},
	{"self_attn.o_proj", "attn_output"},
	{"post_attention_layernorm", "ffn_norm"},
	{"mlp.gate_proj", "ffn_gate"},
	{"mlp.up_proj", "ffn_up"},
	{"mlp.down_proj", "ffn_down"},
}

// ggufTensorType is the stored type of a tensor of the given ggml dims when
// the file's linear-weight type is typ (see the rule at the top of the file).
func ggufTensorType(typ gguf.Type, dims []uint64) gguf.Type {
	if len(dims) < 2 {
		return gguf.F32
	}
	if _, err := typ.RowBytes(int64(dims[0])); err != nil {
		return gguf.F16
	}
	return typ
}

// permuteQK reorders the rows of a q_proj or k_proj weight (or bias, cols =
// 1) between Hugging Face's RoPE layout and ggml's, per head of hd rows.
// Hugging Face rotates feature pairs (i, i+hd/2) ("rotate half"); ggml's
// rope (mode 0, the original Meta layout) rotates adjacent pairs (2i, 2i+1).
// convert_hf_to_gguf.py therefore stores row h·hd + 2i + j of the GGUF
// tensor from row h·hd + j·hd/2 + i of the Hugging Face one (its permute:
// reshape(heads, 2, hd/2, cols).swapaxes(1, 2)); toGGML false undoes it.
func permuteQK(w []float32, heads, cols int, toGGML bool) []float32 {
	out := make([]float32, len(w))
	hd := len(w) / cols / heads
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				g := h*hd + 2*i + j    // ggml row
				f := h*hd + j*hd/2 + i // Hugging Face row
				if toGGML {
					copy(out[g*cols:(g+1)*cols], w[f*cols:(f+1)*cols])
				} else {
					copy(out[f*cols:(f+1)*cols], w[g*cols:(g+1)*cols])
				}
			}
		}
	}
	return out
}

// GGUFExport configures ExportGGUF.
type GGUFExport struct {
	Path string    // output file
	Type gguf.Type // type of the 2-D weights: F32, F16, BF16, Q8_0 or Q4_0
	Name string    // general.name
}

// GGUFReport summarises an export.
type GGUFReport struct {
	Tensors map[gguf.Type]int // tensors written, by type
	Notes   []string          // what the file cannot carry, and fallbacks taken
}

// ggufTensor is one tensor to export: its GGUF name, ggml dims and a
// function producing its FP32 values in ggml order.
type ggufTensor struct {
	name   string
	dims   []uint64
	values func() ([]float32, error)
}

// ExportGGUF writes a Llama-architecture model as a GGUF file for
// llama.cpp, with the vocabulary of tok (nil: none, tokenizer.ggml.model =
// "no_vocab"). Quantized layers are dequantized and re-encoded in the
// requested type. The file is written to a temporary name and renamed when
// complete.
func ExportGGUF(m *model.Model, tok *tokenizer.SentencePiece, opt GGUFExport) (*GGUFReport, error) {
	rep := &GGUFReport{Tensors: map[gguf.Type]int{}}
	if !opt.Type.Supported() {
		return nil, fmt.Errorf("GGUF type %v cannot be written", opt.Type)
	}
	tensors, notes, err := ggufTensors(m)
	if err != nil {
		return nil, err
	}
	rep.Notes = append(rep.Notes, notes...)
	w := &gguf.Writer{}
	if err := ggufMetadata(w, m, tok, opt, rep); err != nil {
		return nil, err
	}
	quantized := false
	for _, t := range tensors {
		typ := ggufTensorType(opt.Type, t.dims)
		if typ != opt.Type && len(t.dims) == 2 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: rows of %d are not whole %v blocks, stored as %v", t.name, t.dims[0], opt.Type, typ))
		}
		quantized = quantized || typ.Quantized()
		rep.Tensors[typ]++
		w.AddTensor(gguf.WriterTensor{Name: t.name, Type: typ, Dims: t.dims, Data: func() ([]byte, error) {
			v, err := t.values()
			if err != nil {
				return nil, err
			}
			return gguf.Encode(typ, v)
		}})
	}
	if quantized {
		w.Set("general.quantization_version", gguf.Uint32(gguf.QuantizationVersion))
	}
	if err := w.WriteFile(opt.Path); err != nil {
		return nil, err
	}
	return rep, nil
}

// ggufLlama checks that m is something llama.cpp's "llama" architecture
// computes: RMSNorm pre-norm blocks with a SwiGLU MLP and full rotary
// embeddings.
func ggufLlama(m *model.Model) error {
	switch m.Arch {
	case "llama", "mistral", "llama2c":
	default:
		return fmt.Errorf("GGUF export supports the Llama architecture (llama, mistral, llama2c); this model is %s", m.Arch)
	}
	if m.Rope == nil || m.Rope.RotDim != m.HeadDim {
		return fmt.Errorf("GGUF export needs full rotary embeddings")
	}
	if t := m.Rope.Scaling.Type; t != "" && t != "default" {
		return fmt.Errorf("GGUF export writes unscaled RoPE only; this model's rope_type is %q", t)
	}
	if _, ok := m.Norm.(*nn.RMSNorm); !ok {
		return fmt.Errorf("GGUF export needs an RMSNorm final norm")
	}
	for i, b := range m.Blocks {
		_, ok1 := b.Norm1.(*nn.RMSNorm)
		_, ok2 := b.Norm2.(*nn.RMSNorm)
		if !ok1 || !ok2 || b.Gate == nil || !b.ActIsSiLU || b.ParallelResidual || b.PostNorm {
			return fmt.Errorf("block %d is not a Llama block (RMSNorm, SwiGLU, sequential residual)", i)
		}
	}
	return nil
}

// linearWeights returns a layer's FP32 weight [out×in].
func linearWeights(l nn.Linear) ([]float32, error) {
	switch v := l.(type) {
	case *nn.Dense:
		return v.W, nil
	case *model.LazyDense:
		d, err := v.Materialize()
		if err != nil {
			return nil, err
		}
		return d.W, nil
	case *quant.FastLinear:
		return v.Quant().Weight().Dequantize(), nil
	case *quant.QuantLinear:
		return v.Weight().Dequantize(), nil
	case *methods.Int8Linear:
		return dequantized(v), nil
	}
	return nil, fmt.Errorf("a %T layer cannot be exported to GGUF (FP and weight-quantized layers can)", l)
}

// linearBias returns a layer's bias (nil when it has none) without
// dequantizing its weight.
func linearBias(l nn.Linear) ([]float32, error) {
	switch v := l.(type) {
	case *nn.Dense:
		return v.B, nil
	case *model.LazyDense:
		d, err := v.Materialize()
		if err != nil {
			return nil, err
		}
		return d.B, nil
	case *quant.FastLinear:
		return v.Quant().Bias(), nil
	case *quant.QuantLinear:
		return v.Bias(), nil
	case *methods.Int8Linear:
		return v.Bias(), nil
	}
	return nil, fmt.Errorf("a %T layer cannot be exported to GGUF (FP and weight-quantized layers can)", l)
}

// ggufTensors lists m's tensors under llama.cpp's names, in its order.
func ggufTensors(m *model.Model) ([]ggufTensor, []string, error) {
	if err := ggufLlama(m); err != nil {
		return nil, nil, err
	}
	var notes []string
	H := uint64(m.Hidden)
	fixed := func(v []float32) func() ([]float32, error) {
		return func() ([]float32, error) { return v, nil }
	}
	embed := fixed(m.Embed)
	tiedQ := m.EmbedFromHead() // the table is a quantized head's weight
	if tiedQ {
		head := m.Head
		embed = func() ([]float32, error) { return linearWeights(head) }
	}
	ts := []ggufTensor{{"token_embd.weight", []uint64{H, uint64(m.Vocab)}, embed}}
	actQuant := false
	for i, b := range m.Blocks {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			ggufTensor{p + "attn_norm.weight", []uint64{H}, fixed(b.Norm1.(*nn.RMSNorm).W)},
			ggufTensor{p + "ffn_norm.weight", []uint64{H}, fixed(b.Norm2.(*nn.RMSNorm).W)})
		for _, l := range []struct {
			name  string
			lin   nn.Linear
			heads int // > 0: q/k rows to permute into ggml's RoPE layout
		}{
			{"attn_q", b.Q, m.Heads}, {"attn_k", b.K, m.KVHeads}, {"attn_v", b.V, 0}, {"attn_output", b.O, 0},
			{"ffn_gate", b.Gate, 0}, {"ffn_up", b.Up, 0}, {"ffn_down", b.Down, 0},
		} {
			lin, heads := l.lin, l.heads
			if m.Rope.Interleaved {
				heads = 0 // llama2.c weights already use ggml's adjacent pairs
			}
			if ql, ok := lin.(*quant.QuantLinear); ok && ql.ActSpec() != nil {
				actQuant = true
			}
			out, in := uint64(lin.Out()), uint64(lin.In())
			ts = append(ts, ggufTensor{p + l.name + ".weight", []uint64{in, out}, func() ([]float32, error) {
				w, err := linearWeights(lin)
				if err != nil || heads == 0 {
					return w, err
				}
				return permuteQK(w, heads, int(in), true), nil
			}})
			if bias, err := linearBias(lin); err != nil {
				return nil, nil, fmt.Errorf("%s%s: %w", p, l.name, err)
			} else if bias != nil {
				if heads > 0 {
					bias = permuteQK(bias, heads, 1, true)
				}
				ts = append(ts, ggufTensor{p + l.name + ".bias", []uint64{out}, fixed(bias)})
			}
		}
	}
	ts = append(ts, ggufTensor{"output_norm.weight", []uint64{H}, fixed(m.Norm.(*nn.RMSNorm).W)})
	// A head tied to the embedding is left out: llama.cpp then uses
	// token_embd for the output, as convert_hf_to_gguf.py arranges.
	if !m.HeadTied() {
		head := m.Head
		if bias, err := linearBias(head); err != nil {
			return nil, nil, fmt.Errorf("output: %w", err)
		} else if bias != nil {
			return nil, nil, fmt.Errorf("output: llama.cpp's llama architecture has no output bias")
		}
		ts = append(ts, ggufTensor{"output.weight", []uint64{H, uint64(m.Vocab)}, func() ([]float32, error) {
			return linearWeights(head)
		}})
	}
	if actQuant {
		notes = append(notes, "activation quantization is not carried by GGUF: llama.cpp quantizes activations its own way")
	}
	return ts, notes, nil
}

// ggufMetadata sets the metadata llama.cpp's llama architecture reads.
func ggufMetadata(w *gguf.Writer, m *model.Model, tok *tokenizer.SentencePiece, opt GGUFExport, rep *GGUFReport) error {
	u32 := func(k string, v int) { w.Set(k, gguf.Uint32(uint32(v))) }
	name := opt.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(opt.Path), filepath.Ext(opt.Path))
	}
	ft, _ := gguf.FileType(opt.Type)
	w.Set("general.architecture", gguf.String("llama"))
	w.Set("general.name", gguf.String(name))
	w.Set("general.file_type", gguf.Uint32(ft))
	u32("llama.vocab_size", m.Vocab)
	u32("llama.context_length", m.MaxPos)
	u32("llama.embedding_length", m.Hidden)
	u32("llama.block_count", m.Layers)
	u32("llama.feed_forward_length", m.Intermediate)
	u32("llama.rope.dimension_count", m.HeadDim)
	u32("llama.attention.head_count", m.Heads)
	u32("llama.attention.head_count_kv", m.KVHeads)
	if m.HeadDim*m.Heads != m.Hidden {
		u32("llama.attention.key_length", m.HeadDim)
		u32("llama.attention.value_length", m.HeadDim)
	}
	w.Set("llama.attention.layer_norm_rms_epsilon", gguf.Float32(m.Norm.(*nn.RMSNorm).Eps))
	w.Set("llama.rope.freq_base", gguf.Float32(float32(m.Rope.Theta)))
	if m.Rope.RoundFreq != nil {
		rep.Notes = append(rep.Notes, "RoPE frequencies are rounded to the checkpoint dtype here (as transformers does); llama.cpp computes them in FP32")
	}
	if tok == nil {
		rep.Notes = append(rep.Notes, "no SentencePiece tokenizer.model: the file has no vocabulary (tokenizer.ggml.model = no_vocab)")
	}
	return setGGUFVocab(w, tok, m.Vocab)
}

// setGGUFVocab sets the tokenizer.ggml.* metadata of a SentencePiece
// vocabulary for a model of vocab embeddings, as convert_hf_to_gguf.py
// writes it for Llama (tokenizer.ggml.model "llama"); nil: "no_vocab".
func setGGUFVocab(w *gguf.Writer, tok *tokenizer.SentencePiece, vocab int) error {
	u32 := func(k string, v int) { w.Set(k, gguf.Uint32(uint32(v))) }
	if tok == nil {
		w.Set("tokenizer.ggml.model", gguf.String("no_vocab"))
		return nil
	}
	v := tok.Vocab()
	if len(v.Pieces) > vocab {
		return fmt.Errorf("the tokenizer has %d pieces but the model only %d embeddings", len(v.Pieces), vocab)
	}
	types := make([]int32, 0, vocab)
	for _, t := range v.Types {
		types = append(types, int32(t)) // SentencePiece's piece types are GGUF's token types
	}
	// Embedding rows beyond the tokenizer get placeholder pieces, as
	// convert_hf_to_gguf.py pads them ("[PAD<id>]", unused, score -1000).
	for id := len(v.Pieces); id < vocab; id++ {
		v.Pieces = append(v.Pieces, fmt.Sprintf("[PAD%d]", id))
		v.Scores = append(v.Scores, -1000)
		types = append(types, int32(tokenizer.PieceUnused))
	}
	w.Set("tokenizer.ggml.model", gguf.String("llama"))
	w.Set("tokenizer.ggml.tokens", gguf.MustArray(v.Pieces))
	w.Set("tokenizer.ggml.scores", gguf.MustArray(v.Scores))
	w.Set("tokenizer.ggml.token_type", gguf.MustArray(types))
	if v.BOS >= 0 {
		u32("tokenizer.ggml.bos_token_id", v.BOS)
	}
	if v.EOS >= 0 {
		u32("tokenizer.ggml.eos_token_id", v.EOS)
	}
	u32("tokenizer.ggml.unknown_token_id", tok.UNK())
	w.Set("tokenizer.ggml.add_bos_token", gguf.Bool(v.BOS >= 0))
	w.Set("tokenizer.ggml.add_eos_token", gguf.Bool(false))
	w.Set("tokenizer.ggml.add_space_prefix", gguf.Bool(v.AddDummyPrefix))
	w.Set("tokenizer.ggml.remove_extra_whitespaces", gguf.Bool(v.RemoveExtraWhitespaces))
	return nil
}

// RoundLikeGGUF replaces m's weights in place by what they become in a GGUF
// file of type typ written by ExportGGUF and read back — the same tensors,
// the same per-tensor types, the same block rounding — without writing a
// file. It is how llmq evaluates "the same quantization in-process" next to
// an exported file. Only FP32 (nn.Dense) layers are supported.
func RoundLikeGGUF(m *model.Model, typ gguf.Type) error {
	if err := ggufLlama(m); err != nil {
		return err
	}
	round := func(what string, w []float32, rows, cols int) error {
		t := ggufTensorType(typ, []uint64{uint64(cols), uint64(rows)})
		if t == gguf.F32 {
			return nil
		}
		r, err := gguf.Round(t, w)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		copy(w, r) // in place: a tied head shares the embedding's memory
		return nil
	}
	if m.Embed == nil {
		return fmt.Errorf("the embedding is a quantized head's weight: round the FP model")
	}
	if err := round("token_embd", m.Embed, m.Vocab, m.Hidden); err != nil {
		return err
	}
	layers := map[string]nn.Linear{}
	for i, b := range m.Blocks {
		for _, nl := range b.Linears() {
			layers[m.LinearName(i, nl.Role)] = *nl.Linear
		}
	}
	if !m.HeadShared() {
		layers["output"] = m.Head
	}
	for name, l := range layers {
		d, ok := l.(*nn.Dense)
		if !ok {
			return fmt.Errorf("%s: a %T layer; RoundLikeGGUF needs FP32 layers", name, l)
		}
		if err := round(name, d.W, d.Out(), d.In()); err != nil {
			return err
		}
	}
	return nil
}

// IsGGUF reports whether path names a GGUF file (by extension or magic).
func IsGGUF(path string) bool {
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return false
	}
	return strings.EqualFold(filepath.Ext(path), ".gguf") || gguf.IsGGUF(path)
}

// ggufHyper are the hyper-parameters read from a GGUF file's metadata.
type ggufHyper struct {
	vocab, hidden, layers, ff, heads, kvHeads, headDim, ctx int
	eps, theta                                              float64
	tied                                                    bool
	bos, eos                                                int
}

// readGGUFHyper reads and checks the llama.* metadata.
func readGGUFHyper(f *gguf.File) (*ggufHyper, error) {
	arch, _ := getString(f, "general.architecture")
	if arch != "llama" {
		return nil, fmt.Errorf("%s: general.architecture is %q; llmq imports the llama architecture", f.Path, arch)
	}
	h := &ggufHyper{bos: -1, eos: -1}
	for _, k := range []struct {
		dst      *int
		key      string
		required bool
	}{
		{&h.hidden, "llama.embedding_length", true},
		{&h.layers, "llama.block_count", true},
		{&h.ff, "llama.feed_forward_length", true},
		{&h.heads, "llama.attention.head_count", true},
		{&h.kvHeads, "llama.attention.head_count_kv", false},
		{&h.ctx, "llama.context_length", false},
	} {
		v, ok, err := getUint(f, k.key)
		switch {
		case err != nil:
			return nil, err
		case !ok && k.required:
			return nil, fmt.Errorf("%s: metadata %s is missing", f.Path, k.key)
		}
		*k.dst = v
	}
	if h.heads == 0 || h.hidden%h.heads != 0 {
		return nil, fmt.Errorf("%s: embedding length %d is not a multiple of %d heads", f.Path, h.hidden, h.heads)
	}
	if h.kvHeads == 0 {
		h.kvHeads = h.heads
	}
	if h.ctx == 0 {
		h.ctx = 2048
	}
	h.headDim = h.hidden / h.heads
	if v, ok, err := getUint(f, "llama.attention.key_length"); err != nil {
		return nil, err
	} else if ok {
		h.headDim = v
	}
	if v, ok, err := getUint(f, "llama.attention.value_length"); err != nil {
		return nil, err
	} else if ok && v != h.headDim {
		return nil, fmt.Errorf("%s: key length %d and value length %d differ (not supported)", f.Path, h.headDim, v)
	}
	if v, ok, err := getUint(f, "llama.rope.dimension_count"); err != nil {
		return nil, err
	} else if ok && v != h.headDim {
		return nil, fmt.Errorf("%s: rope dimension count %d differs from the head size %d (partial rotary is not supported)", f.Path, v, h.headDim)
	}
	if t, ok := getString(f, "llama.rope.scaling.type"); ok && t != "none" {
		return nil, fmt.Errorf("%s: RoPE scaling %q is not supported", f.Path, t)
	}
	if v, ok, _ := getUint(f, "llama.expert_count"); ok && v > 0 {
		return nil, fmt.Errorf("%s: mixture-of-experts models (%d experts) are not supported", f.Path, v)
	}
	var ok bool
	var err error
	if h.eps, ok, err = getFloat(f, "llama.attention.layer_norm_rms_epsilon"); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%s: metadata llama.attention.layer_norm_rms_epsilon is missing", f.Path)
	}
	if h.theta, ok, err = getFloat(f, "llama.rope.freq_base"); err != nil {
		return nil, err
	} else if !ok {
		h.theta = 10000 // llama.cpp's default
	}
	emb, found := f.Tensor("token_embd.weight")
	if !found || len(emb.Dims) != 2 || emb.Dims[0] != uint64(h.hidden) {
		return nil, fmt.Errorf("%s: token_embd.weight must be a [%d, vocab] tensor", f.Path, h.hidden)
	}
	h.vocab = int(emb.Dims[1])
	_, hasOutput := f.Tensor("output.weight")
	h.tied = !hasOutput
	if model, _ := getString(f, "tokenizer.ggml.model"); model == "llama" {
		h.bos, h.eos = 1, 2 // llama.cpp's defaults for SentencePiece vocabularies
	}
	for _, s := range []struct {
		dst *int
		key string
	}{{&h.bos, "tokenizer.ggml.bos_token_id"}, {&h.eos, "tokenizer.ggml.eos_token_id"}} {
		if v, ok, err := getUint(f, s.key); err != nil {
			return nil, err
		} else if ok {
			*s.dst = v
		}
	}
	return h, nil
}

func getString(f *gguf.File, key string) (string, bool) {
	v, ok := f.Get(key)
	if !ok {
		return "", false
	}
	return v.Str()
}

// getUint reads an integer key of any integer type (writers differ).
func getUint(f *gguf.File, key string) (int, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false, nil
	}
	n, isInt := v.Uint()
	if !isInt || n > 1<<31 {
		return 0, false, fmt.Errorf("%s: metadata %s must be a non-negative integer below 2^31, is a %v", f.Path, key, v.Type)
	}
	return int(n), true, nil
}

func getFloat(f *gguf.File, key string) (float64, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false, nil
	}
	x, isFloat := v.Float()
	if !isFloat || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, false, fmt.Errorf("%s: metadata %s must be a finite float, is a %v", f.Path, key, v.Type)
	}
	return x, true, nil
}

// ggufStore serves a GGUF file's tensors to the Llama family binder under
// Hugging Face names, dequantized to FP32 and with q/k rows put back into
// the rotate-half layout (the inverse of permuteQK), like qstore serves a
// quantized folder.
type ggufStore struct {
	f     *gguf.File
	names map[string]string // Hugging Face name → GGUF name
	heads map[string]int    // Hugging Face name → heads to unpermute (q/k)
	list  []string
}

func newGGUFStore(f *gguf.File, h *ggufHyper) (*ggufStore, error) {
	s := &ggufStore{f: f, names: map[string]string{}, heads: map[string]int{}}
	add := func(hf, g string, heads int, required bool, dims ...uint64) error {
		t, ok := f.Tensor(g)
		if !ok {
			if required {
				return fmt.Errorf("%s: missing tensor %s", f.Path, g)
			}
			return nil
		}
		if len(t.Dims) != len(dims) || t.Dims[0] != dims[0] || (len(dims) == 2 && t.Dims[1] != dims[1]) {
			return fmt.Errorf("%s: tensor %s has dims %v, want %v", f.Path, g, t.Dims, dims)
		}
		s.names[hf], s.heads[hf] = g, heads
		s.list = append(s.list, hf)
		return nil
	}
	H, F, V := uint64(h.hidden), uint64(h.ff), uint64(h.vocab)
	qw, kw := uint64(h.heads*h.headDim), uint64(h.kvHeads*h.headDim)
	if err := add("model.embed_tokens.weight", "token_embd.weight", 0, true, H, V); err != nil {
		return nil, err
	}
	if err := add("model.norm.weight", "output_norm.weight", 0, true, H); err != nil {
		return nil, err
	}
	if err := add("lm_head.weight", "output.weight", 0, false, H, V); err != nil {
		return nil, err
	}
	for l := 0; l < h.layers; l++ {
		for _, n := range ggufLayerNames {
			hf := fmt.Sprintf("model.layers.%d.%s", l, n.hf)
			g := fmt.Sprintf("blk.%d.%s", l, n.gguf)
			var in, out uint64
			heads := 0
			switch n.gguf {
			case "attn_norm", "ffn_norm":
				if err := add(hf+".weight", g+".weight", 0, true, H); err != nil {
					return nil, err
				}
				continue
			case "attn_q":
				in, out, heads = H, qw, h.heads
			case "attn_k":
				in, out, heads = H, kw, h.kvHeads
			case "attn_v":
				in, out = H, kw
			case "attn_output":
				in, out = qw, H
			case "ffn_gate", "ffn_up":
				in, out = H, F
			case "ffn_down":
				in, out = F, H
			}
			if err := add(hf+".weight", g+".weight", heads, true, in, out); err != nil {
				return nil, err
			}
			if err := add(hf+".bias", g+".bias", heads, false, out); err != nil {
				return nil, err
			}
		}
	}
	if len(s.list) != len(f.Tensors) {
		used := map[string]bool{}
		for _, g := range s.names {
			used[g] = true
		}
		for _, t := range f.Tensors {
			if !used[t.Name] {
				return nil, fmt.Errorf("%s: tensor %s is not part of a llama model llmq runs (e.g. RoPE scaling factors are not supported)", f.Path, t.Name)
			}
		}
	}
	return s, nil
}

func (s *ggufStore) Names() []string { return s.list }
func (s *ggufStore) Close() error    { return nil }

func (s *ggufStore) Info(name string) (checkpoint.TensorInfo, bool) {
	g, ok := s.names[name]
	if !ok {
		return checkpoint.TensorInfo{}, false
	}
	t, _ := s.f.Tensor(g)
	shape := make([]int, len(t.Dims)) // ggml's dims innermost first: reverse
	for i, d := range t.Dims {
		shape[len(t.Dims)-1-i] = int(d)
	}
	return checkpoint.TensorInfo{Name: name, DType: checkpoint.F32, Shape: shape, End: 4 * t.Elements()}, true
}

func (s *ggufStore) Float32(name string) ([]float32, checkpoint.TensorInfo, error) {
	info, ok := s.Info(name)
	if !ok {
		return nil, info, fmt.Errorf("%s: no tensor for %s", s.f.Path, name)
	}
	v, t, err := s.f.Float32(s.names[name])
	if err != nil {
		return nil, info, err
	}
	if heads := s.heads[name]; heads > 0 {
		v = permuteQK(v, heads, int(t.Elements())/int(t.Dims[len(t.Dims)-1]), false)
	}
	return v, info, nil
}

// loadGGUF reads a llama-architecture GGUF file into an FP32 model (every
// tensor dequantized).
func loadGGUF(path string) (*model.Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := readGGUFHyper(f)
	if err != nil {
		return nil, err
	}
	store, err := newGGUFStore(f, h)
	if err != nil {
		return nil, err
	}
	raw, err := ggufConfigJSON(h)
	if err != nil {
		return nil, err
	}
	c, err := checkpoint.ParseConfig(path, raw)
	if err != nil {
		return nil, err
	}
	m, err := model.LoadFrom(c, store)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ggufConfigJSON is the Hugging Face config.json the metadata describes —
// what the Llama family binder reads. RoPE frequencies are computed in FP32
// as llama.cpp does (dtype float32: no rounding to a storage dtype).
func ggufConfigJSON(h *ggufHyper) ([]byte, error) {
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"vocab_size": h.vocab, "hidden_size": h.hidden, "num_hidden_layers": h.layers,
		"num_attention_heads": h.heads, "num_key_value_heads": h.kvHeads, "head_dim": h.headDim,
		"intermediate_size": h.ff, "max_position_embeddings": h.ctx, "rms_norm_eps": h.eps,
		"rope_theta": h.theta, "tie_word_embeddings": h.tied, "hidden_act": "silu", "dtype": "float32",
	}
	if h.bos >= 0 {
		cfg["bos_token_id"] = h.bos
	}
	if h.eos >= 0 {
		cfg["eos_token_id"] = h.eos
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// GGUFSourceFiles returns what a model folder would hold beside the weights
// of the model in a GGUF file: config.json (the Hugging Face config its
// metadata describes) and, when it carries a SentencePiece vocabulary,
// tokenizer.model — keyed by file name. Saving a model loaded from a GGUF
// file as an llmq folder takes these in place of its source folder's files.
func GGUFSourceFiles(path string) (map[string][]byte, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	h, err := readGGUFHyper(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	cfg, err := ggufConfigJSON(h)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"config.json": cfg}
	if tok, err := GGUFTokenizer(path); err == nil {
		files["tokenizer.model"] = tok.MarshalModel()
	}
	return files, nil
}

// GGUFTokenizer builds the SentencePiece tokenizer a GGUF file's
// tokenizer.ggml.* metadata describes (tokenizer.ggml.model "llama").
func GGUFTokenizer(path string) (*tokenizer.SentencePiece, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kind, _ := getString(f, "tokenizer.ggml.model")
	switch kind {
	case "llama":
	case "", "no_vocab", "none":
		return nil, fmt.Errorf("%s: the file carries no vocabulary; pass --tokenizer", path)
	default:
		return nil, fmt.Errorf("%s: tokenizer.ggml.model %q is not supported (llmq reads SentencePiece \"llama\" vocabularies); pass --tokenizer", path, kind)
	}
	tv, ok := f.Get("tokenizer.ggml.tokens")
	pieces, isStrings := tv.Any().([]string)
	if !ok || !isStrings {
		return nil, fmt.Errorf("%s: tokenizer.ggml.tokens must be an array of strings", path)
	}
	n := len(pieces)
	v := tokenizer.Vocab{Pieces: pieces, Scores: make([]float32, n), Types: make([]tokenizer.PieceType, n),
		BOS: -1, EOS: -1, AddDummyPrefix: true}
	if sv, ok := f.Get("tokenizer.ggml.scores"); ok {
		s, isF32 := sv.Any().([]float32)
		if !isF32 || len(s) != n {
			return nil, fmt.Errorf("%s: tokenizer.ggml.scores must be %d float32 values", path, n)
		}
		v.Scores = s
	}
	unk := 0
	if u, ok, err := getUint(f, "tokenizer.ggml.unknown_token_id"); err != nil {
		return nil, err
	} else if ok {
		unk = u
	}
	if tt, ok := f.Get("tokenizer.ggml.token_type"); ok {
		if tt.Len() != n {
			return nil, fmt.Errorf("%s: tokenizer.ggml.token_type has %d entries for %d tokens", path, tt.Len(), n)
		}
		for i := range n {
			t, ok := arrayInt(tt, i)
			if !ok {
				return nil, fmt.Errorf("%s: tokenizer.ggml.token_type must be an integer array", path)
			}
			v.Types[i] = tokenizer.PieceType(t)
		}
	} else {
		for i := range v.Types {
			v.Types[i] = tokenizer.PieceNormal
		}
		if unk < n {
			v.Types[unk] = tokenizer.PieceUnknown
		}
	}
	v.BOS, v.EOS = 1, 2 // llama.cpp's defaults for SentencePiece vocabularies
	for _, s := range []struct {
		dst *int
		key string
	}{{&v.BOS, "tokenizer.ggml.bos_token_id"}, {&v.EOS, "tokenizer.ggml.eos_token_id"}} {
		if id, ok, err := getUint(f, s.key); err != nil {
			return nil, err
		} else if ok {
			*s.dst = id
		}
	}
	if b, ok := f.Get("tokenizer.ggml.add_space_prefix"); ok {
		v.AddDummyPrefix, _ = b.Bool()
	}
	if b, ok := f.Get("tokenizer.ggml.remove_extra_whitespaces"); ok {
		v.RemoveExtraWhitespaces, _ = b.Bool()
	}
	t, err := tokenizer.FromVocab(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// arrayInt reads element i of an integer array of any width.
func arrayInt(v gguf.Value, i int) (int64, bool) {
	switch s := v.Any().(type) {
	case []int32:
		return int64(s[i]), true
	case []uint32:
		return int64(s[i]), true
	case []int8:
		return int64(s[i]), true
	case []uint8:
		return int64(s[i]), true
	case []int16:
		return int64(s[i]), true
	case []uint16:
		return int64(s[i]), true
	case []int64:
		return s[i], true
	case []uint64:
		return int64(s[i]), s[i] <= math.MaxInt64
	}
	return 0, false
}
