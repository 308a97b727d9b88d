package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"llmq/calib"
	"llmq/internal/progress"
	"llmq/internal/sysinfo"
	"llmq/model"
	"llmq/modelio"
	"llmq/quant/methods"
	"llmq/recipe"
	"llmq/tokenizer"
)

// calibFlags are the calibration settings shared by quantize and eval.
type calibFlags struct {
	data    *string
	samples *int
	seqlen  *int
	seed    *uint64
	routed  *bool
}

func addCalibFlags(fs *flag.FlagSet) *calibFlags {
	cf := &calibFlags{
		data:    fs.String("calib-data", "", calibDataHelp),
		samples: fs.Int("calib-samples", 128, "number of calibration sequences"),
		seqlen:  fs.Int("calib-seqlen", 512, "tokens per calibration sequence"),
		seed:    fs.Uint64("seed", 0, "seed for choosing calibration windows"),
		routed: fs.Bool("moe-routed-only", false, "mixture of experts: calibrate each expert on the tokens routed to it only "+
			"(default: every expert sees every calibration token, as llm-compressor calibrates, so rarely chosen experts get full statistics)"),
	}
	atLeast(fs, 1, "calib-samples", "calib-seqlen")
	return cf
}

// checkRecipe loads the named recipe and builds it against m, so a recipe
// that does not fit the model fails before anything slow (tokenizing,
// calibration) starts.
func checkRecipe(m *model.Model, recipeName string) error {
	r, err := recipe.Load(recipeName)
	if err != nil {
		return err
	}
	_, err = r.Build(m)
	return err
}

// calibRun describes the calibration a recipe ran (nil: none).
type calibRun struct {
	data            string
	samples, seqlen int
	seed            uint64
}

// addJSON adds the calibration fields to a JSON report, only when
// calibration ran.
func (c *calibRun) addJSON(out map[string]any) {
	if c == nil {
		return
	}
	out["calib_data"], out["calib_samples"], out["calib_seqlen"], out["seed"] = c.data, c.samples, c.seqlen, c.seed
}

// applyRecipe quantizes m in place with the named recipe, drawing
// calibration data only if a method needs it.
// held is memory the caller keeps besides (eval's FP base model), counted
// in the memory check.
func applyRecipe(m *model.Model, tok func() (tokenizer.Tokenizer, error), recipeName string, cf *calibFlags, held int64) ([]methods.Method, *calibRun, error) {
	r, err := recipe.Load(recipeName)
	if err != nil {
		return nil, nil, err
	}
	stages, err := r.Build(m)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	need := false
	for _, s := range stages {
		names = append(names, s.Name())
		need = need || s.NeedsCalibration()
	}
	samples := 0
	if need {
		samples = *cf.samples
	}
	// Before reading any data: a run that cannot fit is refused now.
	e := methods.EstimateRun(m, stages, samples, *cf.seqlen, m.Lazy())
	e.Weights += held
	if err := checkMemory(e); err != nil {
		return nil, nil, err
	}
	var seqs [][]int
	var cr *calibRun
	if need {
		if *cf.data == "" {
			*cf.data = sharedText("wiki.valid.tokens")
		}
		if *cf.data == "" {
			return nil, nil, usagef("the recipe needs calibration data: pass --calib-data FILE (%s)", sharedMissing())
		}
		text, ids, err := readCalib(*cf.data)
		if err != nil {
			return nil, nil, err
		}
		if ids == nil {
			t, err := tok()
			if err != nil {
				return nil, nil, err
			}
			ids = encodeWithBOS(t, m, text)
		}
		for i, id := range ids {
			if id < 0 || id >= m.Vocab {
				return nil, nil, fmt.Errorf("%s: token id %d (number %d) is outside the model's vocabulary of %d", *cf.data, id, i, m.Vocab)
			}
		}
		if seqs, err = calib.Sample(ids, *cf.samples, *cf.seqlen, *cf.seed); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", *cf.data, err)
		}
		cr = &calibRun{data: *cf.data, samples: len(seqs), seqlen: *cf.seqlen, seed: *cf.seed}
		fmt.Fprintf(os.Stderr, "calibration: %d × %d tokens from %s\n", len(seqs), *cf.seqlen, *cf.data)
	}
	fmt.Fprintf(os.Stderr, "recipe %s: %s\n", r.Source, strings.Join(names, " → "))
	bar := progress.New("quantize", len(m.Blocks), "layer")
	start := time.Now()
	if err := methods.RunWith(m, seqs, stages, func(done, _ int) { bar.Update(done, float64(done)) }, methods.RunOptions{RoutedOnly: *cf.routed}); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "quantized in %v\n", time.Since(start).Round(time.Millisecond))
	return stages, cr, nil
}

