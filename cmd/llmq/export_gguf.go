package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"llmq/gguf"
	"llmq/model"
	"llmq/modelio"
	"llmq/quant"
	"llmq/tokenizer"
)

// exportGGUF writes o.model as a GGUF file for llama.cpp under its family's
// llama.cpp architecture (modelio's GGUF name table: llama for Llama 1–3,
// Mistral, Mixtral and llama2.c; qwen2, qwen3, qwen3moe, gemma2, gemma3,
// phi3), from an HF folder, a llama2.c file, an llmq quantized folder —
// whose layers are dequantized and re-encoded — or a GGUF file, with the
// vocabulary of the folder's SentencePiece tokenizer.model. --type sets the
// type of the weight matrices (token_embd and output included); norms and
// MoE routers stay F32. Without --type: f16 for an FP model, q8_0 or q4_0
// for a quantized folder whose weights have 8 or at most 4 bits. The notes
// printed say where llama.cpp will compute something else than the model
// (e.g. Mistral's sliding window, which its llama architecture lacks).
func exportGGUF(o exportOptions) error {
	if err := checkOutputFile("--out", o.out, o.force, modelInputs(o.model)); err != nil {
		return err
	}
	if err := checkModelFolder(o.model); err != nil {
		return err
	}
	m, err := modelio.LoadWith(o.model, modelio.Options{Reference: true})
	if err != nil {
		return err
	}
	typ, err := ggufExportType(o.typ, m)
	if err != nil {
		return err
	}
	tok, err := ggufVocabulary(o.model)
	if err != nil {
		return err
	}
	name := strings.TrimSuffix(filepath.Base(filepath.Clean(o.model)), filepath.Ext(o.model))
	rep, err := modelio.ExportGGUF(m, tok, modelio.GGUFExport{Path: o.out, Type: typ, Name: name})
	if err != nil {
		return err
	}
	if n := requantNote(m, typ); n != "" {
		rep.Notes = append([]string{n}, rep.Notes...)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(os.Stderr, "note: %s\n", n)
	}
	var counts []string
	byType := map[string]int{}
	for t, n := range rep.Tensors {
		counts = append(counts, fmt.Sprintf("%d %v", n, t))
		byType[t.String()] = n
	}
	sort.Strings(counts)
	st, err := os.Stat(o.out)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s (llama.cpp architecture %s; %s tensors; %.1f MiB)\n", o.out, rep.Arch, strings.Join(counts, ", "), float64(st.Size())/(1<<20))
	if o.json {
		notes := rep.Notes
		if notes == nil {
			notes = []string{}
		}
		return json.NewEncoder(os.Stdout).Encode(map[string]any{
			"model": o.model, "format": "gguf", "out": o.out, "type": typ.String(), "bytes": st.Size(),
			"architecture": rep.Arch, "tensors": byType, "vocabulary": tok != nil, "notes": notes,
		})
	}
	return nil
}

// requantNote says what happens to a quantized folder's layers in the
// export: GGUF has no type for llmq's formats, so they are dequantized and
// encoded again in the GGUF type, which adds its own rounding error.
func requantNote(m *model.Model, typ gguf.Type) string {
	specs := map[string]int{}
	for _, b := range m.Blocks {
		for _, nl := range b.Linears() {
			if q, ok := (*nl.Linear).(*quant.QuantLinear); ok {
				specs[q.Weight().Spec.String()]++
			}
		}
	}
	if len(specs) == 0 {
		return ""
	}
	var parts []string
	for s, n := range specs {
		parts = append(parts, fmt.Sprintf("%d × %s", n, s))
	}
	sort.Strings(parts)
	return fmt.Sprintf("the folder's quantized linears (%s) are dequantized and re-encoded as %v: GGUF has no type for them, and the second rounding adds its own error (compare: llmq eval --model OUT.gguf --base the FP model)",
		strings.Join(parts, ", "), typ)
}

// ggufExportType resolves --type (see exportGGUF for the default).
func ggufExportType(s string, m *model.Model) (gguf.Type, error) {
	if s != "" {
		return gguf.ParseType(s)
	}
	bits := 0
	for _, b := range m.Blocks {
		for _, nl := range b.Linears() {
			if q, ok := (*nl.Linear).(*quant.QuantLinear); ok {
				bits = max(bits, q.Weight().Spec.Bits)
			}
		}
	}
	switch {
	case bits == 0:
		return gguf.F16, nil
	case bits <= 4:
		return gguf.Q4_0, nil
	case bits == 8:
		return gguf.Q8_0, nil
	}
	return 0, fmt.Errorf("no GGUF type matches %d-bit weights; pass --type", bits)
}

// ggufVocabulary finds the SentencePiece vocabulary to embed: the model's
// own when it is a GGUF file, else tokenizer.model (or llama2.c's
// tokenizer.bin) in its folder or beside the model file. None (nil) is allowed: llama.cpp then needs the
// vocabulary from elsewhere, and the export says so.
func ggufVocabulary(modelPath string) (*tokenizer.SentencePiece, error) {
	if modelio.IsGGUF(modelPath) {
		t, err := modelio.GGUFTokenizer(modelPath)
		if err != nil {
			return nil, nil
		}
		return t, nil
	}
	dir := modelPath
	if st, err := os.Stat(modelPath); err == nil && !st.IsDir() {
		dir = filepath.Dir(modelPath)
	}
	t, err := tokenizer.LoadSentencePiece(filepath.Join(dir, "tokenizer.model"))
	if errors.Is(err, fs.ErrNotExist) {
		// llama2.c's flat tokenizer.bin holds the same vocabulary.
		t, err = tokenizer.LoadLlama2C(filepath.Join(dir, "tokenizer.bin"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	return t, err
}
