package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/internal/shared"
)

// capture runs the CLI with args and returns its exit code and stdout.
func capture(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	outF, _ := os.Create(filepath.Join(dir, "out"))
	inF, _ := os.Create(filepath.Join(dir, "in"))
	inF.WriteString(stdin)
	inF.Seek(0, 0)
	oldOut, oldIn, oldErr := os.Stdout, os.Stdin, os.Stderr
	os.Stdout, os.Stdin = outF, inF
	os.Stderr, _ = os.Create(filepath.Join(dir, "err"))
	code := run(args)
	os.Stdout, os.Stdin, os.Stderr = oldOut, oldIn, oldErr
	outF.Close()
	b, _ := os.ReadFile(filepath.Join(dir, "out"))
	return code, string(b)
}

func TestCLI(t *testing.T) {
	llama := shared.Path(t, "models", "wiki-llama-25m")
	cases := []struct {
		args  []string
		stdin string
		code  int
		want  string // substring of stdout
	}{
		{[]string{"--help"}, "", 0, "Commands:"},
		{[]string{"frobnicate"}, "", 2, ""},
		{[]string{"eval"}, "", 2, ""}, // no --model
		{[]string{"eval", "--model", "/nonexistent"}, "", 1, ""},
		{[]string{"eval", "--bogus-flag"}, "", 2, ""},
		{[]string{"tokenize", "--model", llama}, "Hello world", 0, "1 15043 3186\n"},
		{[]string{"tokenize", "--model", llama, "--no-bos"}, "Hello world", 0, "15043 3186\n"},
		{[]string{"eval", "--model", llama, "--limit", "1", "--seqlen", "64", "--json"}, "", 0, `"windows":1`},
		{[]string{"generate", "--model", llama, "--prompt", "The", "-n", "4"}, "", 0, "The"},
		{[]string{"bench", "--model", llama, "--one", "--prompt-len", "8", "--gen", "2", "--reps", "1"}, "", 0, `"decode_tokens_per_second"`},
		{[]string{"bench", "--model", llama, "--gen", "0"}, "", 2, ""},
	}
	for _, c := range cases {
		code, out := capture(t, c.stdin, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("llmq %s: exit %d, stdout %q; want exit %d and %q", strings.Join(c.args, " "), code, out, c.code, c.want)
		}
	}
}

// Quantizing twice with the same inputs and seed gives byte-identical files.
func TestQuantizeDeterministic(t *testing.T) {
	llama := shared.Path(t, "models", "wiki-llama-25m")
	dir := t.TempDir()
	var files [2][]byte
	for i := range files {
		out := filepath.Join(dir, fmt.Sprint(i))
		code, _ := capture(t, "", "quantize", "--model", llama, "--recipe", "gptq-w4a16", "--out", out,
			"--calib-samples", "2", "--calib-seqlen", "64", "--seed", "3")
		if code != 0 {
			t.Fatalf("quantize exited %d", code)
		}
		files[i], _ = os.ReadFile(filepath.Join(out, "model.safetensors"))
	}
	if len(files[0]) == 0 || !bytes.Equal(files[0], files[1]) {
		t.Error("two quantizations with the same seed differ")
	}
	code, _ := capture(t, "", "quantize", "--model", llama, "--recipe", "no-such-recipe", "--out", filepath.Join(dir, "x"))
	if code != 1 {
		t.Errorf("unknown recipe: exit %d, want 1", code)
	}
}
