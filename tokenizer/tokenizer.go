// Package tokenizer turns text into model token ids and back, in pure Go.
//
// Three formats are read:
//
//   - SentencePiece BPE (Llama, Llama-2, Mistral): LoadSentencePiece reads a
//     tokenizer.model protobuf, LoadLlama2C the flat tokenizer.bin of
//     llama2.c. Encoding reproduces the reference sentencepiece library id
//     for id (tested on all of WikiText-2's test split).
//   - Hugging Face tokenizer.json with a BPE model: LoadHuggingFace. This
//     covers byte-level BPE (GPT-2, Llama 3, Qwen2/3) and the converted
//     SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Gemma,
//     Phi-3), reproducing the tokenizers library id for id (tested against
//     it on tokenizers trained with each of those pipelines).
//
// FromDir picks the right loader for a model folder laid out the way
// Hugging Face publishes them, Load for a file given by path.
//
// Perplexity evaluation of a quantized model is only comparable with
// published numbers if the token stream is identical, which is why
// exactness (not approximate compatibility) is the goal here.
package tokenizer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// BOSAdder is implemented by tokenizers that know whether their reference
// implementation puts BOS in front of a text by default (transformers'
// encode with add_special_tokens=True, driven by tokenizer_config.json and
// the post-processor). Encode never adds it; callers that follow the model's
// own convention rather than a fixed protocol can ask this.
type BOSAdder interface {
	AddsBOS() bool
}

// FromDir loads the tokenizer of a model folder: tokenizer.model
// (SentencePiece) if present, else tokenizer.json. SentencePiece is
// preferred because Hugging Face's tokenizer.json for SentencePiece-based
// models is a conversion of it. When tokenizer.model cannot be read (a
// Unigram model, or the tiktoken file Llama 3 ships under that name) and a
// tokenizer.json loads, that is used; if neither loads, both errors are
// reported.
func FromDir(dir string) (Tokenizer, error) {
	// The loaders' concrete nil pointers must not leak into a non-nil
	// interface value, hence the explicit error checks.
	js := filepath.Join(dir, "tokenizer.json")
	sp := filepath.Join(dir, "tokenizer.model")
	if _, err := os.Stat(sp); err == nil {
		t, spErr := LoadSentencePiece(sp)
		if spErr == nil {
			return t, nil
		}
		if _, err := os.Stat(js); err != nil {
			return nil, spErr
		}
		h, err := LoadHuggingFace(js)
		if err != nil {
			return nil, fmt.Errorf("%w; and %w", spErr, err)
		}
		return h, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if _, err := os.Stat(js); err == nil {
		t, err := LoadHuggingFace(js)
		if err != nil {
			return nil, err
		}
		return t, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return nil, fmt.Errorf("no tokenizer found in %s (looked for tokenizer.model and tokenizer.json)", dir)
}

// Load reads a tokenizer from a file, or from a folder as FromDir does. The
// format is recognized by content and name: a JSON object is a
// tokenizer.json (its tokenizer_config.json, if beside it, is read too); a
// name ending in .bin is llama2.c's tokenizer.bin; a name ending in .model,
// or any other file that starts like a SentencePiece protobuf (field 1,
// length-delimited), is a SentencePiece model; anything else is tried as
// llama2.c's format.
func Load(path string) (Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return FromDir(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 64)
	n, _ := io.ReadFull(f, head)
	f.Close()
	head = head[:n]
	if trimmed := bytes.TrimLeft(head, " \t\r\n\ufeff"); len(trimmed) > 0 && trimmed[0] == '{' {
		return asTokenizer(LoadHuggingFace(path))
	}
	switch ext := strings.ToLower(filepath.Ext(path)); {
	case ext == ".json":
		return nil, fmt.Errorf("%s: not a tokenizer.json (no JSON object)", path)
	case ext == ".bin":
		return asTokenizer(LoadLlama2C(path))
	case ext == ".model", len(head) > 0 && head[0] == 0x0A:
		return asTokenizer(LoadSentencePiece(path))
	}
	return asTokenizer(LoadLlama2C(path))
}

// asTokenizer converts a loader's result to the interface without turning
// a nil pointer into a non-nil interface.
func asTokenizer[T Tokenizer](t T, err error) (Tokenizer, error) {
	if err != nil {
		return nil, err
	}
	return t, nil
}
