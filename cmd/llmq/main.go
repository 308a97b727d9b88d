// Command llmq quantizes, evaluates and runs large language models.
//
//	llmq eval      perplexity of a model on a text file (WikiText-2 protocol)
//	llmq generate  text from a prompt (greedy or seeded top-p sampling)
//	llmq tokenize  print the token ids of a text
//	llmq quantize  apply a recipe and save the quantized model
//	llmq bench     prefill/decode speed and memory, FP32 vs quantized
//	llmq inspect   activation-outlier and quantization-error report (HTML)
//	llmq export    compressed-tensors (vLLM) or GGUF (llama.cpp)
//
// Run "llmq help COMMAND" for a command's flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"llmq/checkpoint"
	"llmq/kernels"
)

type command struct {
	name    string
	summary string
	usage   string // argument synopsis after the command name
	help    string // longer explanation
	run     func(fs *flag.FlagSet, args []string) error
	flags   func(fs *flag.FlagSet) // defines the command's flags
}

var commands []*command

// Exit statuses (listed by llmq --help).
const (
	exitOK       = 0
	exitError    = 1  // the command failed (a missing file, a model it cannot load, …)
	exitUsage    = 2  // the command line is wrong (unknown command or flag, a bad value)
	exitBug      = 70 // an internal error: a bug in llmq (sysexits' EX_SOFTWARE)
	exitSignaled = 128
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) (code int) {
	name := "llmq"
	defer func() {
		if r := recover(); r != nil {
			reportBug(name, r)
			code = exitBug
		}
	}()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help" && len(args) == 1 {
		usage(os.Stdout)
		return exitOK
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "version" {
		fmt.Println(versionLine())
		return exitOK
	}
	if args[0] == "help" {
		if len(args) > 2 {
			fmt.Fprintf(os.Stderr, "llmq help: one command at a time (see 'llmq help')\n")
			return exitUsage
		}
		args = []string{args[1], "-h"}
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(os.Stderr, "llmq: unknown command %q (commands: %s; see 'llmq --help')\n", args[0], strings.Join(commandNames(), ", "))
		return exitUsage
	}
	name = "llmq " + c.name
	fs, threads, cpuProfile := newFlagSet(c)
	defer delete(flagRules, fs)
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandUsage(os.Stdout, c, fs)
			return exitOK
		}
		fmt.Fprintf(os.Stderr, "%s: %v (see 'llmq help %s')\n", name, err, c.name)
		return exitUsage
	}
	if err := checkFlags(fs); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v (see 'llmq help %s')\n", name, err, c.name)
		return exitUsage
	}
	runtime.GOMAXPROCS(*threads)
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			return exitError
		}
		defer stop()
	}
	stopSignals := cleanUpOnSignal(name)
	defer stopSignals()
	checkpoint.Notify = func(msg string) { fmt.Fprintf(os.Stderr, "%s: %s\n", name, msg) }
	defer func() { checkpoint.Notify = nil }()
	if err := c.run(fs, positional); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "%s: %v (see 'llmq help %s')\n", name, err, c.name)
			return exitUsage
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return exitError
	}
	return exitOK
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func commandNames() []string {
	var s []string
	for _, c := range commands {
		s = append(s, c.name)
	}
	return s
}

// parseInterspersed parses flags wherever they stand among the positional
// arguments (generate --model M The kernel -n 8), as GNU tools do; after
// "--" everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// newFlagSet defines the flags of c, the shared ones first.
func newFlagSet(c *command) (fs *flag.FlagSet, threads *int, cpuProfile *string) {
	fs = flag.NewFlagSet("llmq "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and help itself
	threads = fs.Int("threads", runtime.NumCPU(), "worker threads for the numeric kernels")
	cpuProfile = fs.String("cpuprofile", "", "write a CPU profile of the command to this file (go tool pprof)")
	fs.BoolVar(&reference, "reference", false, "run quantized layers by dequantizing to FP32 (for debugging) instead of the low-bit kernels")
	c.flags(fs)
	atLeast(fs, 1, "threads")
	atMost(fs, float64(max(1024, runtime.NumCPU())), "threads")
	return fs, threads, cpuProfile
}

func printCommandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: llmq %s %s\n\n%s\n\nFlags:\n", c.name, c.usage, strings.TrimSpace(c.help))
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// usageError is an error in the command line: run reports it with exit
// status 2, like a flag the command does not have.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// reportBug tells a user what to do about a panic.
func reportBug(name string, r any) {
	stack := debug.Stack()
	if p, ok := r.(*kernels.WorkerPanic); ok {
		r, stack = p.Value, p.Stack
	}
	fmt.Fprintf(os.Stderr, "%s: internal error: %v\n\n%s\n", name, r, stack)
	fmt.Fprintf(os.Stderr, "%s: this is a bug in llmq (%s); please report it with the command line and the message above (exit status %d)\n", name, versionLine(), exitBug)
}

// cleanUpOnSignal makes SIGINT and SIGTERM remove the partial outputs of
// the writes under way before the process exits with status 128+signal.
func cleanUpOnSignal(name string) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			removed := checkpoint.RemoveTemps()
			msg := ""
			if len(removed) > 0 {
				msg = "; removed the partial output " + strings.Join(removed, ", ")
			}
			fmt.Fprintf(os.Stderr, "\n%s: interrupted (%v)%s\n", name, sig, msg)
			n := 2 // SIGINT
			if s, ok := sig.(syscall.Signal); ok {
				n = int(s)
			}
			os.Exit(exitSignaled + n)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "llmq — post-training quantization of large language models, in one binary.")
	fmt.Fprintln(w, "\nUsage: llmq COMMAND [flags]\n       llmq help COMMAND\n       llmq --version\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'llmq help COMMAND' for the flags of a command.")
	fmt.Fprintln(w, "A model is a Hugging Face folder (config.json + safetensors), an llmq quantized folder, a GGUF file or a llama2.c .bin file.")
	fmt.Fprintf(w, `
Environment:
  LLMQ_SHARED  folder of the reference models and data; the default --data and
               --calib-data (WikiText-2's test and validation splits) are read
               from it. Without it, ../shared beside the llmq source tree that
               holds the working folder is used.

Exit status:
  %d    success
  %d    the command failed (a missing file, a model it cannot load, …)
  %d    the command line is wrong (an unknown command or flag, a value out of range)
  %d   an internal error: a bug in llmq (please report it)
  %d  interrupted by SIGINT (Ctrl-C), %d by SIGTERM; partial outputs are removed
`, exitOK, exitError, exitUsage, exitBug, exitSignaled+2, exitSignaled+15)
}

// versionLine is what llmq --version prints: the module version and the
// VCS revision the binary was built from.
func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "llmq (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	line := "llmq " + v
	if rev != "" {
		line += fmt.Sprintf(" (commit %s%s, %s)", rev[:min(12, len(rev))], modified, when)
	} else {
		line += " (commit unknown)"
	}
	return line + " " + bi.GoVersion
}
