package main

import (
	"flag"
	"fmt"
	"strings"
)

// exportOptions are the flags of "llmq export", shared by every format.
type exportOptions struct {
	model  string // input: a Hugging Face folder or an llmq quantized folder
	out    string // output: a folder (compressed-tensors) or a file (gguf)
	format string // compressed-tensors | gguf
	typ    string // gguf tensor type for the linears: f32 | f16 | q8_0 | q4_0 (empty: from the folder)
}

func init() {
	var o exportOptions
	commands = append(commands, &command{
		name:    "export",
		summary: "write a model in a format serving engines load (compressed-tensors for vLLM, GGUF for llama.cpp)",
		usage:   "--model DIR --format compressed-tensors|gguf --out PATH",
		help: `
Export converts a model for a serving engine.

  --format compressed-tensors   a Hugging Face folder with a compressed-tensors
                                quantization_config, as vLLM and llm-compressor
                                load it (input: an llmq quantized folder)
  --format gguf                 a single GGUF v3 file for llama.cpp
                                (--type f32|f16|q8_0|q4_0)

Output is written to a temporary name and renamed when complete, so an
interrupted export leaves nothing behind.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.model, "model", "", "model to export: Hugging Face folder, llmq quantized folder (GGUF also takes llama2.c .bin and .gguf files)")
			fs.StringVar(&o.out, "out", "", "output folder (compressed-tensors) or file (gguf)")
			fs.StringVar(&o.format, "format", "", "compressed-tensors or gguf")
			fs.StringVar(&o.typ, "type", "", "GGUF tensor type of the linear weights: f32, f16, q8_0 or q4_0")
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q", args)
			}
			if o.model == "" || o.out == "" {
				return fmt.Errorf("--model and --out are required")
			}
			switch strings.ToLower(o.format) {
			case "compressed-tensors", "ct":
				return exportCompressedTensors(o)
			case "gguf":
				return exportGGUF(o)
			case "":
				return fmt.Errorf("--format is required: compressed-tensors or gguf")
			default:
				return fmt.Errorf("unknown --format %q: compressed-tensors or gguf", o.format)
			}
		},
	})
}
