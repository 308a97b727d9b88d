package inspect

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// The charts are inline SVG written here rather than images from a
// plotting library: text stays sharp at any zoom, a chart of 1,000
// channels is one <path> of a few kilobytes, and the report needs nothing
// beside the HTML file.

// Colours of the report (colour-blind-safe blue/orange/red of the Tableau
// palette).
const (
	colFP       = "#4e79a7"
	colScaled   = "#f28e2b"
	colOutlier  = "#e15759"
	colAxis     = "#555"
	colGrid     = "#e5e5e5"
	chartMargin = 34 // left margin for the y tick labels
)

// stemChart draws one value per channel as a vertical line from zero (the
// per-channel range plots of SmoothQuant's Fig. 4, flattened to 2-D).
// Channels in mark are drawn in the outlier colour and labelled with their
// index.
type stemChart struct {
	Title  string
	Values []float32
	Color  string
	Mark   []Channel // channels to highlight and label
	W, H   int
}

func (c stemChart) SVG() string {
	var b strings.Builder
	top, bottom := 16.0, 16.0
	left := float64(chartMargin)
	pw, ph := float64(c.W)-left-6, float64(c.H)-top-bottom
	ymax := 0.0
	for _, v := range c.Values {
		ymax = math.Max(ymax, float64(v))
	}
	ticks, ytop := niceTicks(ymax)
	n := len(c.Values)
	x := func(i int) float64 { return left + (float64(i)+0.5)*pw/float64(max(n, 1)) }
	y := func(v float64) float64 { return top + ph - v/ytop*ph }
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="10">`, c.W, c.H, c.W, c.H)
	fmt.Fprintf(&b, `<text x="%g" y="11" font-size="11" fill="#222">%s</text>`, left, html.EscapeString(c.Title))
	axes(&b, ticks, y, left, left+pw)
	fmt.Fprintf(&b, `<text x="%g" y="%g" fill="%s">0</text><text x="%g" y="%g" text-anchor="end" fill="%s">%d</text>`,
		left, top+ph+12, colAxis, left+pw, top+ph+12, colAxis, n-1)
	marked := map[int]bool{}
	for _, m := range c.Mark {
		marked[m.Index] = true
	}
	var norm, out strings.Builder
	for i, v := range c.Values {
		p := &norm
		if marked[i] {
			p = &out
		}
		fmt.Fprintf(p, "M%.1f %.1fV%.1f", x(i), y(0), y(float64(v)))
	}
	sw := math.Max(0.6, math.Min(2, 0.8*pw/float64(max(n, 1))))
	fmt.Fprintf(&b, `<path d="%s" stroke="%s" stroke-width="%.2f"/>`, norm.String(), c.Color, sw)
	if out.Len() > 0 {
		fmt.Fprintf(&b, `<path d="%s" stroke="%s" stroke-width="%.2f"/>`, out.String(), colOutlier, math.Max(sw, 1.5))
	}
	for k, m := range c.Mark {
		// Stagger labels of neighbouring channels vertically.
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s" font-weight="bold">%d</text>`,
			x(m.Index), math.Max(top+8, y(m.MaxAbs)-3-float64(k%2)*9), colOutlier, m.Index)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// barChart draws one bar per labelled category.
type barChart struct {
	Title  string
	Labels []string
	Values []float64
	Color  string
	Mark   map[int]bool // bars drawn in the outlier colour
	W, H   int
}

func (c barChart) SVG() string {
	var b strings.Builder
	top, bottom := 18.0, 34.0
	left := float64(chartMargin + 14)
	pw, ph := float64(c.W)-left-6, float64(c.H)-top-bottom
	ymax := 0.0
	for _, v := range c.Values {
		if !math.IsNaN(v) {
			ymax = math.Max(ymax, v)
		}
	}
	ticks, ytop := niceTicks(ymax)
	n := len(c.Values)
	slot := pw / float64(max(n, 1))
	y := func(v float64) float64 { return top + ph - v/ytop*ph }
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="10">`, c.W, c.H, c.W, c.H)
	fmt.Fprintf(&b, `<text x="%g" y="12" font-size="12" fill="#222">%s</text>`, left, html.EscapeString(c.Title))
	axes(&b, ticks, y, left, left+pw)
	rotate := n > 12
	for i, v := range c.Values {
		x0 := left + float64(i)*slot
		if !math.IsNaN(v) {
			col := c.Color
			if c.Mark[i] {
				col = colOutlier
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %.4g</title></rect>`,
				x0+slot*0.15, y(v), slot*0.7, y(0)-y(v), col, html.EscapeString(c.Labels[i]), v)
		}
		lx, ly := x0+slot/2, top+ph+12
		if rotate {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="8" text-anchor="end" transform="rotate(-60 %.1f %.1f)" fill="%s">%s</text>`,
				lx, ly-4, lx, ly-4, colAxis, html.EscapeString(c.Labels[i]))
		} else {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s">%s</text>`, lx, ly, colAxis, html.EscapeString(c.Labels[i]))
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// axes draws horizontal grid lines with their labels and the zero line.
func axes(b *strings.Builder, ticks []float64, y func(float64) float64, x0, x1 float64) {
	for _, t := range ticks {
		fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="%s"/>`, x0, x1, y(t), y(t), colGrid)
		fmt.Fprintf(b, `<text x="%g" y="%.1f" text-anchor="end" fill="%s">%s</text>`, x0-3, y(t)+3, colAxis, tickLabel(t))
	}
	fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="%s"/>`, x0, x1, y(0), y(0), colAxis)
}

// niceTicks returns 1-2-5 ticks from 0 covering ymax, and the axis top.
func niceTicks(ymax float64) ([]float64, float64) {
	if ymax <= 0 || math.IsNaN(ymax) || math.IsInf(ymax, 0) {
		return []float64{0}, 1
	}
	raw := ymax / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []float64
	for t := 0.0; t < ymax+step*1e-9; t += step {
		ticks = append(ticks, t)
	}
	top := ticks[len(ticks)-1]
	if top < ymax {
		top += step
		ticks = append(ticks, top)
	}
	return ticks, top
}

// tickLabel prints a tick value compactly.
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 1e4 || a < 1e-3:
		return fmt.Sprintf("%.0e", v)
	default:
		return fmt.Sprintf("%.4g", v)
	}
}
