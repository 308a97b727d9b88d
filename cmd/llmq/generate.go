package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"llmq/generate"
)

func init() {
	var modelPath, prompt, tokPath *string
	var n *int
	var temp, topP *float64
	var seed *uint64
	var asJSON *bool
	commands = append(commands, &command{
		name:    "generate",
		summary: "continue a prompt (greedy or seeded top-p sampling)",
		usage:   `--model DIR --prompt "text" [-n 64] [--temperature 0] [--top-p 0.9] [--seed 1]`,
		help: `Encodes the prompt (BOS first), runs it through the model, then produces up
to -n tokens one at a time over the KV cache, stopping at end-of-sequence.
--temperature 0 (the default) decodes greedily and is fully deterministic;
a positive temperature samples from the top-p nucleus with a seeded RNG, so
the same seed reproduces the same text.

Example:
  llmq generate --model ../shared/models/wiki-llama-25m --prompt "The kernel" -n 48`,
		flags: func(fs *flag.FlagSet) {
			modelPath = fs.String("model", "", "model folder or llama2.c .bin file")
			prompt = fs.String("prompt", "", "text to continue")
			tokPath = fs.String("tokenizer", "", "tokenizer file or folder (default: found beside the model)")
			n = fs.Int("n", 64, "maximum number of tokens to generate")
			temp = fs.Float64("temperature", 0, "sampling temperature (0 = greedy)")
			topP = fs.Float64("top-p", 0.9, "nucleus sampling mass")
			seed = fs.Uint64("seed", 1, "random seed for sampling")
			asJSON = fs.Bool("json", false, "print the prompt, the continuation, its ids and timings as JSON on stdout instead of the text")
			atLeast(fs, 0, "n")
			nonNegative(fs, "temperature")
			positive(fs, "top-p")
			atMost(fs, 1, "top-p")
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				if *prompt != "" {
					return usagef("unexpected arguments %q", args)
				}
				*prompt = strings.Join(args, " ")
			}
			sampler, err := generate.NewSampler(*temp, *topP, *seed)
			if err != nil {
				return usagef("%v", err)
			}
			m, err := loadModel(*modelPath)
			if err != nil {
				return err
			}
			tok, err := loadTokenizer(*modelPath, *tokPath)
			if err != nil {
				return err
			}
			ids := encodeWithBOS(tok, m, *prompt)
			if !*asJSON {
				fmt.Print(*prompt)
			}
			eos := tok.EOS()
			var out []int
			printed := ""
			start := time.Now()
			var first time.Duration
			_, err = generate.Run(m, ids, *n, sampler, eos, func(id int) bool {
				if first == 0 {
					first = time.Since(start)
				}
				out = append(out, id)
				// Decode the whole continuation and print what is new, so
				// multi-token characters and leading spaces come out right.
				text := tok.Decode(append(ids[len(ids)-1:len(ids):len(ids)], out...))
				text = strings.TrimPrefix(text, tok.Decode(ids[len(ids)-1:]))
				if strings.HasPrefix(text, printed) {
					if !*asJSON {
						fmt.Print(text[len(printed):])
					}
					printed = text
				}
				return true
			})
			if !*asJSON {
				fmt.Println()
			}
			if err != nil {
				return err
			}
			el := time.Since(start)
			decodeTPS := 0.0
			if len(out) > 1 {
				decodeTPS = float64(len(out)-1) / (el - first).Seconds()
				fmt.Fprintf(os.Stderr, "%d prompt tokens, %d generated; prefill %v, decode %.1f tok/s\n",
					len(ids), len(out), first.Round(time.Millisecond), decodeTPS)
			}
			if *asJSON {
				stop := "length" // -n tokens
				switch {
				case len(out) < *n && m.Pos != nil && len(ids)+len(out) >= m.MaxPos:
					stop = "context" // the model's learned positions ran out
				case len(out) < *n:
					stop = "eos"
				}
				if out == nil {
					out = []int{}
				}
				rep := map[string]any{
					"model": *modelPath, "prompt": *prompt, "text": printed, "prompt_tokens": len(ids),
					"generated_tokens": len(out), "ids": out, "stop": stop, "seconds": el.Seconds(),
					"sampling": "greedy",
				}
				if *temp > 0 {
					rep["sampling"], rep["temperature"], rep["top_p"], rep["seed"] = "top-p", *temp, *topP, *seed
				}
				if len(out) > 0 {
					rep["prefill_seconds"] = first.Seconds()
				}
				if len(out) > 1 {
					rep["decode_tokens_per_second"] = decodeTPS
				}
				return json.NewEncoder(os.Stdout).Encode(rep)
			}
			return nil
		},
	})
}
