package main

import (
	"path/filepath"
	"slices"
	"testing"

	"llmq/internal/shared"
	"llmq/tokenizer"
)

// --tokenizer takes a tokenizer.json as well as a folder, tokenizer.model
// or tokenizer.bin.
func TestLoadTokenizerOverride(t *testing.T) {
	js := filepath.Join("..", "..", "tokenizer", "testdata", "hf", "llama3", "tokenizer.json")
	tok, err := loadTokenizer("", js)
	if err != nil {
		t.Fatal(err)
	}
	// The ids the tokenizers library gives (tokenizer/testdata/hf/llama3).
	if got := tok.Encode("Hello world"); !slices.Equal(got, []int{39, 454, 455, 3964}) {
		t.Errorf("Encode = %v", got)
	}
	if _, ok := tok.(*tokenizer.HuggingFace); !ok || tok.BOS() != 4200 {
		t.Errorf("loaded %T with BOS %d", tok, tok.BOS())
	}
	if tok, err := loadTokenizer("", filepath.Dir(js)); err != nil || tok.VocabSize() != 4211 {
		t.Errorf("folder: %v", err)
	}
	code, out := capture(t, "Hello world", "tokenize", "--tokenizer", js)
	if code != 0 || out != "4200 39 454 455 3964\n" {
		t.Errorf("llmq tokenize --tokenizer %s: exit %d, %q", js, code, out)
	}

	for _, name := range []string{"tokenizer.model", "tokenizer.bin"} {
		p := shared.Path(t, "tokenizers", "llama2", name)
		tok, err := loadTokenizer("", p)
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Encode("Hello world"); !slices.Equal(got, []int{15043, 3186}) {
			t.Errorf("%s: Encode = %v", name, got)
		}
	}
}
