package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"llmq/eval"
	"llmq/gguf"
	"llmq/internal/progress"
	"llmq/internal/sysinfo"
	"llmq/model"
	"llmq/modelio"
	"llmq/tokenizer"
)

func init() {
	var modelPath, data, tokPath, recipeName, basePath, ggufRound *string
	var seqlen, limit *int
	var asJSON *bool
	var cf *calibFlags
	commands = append(commands, &command{
		name:    "eval",
		summary: "measure perplexity on a text file (WikiText-2 protocol)",
		usage:   "--model DIR [--data FILE] [--seqlen 512] [--limit N]",
		help: `Computes perplexity the way the GPTQ, SmoothQuant and ZeroQuant papers do:
the whole file is encoded as one string with BOS prepended, cut into
non-overlapping windows of --seqlen tokens (the remainder is dropped), and
ppl = exp(mean negative log-likelihood of every token but each window's first).
--limit N evaluates only the first N windows (a quick estimate).

With --recipe, the model is quantized on the fly (nothing is saved) and
compared with the unquantized model on the same windows: perplexity of both,
mean KL divergence KL(P_fp ‖ P_quant) of the next-token distributions and
top-1 agreement, as llama.cpp's --kl-divergence reports them. --base DIR
compares --model (e.g. a saved quantized folder) with another model the same
way.

Example:
  llmq eval --model ../shared/models/wiki-llama-25m --limit 20
  llmq eval --model ../shared/models/wiki-llama-25m-outliers --recipe smoothquant-o2 --limit 20`,
		flags: func(fs *flag.FlagSet) {
			modelPath = fs.String("model", "", "model folder (config.json + safetensors) or llama2.c .bin file")
			data = fs.String("data", "", "text file to score (default: WikiText-2's test split in the shared folder; see LLMQ_SHARED in llmq --help)")
			tokPath = fs.String("tokenizer", "", "tokenizer file or folder (default: found beside the model)")
			seqlen = fs.Int("seqlen", 512, "window length in tokens")
			limit = fs.Int("limit", 0, "evaluate only the first N windows (default: all)")
			asJSON = fs.Bool("json", false, "print the result as JSON on stdout")
			recipeName = fs.String("recipe", "", "quantize on the fly with this recipe (file or preset) and compare with the unquantized model")
			basePath = fs.String("base", "", "compare --model with this (unquantized) model: KL divergence and top-1 agreement")
			ggufRound = fs.String("gguf-round", "", "round the weights as a GGUF export of this type would (q8_0, q4_0, f16): the in-process twin of llmq export --format gguf")
			cf = addCalibFlags(fs)
			atLeast(fs, 2, "seqlen")
			atLeast(fs, 1, "limit")
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			if *recipeName != "" && *basePath != "" {
				return usagef("give --recipe (quantize --model on the fly) or --base (compare with a second model), not both")
			}
			if *data == "" {
				*data = sharedText("wiki.test.tokens")
			}
			if *data == "" {
				return usagef("--data is required: %s", sharedMissing())
			}
			m, err := loadModel(*modelPath)
			if err != nil {
				return err
			}
			if m.Pos == nil && m.MaxPos > 0 && *seqlen > m.MaxPos {
				fmt.Fprintf(os.Stderr, "warning: --seqlen %d exceeds the model's context of %d positions (max_position_embeddings): the perplexity measures extrapolation beyond it\n", *seqlen, m.MaxPos)
			}
			if *ggufRound != "" {
				typ, err := gguf.ParseType(*ggufRound)
				if err != nil {
					return err
				}
				if err := modelio.RoundLikeGGUF(m, typ); err != nil {
					return err
				}
			}
			if *recipeName != "" {
				if err := checkRecipe(m, *recipeName); err != nil {
					return err
				}
			}
			tok, err := loadTokenizer(*modelPath, *tokPath)
			if err != nil {
				return err
			}
			if tok.VocabSize() > m.Vocab {
				return fmt.Errorf("tokenizer has %d tokens but the model only %d: wrong tokenizer?", tok.VocabSize(), m.Vocab)
			}
			text, err := os.ReadFile(*data)
			if err != nil {
				return err
			}
			start := time.Now()
			ids := encodeWithBOS(tok, m, string(text))
			fmt.Fprintf(os.Stderr, "tokenized %s: %d tokens in %v\n", *data, len(ids), time.Since(start).Round(time.Millisecond))
			total := len(eval.Windows(ids, *seqlen, *limit))
			if *recipeName != "" || *basePath != "" {
				base, q := m, m
				var qtime time.Duration
				var cr *calibRun
				if *recipeName != "" {
					if q, err = modelio.Load(*modelPath); err != nil {
						return err
					}
					start := time.Now()
					// The FP model m stays loaded beside q: its weights count.
					if _, cr, err = applyRecipe(q, func() (tokenizer.Tokenizer, error) { return tok, nil }, *recipeName, cf, m.Bytes()); err != nil {
						return err
					}
					qtime = time.Since(start)
				} else if base, err = loadModel(*basePath); err != nil {
					return err
				}
				return compare(base, q, ids, cmpReport{model: *modelPath, base: *basePath, recipe: *recipeName, data: *data,
					seqlen: *seqlen, limit: *limit, json: *asJSON, qtime: qtime, calib: cr})
			}
			bar := progress.New("eval", total, "tok")
			res, err := eval.Perplexity(m, ids, *seqlen, *limit, func(done, _ int) {
				bar.Update(done, float64(done**seqlen))
			})
			if err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{
					"model": *modelPath, "data": *data, "seqlen": *seqlen, "windows": res.Windows,
					"predicted_tokens": res.Predicted, "nll": res.NLL, "ppl": res.Value(),
					"seconds": res.Elapsed.Seconds(), "tokens_per_second": res.TokensPerSecond(*seqlen),
					"peak_rss_bytes": sysinfo.PeakRSS(),
				})
			}
			fmt.Printf("ppl %.4f  (%d windows × %d tokens, %d predicted; %.0f tok/s, %v)\n",
				res.Value(), res.Windows, *seqlen, res.Predicted, res.TokensPerSecond(*seqlen), res.Elapsed.Round(time.Second))
			return nil
		},
	})
}