// quantizeModelFree quantizes src model-free when the recipe allows it
// (modelio.ModelFree: round-to-nearest without calibration), tensor by
// tensor from the checkpoint to out without building the model, and says
// so on stderr. done is false when the recipe or the checkpoint needs the
// model; stderr then says why, and the caller quantizes layer by layer.
func quantizeModelFree(src, recipeName, out string, asJSON bool) (done bool, err error) {
	mf, err := modelio.OpenModelFree(src)
	if errors.Is(err, modelio.ErrNotModelFree) {
		fmt.Fprintf(os.Stderr, "quantizing on the loaded model: %v\n", err)
		return false, nil
	}
	if err != nil {
		return true, err
	}
	defer mf.Close()
	r, err := recipe.Load(recipeName)
	if err != nil {
		return true, err
	}
	stages, err := r.Build(mf.Model) // the recipe's checks, as on the loaded model
	if err != nil {
		return true, err
	}
	if why := modelio.ModelFreeBlocker(stages); why != "" {
		fmt.Fprintf(os.Stderr, "quantizing layer by layer on the loaded model: %s\n", why)
		return false, nil
	}
	var names []string
	for _, s := range stages {
		names = append(names, s.Name())
	}
	fmt.Fprintf(os.Stderr, "recipe %s: %s\n", r.Source, strings.Join(names, " → "))
	fmt.Fprintln(os.Stderr, "model-free: round-to-nearest needs no calibration, so the checkpoint is quantized tensor by tensor, without building the model")
	opt := modelio.ModelFreeOptions{}
	if peak, err := mf.PeakEstimate(stages, opt); err == nil {
		fmt.Fprintf(os.Stderr, "memory estimate: %s (one slice of rows of a weight at a time)\n", methods.Bytes(peak))
	}
	const mib = 1 << 20
	var bar *progress.Bar
	opt.Progress = func(done, total int64) {
		if bar == nil {
			bar = progress.New("quantize", int((total+mib-1)/mib), "MiB")
		}
		steps := int(done / mib)
		if done == total {
			steps = int((total + mib - 1) / mib)
		}
		bar.Update(steps, float64(done)/mib)
	}
	start := time.Now()
	rep, err := mf.Quantize(out, stages, recipeName, opt)
	if err != nil {
		return true, err
	}
	el := time.Since(start)
	if len(rep.Dropped) > 0 {
		fmt.Fprintf(os.Stderr, "left out %d tensors the %s family does not use: %s\n", len(rep.Dropped), mf.Model.Arch, strings.Join(rep.Dropped, ", "))
	}
	fmt.Fprintf(os.Stderr, "quantized %d linears, copied %d tensors at their stored dtype, in %v\n", rep.Quantized, rep.Copied, el.Round(time.Millisecond))
	fmt.Fprintf(os.Stderr, "wrote %s: %s in %d shard(s) (peak RSS %.0f MiB)\n", out, methods.Bytes(rep.Bytes), rep.Shards, float64(sysinfo.PeakRSS())/(1<<20))
	if asJSON {
		return true, json.NewEncoder(os.Stdout).Encode(map[string]any{
			"model": src, "recipe": recipeName, "out": out, "quantize_seconds": el.Seconds(),
			"peak_rss_bytes": sysinfo.PeakRSS(), "calibrated": false, "model_free": true,
			"shards": rep.Shards, "bytes": rep.Bytes,
		})
	}
	return true, nil
}

