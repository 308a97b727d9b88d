package inspect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"llmq/calib"
	"llmq/model"
	"llmq/nn"
	"llmq/quant/methods"
	"llmq/recipe"
)

// Defaults of the analysis.
const (
	// DefaultRecipe is the recipe measured when none is given: plain W8A8
	// round-to-nearest, the scheme activation outliers break first.
	DefaultRecipe = "w8a8"
	// DefaultTopK channels are listed per linear input.
	DefaultTopK = 8
	// DefaultOutlierRatio is the ratio to the median channel from which a
	// channel is flagged as an outlier. Ordinary channels of a trained
	// model's norm outputs spread over a few × the median; the systematic
	// outliers of LLM.int8() and SmoothQuant stand 10–100× above it.
	DefaultOutlierRatio = 8
)

// Options configure Analyze.
type Options struct {
	// Recipe is a recipe file or preset name (DefaultRecipe when empty).
	Recipe string
	// Calib are the calibration sequences (token ids); the channel ranges
	// and quantization errors are measured on them, and the recipe is
	// calibrated on them.
	Calib       [][]int
	CalibSource string // where they came from, for the report
	// Eval are the windows the sensitivity is measured on; none skips it.
	Eval       [][]int
	EvalSource string
	// PerLinear measures the sensitivity of single linears rather than of
	// whole blocks (7× the work for a Llama block).
	PerLinear    bool
	TopK         int     // channels listed per input (DefaultTopK when 0)
	OutlierRatio float64 // DefaultOutlierRatio when 0
	// Progress, if set, is told about long stages ("quantize", "collect",
	// "sensitivity") as they advance.
	Progress func(stage string, done, total int)
}

// Report is everything the inspector found.
type Report struct {
	Model string // the model's path as given
	Arch  string
	model.Hyper
	Recipe string
	Stages []string // the recipe's methods in order
	// Rescaled describes the recipe's channel rescaling (SmoothQuant, AWQ);
	// empty when it has none, and then the Scaled* fields are nil.
	Rescaled     string
	CalibSeqs    int
	CalibLen     int
	CalibSource  string
	TopK         int
	OutlierRatio float64
	Blocks       []BlockReport
	// Recurring ranks the hidden channels by how often they are among the
	// top channels of the residual-stream inputs, over all blocks.
	Recurring   []Recurring
	Sensitivity *Sensitivity // nil when no evaluation windows were given
	EvalSource  string
	Elapsed     time.Duration
}

// BlockReport is one decoder block.
type BlockReport struct {
	Index  int
	Name   string
	Inputs []InputReport
	Errors []LinearError // in execution order
	// ExpertTokens counts, in a mixture-of-experts block, the calibration
	// tokens the router sent to each expert (top-k choices: they sum to
	// k × tokens). A rarely chosen expert is one whose statistics come from
	// few tokens unless calibration runs every expert on every token.
	ExpertTokens []int `json:",omitempty"`
}

// InputReport is one input shared by a group of linears (q/k/v, o,
// gate/up, down).
type InputReport struct {
	Label  string   // what the input is, e.g. "q/k/v input (attention norm output)"
	Roles  []string // the linears reading it
	Names  []string // their checkpoint names
	Hidden bool     // a residual-stream (hidden-size) input: channel j is hidden channel j
	// Act is max |x_j| per channel over the calibration tokens; Weight is
	// max |W_{·j}| over the rows of the linears reading the input.
	Act, Weight []float32
	Median      float64 // median of Act
	Top         []Channel
	// After the recipe's rescaling (nil without one).
	ScaledAct, ScaledWeight []float32
	ScaledTop               []Channel
}

// Analyze loads the model at path twice (a full-precision copy and one the
// recipe quantizes) and runs AnalyzeModels.
func Analyze(path string, opt Options) (*Report, error) {
	fp, err := model.Load(path)
	if err != nil {
		return nil, err
	}
	q, err := model.Load(path)
	if err != nil {
		return nil, err
	}
	return AnalyzeModels(path, fp, q, opt)
}

