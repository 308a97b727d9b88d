package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"llmq/calib"
	"llmq/checkpoint"
	"llmq/eval"
	"llmq/inspect"
	"llmq/internal/progress"
	"llmq/model"
	"llmq/recipe"
)

func init() {
	var modelPath, recipeName, tokPath, out, calibData, data *string
	var samples, seqlen, sensWindows, sensSeqlen, top *int
	var seed *uint64
	var randomCalib, perLinear, asJSON *bool
	var ratio *float64
	commands = append(commands, &command{
		name:    "inspect",
		summary: "HTML report of outlier channels, quantization error and layer sensitivity",
		usage:   "--model DIR [--recipe R] --out report.html",
		help: `Looks inside a model the way the SmoothQuant and LLM.int8() papers do and
writes one self-contained HTML page (inline SVG charts; opens offline):

  - per block and per linear input: max |x| per channel over the calibration
    tokens, and max |W| per input channel of the linears reading it; a
    summary table lists the top channels of each input with their ratio to
    the median channel, flagging those at least --outlier-ratio × above it;
  - when the recipe rescales channels (SmoothQuant, AWQ), the same ranges
    after rescaling;
  - each linear's quantization error under the recipe (default ` + inspect.DefaultRecipe + `):
    relative MSE of its outputs against full precision on the same inputs;
  - the blocks (or, with --per-linear, the linears) that hurt most: each is
    quantized alone and the KL divergence from the full-precision model and
    the perplexity are measured on --sens-windows windows of --data.

Calibration defaults to 16 sequences × 256 tokens of WikiText-2's validation
split. Models without a tokenizer (random-weight test fixtures) can be
calibrated on random token ids with --calib-random.

Example:
  llmq inspect --model ../shared/models/wiki-llama-25m-outliers --recipe smoothquant-o2 --out report.html`,
		flags: func(fs *flag.FlagSet) {
			modelPath = fs.String("model", "", "model folder (config.json + safetensors) or llama2.c .bin file, unquantized")
			recipeName = fs.String("recipe", inspect.DefaultRecipe, "recipe YAML file or preset whose quantization is measured")
			out = fs.String("out", "", "HTML file to write")
			tokPath = fs.String("tokenizer", "", "tokenizer file or folder (default: found beside the model)")
			calibData = fs.String("calib-data", "", calibDataHelp)
			samples = fs.Int("calib-samples", 16, "number of calibration sequences")
			seqlen = fs.Int("calib-seqlen", 256, "tokens per calibration sequence")
			seed = fs.Uint64("seed", 0, "seed for choosing calibration windows")
			randomCalib = fs.Bool("calib-random", false, "calibrate (and measure sensitivity) on uniformly random token ids instead of text (models without a tokenizer)")
			data = fs.String("data", "", "text the sensitivity is measured on (default: WikiText-2's test split in the shared folder)")
			sensWindows = fs.Int("sens-windows", 4, "windows of --data for the sensitivity (0 skips it)")
			sensSeqlen = fs.Int("sens-seqlen", 256, "tokens per sensitivity window")
			perLinear = fs.Bool("per-linear", false, "measure the sensitivity of each linear alone instead of each block (7× the work on Llama)")
			top = fs.Int("top", inspect.DefaultTopK, "top channels listed per linear input")
			ratio = fs.Float64("outlier-ratio", inspect.DefaultOutlierRatio, "flag channels whose max |x| is at least this many times the median channel's")
			asJSON = fs.Bool("json", false, "print the report's summary (recurring outlier channels, sensitivity) as JSON on stdout")
			atLeast(fs, 1, "calib-samples", "calib-seqlen", "top")
			atLeast(fs, 0, "sens-windows")
			atLeast(fs, 2, "sens-seqlen")
			positive(fs, "outlier-ratio")
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			if *modelPath == "" {
				return usagef("--model is required (an unquantized Hugging Face folder or a llama2.c .bin file)")
			}
			if *out == "" {
				return usagef("--out is required (the HTML report to write)")
			}
			if *calibData == "" {
				*calibData = sharedText("wiki.valid.tokens")
			}
			if *data == "" {
				*data = sharedText("wiki.test.tokens")
			}
			// A report is rewritten on each run, but never over a folder or
			// one of the files the run reads.
			inputs := append(modelInputs(*modelPath), *calibData, *data, *recipeName)
			if err := checkOutputFile("--out", *out, true, inputs); err != nil {
				return err
			}
			if _, err := recipe.Load(*recipeName); err != nil { // fail before loading anything
				return err
			}
			fp, err := loadModel(*modelPath)
			if err != nil {
				return err
			}
			q, err := model.Load(*modelPath)
			if err != nil {
				return err
			}
			opt := inspect.Options{Recipe: *recipeName, TopK: *top, OutlierRatio: *ratio, PerLinear: *perLinear}
			if *randomCalib {
				opt.Calib = inspect.RandomSequences(*samples, *seqlen, fp.Vocab, *seed)
				opt.CalibSource = fmt.Sprintf("uniformly random token ids (seed %d)", *seed)
				if *sensWindows > 0 {
					opt.Eval = inspect.RandomSequences(*sensWindows, *sensSeqlen, fp.Vocab, *seed+1)
					opt.EvalSource = fmt.Sprintf("uniformly random token ids (seed %d)", *seed+1)
				}
			} else {
				tok, err := loadTokenizer(*modelPath, *tokPath)
				if err != nil {
					return fmt.Errorf("%w (or calibrate on random tokens with --calib-random)", err)
				}
				if tok.VocabSize() > fp.Vocab {
					return fmt.Errorf("tokenizer has %d tokens but the model only %d: wrong tokenizer? (or use --calib-random)", tok.VocabSize(), fp.Vocab)
				}
				encode := func(path string, read func(string) (string, error)) ([]int, error) {
					if path == "" {
						return nil, usagef("no text file given and no shared WikiText-2 folder found: pass --calib-data and --data (%s)", sharedMissing())
					}
					text, err := read(path)
					if err != nil {
						return nil, err
					}
					return encodeWithBOS(tok, fp, text), nil
				}
				readFile := func(p string) (string, error) { b, err := os.ReadFile(p); return string(b), err }
				ids, err := encode(*calibData, readCalibText)
				if err != nil {
					return err
				}
				if opt.Calib, err = calib.Sample(ids, *samples, *seqlen, *seed); err != nil {
					return fmt.Errorf("%s: %w", *calibData, err)
				}
				opt.CalibSource = displayPath(*calibData)
				if *sensWindows > 0 {
					if ids, err = encode(*data, readFile); err != nil {
						return err
					}
					if opt.Eval = eval.Windows(ids, *sensSeqlen, *sensWindows); len(opt.Eval) == 0 {
						return fmt.Errorf("%s: %d tokens make no window of %d", *data, len(ids), *sensSeqlen)
					}
					opt.EvalSource = displayPath(*data)
				}
			}
			bars := map[string]*progress.Bar{}
			opt.Progress = func(stage string, done, total int) {
				b := bars[stage]
				if b == nil {
					b = progress.New(stage, total, "step")
					bars[stage] = b
				}
				b.Update(done, float64(done))
			}
			rep, err := inspect.AnalyzeModels(displayPath(*modelPath), fp, q, opt)
			if err != nil {
				return err
			}
			if err := checkpoint.WriteFileAtomic(*out, func(w *bufio.Writer) error { return rep.WriteHTML(w) }); err != nil {
				return err
			}
			// A report is for sharing: readable by all, unlike the private
			// temporary file it was written as.
			if err := os.Chmod(*out, 0o644); err != nil {
				return err
			}
			printInspectSummary(rep)
			st, err := os.Stat(*out)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "wrote %s (%.0f KiB) in %v\n", *out, float64(st.Size())/1024, rep.Elapsed.Round(1e8))
			if *asJSON {
				return json.NewEncoder(os.Stdout).Encode(inspectJSON(rep, *out, st.Size()))
			}
			return nil
		},
	})
}

