package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"llmq/calib"
	"llmq/internal/progress"
	"llmq/internal/shared"
	"llmq/model"
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
}

func addCalibFlags(fs *flag.FlagSet) *calibFlags {
	def := ""
	if d := shared.Dir(); d != "" {
		def = filepath.Join(d, "data", "wikitext-2", "wiki.valid.tokens")
	}
	return &calibFlags{
		data:    fs.String("calib-data", def, "calibration text (default: WikiText-2 validation split; never the test split)"),
		samples: fs.Int("calib-samples", 128, "number of calibration sequences"),
		seqlen:  fs.Int("calib-seqlen", 512, "tokens per calibration sequence"),
		seed:    fs.Uint64("seed", 0, "seed for choosing calibration windows"),
	}
}

// applyRecipe quantizes m in place with the named recipe, drawing
// calibration data only if a method needs it.
func applyRecipe(m *model.Model, tok tokenizer.Tokenizer, recipeName string, cf *calibFlags) ([]methods.Method, error) {
	r, err := recipe.Load(recipeName)
	if err != nil {
		return nil, err
	}
	stages, err := r.Build(m)
	if err != nil {
		return nil, err
	}
	var names []string
	need := false
	for _, s := range stages {
		names = append(names, s.Name())
		need = need || s.NeedsCalibration()
	}
	var seqs [][]int
	if need {
		if *cf.data == "" {
			return nil, fmt.Errorf("the recipe needs calibration data: pass --calib-data FILE")
		}
		text, err := os.ReadFile(*cf.data)
		if err != nil {
			return nil, err
		}
		ids := encodeWithBOS(tok, m, string(text))
		if seqs, err = calib.Sample(ids, *cf.samples, *cf.seqlen, *cf.seed); err != nil {
			return nil, fmt.Errorf("%s: %w", *cf.data, err)
		}
		fmt.Fprintf(os.Stderr, "calibration: %d × %d tokens from %s\n", len(seqs), *cf.seqlen, *cf.data)
	}
	fmt.Fprintf(os.Stderr, "recipe %s: %s\n", r.Source, strings.Join(names, " → "))
	bar := progress.New("quantize", len(m.Blocks), "layer")
	start := time.Now()
	if err := methods.Run(m, seqs, stages, func(done, _ int) { bar.Update(done, float64(done)) }); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "quantized in %v\n", time.Since(start).Round(time.Millisecond))
	return stages, nil
}

func init() {
	var modelPath, recipeName, tokPath *string
	var cf *calibFlags
	commands = append(commands, &command{
		name:    "quantize",
		summary: "quantize a model with a recipe (llm-compressor YAML or a preset)",
		usage:   "--model DIR --recipe FILE.yaml|PRESET",
		help: `Applies a quantization recipe layer by layer: calibration sequences from
--calib-data are run through the model block by block, each block is
transformed by the recipe's modifiers in order, and its quantized outputs
feed the next block. Recipes use llm-compressor's YAML (stages → modifiers:
QuantizationModifier, SmoothQuantModifier, …). Built-in presets:
  ` + strings.Join(recipe.Presets(), ", ") + `

To measure the result without saving it, use: llmq eval --model DIR --recipe R

Example:
  llmq quantize --model ../shared/models/wiki-llama-25m --recipe smoothquant-w8a8`,
		flags: func(fs *flag.FlagSet) {
			modelPath = fs.String("model", "", "model folder or llama2.c .bin file")
			recipeName = fs.String("recipe", "", "recipe YAML file or preset name")
			tokPath = fs.String("tokenizer", "", "tokenizer file or folder (default: found beside the model)")
			cf = addCalibFlags(fs)
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q", args)
			}
			if *recipeName == "" {
				return fmt.Errorf("--recipe is required (presets: %s)", strings.Join(recipe.Presets(), ", "))
			}
			m, err := loadModel(*modelPath)
			if err != nil {
				return err
			}
			tok, err := loadTokenizer(*modelPath, *tokPath)
			if err != nil {
				return err
			}
			stages, err := applyRecipe(m, tok, *recipeName, cf)
			if err != nil {
				return err
			}
			for _, s := range stages {
				if sq, ok := s.(*methods.SmoothQuant); ok && sq.Search {
					fmt.Fprintf(os.Stderr, "smoothquant α per block: %v\n", sq.Chosen)
				}
			}
			return fmt.Errorf("saving quantized models (--out) is not implemented yet; use llmq eval --recipe to measure")
		},
	})
}
