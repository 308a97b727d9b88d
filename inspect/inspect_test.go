package inspect

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"llmq/calib"
	"llmq/eval"
	"llmq/internal/shared"
	"llmq/model"
	"llmq/tokenizer"
)

// The fixtures' facts used here come from shared/README.md and
// wiki-llama-25m-outliers/outliers.json, not from this package: tiny-llama
// has its norm weights ×25 in hidden channels 3 and 77; the outliers model
// has six hidden outlier channels and four FFN channels per layer scaled up
// before down_proj.

// analyzeTiny runs the inspector on tiny-llama (3 layers, hidden 128,
// vocabulary 512, no tokenizer: random tokens are as typical as any).
func analyzeTiny(t *testing.T, recipe string) (*Report, *model.Model, *model.Model, [][]int) {
	t.Helper()
	dir := shared.Path(t, "models", "tiny-llama")
	fp, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	q, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	wins := RandomSequences(2, 48, fp.Vocab, 2)
	rep, err := AnalyzeModels("tiny-llama", fp, q, Options{Recipe: recipe, Calib: RandomSequences(4, 64, fp.Vocab, 1), Eval: wins})
	if err != nil {
		t.Fatal(err)
	}
	return rep, fp, q, wins
}

// Every tiny-* fixture has its outliers planted in hidden channels 3 and
// 77 (norm weights ×25); the inspector must rank exactly those two first in
// every residual-stream input of every block, whatever the family's layout.
func TestTinyPlantedOutliers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		blocks int
	}{
		{"tiny-llama", 3}, {"tiny-qwen2", 2}, {"tiny-opt", 3}, {"tiny-gpt2", 2}, {"tiny-gptneox", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := shared.Path(t, "models", tc.name)
			rep, err := Analyze(dir, Options{Calib: RandomSequences(4, 48, 512, 1)})
			if err != nil {
				t.Fatal(err)
			}
			planted := []int{3, 77}
			hidden := 0
			for _, b := range rep.Blocks {
				for _, in := range b.Inputs {
					if !in.Hidden {
						continue
					}
					hidden++
					got := []int{in.Top[0].Index, in.Top[1].Index}
					sort.Ints(got)
					if !slices.Equal(got, planted) {
						t.Errorf("%s %s: top channels %v, want the planted %v", b.Name, in.Label, got, planted)
					}
					// ×25 norm weights: far above the flagging ratio, and
					// no other channel is an outlier.
					if in.Top[1].Ratio < rep.OutlierRatio || in.Top[2].Ratio >= rep.OutlierRatio {
						t.Errorf("%s %s: ratios %.1f, %.1f, %.1f: want exactly two channels ≥ %g× the median",
							b.Name, in.Label, in.Top[0].Ratio, in.Top[1].Ratio, in.Top[2].Ratio, rep.OutlierRatio)
					}
				}
			}
			if hidden != 2*tc.blocks {
				t.Fatalf("%d residual-stream inputs, want 2 per block × %d blocks", hidden, tc.blocks)
			}
			got := []int{rep.Recurring[0].Index, rep.Recurring[1].Index}
			sort.Ints(got)
			if !slices.Equal(got, planted) || rep.Recurring[1].Count != hidden {
				t.Errorf("recurring channels %+v, want 3 and 77 in all %d inputs", rep.Recurring[:3], hidden)
			}
		})
	}
}

// W8A8 (int8 per-channel weights, int8 per-token activations) of Gaussian-
// like data loses about (max/127)²/12 / σ² ≈ 1e-4 of the signal per
// operand; an error near 1 would mean the quantized layer was compared
// with the wrong full-precision one.
func TestQuantErrorPlausible(t *testing.T) {
	for _, recipe := range []string{"w8a8", "smoothquant-o2"} {
		t.Run(recipe, func(t *testing.T) {
			rep, _, _, _ := analyzeTiny(t, recipe)
			for _, b := range rep.Blocks {
				for _, e := range b.Errors {
					if !e.Quantized || !(e.RelMSE > 0 && e.RelMSE < 1e-2) {
						t.Errorf("%s: quantized %v, relative MSE %g, want in (0, 1e-2)", e.Name, e.Quantized, e.RelMSE)
					}
				}
			}
		})
	}
}

