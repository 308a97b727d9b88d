// Command dumplogits writes the logits llmq computes for a fixed token
// sequence to a safetensors file, so that another implementation (the
// transformers check in scripts/verify_compressed_tensors.py) can be
// compared with llmq's own forward pass:
//
//	input_ids      I64 [T]
//	logits         F32 [T, vocab]            one forward pass over all T tokens
//	hidden_states  F32 [layers+1, T, hidden] Hugging Face's output_hidden_states
//	                                         convention (last entry after the final norm)
//
// The ids are BOS followed by the tokenization of --text (the model
// folder's tokenizer), or --ids given explicitly. Quantized folders run on
// the low-bit kernels unless --reference keeps the dequantize-then-FP32
// path; --weights-only drops the activation quantization of every layer
// (reference path), so that W8A8 weights can be compared with an FP
// activation path elsewhere. --record-linears also stores, for every
// linear layer of the blocks, the input it received and the output it
// produced in that pass (linear_in.NAME [T, in], linear_out.NAME [T, out]),
// so that another implementation can be checked layer by layer on exactly
// llmq's inputs. --no-hidden leaves hidden_states out (a smaller file
// where nothing reads them).
//
// --float64 runs the same model through a separate, plain float64 forward
// pass (f64.go; Llama architecture only) on the quantized weights
// dequantized exactly and with llmq's activation quantization done in
// float64, and writes
//
//	input_ids      I64 [T]
//	logits         F64 [T, vocab]
//	rope_inv_freq  F64 [head_dim/2]  the rotary frequencies it used
//
// with metadata path "float64" (no hidden states). In float32, W8A8's
// dynamic int8 rounding of activations makes two correct implementations
// differ by ~1e-2 end to end (see f64.go); in float64, with values within
// 1e-9 of a rounding tie taken as that exact tie, they agree to the noise,
// so the other side can be barred tightly. The logits stay F64 so
// that the comparison is not limited by float32 storage.
//
// Usage (from the repository root):
//
//	go run ./tools/dumplogits --model DIR --out logits.safetensors [--reference | --weights-only | --float64] [--record-linears] [--no-hidden] [--text T | --ids 1,2,3]
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"llmq/checkpoint"
	"llmq/model"
	"llmq/modelio"
	"llmq/nn"
	"llmq/quant"
	"llmq/tokenizer"
)

const defaultText = "The kernel documentation describes how to configure, build and install a new kernel, and how the memory allocator returns pages to the system when they are no longer needed."

func main() {
	modelDir := flag.String("model", "", "model folder (Hugging Face or llmq quantized)")
	out := flag.String("out", "", "safetensors file to write")
	text := flag.String("text", defaultText, "text to tokenize (BOS is prepended)")
	idsFlag := flag.String("ids", "", "comma-separated token ids (instead of --text)")
	ref := flag.Bool("reference", false, "run quantized layers on the dequantize-then-FP32 reference path")
	weightsOnly := flag.Bool("weights-only", false, "drop activation quantization (reference path)")
	record := flag.Bool("record-linears", false, "also store every block linear's input and output")
	f64 := flag.Bool("float64", false, "run a plain float64 forward pass (Llama architecture) and write F64 logits")
	noHidden := flag.Bool("no-hidden", false, "do not store the hidden states")
	flag.Parse()
	if err := run(*modelDir, *out, *text, *idsFlag, *ref, *weightsOnly, *record, *f64, *noHidden); err != nil {
		fmt.Fprintln(os.Stderr, "dumplogits:", err)
		os.Exit(1)
	}
}