// inspectJSON is the summary --json prints: what the report's top says.
func inspectJSON(rep *inspect.Report, out string, size int64) map[string]any {
	type channel struct {
		Index    int     `json:"index"`
		Count    int     `json:"count"`
		Of       int     `json:"of"`
		MaxRatio float64 `json:"max_ratio"`
	}
	recurring := []channel{}
	for _, r := range rep.Recurring {
		if len(recurring) == 10 {
			break
		}
		recurring = append(recurring, channel{r.Index, r.Count, r.Of, r.MaxRatio})
	}
	j := map[string]any{
		"model": rep.Model, "arch": rep.Arch, "recipe": rep.Recipe, "stages": rep.Stages, "out": out, "bytes": size,
		"seconds": rep.Elapsed.Seconds(), "calib_source": rep.CalibSource, "calib_samples": rep.CalibSeqs,
		"calib_seqlen": rep.CalibLen, "recurring_channels": recurring,
	}
	if s := rep.Sensitivity; s != nil {
		type part struct {
			Name string  `json:"name"`
			KL   float64 `json:"kl"`
			PPL  float64 `json:"ppl"`
		}
		parts := []part{}
		for _, d := range s.Parts {
			parts = append(parts, part{d.Name, d.KL, d.PPL})
		}
		j["sensitivity"] = map[string]any{
			"source": rep.EvalSource, "windows": s.Windows, "seqlen": s.SeqLen, "per_linear": s.PerLinear,
			"ppl_base": s.BasePPL, "ppl": s.Full.PPL, "kl": s.Full.KL, "parts": parts,
		}
	}
	return j
}

// printInspectSummary tells on stderr what the report's top says.
func printInspectSummary(rep *inspect.Report) {
	var rec []string
	for _, r := range rep.Recurring {
		if len(rec) == 6 || r.Count < 2 {
			break
		}
		rec = append(rec, fmt.Sprintf("%d (%d/%d, up to %.1f×)", r.Index, r.Count, r.Of, r.MaxRatio))
	}
	if len(rec) > 0 {
		fmt.Fprintf(os.Stderr, "recurring top hidden channels: %s\n", strings.Join(rec, ", "))
	}
	if s := rep.Sensitivity; s != nil {
		parts := append([]inspect.Delta(nil), s.Parts...)
		sort.SliceStable(parts, func(a, b int) bool { return parts[a].KL > parts[b].KL })
		var worst []string
		for _, d := range parts[:min(3, len(parts))] {
			worst = append(worst, fmt.Sprintf("%s (KL %.3g, ppl %.4g)", d.Name, d.KL, d.PPL))
		}
		fmt.Fprintf(os.Stderr, "FP ppl %.4g, whole recipe ppl %.4g (KL %.3g); hurt most alone: %s\n",
			s.BasePPL, s.Full.PPL, s.Full.KL, strings.Join(worst, ", "))
	}
}

// displayPath names p relative to the working directory when it can, so a
// report written in the repository says ../shared/…, not where the machine
// keeps it.
func displayPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, abs); err == nil {
		return rel
	}
	return p
}