func init() {
	var modelPath, recipeName, tokPath, out *string
	var asJSON *bool
	var cf *calibFlags
	commands = append(commands, &command{
		name:    "quantize",
		summary: "quantize a model with a recipe (llm-compressor YAML or a preset)",
		usage:   "--model DIR --recipe FILE.yaml|PRESET --out DIR",
		help: `Applies a quantization recipe layer by layer: calibration sequences from
--calib-data are run through the model block by block, each block is
transformed by the recipe's modifiers in order, and its quantized outputs
feed the next block. Recipes use llm-compressor's YAML (stages → modifiers:
QuantizationModifier, SmoothQuantModifier, …). Built-in presets:
  ` + strings.Join(recipe.Presets(), ", ") + `

The quantized model is written to --out as a Hugging Face-style folder
(config.json with an llmq quantization_config, packed codes and scales in
model.safetensors, tokenizer files copied) that llmq eval, generate and
export load directly. To measure without saving, use
llmq eval --model DIR --recipe R.

Example:
  llmq quantize --model ../shared/models/wiki-llama-25m --recipe gptq-w4a16 --out /tmp/wiki-w4
  llmq eval --model /tmp/wiki-w4 --limit 20`,
		flags: func(fs *flag.FlagSet) {
			modelPath = fs.String("model", "", "model folder or llama2.c .bin file")
			recipeName = fs.String("recipe", "", "recipe YAML file or preset name")
			tokPath = fs.String("tokenizer", "", "tokenizer file or folder (default: found beside the model)")
			out = fs.String("out", "", "folder to write the quantized model to (must not exist)")
			asJSON = fs.Bool("json", false, "print a JSON summary (time, peak RSS, calibration when it ran) on stdout")
			cf = addCalibFlags(fs)
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			if *recipeName == "" {
				return usagef("--recipe is required (presets: %s)", strings.Join(recipe.Presets(), ", "))
			}
			if *out == "" {
				return usagef("--out is required (to measure without saving: llmq eval --recipe)")
			}
			if _, err := os.Stat(*out); err == nil {
				return fmt.Errorf("%s already exists; choose a new output folder", *out)
			}
			if _, err := recipe.Load(*recipeName); err != nil { // fail before loading anything
				return err
			}
			// Quantization holds little live memory for long (one block's
			// weights and activations); a tighter GC target keeps the peak
			// near the live size instead of Go's default 2×.
			debug.SetGCPercent(25)
			// Lazily: block weights are read as quantization reaches them.
			if err := checkModelFolder(*modelPath); err != nil {
				return err
			}
			if done, err := quantizeModelFree(*modelPath, *recipeName, *out, *asJSON); done || err != nil {
				return err
			}
			load := model.LoadLazy
			if modelio.IsGGUF(*modelPath) {
				load = modelio.Load // a GGUF file loads whole, dequantized to FP32
			}
			m, err := load(*modelPath)
			if err != nil {
				return err
			}
			defer m.Close()
			warnUnused(*modelPath, m)
			tok := func() (tokenizer.Tokenizer, error) { return loadTokenizer(*modelPath, *tokPath) }
			start := time.Now()
			stages, cr, err := applyRecipe(m, tok, *recipeName, cf, 0)
			if err != nil {
				return err
			}
			qtime := time.Since(start)
			for _, s := range stages {
				if sq, ok := s.(*methods.SmoothQuant); ok && sq.Search {
					fmt.Fprintf(os.Stderr, "smoothquant α per block: %v\n", sq.Chosen)
				}
			}
			if err := modelio.Save(m, *modelPath, *out, *recipeName); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "wrote %s (peak RSS %.0f MiB)\n", *out, float64(sysinfo.PeakRSS())/(1<<20))
			if *asJSON {
				rep := map[string]any{
					"model": *modelPath, "recipe": *recipeName, "out": *out, "quantize_seconds": qtime.Seconds(),
					"peak_rss_bytes": sysinfo.PeakRSS(), "calibrated": cr != nil, "model_free": false,
				}
				cr.addJSON(rep)
				return json.NewEncoder(os.Stdout).Encode(rep)
			}
			return nil
		},
	})
}
