package main

import (
	"flag"
	"strings"
)

// exportOptions are the flags of "llmq export", shared by every format.
type exportOptions struct {
	model  string // input: a Hugging Face folder or an llmq quantized folder
	out    string // output: a folder (compressed-tensors) or a file (gguf)
	format string // compressed-tensors | gguf
	typ    string // gguf tensor type for the linears: f32 | f16 | q8_0 | q4_0 (empty: from the folder)
	force  bool   // gguf: replace an existing output file
	json   bool   // print a JSON report on stdout
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

An existing output is refused: a compressed-tensors folder must not exist,
and a GGUF file is replaced only with --force (never when it is one of the
model's own files). Output is written to a temporary name and renamed when
complete, so an interrupted export leaves nothing behind.

Example:
  llmq export --model ../shared/models/wiki-llama-25m --format gguf --type q8_0 --out /tmp/wiki-q8_0.gguf
  llmq quantize --model ../shared/models/wiki-llama-25m --recipe w8a8 --out /tmp/w8a8
  llmq export --model /tmp/w8a8 --format compressed-tensors --out /tmp/w8a8-ct`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.model, "model", "", "model to export: Hugging Face folder, llmq quantized folder (GGUF also takes llama2.c .bin and .gguf files)")
			fs.StringVar(&o.out, "out", "", "output folder (compressed-tensors) or file (gguf)")
			fs.StringVar(&o.format, "format", "", "compressed-tensors or gguf")
			fs.StringVar(&o.typ, "type", "", "GGUF tensor type of the linear weights: f32, f16, q8_0 or q4_0")
			fs.BoolVar(&o.force, "force", false, "replace an existing GGUF output file")
			fs.BoolVar(&o.json, "json", false, "print what was written as JSON on stdout")
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			if o.model == "" || o.out == "" {
				return usagef("--model and --out are required")
			}
			switch strings.ToLower(o.format) {
			case "compressed-tensors", "ct":
				if o.force {
					return usagef("--force applies to --format gguf; a compressed-tensors folder is never replaced (remove it first)")
				}
				return exportCompressedTensors(o)
			case "gguf":
				return exportGGUF(o)
			case "":
				return usagef("--format is required: compressed-tensors or gguf")
			default:
				return usagef("unknown --format %q: compressed-tensors or gguf", o.format)
			}
		},
	})
}
