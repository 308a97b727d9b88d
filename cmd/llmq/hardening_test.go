package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/internal/shared"
	"llmq/kernels"
)

// runCLI runs the CLI in this process with args and returns its exit code,
// stdout and stderr.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	outF, _ := os.Create(filepath.Join(dir, "out"))
	errF, _ := os.Create(filepath.Join(dir, "err"))
	inF, _ := os.Create(filepath.Join(dir, "in"))
	inF.WriteString(stdin)
	inF.Seek(0, 0)
	oldOut, oldIn, oldErr := os.Stdout, os.Stdin, os.Stderr
	os.Stdout, os.Stdin, os.Stderr = outF, inF, errF
	code = run(args)
	os.Stdout, os.Stdin, os.Stderr = oldOut, oldIn, oldErr
	outF.Close()
	errF.Close()
	inF.Close()
	o, _ := os.ReadFile(filepath.Join(dir, "out"))
	e, _ := os.ReadFile(filepath.Join(dir, "err"))
	return code, string(o), string(e)
}

// The cases of the issue that used to panic, and every other bad number:
// one line on stderr, exit status 2, nothing loaded.
func TestBadNumbersAreUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"eval", "--model", "/nonexistent", "--seqlen", "0"}, "--seqlen 0: must be at least 2"},
		{[]string{"eval", "--model", "/nonexistent", "--seqlen", "-5"}, "--seqlen -5: must be at least 2"},
		{[]string{"eval", "--model", "/nonexistent", "--limit", "0"}, "--limit 0: must be at least 1"},
		{[]string{"generate", "--model", "/nonexistent", "--prompt", "hi", "-n", "-5"}, "-n -5: must be at least 0"},
		{[]string{"generate", "--model", "/nonexistent", "--temperature", "-1"}, "--temperature -1"},
		{[]string{"generate", "--model", "/nonexistent", "--temperature", "NaN"}, "not a number"},
		{[]string{"generate", "--model", "/nonexistent", "--top-p", "1.5"}, "--top-p 1.5: must be at most 1"},
		{[]string{"generate", "--model", "/nonexistent", "--top-p", "0"}, "--top-p 0: must be a positive number"},
		{[]string{"quantize", "--model", "/nonexistent", "--calib-samples", "0"}, "--calib-samples 0"},
		{[]string{"quantize", "--model", "/nonexistent", "--calib-seqlen", "-1"}, "--calib-seqlen -1"},
		{[]string{"bench", "--model", "/nonexistent", "--reps", "0"}, "--reps 0"},
		{[]string{"inspect", "--model", "/nonexistent", "--outlier-ratio", "-Inf"}, "--outlier-ratio -Inf"},
		{[]string{"tokenize", "--threads", "0"}, "--threads 0: must be at least 1"},
		{[]string{"eval", "--threads", "1000000000"}, "--threads 1000000000: must be at most"},
		{[]string{"eval", "--seqlen", "abc"}, `invalid value "abc" for flag -seqlen`},
		{[]string{"eval", "--bogus-flag"}, "flag provided but not defined: -bogus-flag"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"eval"}, "--model is required"},
		{[]string{"eval", "--model", "x", "--recipe", "w8a8", "--base", "y"}, "not both"},
		{[]string{"export", "--model", "x", "--out", "y", "--format", "zip"}, `unknown --format "zip"`},
	}
	for _, c := range cases {
		code, stdout, stderr := runCLI(t, "", c.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, c.want) || len(lines) != 1 {
			t.Errorf("llmq %s: exit %d, stdout %q, stderr %q; want exit %d and one line with %q",
				strings.Join(c.args, " "), code, stdout, stderr, exitUsage, c.want)
		}
	}
}

