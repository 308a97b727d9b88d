package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"llmq/internal/shared"
	"llmq/model"
	"llmq/modelio"
	"llmq/tokenizer"
)

// reference, set by --reference, keeps quantized layers on the
// dequantize-then-FP32 path instead of the low-bit kernels.
var reference bool

// loadModel loads a model and reports how long it took.
func loadModel(path string) (*model.Model, error) {
	if path == "" {
		return nil, fmt.Errorf("--model is required (a Hugging Face folder or a llama2.c .bin file)")
	}
	start := time.Now()
	m, err := modelio.LoadWith(path, modelio.Options{Reference: reference})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "loaded %s (%s, %d layers, hidden %d, %.1fM parameters) in %v\n",
		path, m.Arch, m.Layers, m.Hidden, float64(m.NumParams())/1e6, time.Since(start).Round(time.Millisecond))
	return m, nil
}

// loadTokenizer finds the tokenizer of a model: in its folder
// (tokenizer.model or tokenizer.json), or tokenizer.bin beside a llama2.c
// checkpoint; --tokenizer overrides with a folder or a tokenizer.json,
// tokenizer.model or tokenizer.bin file (tokenizer.Load tells them apart).
func loadTokenizer(modelPath, override string) (tokenizer.Tokenizer, error) {
	if override != "" {
		return tokenizer.Load(override)
	}
	if modelio.IsGGUF(modelPath) {
		return sentencePiece(modelio.GGUFTokenizer(modelPath)) // the vocabulary travels in the file
	}
	dir := modelPath
	if st, err := os.Stat(modelPath); err == nil && !st.IsDir() {
		dir = filepath.Dir(modelPath)
		if bin := filepath.Join(dir, "tokenizer.bin"); fileExists(bin) {
			return sentencePiece(tokenizer.LoadLlama2C(bin))
		}
	}
	tok, err := tokenizer.FromDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w; pass --tokenizer FILE", err)
	}
	return tok, nil
}

// sentencePiece converts a loader's result to the interface without turning
// a nil pointer into a non-nil interface.
func sentencePiece(t *tokenizer.SentencePiece, err error) (tokenizer.Tokenizer, error) {
	if err != nil {
		return nil, err
	}
	return t, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// defaultData resolves the default evaluation text: WikiText-2's test split
// from the shared reference folder.
func defaultData() string {
	if d := shared.Dir(); d != "" {
		return filepath.Join(d, "data", "wikitext-2", "wiki.test.tokens")
	}
	return ""
}

// encodeWithBOS is the evaluation protocol's token stream: BOS, then the
// whole text encoded as one string.
func encodeWithBOS(tok tokenizer.Tokenizer, m *model.Model, text string) []int {
	bos := tok.BOS()
	if bos < 0 && m != nil {
		bos = m.BOS
	}
	ids := tok.Encode(text)
	if bos >= 0 {
		ids = append([]int{bos}, ids...)
	}
	return ids
}
