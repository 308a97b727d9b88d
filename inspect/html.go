package inspect

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"
)

// WriteHTML renders the report as one HTML page with inline SVG charts
// and CSS: no scripts, fonts or images are loaded from anywhere, so it
// opens offline and can be mailed as a single file.
func (r *Report) WriteHTML(w io.Writer) error {
	return pageTmpl.Execute(w, r.page())
}

// page is the report shaped for the template: numbers formatted, charts
// drawn.
type page struct {
	Title       string
	Meta        [][2]string
	Threshold   string
	TopK        int
	Recurring   []recurringView
	Summary     []summaryRow
	Rescaled    bool
	Sensitivity *sensView
	Roles       []string
	Errors      []errorRow
	ErrorNote   string
	Blocks      []blockView
}

type recurringView struct {
	Index     int
	Count, Of int
	MaxRatio  string
	Outlier   bool
}

type chip struct {
	Text    string
	Outlier bool
}

type summaryRow struct {
	Block, BlockSpan int // BlockSpan > 0 on a block's first row
	Input            string
	Linears          string
	Median, Max      string
	Top              []chip
	ScaledMaxRatio   string
	Anchor           string
}

type sensView struct {
	Note  string
	Shown string // how many of the parts the table lists
	Chart template.HTML
	Rows  []sensRow
}

type sensRow struct {
	Rank     int
	Name     string
	KL, PPL  string
	DeltaPPL string
}

type errorRow struct {
	Block int
	Cells []errorCell
}

type errorCell struct {
	Text, Title string
	Style       template.CSS
}

type blockView struct {
	Index   int
	Name    string
	Anchor  string
	Experts string // tokens routed to each expert, for a mixture of experts
	Inputs  []inputView
}

type inputView struct {
	Label  string
	Charts []template.HTML
}