// Every numeric flag of every command has a rule, and each rule refuses -5
// (or NaN) before the command runs.
func TestEveryNumericFlagValidated(t *testing.T) {
	for _, c := range commands {
		fs, _, _ := newFlagSet(c)
		rules := flagRules[fs]
		delete(flagRules, fs)
		fs.VisitAll(func(f *flag.Flag) {
			if _, isNum := numericValue(f); !isNum || f.Name == "seed" {
				return // a seed is any unsigned number
			}
			if len(rules[f.Name]) == 0 {
				t.Errorf("llmq %s --%s: numeric flag without a rule", c.name, f.Name)
				return
			}
			bad := "-5"
			if _, ok := f.Value.(flag.Getter).Get().(float64); ok {
				bad = "NaN"
			}
			code, _, stderr := runCLI(t, "", c.name, "--"+f.Name, bad)
			if code != exitUsage || !strings.Contains(stderr, f.Name) {
				t.Errorf("llmq %s --%s %s: exit %d, stderr %q", c.name, f.Name, bad, code, stderr)
			}
		})
	}
}

// A panic anywhere in a command (on a ParallelFor worker too) prints a
// bug-report line and exits with a status of its own.
func TestPanicIsReportedAsBug(t *testing.T) {
	commands = append(commands,
		&command{name: "crash", flags: func(*flag.FlagSet) {}, run: func(*flag.FlagSet, []string) error {
			var a []int
			_ = a[len(os.Args)+3]
			return nil
		}},
		&command{name: "crash-worker", flags: func(*flag.FlagSet) {}, run: func(*flag.FlagSet, []string) error {
			kernels.ParallelFor(1<<20, func(lo, hi int) {
				if lo > 0 {
					panic("worker failed")
				}
			})
			return nil
		}})
	defer func() { commands = commands[:len(commands)-2] }()
	for _, args := range [][]string{{"crash"}, {"crash-worker", "--threads", "4"}} {
		code, _, stderr := runCLI(t, "", args...)
		if code != exitBug || code == exitUsage || code == exitError ||
			!strings.Contains(stderr, "internal error") || !strings.Contains(stderr, "this is a bug in llmq") {
			t.Errorf("llmq %s: exit %d, stderr %q; want exit %d and a bug report", args[0], code, stderr, exitBug)
		}
	}
	if _, _, stderr := runCLI(t, "", "crash-worker", "--threads", "4"); !strings.Contains(stderr, "worker failed") {
		t.Errorf("the worker's panic value is not reported: %q", stderr)
	}
}

// Help goes to stdout with exit status 0, in every spelling; the top-level
// help documents the exit statuses and LLMQ_SHARED.
func TestHelp(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{"help", c.name}, {c.name, "--help"}, {c.name, "-h"}} {
			code, stdout, stderr := runCLI(t, "", args...)
			if code != 0 || !strings.HasPrefix(stdout, "Usage: llmq "+c.name) || !strings.Contains(stdout, "-threads") || stderr != "" {
				t.Errorf("llmq %s: exit %d, stdout %.60q, stderr %q", strings.Join(args, " "), code, stdout, stderr)
			}
		}
	}
	code, stdout, _ := runCLI(t, "", "--help")
	for _, want := range []string{"Commands:", "Exit status:", "LLMQ_SHARED", "70", "130"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("llmq --help: exit %d, no %q in %q", code, want, stdout)
		}
	}
	if code, _, _ := runCLI(t, "", "help", "nosuch"); code != exitUsage {
		t.Errorf("llmq help nosuch: exit %d", code)
	}
	_, stdout, _ = runCLI(t, "", "help", "quantize")
	if first, _, _ := strings.Cut(stdout, "\n"); !strings.Contains(first, "--out") {
		t.Errorf("quantize usage line %q does not name --out", first)
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		code, stdout, _ := runCLI(t, "", arg)
		if code != 0 || !strings.HasPrefix(stdout, "llmq ") || !strings.Contains(stdout, "commit") || !strings.Contains(stdout, "go1.") {
			t.Errorf("llmq %s: exit %d, %q", arg, code, stdout)
		}
	}
}

