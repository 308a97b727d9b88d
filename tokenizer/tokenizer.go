// Package tokenizer turns text into model token ids and back, in pure Go.
//
// Two families are supported:
//
//   - SentencePiece BPE (Llama, Llama-2, Mistral): LoadSentencePiece reads a
//     tokenizer.model protobuf, LoadLlama2C the flat tokenizer.bin of
//     llama2.c. Encoding reproduces the reference sentencepiece library id
//     for id (tested on all of WikiText-2's test split).
//   - Byte-level BPE (GPT-2 style) from a Hugging Face tokenizer.json:
//     LoadByteLevelBPE.
//
// FromDir picks the right loader for a model folder laid out the way
// Hugging Face publishes them.
//
// Perplexity evaluation of a quantized model is only comparable with
// published numbers if the token stream is identical, which is why
// exactness (not approximate compatibility) is the goal here.
package tokenizer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Tokenizer is what the rest of llmq needs from a tokenizer.
type Tokenizer interface {
	// Encode tokenizes text without adding BOS or EOS.
	Encode(text string) []int
	// Decode is the inverse of Encode (special tokens decode to nothing).
	Decode(ids []int) string
	// BOS and EOS are the beginning/end-of-sequence ids, or -1 if the
	// vocabulary has none.
	BOS() int
	EOS() int
	// VocabSize is the number of ids.
	VocabSize() int
}

// FromDir loads the tokenizer of a model folder: tokenizer.model
// (SentencePiece) if present, else tokenizer.json (byte-level BPE).
// SentencePiece is preferred because Hugging Face's tokenizer.json for
// SentencePiece-based models is a conversion of it.
func FromDir(dir string) (Tokenizer, error) {
	// The loaders' concrete nil pointers must not leak into a non-nil
	// interface value, hence the explicit error checks.
	sp := filepath.Join(dir, "tokenizer.model")
	if _, err := os.Stat(sp); err == nil {
		t, err := LoadSentencePiece(sp)
		if err != nil {
			return nil, err
		}
		return t, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	js := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(js); err == nil {
		t, err := LoadByteLevelBPE(js)
		if err != nil {
			return nil, err
		}
		return t, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return nil, fmt.Errorf("no tokenizer found in %s (looked for tokenizer.model and tokenizer.json)", dir)
}
