package inspect

import (
	"fmt"
	"math"

	"llmq/eval"
	"llmq/kernels"
	"llmq/model"
	"llmq/nn"
)

// Delta is what quantizing one part of the model alone costs on the
// evaluation windows, the rest of the model in full precision.
type Delta struct {
	Block int
	Role  string // "" for a whole block
	Name  string // the block's or linear's checkpoint name
	// KL is the mean KL(P_fp ‖ P_part) of the next-token distributions per
	// scored position, nats (llama.cpp's --kl-divergence measure): unlike
	// perplexity it does not average improvements and damage into zero.
	KL  float64
	PPL float64 // perplexity on the windows with this part quantized
}

// Sensitivity ranks the parts of the model by the damage their
// quantization does alone (the per-layer sensitivity analyses of
// ZeroQuant-V2 and of mixed-precision recipes).
type Sensitivity struct {
	Windows, SeqLen int
	PerLinear       bool    // parts are single linears (else whole blocks)
	BasePPL         float64 // full precision, same windows
	Full            Delta   // every block quantized: the recipe's whole model
	Parts           []Delta // in model order
}

// variant is one part to measure: block Block replaced by blk.
type variant struct {
	block int
	role  string
	name  string
	blk   *model.Block
}

// measureSensitivity scores the variants on wins: for each window the FP
// model's block inputs are kept, so a variant at block l only reruns
// blocks l… (the blocks before it are unchanged).
func measureSensitivity(fp, q *model.Model, refs references, wins [][]int, perLinear bool, progress func(done, total int)) (*Sensitivity, error) {
	if len(wins) == 0 {
		return nil, fmt.Errorf("sensitivity: no evaluation windows")
	}
	T := len(wins[0])
	if T < 2 {
		return nil, fmt.Errorf("sensitivity: windows of %d tokens score nothing", T)
	}
	var vars []variant
	for l := range fp.Blocks {
		if !perLinear {
			// Every block: a recipe may change a block without replacing
			// a linear (KV-cache quantization lives in its attention).
			vars = append(vars, variant{block: l, name: fp.Blocks[l].Name, blk: q.Blocks[l]})
			continue
		}
		for _, nl := range q.Blocks[l].Linears() {
			if !refs.quantized(l, nl.Role) {
				continue
			}
			b := fpBlock(fp, q, refs, l)
			*b.Linear(nl.Role) = *nl.Linear
			vars = append(vars, variant{block: l, role: nl.Role, name: fp.LinearName(l, nl.Role), blk: b})
		}
	}
	view := *fp // the FP model with one block swapped at a time
	view.Blocks = append([]*model.Block(nil), fp.Blocks...)
	runner := view.NewBlockRunner()
	qrunner := q.NewBlockRunner()

	type acc struct{ kl, nll float64 }
	accs := make([]acc, len(vars))
	var full acc
	var baseNLL float64
	rows := T - 1
	total := len(wins) * (len(vars) + 1)
	done := 0
	ins := make([][]float32, len(fp.Blocks))
	x := make([]float32, T*fp.Hidden)
	for _, w := range wins {
		h, err := fp.EmbedTokens(w)
		if err != nil {
			return nil, fmt.Errorf("sensitivity: %w", err)
		}
		for l := range fp.Blocks {
			ins[l] = append(ins[l][:0], h...)
			runner.Run(l, h, T)
		}
		base := newBaseRows(fp.Logits(h, T), w, fp.Vocab)
		baseNLL += base.nll
		score := func(logits []float32) acc {
			kl, nll := base.compare(logits, w)
			return acc{kl, nll}
		}
		for i, v := range vars {
			copy(x, ins[v.block])
			view.Blocks[v.block] = v.blk
			for l := v.block; l < len(view.Blocks); l++ {
				runner.Run(l, x, T)
			}
			view.Blocks[v.block] = fp.Blocks[v.block]
			a := score(view.Logits(x, T))
			accs[i].kl += a.kl
			accs[i].nll += a.nll
			done++
			if progress != nil {
				progress(done, total)
			}
		}
		qx, err := q.EmbedTokens(w)
		if err != nil {
			return nil, fmt.Errorf("sensitivity: %w", err)
		}
		for l := range q.Blocks {
			qrunner.Run(l, qx, T)
		}
		a := score(q.Logits(qx, T))
		full.kl += a.kl
		full.nll += a.nll
		done++
		if progress != nil {
			progress(done, total)
		}
	}
	n := float64(len(wins) * rows)
	s := &Sensitivity{Windows: len(wins), SeqLen: T, PerLinear: perLinear, BasePPL: math.Exp(baseNLL / n)}
	s.Full = Delta{Block: -1, Name: "whole model", KL: full.kl / n, PPL: math.Exp(full.nll / n)}
	for i, v := range vars {
		s.Parts = append(s.Parts, Delta{Block: v.block, Role: v.role, Name: v.name, KL: accs[i].kl / n, PPL: math.Exp(accs[i].nll / n)})
	}
	return s, nil
}

// baseRows holds the FP model's next-token distributions of one window.
type baseRows struct {
	vocab int
	logp  []float32 // log-probabilities [rows × vocab]
	nll   float64
}

func newBaseRows(logits []float32, w []int, vocab int) *baseRows {
	rows := len(w) - 1
	b := &baseRows{vocab: vocab, logp: logits[:rows*vocab]}
	nll := make([]float64, rows)
	kernels.ParallelFor(rows, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			row := b.logp[t*vocab : (t+1)*vocab]
			lse := float32(eval.LogSumExp(row))
			for i := range row {
				row[i] -= lse
			}
			nll[t] = -float64(row[w[t+1]])
		}
	})
	for _, v := range nll {
		b.nll += v
	}
	return b
}

// compare returns Σ_t KL(P_fp,t ‖ Q_t) and Σ_t −log Q_t(w[t+1]) over the
// window's scored positions, for Q = softmax(logits).
func (b *baseRows) compare(logits []float32, w []int) (kl, nll float64) {
	V := b.vocab
	rows := len(w) - 1
	kls, nlls := make([]float64, rows), make([]float64, rows)
	kernels.ParallelFor(rows, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			lp := b.logp[t*V : (t+1)*V]
			q := logits[t*V : (t+1)*V]
			lse := eval.LogSumExp(q)
			var s float64
			for i, a := range lp {
				s += float64(nn.Exp32(a)) * (float64(a) - (float64(q[i]) - lse))
			}
			kls[t] = math.Max(s, 0)
			nlls[t] = lse - float64(q[w[t+1]])
		}
	})
	for t := range kls {
		kl += kls[t]
		nll += nlls[t]
	}
	return kl, nll
}
