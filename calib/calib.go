// Package calib provides calibration data for post-training quantization
// and captures what methods need to know about a layer's inputs.
//
// Quantization runs layer by layer, as GPTQ does: the calibration
// sequences are embedded once, then for each decoder block the methods
// look at the activations entering it (Collect), transform the block, and
// the block's outputs — computed with the already-quantized block, so later
// layers see and correct the error of earlier ones — become the next
// block's inputs (Propagate). Only one block's activations are held at a
// time: N sequences × L tokens × hidden floats.
package calib

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"llmq/kernels"
	"llmq/model"
	"llmq/nn"
)

// Sample draws n windows of seqlen consecutive tokens from ids at random
// offsets (GPTQ's recipe for WikiText-2 calibration). The same seed gives
// the same windows.
func Sample(ids []int, n, seqlen int, seed uint64) ([][]int, error) {
	if n <= 0 || seqlen <= 0 {
		return nil, fmt.Errorf("calibration needs a positive number of sequences and length, got %d × %d", n, seqlen)
	}
	if len(ids) <= seqlen {
		return nil, fmt.Errorf("calibration text has %d tokens, fewer than one sequence of %d", len(ids), seqlen)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([][]int, n)
	for i := range out {
		start := rng.IntN(len(ids) - seqlen)
		out[i] = ids[start : start+seqlen]
	}
	return out, nil
}

// Activations are the hidden states entering one block, one [T × Hidden]
// slice per calibration sequence.
type Activations struct {
	X [][]float32
	T int
}

// Embed computes the inputs of block 0.
func Embed(m *model.Model, seqs [][]int) (*Activations, error) {
	a := &Activations{}
	for _, s := range seqs {
		x, err := m.EmbedTokens(s)
		if err != nil {
			return nil, err
		}
		a.X = append(a.X, x)
		a.T = len(s)
	}
	return a, nil
}

// Clone deep-copies the activations (to keep a block's FP inputs while the
// quantized path moves on).
func (a *Activations) Clone() *Activations {
	c := &Activations{T: a.T, X: make([][]float32, len(a.X))}
	for i, x := range a.X {
		c.X[i] = append([]float32(nil), x...)
	}
	return c
}

// Propagate replaces a with the outputs of block l.
func Propagate(r *model.BlockRunner, l int, a *Activations) {
	for _, x := range a.X {
		r.Run(l, x, a.T)
	}
}

// Stats describe the input of a group of linears that read the same
// activations (q/k/v, gate/up, …) over all calibration tokens.
type Stats struct {
	In     int
	Tokens int
	AbsMax []float32 // max |x_j| per input channel j
	AbsSum []float64 // Σ |x_j| per channel (AWQ's activation magnitude = AbsSum/Tokens)
	// Hessian is XᵀX summed over tokens (In × In, row-major, symmetric),
	// collected when Options.Hessian is set: GPTQ's H = 2XXᵀ up to the
	// factor 2. It is accumulated in float32, as the reference
	// implementations do (see recorder.record).
	Hessian []float32
	// HessianTime is the time spent accumulating Hessian (for profiles).
	HessianTime time.Duration
	// Rows keeps up to Options.KeepRows input rows, spread over the
	// sequences, for methods that search by re-running a layer.
	Rows [][]float32
}

// Max is the largest |x| over all channels (for per-tensor static scales).
func (s *Stats) Max() float32 {
	var m float32
	for _, v := range s.AbsMax {
		m = max(m, v)
	}
	return m
}

// Options select the statistics to collect.
type Options struct {
	Hessian  bool
	KeepRows int
	// FullPass runs every layer of the block even after every group has
	// recorded: the caller watches layers during the pass (inspect's
	// quantization-error taps), which the early end would skip.
	FullPass bool
}

// recorder is an nn.Linear that passes through after showing its input to
// the statistics of its input group.
type recorder struct {
	nn.Linear
	g *group
}

// group is what the recorders of one input group share. The linears of a
// group read the same input, so one of them records it: in a dense block,
// whichever is called first in each sequence (each linear runs once per
// sequence); in a mixture of experts, where a linear may run several times
// or not at all, always the group's first.
type group struct {
	stats *Stats
	opt   Options
	name  string // the group's first linear (for messages)
	err   error
	xt    []float32
	fixed *recorder // the recorder that records every call (MoE); nil: the first called
	done  bool      // dense: recorded in the current sequence
	run   *collectRun
}

// collectRun counts, in a dense block, the groups still to record in the
// current sequence: once every group has recorded, the rest of the block
// cannot change the statistics and is skipped (stopBlock). Collecting the
// input of q/k/v then costs one norm instead of the whole block, and the
// true-sequential GPTQ of an 8B block runs 2 block-equivalents of forward
// passes instead of 5.
type collectRun struct {
	pending int
	early   bool
}

// collectEarlyStop enables the early end (tests compare with it off);
// collectStops counts the forward passes it ended.
var (
	collectEarlyStop = true
	collectStops     int
)

// stopBlock is the panic value that ends a block's forward pass early; it
// never leaves Collect.
type stopBlock struct{}

func (r *recorder) Forward(y, x []float32, rows int) {
	g := r.g
	if g.fixed == r || g.fixed == nil && !g.done {
		if g.err == nil {
			g.err = g.record(x[:rows*r.In()], rows)
		}
		if g.fixed == nil {
			g.done = true
			if g.run.pending--; g.run.early && g.run.pending == 0 {
				panic(stopBlock{})
			}
		}
	}
	r.Linear.Forward(y, x, rows)
}

func (g *group) record(x []float32, rows int) error {
	s := g.stats
	in := s.In
	for t := 0; t < rows; t++ {
		row := x[t*in : (t+1)*in]
		for j, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("calibration input of %s holds %v (token %d, channel %d)", g.name, v, s.Tokens+t, j)
			}
			a := float32(math.Abs(float64(v)))
			if a > s.AbsMax[j] {
				s.AbsMax[j] = a
			}
			s.AbsSum[j] += float64(a)
		}
	}
	if g.opt.KeepRows > 0 && len(s.Rows) < g.opt.KeepRows {
		// Evenly spaced rows of this sequence, so kept rows cover many sequences.
		step := max(1, rows/max(1, min(rows, 16)))
		for t := 0; t < rows && len(s.Rows) < g.opt.KeepRows; t += step {
			s.Rows = append(s.Rows, append([]float32(nil), x[t*in:(t+1)*in]...))
		}
	}
	if g.opt.Hessian {
		t0 := time.Now()
		// H += XᵀX on and below the diagonal (mirrored once at the end, in
		// Collect): transpose X once, then one GEMM per panel of rows of
		// H, each against the rows of Xᵀ up to the panel's last, so the
		// upper triangle costs only the panels' diagonal blocks (half the
		// multiply-adds of the full product: 5·10¹⁰ per 512-token sequence
		// for a 14336-wide input). The sums are float32, straight into H
		// (the GEMM accumulates in place), as GPTQ's reference does: over
		// 10⁵ tokens their relative rounding (~√(tokens/256)·ε₃₂ ≈ 10⁻⁶) is
		// four orders below the 1% dampening.
		g.xt = grow(g.xt, in*rows)
		transposeInto(g.xt, x, rows, in)
		for i0 := 0; i0 < in; i0 += hessianPanel {
			i1 := min(i0+hessianPanel, in)
			kernels.Sgemm(true, i1-i0, i1, rows, g.xt[i0*rows:], rows, g.xt, rows, s.Hessian[i0*in:], in, true)
		}
		s.HessianTime += time.Since(t0)
	}
	s.Tokens += rows
	return nil
}