// SmoothQuant with α = 0.5 divides channel j by s_j = √(max|X_j| / max|W_j|),
// leaving max|X_j|/s_j = √(max|X_j|·max|W_j|): a channel 25× the median
// with flat weights ends near √25 = 5×. Its weight column grows by s_j.
func TestSmoothingFlattensActivations(t *testing.T) {
	rep, _, _, _ := analyzeTiny(t, "smoothquant-o2")
	if rep.Rescaled == "" {
		t.Fatal("smoothquant-o2 not reported as rescaling")
	}
	for _, b := range rep.Blocks {
		for _, in := range b.Inputs {
			if !in.Hidden {
				continue
			}
			before, after := in.Top[0].Ratio, in.ScaledTop[0].Ratio
			if after > before/2 {
				t.Errorf("%s %s: top ratio %.1f× before smoothing, %.1f× after: want at most half", b.Name, in.Label, before, after)
			}
			for _, j := range []int{3, 77} {
				wb := float64(in.Weight[j]) / Median(in.Weight)
				wa := float64(in.ScaledWeight[j]) / Median(in.ScaledWeight)
				if wa < 2*wb {
					t.Errorf("%s %s channel %d: weight ratio %.2f → %.2f, want the outlier moved into the weights", b.Name, in.Label, j, wb, wa)
				}
			}
		}
	}
}

