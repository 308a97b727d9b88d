package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"llmq/checkpoint"
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
		return nil, usagef("--model is required (a Hugging Face folder, an llmq quantized folder, a GGUF file or a llama2.c .bin file)")
	}
	if err := checkModelFolder(path); err != nil {
		return nil, err
	}
	start := time.Now()
	m, err := modelio.LoadWith(path, modelio.Options{Reference: reference})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "loaded %s (%s, %d layers, hidden %d, %.1fM parameters) in %v\n",
		path, m.Arch, m.Layers, m.Hidden, float64(m.NumParams())/1e6, time.Since(start).Round(time.Millisecond))
	warnUnused(path, m)
	return m, nil
}

// warnUnused says which checkpoint tensors the model did not use, as
// transformers does: weights of parts llmq does not know are not computed.
func warnUnused(path string, m *model.Model) {
	if n := len(m.Unused); n > 0 {
		list := m.Unused
		if n > 8 {
			list = append(list[:8:8], fmt.Sprintf("… (%d more)", n-8))
		}
		fmt.Fprintf(os.Stderr, "warning: %s: %d tensors of the checkpoint are not used by the %s model and are ignored: %s\n", path, n, m.Arch, strings.Join(list, ", "))
	}
}

// checkModelFolder compares a model folder's config.json with the layers
// its weights hold, before the loader allocates anything from the config
// (the config's hyper-parameters are checked as it is parsed).
func checkModelFolder(path string) error {
	cfgPath := filepath.Join(path, "config.json")
	if st, err := os.Stat(path); err != nil || !st.IsDir() || !fileExists(cfgPath) {
		return nil // not a folder with a config: the loader says what it is
	}
	cfg, err := checkpoint.ReadConfig(cfgPath)
	if err != nil {
		return err
	}
	store, err := checkpoint.OpenDir(path)
	if err != nil {
		return nil // the loader reports unreadable weights
	}
	defer store.Close()
	return checkpoint.CheckLayers(cfg, store.Names())
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

// sharedText resolves a default text file: the named WikiText-2 split
// (wiki.test.tokens, wiki.valid.tokens) of the shared reference folder,
// or "" when there is none. The defaults are resolved when a command runs,
// so its help states them once, in words.
func sharedText(name string) string {
	if d := shared.Dir(); d != "" {
		return filepath.Join(d, "data", "wikitext-2", name)
	}
	return ""
}

// sharedMissing says where the default data files were looked for.
func sharedMissing() string {
	if d := os.Getenv("LLMQ_SHARED"); d != "" {
		return fmt.Sprintf("the default is read from $LLMQ_SHARED (%s), which has no data/wikitext-2", d)
	}
	wd, _ := os.Getwd()
	return fmt.Sprintf("the default comes from the shared reference folder, found through $LLMQ_SHARED (not set) or as ../shared beside the llmq source tree holding the working folder (%s is in none)", wd)
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
