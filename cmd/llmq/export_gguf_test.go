package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/internal/shared"
)

// TestExportGGUFCLI: a GGUF export of wiki-llama-25m is a model the other
// commands run, with the tokenizer it carries; bad requests fail cleanly.
func TestExportGGUFCLI(t *testing.T) {
	llama := shared.Path(t, "models", "wiki-llama-25m")
	dir := t.TempDir()
	out := filepath.Join(dir, "wiki-q8_0.gguf")
	cases := []struct {
		args  []string
		stdin string
		code  int
		want  string // substring of stdout
	}{
		{[]string{"export", "--model", llama, "--format", "gguf", "--type", "q8_0", "--out", out}, "", 0, ""},
		{[]string{"tokenize", "--model", out}, "Hello world", 0, "1 15043 3186\n"},
		{[]string{"eval", "--model", out, "--limit", "1", "--seqlen", "64", "--json"}, "", 0, `"windows":1`},
		{[]string{"generate", "--model", out, "--prompt", "The", "-n", "4"}, "", 0, "The"},
		{[]string{"export", "--model", llama, "--format", "gguf", "--type", "q4_k", "--out", filepath.Join(dir, "x.gguf")}, "", 1, ""},
		{[]string{"export", "--model", shared.Path(t, "models", "tiny-gpt2"), "--format", "gguf", "--type", "f16", "--out", filepath.Join(dir, "y.gguf")}, "", 1, ""},
	}
	for _, c := range cases {
		code, stdout := capture(t, c.stdin, c.args...)
		if code != c.code || !strings.Contains(stdout, c.want) {
			t.Errorf("llmq %s: exit %d, stdout %q; want exit %d and %q", strings.Join(c.args, " "), code, stdout, c.code, c.want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("output folder holds %d entries, want only the exported file (failed exports leave nothing)", len(entries))
	}
}
