package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"llmq/internal/shared"
	"llmq/recipe"
)

// example is one llmq command line from the documentation.
type example struct {
	where string // e.g. "README.md:40", "llmq help eval"
	args  []string
	stdin string
}

// splitShell splits a command line as a POSIX shell would for the simple
// lines the documentation has: words, "double" and 'single' quotes.
func splitShell(line string) []string {
	var out []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

var llmqPrefix = regexp.MustCompile(`^(?:\./llmq|llmq|go run \./cmd/llmq)\s+`)

// parseExample reads one documentation line; ok is false for lines that
// are not llmq command lines.
func parseExample(where, line string) (example, bool) {
	line = strings.TrimSpace(line)
	if i := strings.Index(line, "  #"); i >= 0 { // a trailing comment
		line = strings.TrimSpace(line[:i])
	}
	ex := example{where: where}
	if left, right, found := strings.Cut(line, "|"); found {
		words := splitShell(left)
		if len(words) == 0 || words[0] != "echo" {
			return ex, false
		}
		for _, w := range words[1:] {
			if w != "-n" {
				ex.stdin += w
			}
		}
		line = strings.TrimSpace(right)
	}
	loc := llmqPrefix.FindStringIndex(line)
	if loc == nil {
		return ex, false
	}
	ex.args = splitShell(line[loc[1]:])
	return ex, len(ex.args) > 0
}

// readmeExamples lists the llmq command lines in README.md's code blocks.
func readmeExamples(t *testing.T) []example {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []example
	inCode := false
	for i, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if inCode {
			if ex, ok := parseExample("README.md:"+itoa(i+1), line); ok {
				out = append(out, ex)
			}
		}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

// helpExamples lists the command lines under "Example:" in a command's help.
func helpExamples(c *command) []example {
	var out []example
	_, after, found := strings.Cut(c.help, "Example:")
	if !found {
		return nil
	}
	for _, line := range strings.Split(after, "\n") {
		if ex, ok := parseExample("llmq help "+c.name, line); ok {
			out = append(out, ex)
		}
	}
	return out
}

// resolve maps an example's paths onto this machine: ../shared/… to the
// shared folder, /tmp/… into tmp. It returns false when the example needs
// a file that is not here.
func resolve(t *testing.T, ex *example, tmp string) bool {
	for i, a := range ex.args {
		switch {
		case strings.HasPrefix(a, "../shared/"):
			d := shared.Dir()
			if d == "" {
				return false
			}
			ex.args[i] = filepath.Join(d, strings.TrimPrefix(a, "../shared/"))
			if _, err := os.Stat(ex.args[i]); err != nil {
				t.Errorf("%s: %s does not exist", ex.where, a)
				return false
			}
		case strings.HasPrefix(a, "/tmp/"):
			ex.args[i] = filepath.Join(tmp, strings.TrimPrefix(a, "/tmp/"))
		case a == "report.html":
			ex.args[i] = filepath.Join(tmp, a)
		}
	}
	return true
}

// flagValue returns the value of --name in args ("" if absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if (a == "--"+name || a == "-"+name) && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// checkParses verifies that an example names a command, flags it has with
// values they accept, and a recipe that exists.
func checkParses(t *testing.T, ex example) bool {
	args := ex.args
	if args[0] == "help" {
		if len(args) != 2 || lookup(args[1]) == nil {
			t.Errorf("%s: llmq %s: no such command", ex.where, strings.Join(args, " "))
			return false
		}
		return true
	}
	c := lookup(args[0])
	if c == nil {
		t.Errorf("%s: llmq %s: no such command", ex.where, args[0])
		return false
	}
	fs, _, _ := newFlagSet(c)
	defer delete(flagRules, fs)
	positional, err := parseInterspersed(fs, args[1:])
	if err == nil {
		err = checkFlags(fs)
	}
	if err == nil && len(positional) > 0 && c.name != "generate" {
		err = usagef("unexpected arguments %q", positional)
	}
	if err != nil {
		t.Errorf("%s: llmq %s: %v", ex.where, strings.Join(args, " "), err)
		return false
	}
	if r := flagValue(args, "recipe"); r != "" {
		if _, err := recipe.Load(r); err != nil {
			if strings.HasSuffix(r, ".yaml") && os.IsNotExist(err) {
				t.Logf("%s: skipped, %s is the reader's own recipe", ex.where, r)
				return false
			}
			t.Errorf("%s: --recipe %s: %v", ex.where, r, err)
			return false
		}
	}
	return true
}

// shrink makes an example cheap to run: tiny windows, calibration and
// generation lengths.
func shrink(args []string) []string {
	set := func(name, v string) {
		for i, a := range args {
			if a == "--"+name || a == "-"+name {
				args[i+1] = v
				return
			}
		}
		args = append(args, "--"+name, v)
	}
	switch args[0] {
	case "eval":
		set("limit", "1")
		set("seqlen", "64")
		if flagValue(args, "recipe") != "" {
			set("calib-samples", "2")
			set("calib-seqlen", "64")
		}
	case "generate":
		set("n", "2")
	case "quantize":
		set("calib-samples", "2")
		set("calib-seqlen", "64")
	}
	return args
}

// runnable: the examples that are cheap enough to run (bench re-executes
// the binary, inspect measures every block: they are only parsed).
func runnable(args []string) bool {
	switch args[0] {
	case "eval", "generate", "tokenize", "quantize", "export", "help":
		return true
	}
	return false
}

func checkExamples(t *testing.T, examples []example) {
	tmp := t.TempDir()
	for _, ex := range examples {
		if !resolve(t, &ex, tmp) || !checkParses(t, ex) {
			continue
		}
		if testing.Short() || !runnable(ex.args) {
			continue
		}
		args := shrink(ex.args)
		if code, _, stderr := runCLI(t, ex.stdin, args...); code != 0 {
			t.Errorf("%s: llmq %s: exit %d\n%s", ex.where, strings.Join(args, " "), code, stderr)
		}
	}
}

// Every example command in README.md parses (the command and its flags
// exist, values are in range, presets exist) and, when cheap, runs.
func TestReadmeExamples(t *testing.T) {
	examples := readmeExamples(t)
	if len(examples) < 10 {
		t.Fatalf("found %d examples in README.md", len(examples))
	}
	checkExamples(t, examples)
}

// The same for the examples of every command's help.
func TestHelpExamples(t *testing.T) {
	for _, c := range commands {
		examples := helpExamples(c)
		if len(examples) == 0 {
			t.Errorf("llmq help %s has no example", c.name)
		}
		checkExamples(t, examples)
	}
}

// The example parser reads the documentation's forms.
func TestParseExample(t *testing.T) {
	ex, ok := parseExample("x", `echo -n "Hello world" | ./llmq tokenize --model M`)
	if !ok || ex.stdin != "Hello world" || strings.Join(ex.args, "|") != "tokenize|--model|M" {
		t.Errorf("%+v", ex)
	}
	ex, ok = parseExample("x", `./llmq generate --prompt "The kernel" -n 48   # comment`)
	if !ok || strings.Join(ex.args, "|") != "generate|--prompt|The kernel|-n|48" {
		t.Errorf("%+v", ex)
	}
	if _, ok := parseExample("x", "go test ./..."); ok {
		t.Error("go test parsed as an llmq example")
	}
}