type cmpReport struct {
	model, base, recipe, data string
	seqlen, limit             int
	json                      bool
	qtime                     time.Duration
	calib                     *calibRun
}

// compare scores q against base on the same windows and prints the result.
func compare(base, q *model.Model, ids []int, r cmpReport) error {
	total := len(eval.Windows(ids, r.seqlen, r.limit))
	bar := progress.New("eval", total, "tok")
	c, err := eval.Compare(base, q, ids, r.seqlen, r.limit, func(done, _ int) {
		bar.Update(done, float64(done*r.seqlen))
	})
	if err != nil {
		return err
	}
	pb, pq := c.Base.Value(), c.Model.Value()
	delta := 100 * (pq - pb) / pb
	if r.json {
		out := map[string]any{
			"model": r.model, "data": r.data, "seqlen": r.seqlen, "windows": c.Model.Windows,
			"ppl_base": pb, "ppl": pq, "delta_pct": delta, "kl": c.KL(), "kl_max": c.KLMax, "top1": c.Top1(),
			"peak_rss_bytes": sysinfo.PeakRSS(),
		}
		if r.recipe != "" {
			out["recipe"], out["quantize_seconds"], out["calibrated"] = r.recipe, r.qtime.Seconds(), r.calib != nil
			r.calib.addJSON(out)
		} else {
			out["base"] = r.base
		}
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	fmt.Printf("ppl %.4f → %.4f (%+.2f%%)  KL %.5f (max %.3f)  top-1 %.2f%%  (%d windows × %d",
		pb, pq, delta, c.KL(), c.KLMax, 100*c.Top1(), c.Model.Windows, r.seqlen)
	if r.recipe != "" {
		fmt.Printf("; quantized in %v", r.qtime.Round(time.Millisecond))
	}
	fmt.Printf("; peak RSS %.0f MiB)\n", float64(sysinfo.PeakRSS())/(1<<20))
	return nil
}