func (r *Report) page() *page {
	p := &page{
		Title:     "llmq inspect — " + filepath.Base(filepath.Clean(r.Model)),
		Threshold: fmt.Sprintf("%g", r.OutlierRatio),
		TopK:      r.TopK,
		Rescaled:  r.Rescaled != "",
	}
	recipe := r.Recipe
	if len(r.Stages) > 0 {
		recipe += " (" + strings.Join(r.Stages, " → ") + ")"
	}
	p.Meta = [][2]string{
		{"model", fmt.Sprintf("%s — %s, %d layers, hidden %d, intermediate %d, vocab %d", r.Model, r.Arch, r.Layers, r.Hidden, r.Intermediate, r.Vocab)},
		{"recipe", recipe},
		{"calibration", fmt.Sprintf("%d sequences × %d tokens from %s", r.CalibSeqs, r.CalibLen, r.CalibSource)},
	}
	if r.Rescaled != "" {
		p.Meta = append(p.Meta, [2]string{"rescaling", r.Rescaled})
	}
	if s := r.Sensitivity; s != nil {
		p.Meta = append(p.Meta, [2]string{"sensitivity", fmt.Sprintf("%d windows × %d tokens from %s", s.Windows, s.SeqLen, r.EvalSource)})
	}
	p.Meta = append(p.Meta, [2]string{"analysis time", r.Elapsed.Round(1e8).String()})

	for _, rc := range r.Recurring {
		if len(p.Recurring) >= 8 || rc.Count < 2 && len(p.Recurring) > 0 {
			break
		}
		p.Recurring = append(p.Recurring, recurringView{rc.Index, rc.Count, rc.Of, ratio(rc.MaxRatio), rc.MaxRatio >= r.OutlierRatio})
	}

	for _, b := range r.Blocks {
		anchor := fmt.Sprintf("block%d", b.Index)
		for i, in := range b.Inputs {
			row := summaryRow{Block: b.Index, Input: in.Label, Linears: strings.Join(in.Roles, ", "), Anchor: anchor,
				Median: num(in.Median), Max: num(float64(maxOf(in.Act)))}
			if i == 0 {
				row.BlockSpan = len(b.Inputs)
			}
			for _, c := range in.Top {
				row.Top = append(row.Top, chip{fmt.Sprintf("%d · %s · %s", c.Index, num(c.MaxAbs), ratio(c.Ratio)), c.Ratio >= r.OutlierRatio})
			}
			if len(in.ScaledTop) > 0 {
				row.ScaledMaxRatio = ratio(in.ScaledTop[0].Ratio)
			}
			p.Summary = append(p.Summary, row)
		}
	}

	if s := r.Sensitivity; s != nil {
		p.Sensitivity = sensitivityView(s)
	}
	p.Roles, p.Errors, p.ErrorNote = errorTable(r)

	cols := 2
	if p.Rescaled {
		cols = 4
	}
	width := 1220/cols - 8
	for _, b := range r.Blocks {
		bv := blockView{Index: b.Index, Name: b.Name, Anchor: fmt.Sprintf("block%d", b.Index)}
		if len(b.ExpertTokens) > 0 {
			var parts []string
			for i, n := range b.ExpertTokens {
				parts = append(parts, fmt.Sprintf("%d: %d", i, n))
			}
			bv.Experts = "calibration tokens routed to each expert (statistics use every token for every expert) — " + strings.Join(parts, ", ")
		}
		for _, in := range b.Inputs {
			iv := inputView{Label: in.Label + " — " + strings.Join(in.Names, ", ")}
			mark := flagged(in.Top, r.OutlierRatio)
			iv.Charts = append(iv.Charts, svg(stemChart{Title: "activation max |x| per channel", Values: in.Act, Color: colFP, Mark: mark, W: width, H: 150}))
			if p.Rescaled {
				iv.Charts = append(iv.Charts, svg(stemChart{Title: "activation max |x| after rescaling", Values: in.ScaledAct, Color: colScaled,
					Mark: flagged(in.ScaledTop, r.OutlierRatio), W: width, H: 150}))
			}
			iv.Charts = append(iv.Charts, svg(stemChart{Title: "weight max |W| per input channel", Values: in.Weight, Color: colFP, Mark: nil, W: width, H: 150}))
			if p.Rescaled {
				iv.Charts = append(iv.Charts, svg(stemChart{Title: "weight max |W| after rescaling", Values: in.ScaledWeight, Color: colScaled, W: width, H: 150}))
			}
			bv.Inputs = append(bv.Inputs, iv)
		}
		p.Blocks = append(p.Blocks, bv)
	}
	return p
}

// flagged keeps the channels of top at or above the outlier ratio.
func flagged(top []Channel, threshold float64) []Channel {
	var out []Channel
	for _, c := range top {
		if c.Ratio >= threshold {
			out = append(out, c)
		}
	}
	return out
}

func sensitivityView(s *Sensitivity) *sensView {
	v := &sensView{}
	kind := "block"
	if s.PerLinear {
		kind = "linear"
	}
	v.Note = fmt.Sprintf("Each %s quantized alone, the rest of the model in full precision. Full precision: ppl %.4g; the whole recipe: ppl %.4g, mean KL %.4g nats.",
		kind, s.BasePPL, s.Full.PPL, s.Full.KL)
	order := make([]int, len(s.Parts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return s.Parts[order[a]].KL > s.Parts[order[b]].KL })
	mark := map[int]bool{}
	const maxRows = 20
	if len(order) > maxRows {
		v.Shown = fmt.Sprintf("The %d worst of %d (all in the chart).", maxRows, len(order))
	}
	for k, i := range order {
		if k < 3 {
			mark[i] = true
		}
		if k >= maxRows {
			break
		}
		d := s.Parts[i]
		v.Rows = append(v.Rows, sensRow{Rank: k + 1, Name: d.Name, KL: fmt.Sprintf("%.4g", d.KL), PPL: fmt.Sprintf("%.4g", d.PPL),
			DeltaPPL: fmt.Sprintf("%+.4g", d.PPL-s.BasePPL)})
	}
	var labels []string
	var vals []float64
	for _, d := range s.Parts {
		l := fmt.Sprint(d.Block)
		if d.Role != "" {
			l += " " + d.Role
		}
		labels = append(labels, l)
		vals = append(vals, d.KL)
	}
	v.Chart = svg(barChart{Title: fmt.Sprintf("mean KL(P_fp ‖ P) per %s quantized alone (nats; the 3 worst in red)", kind),
		Labels: labels, Values: vals, Color: colFP, Mark: mark, W: 1200, H: 240})
	return v
}

