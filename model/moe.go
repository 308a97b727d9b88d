package model

import (
	"fmt"
	"math"
	"sort"

	"llmq/kernels"
	"llmq/nn"
)

// MoE is a sparse mixture-of-experts MLP (Shazeer et al. 2017; Mixtral,
// Jiang et al. 2024; Qwen3-MoE): a router scores the experts for each
// token, the TopK best run, and their outputs are summed with the router's
// weights,
//
//	p = softmax(Router(h))                     over all experts, in float32
//	S = the TopK experts of largest p          (ties: the lower index)
//	w_e = p_e / Σ_{e'∈S} p_{e'} if NormTopK    (Mixtral always; Qwen3-MoE by norm_topk_prob)
//	      p_e                   otherwise
//	MLP(h) = Σ_{e∈S} w_e · Down_e(Act(Gate_e(h)) ⊙ Up_e(h))
//
// Each expert is three ordinary linears, so every quantized layer kind and
// kernel serves experts as it serves dense MLPs.
type MoE struct {
	Router   nn.Linear // [experts × hidden]
	Experts  []*Expert
	TopK     int
	NormTopK bool
	// AllExperts runs every expert on every token (their outputs still
	// weighted by the routing, so the block computes the same function):
	// calibration then sees each expert's inputs on all tokens, as
	// llm-compressor calibrates MoE models, instead of on the few routed
	// to a rarely chosen expert.
	AllExperts bool
	// Tokens counts, per expert, the tokens routed to it since the last
	// reset (nil: not counted).
	Tokens []int
}

// Clone returns a copy that shares the layers but not the slots holding
// them: replacing an expert's linear in the copy leaves e as it was (a
// Block copied by value still shares its *MoE).
func (e *MoE) Clone() *MoE {
	c := *e
	c.Experts = make([]*Expert, len(e.Experts))
	for i, x := range e.Experts {
		ex := *x
		c.Experts[i] = &ex
	}
	c.Tokens = nil
	return &c
}

// Expert is one expert's gated MLP.
type Expert struct {
	Gate, Up, Down nn.Linear
}

// ExpertRole names linear part ("gate", "up", "down") of expert i as a
// block role: "experts.3.gate".
func ExpertRole(i int, part string) string { return fmt.Sprintf("experts.%d.%s", i, part) }

// ParseExpertRole is the inverse of ExpertRole.
func ParseExpertRole(role string) (i int, part string, ok bool) {
	var rest string
	if n, err := fmt.Sscanf(role, "experts.%d.%s", &i, &rest); err != nil || n != 2 {
		return 0, "", false
	}
	return i, rest, rest == "gate" || rest == "up" || rest == "down"
}

// route returns, for each of T tokens, the TopK chosen experts and their
// weights, from the router logits [T × E].
func (e *MoE) route(logits []float32, T int) (ids []int, ws []float32) {
	E, k := len(e.Experts), e.TopK
	ids, ws = make([]int, T*k), make([]float32, T*k)
	p := make([]float32, E)
	order := make([]int, E)
	for t := 0; t < T; t++ {
		row := logits[t*E : (t+1)*E]
		m := kernels.MaxF32(row)
		var sum float64
		for j, v := range row {
			p[j] = float32(math.Exp(float64(v - m)))
			sum += float64(p[j])
		}
		for j := range p {
			p[j] = float32(float64(p[j]) / sum)
			order[j] = j
		}
		sort.SliceStable(order, func(a, b int) bool { return p[order[a]] > p[order[b]] })
		var top float32
		for j := 0; j < k; j++ {
			ids[t*k+j], ws[t*k+j] = order[j], p[order[j]]
			top += p[order[j]]
		}
		if e.NormTopK {
			for j := 0; j < k; j++ {
				ws[t*k+j] /= top
			}
		}
	}
	return ids, ws
}

// forward computes out [T × H] = MoE(in) for T tokens.
func (e *MoE) forward(out, in []float32, T int, act nn.Activation, silu bool, s *scratch) {
	H, E, k := e.Router.In(), len(e.Experts), e.TopK
	s.r = grow(s.r, T*E)
	e.Router.Forward(s.r, in, T)
	ids, ws := e.route(s.r[:T*E], T)
	clear(out[:T*H])
	// Tokens routed to each expert, and their weights.
	rows := make([][]int, E)
	weights := make([][]float32, E)
	for t := 0; t < T; t++ {
		for j := 0; j < k; j++ {
			x := ids[t*k+j]
			rows[x] = append(rows[x], t)
			weights[x] = append(weights[x], ws[t*k+j])
		}
	}
	if e.Tokens != nil {
		for x := range rows {
			e.Tokens[x] += len(rows[x])
		}
	}
	for x, ex := range e.Experts {
		if e.AllExperts {
			// Every token through the expert; only the routed ones count.
			s.eo = grow(s.eo, T*H)
			runMLP(s.eo, in, T, ex.Gate, ex.Up, ex.Down, act, silu, s)
			for i, t := range rows[x] {
				kernels.Axpy(weights[x][i], s.eo[t*H:(t+1)*H], out[t*H:(t+1)*H])
			}
			continue
		}
		n := len(rows[x])
		if n == 0 {
			continue
		}
		s.ei, s.eo = grow(s.ei, n*H), grow(s.eo, n*H)
		for i, t := range rows[x] {
			copy(s.ei[i*H:(i+1)*H], in[t*H:(t+1)*H])
		}
		runMLP(s.eo, s.ei[:n*H], n, ex.Gate, ex.Up, ex.Down, act, silu, s)
		for i, t := range rows[x] {
			kernels.Axpy(weights[x][i], s.eo[i*H:(i+1)*H], out[t*H:(t+1)*H])
		}
	}
}
