// Package progress draws a one-line progress bar on stderr for long jobs:
// redrawn in place on a terminal, a line per ~10 % when stderr is a file or
// pipe (so logs stay readable).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Bar tracks done/total units of work and a throughput in another unit.
type Bar struct {
	w        io.Writer
	label    string
	unit     string // what Rate counts, e.g. "tok"
	total    int
	start    time.Time
	tty      bool
	lastDraw time.Time
	lastPct  int
}

// New starts a bar for total steps written to stderr.
func New(label string, total int, unit string) *Bar {
	tty := false
	if st, err := os.Stderr.Stat(); err == nil {
		tty = st.Mode()&os.ModeCharDevice != 0
	}
	return &Bar{w: os.Stderr, label: label, unit: unit, total: total, start: time.Now(), tty: tty, lastPct: -1}
}

// Update draws the bar for done steps and units processed so far.
func (b *Bar) Update(done int, units float64) {
	now := time.Now()
	pct := 100 * done / max(b.total, 1)
	if b.tty {
		if done < b.total && now.Sub(b.lastDraw) < 100*time.Millisecond {
			return
		}
	} else if pct/10 == b.lastPct/10 && done < b.total {
		return
	}
	b.lastDraw, b.lastPct = now, pct
	el := now.Sub(b.start)
	rate := units / el.Seconds()
	eta := "?"
	if done > 0 {
		eta = (time.Duration(float64(el) * float64(b.total-done) / float64(done))).Round(time.Second).String()
	}
	const width = 30
	fill := width * done / max(b.total, 1)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	line := fmt.Sprintf("%s [%s] %d/%d  %s  elapsed %s  eta %s", b.label, bar, done, b.total, Rate(rate, b.unit), el.Round(time.Second), eta)
	if b.tty {
		fmt.Fprintf(b.w, "\r\033[K%s", line)
		if done >= b.total {
			fmt.Fprintln(b.w)
		}
	} else {
		fmt.Fprintln(b.w, line)
	}
}

// Rate formats a throughput with a unit that fits: "850 tok/s", "3.2
// layer/s", and below one per second the time per unit, "12.5 s/layer".
func Rate(perSecond float64, unit string) string {
	switch {
	case perSecond <= 0 || perSecond != perSecond || perSecond > 1e300:
		return "– " + unit + "/s"
	case perSecond >= 100:
		return fmt.Sprintf("%.0f %s/s", perSecond, unit)
	case perSecond >= 1:
		return fmt.Sprintf("%.1f %s/s", perSecond, unit)
	}
	return fmt.Sprintf("%.1f s/%s", 1/perSecond, unit)
}