// Flags after a positional prompt are parsed, not swallowed into it.
func TestGenerateFlagsAfterPrompt(t *testing.T) {
	llama := shared.Path(t, "models", "wiki-llama-25m")
	code, stdout, stderr := runCLI(t, "", "generate", "--model", llama, "The", "kernel", "-n", "2", "--json")
	var rep struct {
		Prompt    string `json:"prompt"`
		Generated int    `json:"generated_tokens"`
		IDs       []int  `json:"ids"`
		Text      string `json:"text"`
		Stop      string `json:"stop"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if rep.Prompt != "The kernel" || rep.Generated != 2 || len(rep.IDs) != 2 || rep.Stop != "length" || rep.Text == "" {
		t.Errorf("report %+v", rep)
	}
	// After "--" everything is the prompt.
	code, stdout, _ = runCLI(t, "", "generate", "--model", llama, "-n", "1", "--json", "--", "a", "-n", "5")
	if code != 0 || !strings.Contains(stdout, `"prompt":"a -n 5"`) || !strings.Contains(stdout, `"generated_tokens":1`) {
		t.Errorf("after --: exit %d, %q", code, stdout)
	}
	if code, stdout, _ := runCLI(t, "", "generate", "--model", llama, "--prompt", "x", "-n", "0", "--json"); code != 0 || !strings.Contains(stdout, `"generated_tokens":0`) {
		t.Errorf("-n 0: exit %d, %q", code, stdout)
	}
}

// tokenize --json holds the ids the plain output prints.
func TestTokenizeJSON(t *testing.T) {
	llama := shared.Path(t, "models", "wiki-llama-25m")
	code, stdout, _ := runCLI(t, "Hello world", "tokenize", "--model", llama, "--json")
	var rep struct {
		IDs    []int    `json:"ids"`
		Tokens int      `json:"tokens"`
		Pieces []string `json:"pieces"`
		BOS    bool     `json:"bos"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("exit %d, %q", code, stdout)
	}
	if len(rep.IDs) != 3 || rep.IDs[1] != 15043 || rep.Tokens != 3 || !rep.BOS || len(rep.Pieces) != 3 || rep.Pieces[0] != "<s>" || rep.Pieces[1] != "▁Hello" {
		t.Errorf("report %+v", rep)
	}
}

