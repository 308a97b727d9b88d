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
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
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

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" && len(args) == 1 {
		usage(os.Stdout)
		return 0
	}
	if args[0] == "help" {
		args = []string{args[1], "-h"}
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		fs := flag.NewFlagSet("llmq "+c.name, flag.ContinueOnError)
		threads := fs.Int("threads", runtime.NumCPU(), "worker threads for the numeric kernels")
		cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the command to this file (go tool pprof)")
		fs.BoolVar(&reference, "reference", false, "run quantized layers by dequantizing to FP32 (for debugging) instead of the low-bit kernels")
		c.flags(fs)
		fs.Usage = func() {
			out := fs.Output()
			fmt.Fprintf(out, "Usage: llmq %s %s\n\n%s\n\nFlags:\n", c.name, c.usage, strings.TrimSpace(c.help))
			fs.PrintDefaults()
		}
		if err := fs.Parse(args[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if *threads > 0 {
			runtime.GOMAXPROCS(*threads)
		}
		if *cpuProfile != "" {
			stop, err := startCPUProfile(*cpuProfile)
			if err != nil {
				fmt.Fprintf(os.Stderr, "llmq %s: %v\n", c.name, err)
				return 1
			}
			defer stop()
		}
		if err := c.run(fs, fs.Args()); err != nil {
			fmt.Fprintf(os.Stderr, "llmq %s: %v\n", c.name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "llmq: unknown command %q\n\n", args[0])
	usage(os.Stderr)
	return 2
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

func usage(w *os.File) {
	fmt.Fprintln(w, "llmq — post-training quantization of large language models, in one binary.")
	fmt.Fprintln(w, "\nUsage: llmq COMMAND [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'llmq help COMMAND' for the flags of a command.")
	fmt.Fprintln(w, "A model is a Hugging Face folder (config.json + safetensors), an llmq quantized folder, a GGUF file or a llama2.c .bin file.")
}