// AnalyzeModels inspects a model given as two separately loaded copies of
// the same full-precision checkpoint: fp stays as it is, q is quantized by
// the recipe. For every block it collects the channel ranges of each
// linear input on the calibration sequences, the same after the recipe's
// rescaling, and each linear's quantization error; then it measures the
// sensitivity on opt.Eval. name is the model as the report names it.
//
// Memory: two FP32 copies of the model (the quantized copy keeps the
// rescaled FP layers it replaced as references) plus its quantized layers,
// and one block's calibration activations.
func AnalyzeModels(name string, fp, q *model.Model, opt Options) (*Report, error) {
	start := time.Now()
	if fp == q {
		return nil, fmt.Errorf("inspect: the full-precision and the quantized model must be separate copies")
	}
	if len(opt.Calib) == 0 {
		return nil, fmt.Errorf("inspect: no calibration sequences")
	}
	if opt.Recipe == "" {
		opt.Recipe = DefaultRecipe
	}
	if opt.TopK <= 0 {
		opt.TopK = DefaultTopK
	}
	if opt.OutlierRatio <= 0 {
		opt.OutlierRatio = DefaultOutlierRatio
	}
	progress := func(stage string) func(done, total int) {
		if opt.Progress == nil {
			return nil
		}
		return func(done, total int) { opt.Progress(stage, done, total) }
	}
	r, err := recipe.Load(opt.Recipe)
	if err != nil {
		return nil, err
	}
	stages, err := r.Build(q)
	if err != nil {
		return nil, err
	}
	refs := references{}
	if err := methods.Run(q, opt.Calib, wrapStages(stages, refs), progress("quantize")); err != nil {
		return nil, fmt.Errorf("%s: %w", opt.Recipe, err)
	}
	rep := &Report{
		Model: name, Arch: fp.Arch, Hyper: fp.Hyper, Recipe: opt.Recipe, Rescaled: rescaling(stages),
		CalibSeqs: len(opt.Calib), CalibLen: len(opt.Calib[0]), CalibSource: opt.CalibSource,
		TopK: opt.TopK, OutlierRatio: opt.OutlierRatio, EvalSource: opt.EvalSource,
	}
	for _, s := range stages {
		rep.Stages = append(rep.Stages, s.Name())
	}
	if err := collectBlocks(rep, fp, q, refs, opt, progress("collect")); err != nil {
		return nil, err
	}
	var tops [][]Channel
	for _, b := range rep.Blocks {
		for _, in := range b.Inputs {
			if in.Hidden {
				tops = append(tops, in.Top)
			}
		}
	}
	rep.Recurring = recurring(tops)
	if len(opt.Eval) > 0 {
		if rep.Sensitivity, err = measureSensitivity(fp, q, refs, opt.Eval, opt.PerLinear, progress("sensitivity")); err != nil {
			return nil, err
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// collectBlocks fills rep.Blocks. Block inputs come from the FP model
// (so each block is looked at on the activations it sees unquantized);
// within a block, one pass collects the FP ranges and a second runs the
// rescaled FP block with every quantized linear tapped (see tap).
func collectBlocks(rep *Report, fp, q *model.Model, refs references, opt Options, progress func(done, total int)) error {
	acts, err := calib.Embed(fp, opt.Calib)
	if err != nil {
		return fmt.Errorf("calibration: %w", err)
	}
	view := *fp
	view.Blocks = append([]*model.Block(nil), fp.Blocks...)
	runner := view.NewBlockRunner()
	for l, b := range fp.Blocks {
		br := BlockReport{Index: l, Name: b.Name}
		if b.MoE != nil {
			b.MoE.Tokens = make([]int, len(b.MoE.Experts))
			b.MoE.AllExperts = true // every expert's inputs on every token
		}
		stats, err := calib.Collect(&view, runner, l, acts, nil, calib.Options{})
		if b.MoE != nil {
			br.ExpertTokens, b.MoE.Tokens, b.MoE.AllExperts = b.MoE.Tokens, nil, false
		}
		if err != nil {
			return err
		}
		// The rescaled FP block, quantized linears tapped.
		sb := fpBlock(fp, q, refs, l)
		if sb.MoE != nil {
			sb.MoE.AllExperts = true // every expert's inputs on every token
		}
		taps := map[string]*tap{}
		for _, nl := range sb.Linears() {
			if refs.quantized(l, nl.Role) {
				t := &tap{ref: *nl.Linear, q: *q.Blocks[l].Linear(nl.Role)}
				taps[nl.Role] = t
				*nl.Linear = t
			}
		}
		view.Blocks[l] = sb
		scaled, err := calib.Collect(&view, runner, l, acts, nil, calib.Options{FullPass: true}) // the taps see every linear
		view.Blocks[l] = b
		if err != nil {
			return err
		}
		for gi, group := range b.InputGroups() {
			in := InputReport{Label: inputLabel(b, gi, group), Roles: group}
			var ws, sws []*nn.Dense
			for _, role := range group {
				in.Names = append(in.Names, fp.LinearName(l, role))
				d, ok := (*b.Linear(role)).(*nn.Dense)
				if !ok {
					return fmt.Errorf("%s is %T, not a full-precision layer: inspect an unquantized model", fp.LinearName(l, role), *b.Linear(role))
				}
				ws = append(ws, d)
				sd := refs[l][role]
				if sd == nil {
					sd, _ = (*q.Blocks[l].Linear(role)).(*nn.Dense)
				}
				if sd != nil {
					sws = append(sws, sd)
				}
			}
			st := stats[group[0]]
			in.Act = st.AbsMax
			in.Weight = WeightInputMax(ws)
			in.Median = Median(in.Act)
			in.Top = TopChannels(in.Act, opt.TopK)
			in.Hidden = st.In == fp.Hidden && (gi == 0 || gi == 2)
			if rep.Rescaled != "" {
				in.ScaledAct = scaled[group[0]].AbsMax
				in.ScaledWeight = WeightInputMax(sws)
				in.ScaledTop = TopChannels(in.ScaledAct, opt.TopK)
			}
			br.Inputs = append(br.Inputs, in)
		}
		for _, nl := range q.Blocks[l].Linears() {
			e := LinearError{Role: nl.Role, Name: fp.LinearName(l, nl.Role), RelMSE: nan()}
			if t := taps[nl.Role]; t != nil {
				e.Quantized, e.RelMSE, e.Layer = true, t.relMSE(), describe(*nl.Linear)
			}
			br.Errors = append(br.Errors, e)
		}
		rep.Blocks = append(rep.Blocks, br)
		calib.Propagate(runner, l, acts)
		if progress != nil {
			progress(l+1, len(fp.Blocks))
		}
	}
	return nil
}

// inputLabel names a block's input group gi for the report.
func inputLabel(b *model.Block, gi int, group []string) string {
	roles := strings.Join(group, "/")
	switch gi {
	case 0:
		if b.PostNorm {
			return roles + " input (residual stream)"
		}
		return roles + " input (attention norm output)"
	case 1:
		return roles + " input (attention output)"
	case 2:
		if b.PostNorm {
			return roles + " input (residual stream after attention)"
		}
		return roles + " input (MLP norm output)"
	case 3:
		return roles + " input (MLP activation)"
	}
	return roles + " input"
}

// rescaling describes the channel rescaling stages of a recipe ("" when
// there are none).
func rescaling(stages []methods.Method) string {
	var out []string
	for _, s := range stages {
		switch m := s.(type) {
		case *methods.SmoothQuant:
			if m.Search {
				out = append(out, "SmoothQuant, α searched per block"+chosen(m.Chosen))
			} else {
				out = append(out, fmt.Sprintf("SmoothQuant, α = %g", m.Alpha))
			}
		case *methods.AWQ:
			out = append(out, "AWQ activation-aware scales")
		}
	}
	return strings.Join(out, "; ")
}

// chosen lists the α picked per block, in block order.
func chosen(c map[string]float64) string {
	if len(c) == 0 {
		return ""
	}
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Slice(names, func(a, b int) bool { return natLess(names[a], names[b]) })
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s: %g", n[strings.LastIndex(n, ".")+1:], c[n]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// natLess orders "model.layers.2" before "model.layers.10".
func natLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func nan() float64 { return math.NaN() }

// describe names a quantized layer for the report.
func describe(l nn.Linear) string {
	if s, ok := l.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", l)
}

// RandomSequences draws n sequences of seqlen token ids uniformly from
// [0, vocab): calibration for models without a tokenizer (the random-weight
// test fixtures), where any token is as typical as any other.
func RandomSequences(n, seqlen, vocab int, seed uint64) [][]int {
	rng := rand.New(rand.NewPCG(seed, 0x1257ec7))
	out := make([][]int, n)
	for i := range out {
		out[i] = make([]int, seqlen)
		for t := range out[i] {
			out[i][t] = rng.IntN(vocab)
		}
	}
	return out
}
