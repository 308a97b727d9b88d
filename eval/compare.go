package eval

import (
	"fmt"
	"math"
	"time"

	"llmq/kernels"
	"llmq/model"
	"llmq/nn"
)

// Comparison scores a (quantized) model against a base model on the same
// windows, the way llama.cpp's --kl-divergence does: perplexity of both,
// the mean KL divergence KL(P_base ‖ P_model) of the next-token
// distributions over every scored position, and how often both models
// rank the same token first.
type Comparison struct {
	Base, Model PPL
	KLSum       float64 // Σ KL over scored positions, nats
	KLMax       float64
	Top1Same    int // positions where argmax agrees
	Positions   int
}

// KL is the mean KL divergence per scored position.
func (c Comparison) KL() float64 { return c.KLSum / float64(c.Positions) }

// Top1 is the fraction of positions whose most likely token agrees.
func (c Comparison) Top1() float64 { return float64(c.Top1Same) / float64(c.Positions) }

// Compare runs base and m over the same windows (see Perplexity).
func Compare(base, m *model.Model, ids []int, seqlen, limit int, progress func(done, total int)) (Comparison, error) {
	var c Comparison
	if base.Vocab != m.Vocab {
		return c, fmt.Errorf("compare: vocabularies differ (%d vs %d)", base.Vocab, m.Vocab)
	}
	if seqlen < 2 {
		return c, fmt.Errorf("compare: seqlen %d must be at least 2", seqlen)
	}
	wins := Windows(ids, seqlen, limit)
	if len(wins) == 0 {
		return c, fmt.Errorf("compare: %d tokens make no window of %d", len(ids), seqlen)
	}
	sb, sm := base.NewState(seqlen), m.NewState(seqlen)
	V := m.Vocab
	for i, w := range wins {
		sb.Reset()
		sm.Reset()
		t0 := time.Now()
		lb, err := base.Forward(sb, w, model.Options{})
		if err != nil {
			return c, err
		}
		t1 := time.Now()
		lm, err := m.Forward(sm, w, model.Options{})
		if err != nil {
			return c, err
		}
		c.Base.Elapsed += t1.Sub(t0)
		c.Model.Elapsed += time.Since(t1)
		rows := len(w) - 1
		type row struct {
			nllB, nllM, kl float64
			same           bool
		}
		res := make([]row, rows)
		kernels.ParallelFor(rows, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				a, b := lb[t*V:(t+1)*V], lm[t*V:(t+1)*V]
				A, B := LogSumExp(a), LogSumExp(b)
				res[t].nllB = A - float64(a[w[t+1]])
				res[t].nllM = B - float64(b[w[t+1]])
				res[t].kl = klRow(a, b, A, B)
				res[t].same = argmax(a) == argmax(b)
			}
		})
		for _, r := range res {
			c.Base.NLL += r.nllB
			c.Model.NLL += r.nllM
			c.KLSum += r.kl
			c.KLMax = math.Max(c.KLMax, r.kl)
			if r.same {
				c.Top1Same++
			}
		}
		c.Positions += rows
		c.Base.Predicted += rows
		c.Model.Predicted += rows
		c.Base.Windows++
		c.Model.Windows++
		if progress != nil {
			progress(i+1, len(wins))
		}
	}
	return c, nil
}

// klRow is KL(p ‖ q) for p = softmax(a), q = softmax(b) given their
// log-sum-exps A and B: Σ p_i ((a_i − A) − (b_i − B)).
func klRow(a, b []float32, A, B float64) float64 {
	var s float64
	for i, v := range a {
		p := float64(nn.Exp32(float32(float64(v) - A)))
		s += p * ((float64(v) - A) - (float64(b[i]) - B))
	}
	return math.Max(s, 0)
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