func run(modelDir, out, text, idsFlag string, ref, weightsOnly, record, f64, noHidden bool) error {
	if modelDir == "" || out == "" {
		return fmt.Errorf("--model and --out are required")
	}
	if f64 && (weightsOnly || record) {
		return fmt.Errorf("--float64 does not combine with --weights-only or --record-linears")
	}
	// The float64 pass reads quantized layers as quant.QuantLinear, the
	// reference path's type.
	m, err := modelio.LoadWith(modelDir, modelio.Options{Reference: ref || weightsOnly || f64})
	if err != nil {
		return err
	}
	if weightsOnly {
		if err := dropActQuant(m); err != nil {
			return err
		}
	}
	var ids []int
	if idsFlag != "" {
		for _, s := range strings.Split(idsFlag, ",") {
			id, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("--ids: %v", err)
			}
			ids = append(ids, id)
		}
	} else {
		tok, err := tokenizer.FromDir(modelDir)
		if err != nil {
			return err
		}
		bos := tok.BOS()
		if bos < 0 {
			bos = m.BOS
		}
		if bos >= 0 {
			ids = append(ids, bos)
		}
		ids = append(ids, tok.Encode(text)...)
	}
	if f64 {
		return writeFloat64(m, modelDir, out, ids)
	}
	var recs []*recorder
	if record {
		for l, b := range m.Blocks {
			for _, nl := range b.Linears() {
				r := &recorder{Linear: *nl.Linear, name: m.LinearName(l, nl.Role)}
				*nl.Linear = r
				recs = append(recs, r)
			}
		}
	}
	var hidden []byte
	var opt model.Options
	if !noHidden {
		opt.Hidden = func(_ int, h []float32) { hidden = append(hidden, f32Bytes(h)...) }
	}
	logits, err := m.Forward(m.NewState(len(ids)), ids, opt)
	if err != nil {
		return err
	}
	mode := "kernels"
	switch {
	case weightsOnly:
		mode = "weights-only"
	case ref:
		mode = "reference"
	}
	tensors := []checkpoint.WriteTensor{
		{Name: "input_ids", DType: checkpoint.I64, Shape: []int{len(ids)}, Data: idBytes(ids)},
		{Name: "logits", DType: checkpoint.F32, Shape: []int{len(ids), m.Vocab}, Data: f32Bytes(logits)},
	}
	if !noHidden {
		tensors = append(tensors, checkpoint.WriteTensor{Name: "hidden_states", DType: checkpoint.F32, Shape: []int{len(m.Blocks) + 1, len(ids), m.Hidden}, Data: hidden})
	}
	for _, r := range recs {
		tensors = append(tensors,
			checkpoint.WriteTensor{Name: "linear_in." + r.name, DType: checkpoint.F32, Shape: []int{r.rows, r.In()}, Data: f32Bytes(r.x)},
			checkpoint.WriteTensor{Name: "linear_out." + r.name, DType: checkpoint.F32, Shape: []int{r.rows, r.Out()}, Data: f32Bytes(r.y)})
	}
	return checkpoint.WriteSafetensors(out, tensors, map[string]string{"model": filepath.Base(filepath.Clean(modelDir)), "path": mode})
}

// writeFloat64 runs the float64 pass (f64.go) on ids and writes its logits.
func writeFloat64(m *model.Model, modelDir, out string, ids []int) error {
	// The norm epsilon as the config states it; a llama2.c file has no
	// config, and its float32 epsilon is widened.
	var eps float64
	if cfgPath := filepath.Join(modelDir, "config.json"); fileExists(cfgPath) {
		var err error
		if eps, err = configEps(cfgPath); err != nil {
			return err
		}
	}
	f, err := newF64Model(m, eps)
	if err != nil {
		return err
	}
	logits, err := f.forward(ids)
	if err != nil {
		return err
	}
	return checkpoint.WriteSafetensors(out, []checkpoint.WriteTensor{
		{Name: "input_ids", DType: checkpoint.I64, Shape: []int{len(ids)}, Data: idBytes(ids)},
		{Name: "logits", DType: checkpoint.F64, Shape: []int{len(ids), m.Vocab}, Data: f64Bytes(logits)},
		{Name: "rope_inv_freq", DType: checkpoint.F64, Shape: []int{len(f.invFreq)}, Data: f64Bytes(f.invFreq)},
	}, map[string]string{"model": filepath.Base(filepath.Clean(modelDir)), "path": "float64"})
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func idBytes(ids []int) []byte {
	b := make([]byte, 8*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(id))
	}
	return b
}

// recorder is a linear layer that keeps a copy of its (single) call's
// input and output.
type recorder struct {
	nn.Linear
	name string
	rows int
	x, y []float32
}

func (r *recorder) Forward(y, x []float32, rows int) {
	r.Linear.Forward(y, x, rows)
	r.rows = rows
	r.x = append([]float32(nil), x[:rows*r.In()]...)
	r.y = append([]float32(nil), y[:rows*r.Out()]...)
}

// dropActQuant replaces every quantized linear that quantizes its inputs by
// the same quantized weight without activation quantization.
func dropActQuant(m *model.Model) error {
	slots := []*nn.Linear{&m.Head}
	for _, b := range m.Blocks {
		for _, nl := range b.Linears() {
			slots = append(slots, nl.Linear)
		}
	}
	for _, slot := range slots {
		ql, ok := (*slot).(*quant.QuantLinear)
		if !ok || ql.ActSpec() == nil {
			continue
		}
		w, err := quant.NewQuantLinear(ql.Weight(), ql.Bias(), nil)
		if err != nil {
			return err
		}
		*slot = w
	}
	return nil
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}