// hessianPanel is the height of the row panels of the Hessian update.
const hessianPanel = 512

// transposeInto writes the transpose of x [rows×cols] to dst [cols×rows],
// in 32×32 tiles.
func transposeInto(dst, x []float32, rows, cols int) {
	const t = 32
	for r0 := 0; r0 < rows; r0 += t {
		r1 := min(r0+t, rows)
		for c0 := 0; c0 < cols; c0 += t {
			c1 := min(c0+t, cols)
			for r := r0; r < r1; r++ {
				row := x[r*cols : (r+1)*cols]
				for c := c0; c < c1; c++ {
					dst[c*rows+r] = row[c]
				}
			}
		}
	}
}

// mirrorLower copies the lower triangle of the n×n matrix h onto its upper
// triangle, in 64×64 tiles (rows of tiles in parallel).
func mirrorLower(h []float32, n int) {
	const t = 64
	nt := (n + t - 1) / t
	kernels.ParallelFor(nt, func(lo, hi int) {
		for bi := lo; bi < hi; bi++ { // tile row bi of the upper triangle
			i0, i1 := bi*t, min(bi*t+t, n)
			for j0 := i0; j0 < n; j0 += t {
				j1 := min(j0+t, n)
				for j := j0; j < j1; j++ {
					src := h[j*n : j*n+min(i1, j)]
					for i := i0; i < min(i1, j); i++ {
						h[i*n+j] = src[i]
					}
				}
			}
		}
	})
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// runUntilRecorded runs block l on x, ending it early when the recorders
// stop it (stopBlock, possibly from a worker goroutine).
func runUntilRecorded(r *model.BlockRunner, l int, x []float32, T int) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(stopBlock); ok {
				collectStops++
				return
			}
			if wp, ok := p.(*kernels.WorkerPanic); ok {
				if _, ok := wp.Value.(stopBlock); ok {
					collectStops++
					return
				}
			}
			panic(p)
		}
	}()
	r.Run(l, x, T)
}