// errorTable lays out the per-linear relative MSE as a block × role grid,
// shaded on a log scale between the smallest and largest error.
func errorTable(r *Report) ([]string, []errorRow, string) {
	var roles []string
	seen := map[string]bool{}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, b := range r.Blocks {
		for _, e := range b.Errors {
			if !seen[e.Role] {
				seen[e.Role] = true
				roles = append(roles, e.Role)
			}
			if e.Quantized && e.RelMSE > 0 {
				lo, hi = math.Min(lo, math.Log10(e.RelMSE)), math.Max(hi, math.Log10(e.RelMSE))
			}
		}
	}
	var rows []errorRow
	layers := map[string]bool{}
	for _, b := range r.Blocks {
		row := errorRow{Block: b.Index}
		for _, role := range roles {
			cell := errorCell{Text: "—", Title: "not in this block"}
			for _, e := range b.Errors {
				if e.Role != role {
					continue
				}
				cell.Title = e.Name + ": left in full precision"
				if e.Quantized {
					layers[e.Layer] = true
					cell.Title = e.Name + ": " + e.Layer
					cell.Text = "n/a"
					if !math.IsNaN(e.RelMSE) {
						cell.Text = fmt.Sprintf("%.2e", e.RelMSE)
						t := 0.5
						if hi > lo && e.RelMSE > 0 {
							t = (math.Log10(e.RelMSE) - lo) / (hi - lo)
						}
						cell.Style = template.CSS("background:" + heat(t))
					}
				}
			}
			row.Cells = append(row.Cells, cell)
		}
		rows = append(rows, row)
	}
	var kinds []string
	for k := range layers {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	note := "Quantized layers: " + strings.Join(kinds, "; ") + "."
	if len(kinds) == 0 {
		note = "The recipe quantized no linear layer."
	}
	return roles, rows, note
}

// heat interpolates white → the outlier red for t in [0, 1].
func heat(t float64) string {
	t = math.Max(0, math.Min(1, t))
	mix := func(a, b int) int { return int(math.Round(float64(a) + t*float64(b-a))) }
	return fmt.Sprintf("rgb(%d,%d,%d)", mix(255, 0xe1), mix(255, 0x57), mix(255, 0x59))
}

func maxOf(v []float32) float32 {
	var m float32
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func num(v float64) string { return fmt.Sprintf("%.3g", v) }

func ratio(v float64) string {
	if math.IsInf(v, 1) {
		return "∞×"
	}
	return fmt.Sprintf("%.1f×", v)
}

// svg marks chart markup (built from numbers and escaped labels) as safe.
func svg(c interface{ SVG() string }) template.HTML { return template.HTML(c.SVG()) }

var pageTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:20px 28px;color:#222;font-size:14px;max-width:1240px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.meta td:first-child{font-weight:600;white-space:nowrap}
.chip{display:inline-block;padding:1px 6px;margin:1px 2px;border-radius:9px;background:#eef2f7;font-variant-numeric:tabular-nums;white-space:nowrap}
.chip.out{background:#e15759;color:#fff;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:4px 8px}.input{margin:4px 0 10px}.input .lbl{font-size:12px;color:#444;margin-bottom:2px}
.note{color:#555;font-size:13px;max-width:1100px}
nav a{margin-right:8px}
</style></head><body>
<h1>{{.Title}}</h1>
<table class="meta">{{range .Meta}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>

<h2>Outlier channels</h2>
<p class="note">For each linear input: max |x| per channel over every calibration token, the median over channels,
and the {{.TopK}} largest channels as <span class="chip">channel · max |x| · ratio to median</span>; channels at least
{{.Threshold}}× the median are <span class="chip out">flagged</span>. Systematic outliers (LLM.int8(), SmoothQuant)
sit in the same hidden channels in every layer.</p>
{{if .Recurring}}<p><b>Recurring hidden channels</b> (among the top {{.TopK}} of the q/k/v and MLP inputs):
{{range .Recurring}}<span class="chip{{if .Outlier}} out{{end}}">channel {{.Index}} · {{.Count}}/{{.Of}} inputs · up to {{.MaxRatio}}</span>{{end}}</p>{{end}}
<table>
<tr><th>block</th><th>input</th><th>linears</th><th>median max|x|</th><th>max|x|</th><th>top channels</th>{{if .Rescaled}}<th>top ratio after rescaling</th>{{end}}</tr>
{{range .Summary}}<tr>{{if .BlockSpan}}<td rowspan="{{.BlockSpan}}"><a href="#{{.Anchor}}">{{.Block}}</a></td>{{end}}<td>{{.Input}}</td><td>{{.Linears}}</td>
<td class="num">{{.Median}}</td><td class="num">{{.Max}}</td><td>{{range .Top}}<span class="chip{{if .Outlier}} out{{end}}">{{.Text}}</span>{{end}}</td>{{if $.Rescaled}}<td class="num">{{.ScaledMaxRatio}}</td>{{end}}</tr>
{{end}}</table>

{{with .Sensitivity}}<h2>Layers that hurt most</h2>
<p class="note">{{.Note}} KL is the mean KL divergence of the next-token distributions from full precision per scored position.</p>
{{.Chart}}
{{if .Shown}}<p class="note">{{.Shown}}</p>{{end}}<table><tr><th>rank</th><th>quantized alone</th><th>mean KL</th><th>ppl</th><th>Δ ppl</th></tr>
{{range .Rows}}<tr><td class="num">{{.Rank}}</td><td>{{.Name}}</td><td class="num">{{.KL}}</td><td class="num">{{.PPL}}</td><td class="num">{{.DeltaPPL}}</td></tr>
{{end}}</table>{{end}}

<h2>Quantization error per linear</h2>
<p class="note">Relative MSE ‖Y<sub>q</sub> − Y‖² / ‖Y‖² of each linear's outputs over the calibration tokens: the quantized
layer against the full-precision one{{if .Rescaled}} (after rescaling){{end}}, both fed the same full-precision inputs. {{.ErrorNote}}</p>
<table><tr><th>block</th>{{range .Roles}}<th>{{.}}</th>{{end}}</tr>
{{range .Errors}}<tr><td><a href="#block{{.Block}}">{{.Block}}</a></td>{{range .Cells}}<td class="num" title="{{.Title}}" style="{{.Style}}">{{.Text}}</td>{{end}}</tr>
{{end}}</table>

<h2>Channel ranges per block</h2>
<p class="note">Blue: the checkpoint as loaded{{if .Rescaled}}; orange: after the recipe's rescaling, before rounding{{end}}. Flagged channels in red, labelled with their index.</p>
<nav>{{range .Blocks}}<a href="#{{.Anchor}}">block {{.Index}}</a>{{end}}</nav>
{{range .Blocks}}<h3 id="{{.Anchor}}">block {{.Index}} — {{.Name}}</h3>
{{if .Experts}}<p>{{.Experts}}</p>{{end}}
{{range .Inputs}}<div class="input"><div class="lbl">{{.Label}}</div><div class="grid">{{range .Charts}}{{.}}{{end}}</div></div>
{{end}}{{end}}
</body></html>
`))