// The sensitivity's perplexity and whole-model KL must agree with package
// eval's independent implementation on the same windows.
func TestSensitivityMatchesEval(t *testing.T) {
	rep, fp, q, wins := analyzeTiny(t, "w8a8")
	s := rep.Sensitivity
	if len(s.Parts) != 3 {
		t.Fatalf("%d parts, want one per block", len(s.Parts))
	}
	var ids []int
	for _, w := range wins {
		ids = append(ids, w...)
	}
	c, err := eval.Compare(fp, q, ids, len(wins[0]), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	close := func(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Abs(b) }
	if !close(s.BasePPL, c.Base.Value(), 1e-4) || !close(s.Full.PPL, c.Model.Value(), 1e-4) || !close(s.Full.KL, c.KL(), 1e-3) {
		t.Errorf("sensitivity: FP ppl %g, quantized ppl %g, KL %g; eval.Compare: %g, %g, %g",
			s.BasePPL, s.Full.PPL, s.Full.KL, c.Base.Value(), c.Model.Value(), c.KL())
	}
	for _, d := range s.Parts {
		if !(d.KL > 0) {
			t.Errorf("%s alone: KL %g, want > 0 (int8 rounding changes every block)", d.Name, d.KL)
		}
	}
}

// The outliers model's planted channels (outliers.json) must be what the
// inspector finds: the six hidden channels in every residual-stream input,
// the four FFN channels of each layer at the top of its down_proj input.
func TestOutlierModelChannels(t *testing.T) {
	dir := shared.Path(t, "models", "wiki-llama-25m-outliers")
	raw, err := os.ReadFile(filepath.Join(dir, "outliers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var facts struct {
		Hidden []int            `json:"hidden_channels"`
		FFN    map[string][]int `json:"ffn"`
	}
	if err := json.Unmarshal(raw, &facts); err != nil {
		t.Fatal(err)
	}
	sort.Ints(facts.Hidden)
	// Real text: the planted FFN channels stand out of the channels' natural
	// ranges on the text the model was made for (on random tokens a natural
	// outlier can outrank the least-scaled one).
	tok, err := tokenizer.FromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(shared.Path(t, "data", "wikitext-2", "wiki.valid.tokens"))
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(string(text[:min(len(text), 200_000)]))
	seqs, err := calib.Sample(ids, 4, 256, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Analyze(dir, Options{Calib: seqs})
	if err != nil {
		t.Fatal(err)
	}
	var rec []int
	for _, r := range rep.Recurring[:len(facts.Hidden)] {
		rec = append(rec, r.Index)
	}
	sort.Ints(rec)
	if !slices.Equal(rec, facts.Hidden) {
		t.Errorf("recurring channels %v, want %v", rec, facts.Hidden)
	}
	for _, b := range rep.Blocks {
		want := slices.Clone(facts.FFN[strconv.Itoa(b.Index)])
		sort.Ints(want)
		down := b.Inputs[3]
		var got []int
		for _, c := range down.Top[:len(want)] {
			got = append(got, c.Index)
		}
		sort.Ints(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s %s: top channels %v, want the scaled FFN channels %v", b.Name, down.Label, got, want)
		}
	}
}

func TestHTMLSelfContained(t *testing.T) {
	rep, _, _, _ := analyzeTiny(t, "smoothquant-o2")
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	// Nothing may be fetched: no scripts, stylesheets or images by URL
	// (the only URL is SVG's namespace name, which is never fetched).
	for _, bad := range []string{"<script", "<link", "<img", "src=", "url(", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	if n := strings.Count(page, "http"); n != strings.Count(page, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Errorf("report names %d URLs besides the SVG namespace", n-strings.Count(page, "xmlns"))
	}
	// 4 inputs × (2 activation + 2 weight charts) × 3 blocks + the sensitivity chart.
	if n := strings.Count(page, "<svg"); n != 4*4*3+1 {
		t.Errorf("%d charts, want %d", n, 4*4*3+1)
	}
	for _, ch := range []string{`channel 3 ·`, `channel 77 ·`} {
		if !strings.Contains(page, `<span class="chip out">`+ch) {
			t.Errorf("planted outlier %q not flagged in the report", ch)
		}
	}
}

func TestTopChannels(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v      []float32
		k      int
		median float64
		want   []Channel
	}{
		{"odd", []float32{1, 9, 2, 3, 0.5}, 2, 2, []Channel{{1, 9, 4.5}, {3, 3, 1.5}}},
		{"even", []float32{4, 1, 2, 3}, 1, 2.5, []Channel{{0, 4, 1.6}}},
		{"ties keep index order", []float32{2, 5, 5, 1}, 3, 3.5, []Channel{{1, 5, 5 / 3.5}, {2, 5, 5 / 3.5}, {0, 2, 2 / 3.5}}},
		{"dead median", []float32{0, 0, 7}, 1, 0, []Channel{{2, 7, math.Inf(1)}}},
		{"k beyond length", []float32{1}, 3, 1, []Channel{{0, 1, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m := Median(tc.v); m != tc.median {
				t.Errorf("Median = %g, want %g", m, tc.median)
			}
			got := TopChannels(tc.v, tc.k)
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				w := tc.want[i]
				if got[i].Index != w.Index || got[i].MaxAbs != w.MaxAbs || math.Abs(got[i].Ratio-w.Ratio) > 1e-12 && !math.IsInf(w.Ratio, 1) || math.IsInf(w.Ratio, 1) != math.IsInf(got[i].Ratio, 1) {
					t.Errorf("channel %d: got %+v, want %+v", i, got[i], w)
				}
			}
		})
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		max   float64
		ticks []float64
	}{
		{96.6, []float64{0, 50, 100}},
		{4, []float64{0, 1, 2, 3, 4}},
		{0.37, []float64{0, 0.1, 0.2, 0.3, 0.4}},
		{0, []float64{0}},
	} {
		got, _ := niceTicks(tc.max)
		if len(got) != len(tc.ticks) {
			t.Errorf("niceTicks(%g) = %v, want %v", tc.max, got, tc.ticks)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tc.ticks[i]) > 1e-9 {
				t.Errorf("niceTicks(%g) = %v, want %v", tc.max, got, tc.ticks)
				break
			}
		}
	}
}

// The report covers every family's parts: one input per group of linears
// reading the same values (a mixture of experts: the router with every
// expert's gate/up, then each expert's down), and for experts the tokens
// the router sent to each.
func TestFamiliesReport(t *testing.T) {
	for _, name := range []string{"tiny-llama3", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-mixtral", "tiny-qwen3moe"} {
		t.Run(name, func(t *testing.T) {
			dir := shared.Path(t, "models", name)
			seqs := RandomSequences(4, 48, 512, 1)
			rep, err := Analyze(dir, Options{Calib: seqs})
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			for l, b := range rep.Blocks {
				blk := m.Blocks[l]
				if len(b.Inputs) != len(blk.InputGroups()) || len(b.Errors) != len(blk.Linears()) {
					t.Errorf("%s: %d inputs and %d linears reported, the block has %d and %d", b.Name, len(b.Inputs), len(b.Errors), len(blk.InputGroups()), len(blk.Linears()))
				}
				if blk.MoE == nil {
					continue
				}
				total := 0
				for _, n := range b.ExpertTokens {
					total += n
				}
				if len(b.ExpertTokens) != len(blk.MoE.Experts) || total != blk.MoE.TopK*4*48 {
					t.Errorf("%s: expert token counts %v, want %d experts summing to top-%d × %d tokens", b.Name, b.ExpertTokens, len(blk.MoE.Experts), blk.MoE.TopK, 4*48)
				}
			}
			var html bytes.Buffer
			if err := rep.WriteHTML(&html); err != nil {
				t.Fatal(err)
			}
		})
	}
}
