// Package eval measures what quantization costs: perplexity under the
// protocol of the GPTQ / SmoothQuant / ZeroQuant papers, and (later)
// divergence from the unquantized model.
package eval

import (
	"fmt"
	"math"
	"time"

	"llmq/kernels"
	"llmq/model"
)

// PPL is the outcome of a perplexity run.
type PPL struct {
	Windows   int           // windows of SeqLen tokens evaluated
	Predicted int           // tokens whose probability was scored
	NLL       float64       // total negative log-likelihood, nats
	Elapsed   time.Duration // wall time of the forward passes
}

// Value is exp(NLL / Predicted).
func (p PPL) Value() float64 { return math.Exp(p.NLL / float64(p.Predicted)) }

// TokensPerSecond counts every token fed through the model.
func (p PPL) TokensPerSecond(seqlen int) float64 {
	return float64(p.Windows*seqlen) / p.Elapsed.Seconds()
}

// Windows cuts ids into non-overlapping windows of seqlen tokens, dropping
// the remainder; limit > 0 keeps only the first limit windows.
func Windows(ids []int, seqlen, limit int) [][]int {
	if seqlen <= 0 {
		return nil
	}
	n := len(ids) / seqlen
	if limit > 0 && limit < n {
		n = limit
	}
	w := make([][]int, n)
	for i := range w {
		w[i] = ids[i*seqlen : (i+1)*seqlen]
	}
	return w
}

// Perplexity scores ids with the protocol of the quantization literature:
// non-overlapping windows of seqlen tokens, each window a fresh sequence,
// loss = Σ −log p(ids[t+1] | ids[..t]) for t = 0 … seqlen−2 in every window,
// ppl = exp(total loss / predicted tokens). progress (may be nil) is called
// after each window.
func Perplexity(m *model.Model, ids []int, seqlen, limit int, progress func(done, total int)) (PPL, error) {
	if seqlen < 2 {
		return PPL{}, fmt.Errorf("perplexity: seqlen %d must be at least 2", seqlen)
	}
	if m.Pos != nil && seqlen > m.MaxPos {
		return PPL{}, fmt.Errorf("perplexity: seqlen %d exceeds the model's %d positions", seqlen, m.MaxPos)
	}
	wins := Windows(ids, seqlen, limit)
	if len(wins) == 0 {
		return PPL{}, fmt.Errorf("perplexity: %d tokens make no window of %d", len(ids), seqlen)
	}
	var res PPL
	st := m.NewState(seqlen)
	start := time.Now()
	for i, w := range wins {
		st.Reset()
		logits, err := m.Forward(st, w, model.Options{})
		if err != nil {
			return res, err
		}
		res.NLL += windowNLL(logits, w, m.Vocab)
		res.Predicted += len(w) - 1
		res.Windows++
		if progress != nil {
			progress(i+1, len(wins))
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// windowNLL sums −log softmax(logits[t])[w[t+1]] over the window, in
// parallel over positions; each row's log-sum-exp is taken in float64
// around the row maximum.
func windowNLL(logits []float32, w []int, vocab int) float64 {
	rows := len(w) - 1
	part := make([]float64, rows)
	kernels.ParallelFor(rows, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			row := logits[t*vocab : (t+1)*vocab]
			part[t] = LogSumExp(row) - float64(row[w[t+1]])
		}
	})
	var s float64
	for _, v := range part {
		s += v
	}
	return s
}

// LogSumExp is log Σ exp(x_i), computed stably around the maximum: the
// exps are taken in float32 (vectorized, a few ulp) and summed in float64.
func LogSumExp(x []float32) float64 {
	m := kernels.MaxF32(x)
	return float64(m) + math.Log(kernels.SumExp(x, m))
}