// Collect runs block l over every calibration sequence (without changing a)
// and returns the input statistics of each linear, keyed by role; roles
// reading the same input share one *Stats. roles limits collection (nil:
// all).
func Collect(m *model.Model, r *model.BlockRunner, l int, a *Activations, roles []string, opt Options) (map[string]*Stats, error) {
	b := m.Blocks[l]
	want := map[string]bool{}
	for _, role := range roles {
		want[role] = true
	}
	stats := map[string]*Stats{}
	run := &collectRun{early: b.MoE == nil && collectEarlyStop && !opt.FullPass}
	var recs []*recorder
	var groups []*group
	for _, roleGroup := range b.InputGroups() {
		var g *group
		for _, role := range roleGroup {
			slot := b.Linear(role)
			if roles != nil && !want[role] {
				continue
			}
			rec := &recorder{Linear: *slot}
			if g == nil {
				in := (*slot).In()
				g = &group{
					stats: &Stats{In: in, AbsMax: make([]float32, in), AbsSum: make([]float64, in)},
					opt:   opt,
					name:  m.LinearName(l, role),
					run:   run,
				}
				if opt.Hessian {
					g.stats.Hessian = make([]float32, in*in)
				}
				if b.MoE != nil {
					g.fixed = rec
				}
				groups = append(groups, g)
			}
			rec.g = g
			stats[role] = g.stats
			recs = append(recs, rec)
			*slot = rec
		}
	}
	defer func() { // put the real layers back
		for _, rec := range recs {
			for _, nl := range b.Linears() {
				if *nl.Linear == nn.Linear(rec) {
					*nl.Linear = rec.Linear
				}
			}
		}
	}()
	x := make([]float32, a.T*m.Hidden)
	for _, seq := range a.X {
		copy(x, seq)
		run.pending = len(groups)
		for _, g := range groups {
			g.done = false
		}
		runUntilRecorded(r, l, x, a.T)
		for _, g := range groups {
			if g.err != nil {
				return nil, g.err
			}
		}
	}
	for _, g := range groups {
		if g.stats.Hessian != nil {
			mirrorLower(g.stats.Hessian, g.stats.In)
		}
	}
	// A dead channel is normal; an input that is zero everywhere means the
	// calibration data cannot say anything (and GPTQ would zero the layer).
	for _, g := range groups {
		if g.stats.Tokens > 0 && g.stats.Max() == 0 {
			return nil, fmt.Errorf("calibration inputs of %s are all zero over %d tokens", g.name, g.stats.Tokens)
		}
	}
	return stats, nil
}
