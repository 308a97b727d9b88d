package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/gguf"
	"llmq/internal/shared"
	"llmq/modelio"
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

// TestExportGGUFFamiliesCLI: the new families export under their llama.cpp
// architectures from the command line and load back as models.
func TestExportGGUFFamiliesCLI(t *testing.T) {
	for _, c := range []struct{ fixture, arch string }{
		{"tiny-mixtral", "llama"}, {"tiny-qwen3moe", "qwen3moe"}, {"tiny-gemma3", "gemma3"}, {"tiny-phi3", "phi3"},
	} {
		out := filepath.Join(t.TempDir(), c.fixture+".gguf")
		code, _ := capture(t, "", "export", "--model", shared.Path(t, "models", c.fixture), "--format", "gguf", "--type", "q8_0", "--out", out)
		if code != 0 {
			t.Errorf("%s: export exit %d", c.fixture, code)
			continue
		}
		f, err := gguf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		arch, _ := f.Get("general.architecture")
		f.Close()
		if s, _ := arch.Str(); s != c.arch {
			t.Errorf("%s: general.architecture %q, want %q", c.fixture, s, c.arch)
		}
		if _, err := modelio.Load(out); err != nil {
			t.Errorf("%s: %v", c.fixture, err)
		}
	}
}