// quantize --json reports calibration only when it ran; eval checks the
// recipe against the model before anything else.
func TestQuantizeJSONAndEarlyRecipeCheck(t *testing.T) {
	tiny := shared.Path(t, "models", "tiny-llama")
	llama := shared.Path(t, "models", "wiki-llama-25m")
	out := filepath.Join(t.TempDir(), "q")
	code, stdout, stderr := runCLI(t, "", "quantize", "--model", llama, "--recipe", "w8a8", "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep["calibrated"] != false || rep["calib_samples"] != nil || rep["out"] != out {
		t.Errorf("quantize without calibration reports %v", rep)
	}
	// tiny-llama has no tokenizer: the group-size error must come first.
	code, _, stderr = runCLI(t, "", "eval", "--model", tiny, "--recipe", "gptq-w4a16", "--data", tiny+"/config.json")
	if code != 1 || !strings.Contains(stderr, "group_size 128") || strings.Contains(stderr, "tokenizer") {
		t.Errorf("eval --recipe on a model it does not fit: exit %d, %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "quantize", "--model", tiny, "--recipe", writeRecipe(t, "targets: [Conv2d]\n      scheme: W8A8"), "--out", filepath.Join(t.TempDir(), "x"))
	if code != 1 || !strings.Contains(stderr, "match no linear layer") || !strings.Contains(stderr, "model.layers.0.self_attn.q_proj") {
		t.Errorf("quantize with targets matching nothing: exit %d, %q", code, stderr)
	}
}

func writeRecipe(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "r.yaml")
	os.WriteFile(p, []byte("quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      "+body+"\n"), 0o644)
	return p
}

// export --format gguf refuses to destroy a file: an existing output
// unless --force, never an input file, and says so for a folder.
func TestExportGGUFOutputSafety(t *testing.T) {
	tiny := shared.Path(t, "models", "tiny-llama")
	// A model folder of links to the shared files, which must stay intact.
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	os.Mkdir(model, 0o755)
	for _, f := range []string{"config.json", "model.safetensors"} {
		if err := os.Symlink(filepath.Join(tiny, f), filepath.Join(model, f)); err != nil {
			t.Fatal(err)
		}
	}
	existing := filepath.Join(dir, "old.gguf")
	os.WriteFile(existing, []byte("keep"), 0o644)
	os.Mkdir(filepath.Join(dir, "folder"), 0o755)
	export := func(out string, extra ...string) (int, string, string) {
		return runCLI(t, "", append([]string{"export", "--model", model, "--format", "gguf", "--type", "f32", "--out", out}, extra...)...)
	}
	cases := []struct {
		out   string
		extra []string
		want  string
	}{
		{existing, nil, "already exists; pass --force"},
		{filepath.Join(model, "model.safetensors"), []string{"--force"}, "an input of this command"},
		{filepath.Join(model, "config.json"), []string{"--force"}, "an input of this command"},
		{filepath.Join(dir, "folder"), []string{"--force"}, "is a folder"},
		{filepath.Join(dir, "nowhere", "x.gguf"), nil, "does not exist"},
	}
	for _, c := range cases {
		code, _, stderr := export(c.out, c.extra...)
		if code != exitError || !strings.Contains(stderr, c.want) {
			t.Errorf("--out %s %v: exit %d, %q; want %q", c.out, c.extra, code, stderr, c.want)
		}
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep" {
		t.Error("the existing output was overwritten without --force")
	}
	if st, err := os.Lstat(filepath.Join(model, "model.safetensors")); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Error("the model's own model.safetensors was replaced")
	}
	code, stdout, stderr := export(existing, "--force", "--json")
	var rep struct {
		Out     string         `json:"out"`
		Type    string         `json:"type"`
		Bytes   int64          `json:"bytes"`
		Tensors map[string]int `json:"tensors"`
		Vocab   bool           `json:"vocabulary"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("--force: exit %d, %q, %s", code, stdout, stderr)
	}
	st, _ := os.Stat(existing)
	if rep.Out != existing || rep.Type != "F32" || rep.Bytes != st.Size() || rep.Tensors["F32"] == 0 || rep.Vocab {
		t.Errorf("report %+v (file %d bytes)", rep, st.Size())
	}
	if code, _, stderr := runCLI(t, "", "export", "--model", model, "--format", "ct", "--out", filepath.Join(dir, "ct"), "--force"); code != exitUsage {
		t.Errorf("--force with compressed-tensors: exit %d, %q", code, stderr)
	}
}

// A config.json that contradicts its weights, or holds a value that would
// compute NaN or allocate without bound, is refused before loading.
func TestBadConfigRefused(t *testing.T) {
	tiny := shared.Path(t, "models", "tiny-llama")
	raw, err := os.ReadFile(filepath.Join(tiny, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field string
		value any
		want  string
	}{
		{"num_hidden_layers", 2, "layers 2…2 would be left out"},
		{"num_hidden_layers", 1e9, "num_hidden_layers"},
		{"num_hidden_layers", 5, "only 3 layers"},
		{"rms_norm_eps", -1, "rms_norm_eps"},
		{"max_position_embeddings", 1e12, "max_position_embeddings"},
	}
	for _, c := range cases {
		dir := filepath.Join(t.TempDir(), "m")
		os.Mkdir(dir, 0o755)
		os.Symlink(filepath.Join(tiny, "model.safetensors"), filepath.Join(dir, "model.safetensors"))
		changed := map[string]any{}
		for k, v := range cfg {
			changed[k] = v
		}
		changed[c.field] = c.value
		b, _ := json.Marshal(changed)
		os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
		for _, args := range [][]string{
			{"eval", "--model", dir, "--data", filepath.Join(tiny, "config.json")},
			{"quantize", "--model", dir, "--recipe", "w8a8", "--out", filepath.Join(t.TempDir(), "q")},
			{"export", "--model", dir, "--format", "gguf", "--out", filepath.Join(t.TempDir(), "x.gguf")},
		} {
			code, _, stderr := runCLI(t, "", args...)
			if code != exitError || !strings.Contains(stderr, c.want) {
				t.Errorf("%s %v, llmq %s: exit %d, %q; want %q", c.field, c.value, args[0], code, stderr, c.want)
			}
		}
	}
	// A window longer than the model's context is a warning.
	_, _, stderr := runCLI(t, "", "eval", "--model", tiny, "--seqlen", "100000")
	if !strings.Contains(stderr, "warning: --seqlen 100000 exceeds the model's context") {
		t.Errorf("no context warning: %q", stderr)
	}
}

// Each default is stated once in the help, and a missing shared folder is
// explained: where the default was looked for.
func TestDefaultsOnceAndExplained(t *testing.T) {
	for _, c := range commands {
		_, stdout, _ := runCLI(t, "", "help", c.name)
		for _, line := range strings.Split(stdout, "\n") {
			if strings.Contains(line, "(default:") && strings.Contains(line, "(default ") {
				t.Errorf("llmq help %s: two defaults in %q", c.name, strings.TrimSpace(line))
			}
		}
	}
	llama := shared.Path(t, "models", "wiki-llama-25m")
	t.Setenv("LLMQ_SHARED", "")
	t.Chdir(t.TempDir())
	code, _, stderr := runCLI(t, "", "eval", "--model", llama)
	if code != exitUsage || !strings.Contains(stderr, "LLMQ_SHARED") || !strings.Contains(stderr, "../shared") {
		t.Errorf("eval outside the tree: exit %d, %q", code, stderr)
	}
}

// --tokenizer FILE is parsed by its content: a tokenizer.json under any
// name is not read as SentencePiece.
func TestTokenizerByContent(t *testing.T) {
	// GPT-2's byte-to-character table: printable bytes stand for
	// themselves, the others for U+0100 onwards.
	vocab := map[string]int{}
	n := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE {
			vocab[string(rune(b))] = b
		} else {
			vocab[string(rune(256+n))] = b
			n++
		}
	}
	doc := map[string]any{
		"version": "1.0", "added_tokens": []any{}, "normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{}, "unk_token": nil},
		"decoder":       map[string]any{"type": "ByteLevel"},
	}
	raw, _ := json.Marshal(doc)
	path := filepath.Join(t.TempDir(), "my-tokenizer")
	os.WriteFile(path, append([]byte("\n  "), raw...), 0o644)
	code, stdout, stderr := runCLI(t, "ab", "tokenize", "--tokenizer", path, "--no-bos")
	if code != 0 || stdout != "97 98\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// Any value of any numeric flag: a usage error or the command's own
// error (no model is given), never a panic.
func FuzzFlagValues(f *testing.F) {
	for _, v := range []string{"0", "-5", "NaN", "Inf", "1e400", "9223372036854775808", "0x10", "", "3"} {
		f.Add(uint8(0), v)
	}
	type target struct{ cmd, flag string }
	var targets []target
	for _, c := range commands {
		fs, _, _ := newFlagSet(c)
		fs.VisitAll(func(fl *flag.Flag) {
			if _, ok := numericValue(fl); ok {
				targets = append(targets, target{c.name, fl.Name})
			}
		})
		delete(flagRules, fs)
	}
	f.Fuzz(func(t *testing.T, which uint8, value string) {
		tg := targets[int(which)%len(targets)]
		code, _, _ := runCLI(t, "", tg.cmd, "--"+tg.flag, value, "--model", "/nonexistent", "--out", "/nonexistent/x", "--recipe", "w8a8", "--format", "gguf")
		if code != exitUsage && code != exitError {
			t.Errorf("llmq %s --%s %q: exit %d", tg.cmd, tg.flag, value, code)
		}
	})
}

// Exporting a quantized folder to GGUF says that its layers are
// re-quantized, and to what.
func TestExportGGUFSaysRequantized(t *testing.T) {
	llama := shared.Path(t, "models", "wiki-llama-25m")
	dir := t.TempDir()
	q := filepath.Join(dir, "q")
	if code, _, stderr := runCLI(t, "", "quantize", "--model", llama, "--recipe", "w8a8", "--out", q); code != 0 {
		t.Fatal(stderr)
	}
	code, stdout, stderr := runCLI(t, "", "export", "--model", q, "--format", "gguf", "--out", filepath.Join(dir, "q.gguf"), "--json")
	if code != 0 || !strings.Contains(stderr, "56 × int8-sym-channel) are dequantized and re-encoded as Q8_0") || !strings.Contains(stdout, "re-encoded as Q8_0") {
		t.Errorf("exit %d, stderr %q, stdout %q", code, stderr, stdout)
	}
}

// Calibration data as users bring it: plain text, JSON Lines with a text
// field, a folder of text files.
func TestCalibDataFormats(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "a.txt")
	os.WriteFile(plain, []byte("one two"), 0o644)
	jsonl := filepath.Join(dir, "rows.jsonl")
	os.WriteFile(jsonl, []byte(`{"text": "first row", "id": 1}`+"\n\n"+`{"text": "second row"}`+"\n"), 0o644)
	folder := filepath.Join(dir, "texts")
	os.Mkdir(folder, 0o755)
	os.WriteFile(filepath.Join(folder, "b.txt"), []byte("bee"), 0o644)
	os.WriteFile(filepath.Join(folder, "a.md"), []byte("ay"), 0o644)
	os.WriteFile(filepath.Join(folder, ".hidden"), []byte("no"), 0o644)
	for path, want := range map[string]string{plain: "one two", jsonl: "first row\n\nsecond row", folder: "ay\n\nbee"} {
		if got, err := readCalibText(path); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", path, got, err, want)
		}
	}
	badRows := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(badRows, []byte(`{"text": "ok"}`+"\n"+`{"content": "x"}`+"\n"), 0o644)
	if _, err := readCalibText(badRows); err == nil || !strings.Contains(err.Error(), "bad.jsonl:2") {
		t.Errorf("row without text: %v", err)
	}

	llama := shared.Path(t, "models", "wiki-llama-25m")
	valid := shared.Path(t, "data", "wikitext-2", "wiki.valid.tokens")
	text, _ := os.ReadFile(valid)
	var rows []byte
	for _, para := range strings.SplitN(string(text[:20000]), "\n \n", 20) {
		b, _ := json.Marshal(map[string]string{"text": para})
		rows = append(append(rows, b...), '\n')
	}
	calib := filepath.Join(dir, "calib.jsonl")
	os.WriteFile(calib, rows, 0o644)
	code, stdout, stderr := runCLI(t, "", "quantize", "--model", llama, "--recipe", "smoothquant-o1", "--out", filepath.Join(dir, "q"),
		"--calib-data", calib, "--calib-samples", "2", "--calib-seqlen", "32", "--json")
	if code != 0 || !strings.Contains(stdout, `"calib_data":"`+calib+`"`) || !strings.Contains(stdout, `"calib_samples":2`) || !strings.Contains(stdout, `"calibrated":true`) {
		t.Errorf("quantize with JSON Lines calibration: exit %d, %q, %s", code, stdout, stderr)
	}
}

// Pre-tokenized calibration rows ("input_ids") need no tokenizer: a model
// folder without one (the tiny fixtures) is quantized from them, and ids
// outside the vocabulary are refused.
func TestCalibTokenIDs(t *testing.T) {
	dir := t.TempDir()
	var rows []byte
	for r := 0; r < 4; r++ {
		ids := make([]int, 40)
		for i := range ids {
			ids[i] = (r*131 + i*7) % 512
		}
		b, _ := json.Marshal(map[string][]int{"input_ids": ids})
		rows = append(append(rows, b...), '\n')
	}
	calib := filepath.Join(dir, "ids.jsonl")
	os.WriteFile(calib, rows, 0o644)
	mistral := shared.Path(t, "models", "tiny-mistral")
	code, _, stderr := runCLI(t, "", "quantize", "--model", mistral, "--recipe", "smoothquant-o1", "--out", filepath.Join(dir, "q"),
		"--calib-data", calib, "--calib-samples", "4", "--calib-seqlen", "32")
	if code != 0 {
		t.Fatalf("quantize from token ids: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "q", "model.safetensors")); err != nil {
		t.Error(err)
	}
	mixed := filepath.Join(dir, "mixed.jsonl")
	os.WriteFile(mixed, []byte(`{"input_ids": [1, 2]}`+"\n"+`{"text": "x"}`+"\n"), 0o644)
	if _, _, err := readCalib(mixed); err == nil || !strings.Contains(err.Error(), "mixed.jsonl:2") {
		t.Errorf("mixed rows: %v", err)
	}
	big := filepath.Join(dir, "big.jsonl")
	os.WriteFile(big, []byte(`{"input_ids": [1, 2, 600]}`+"\n"), 0o644)
	code, _, stderr = runCLI(t, "", "quantize", "--model", mistral, "--recipe", "smoothquant-o1", "--out", filepath.Join(dir, "q2"),
		"--calib-data", big, "--calib-samples", "1", "--calib-seqlen", "2")
	if code == 0 || !strings.Contains(stderr, "600") {
		t.Errorf("id 600 in a vocabulary of 512: exit %d, %s", code, stderr)
	}
}

// A calibration that cannot fit is refused before any data is read, with
// the estimate and the memory available.
func TestMemoryRefused(t *testing.T) {
	llama := shared.Path(t, "models", "wiki-llama-25m")
	code, _, stderr := runCLI(t, "", "quantize", "--model", llama, "--recipe", "gptq-w4a16", "--calib-samples", "1000000", "--out", filepath.Join(t.TempDir(), "q"))
	if code != 1 || !strings.Contains(stderr, "available") || !strings.Contains(stderr, "calibration activations") {
		t.Errorf("exit %d, %s", code, stderr)
	}
}

// --moe-routed-only changes what the experts are calibrated on (only their
// routed tokens), hence the GPTQ result; both runs succeed.
func TestMoERoutedOnly(t *testing.T) {
	dir := t.TempDir()
	var rows []byte
	for r := 0; r < 4; r++ {
		ids := make([]int, 48)
		for i := range ids {
			ids[i] = (r*37 + i*11) % 512
		}
		b, _ := json.Marshal(map[string][]int{"input_ids": ids})
		rows = append(append(rows, b...), '\n')
	}
	calib := filepath.Join(dir, "ids.jsonl")
	os.WriteFile(calib, rows, 0o644)
	rec := filepath.Join(dir, "gptq.yaml")
	os.WriteFile(rec, []byte(`quant_stage:
  quant_modifiers:
    GPTQModifier:
      ignore: [lm_head, 're:.*mlp\.gate$']
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 8}
`), 0o644)
	src := shared.Path(t, "models", "tiny-qwen3moe")
	var outs []string
	for _, extra := range [][]string{nil, {"--moe-routed-only"}} {
		out := filepath.Join(dir, fmt.Sprint("q", len(outs)))
		args := append([]string{"quantize", "--model", src, "--recipe", rec, "--out", out, "--calib-data", calib, "--calib-samples", "4", "--calib-seqlen", "48"}, extra...)
		if code, _, stderr := runCLI(t, "", args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", extra, code, stderr)
		}
		outs = append(outs, out)
	}
	a, _ := os.ReadFile(filepath.Join(outs[0], "model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(outs[1], "model.safetensors"))
	if bytes.Equal(a, b) {
		t.Error("calibrating experts on routed tokens only gave the same model as on every token")
	}
}
