// Package generate produces text from a model: greedy decoding or seeded
// nucleus (top-p) sampling, one token at a time over the KV cache.
package generate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"llmq/model"
	"llmq/nn"
)

// Sampler picks the next token from a row of logits.
type Sampler struct {
	// Temperature 0 means greedy (argmax); otherwise logits are divided by
	// it before the softmax.
	Temperature float64
	// TopP keeps the smallest set of most likely tokens whose probability
	// adds up to at least TopP (Holtzman et al. 2020); 1 keeps all.
	TopP float64
	rng  *rand.Rand
}

// NewSampler returns a sampler; the same seed gives the same choices.
func NewSampler(temperature, topP float64, seed uint64) (*Sampler, error) {
	if temperature < 0 || math.IsNaN(temperature) {
		return nil, fmt.Errorf("temperature must be ≥ 0, got %v", temperature)
	}
	if !(topP > 0 && topP <= 1) {
		return nil, fmt.Errorf("top-p must be in (0, 1], got %v", topP)
	}
	return &Sampler{Temperature: temperature, TopP: topP, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}, nil
}

// Argmax is the index of the largest logit (the first, on ties).
func Argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// Sample chooses a token id.
func (s *Sampler) Sample(logits []float32) int {
	if s.Temperature == 0 {
		return Argmax(logits)
	}
	type cand struct {
		id int
		p  float64
	}
	mx := logits[Argmax(logits)]
	cands := make([]cand, len(logits))
	var sum float64
	for i, v := range logits {
		p := float64(nn.Exp32(float32(float64(v-mx) / s.Temperature)))
		cands[i] = cand{i, p}
		sum += p
	}
	sort.Slice(cands, func(a, b int) bool {
		if cands[a].p != cands[b].p {
			return cands[a].p > cands[b].p
		}
		return cands[a].id < cands[b].id
	})
	// Keep the nucleus.
	keep, cum := 0, 0.0
	for keep < len(cands) {
		cum += cands[keep].p / sum
		keep++
		if cum >= s.TopP {
			break
		}
	}
	var kept float64
	for _, c := range cands[:keep] {
		kept += c.p
	}
	r := s.rng.Float64() * kept
	for _, c := range cands[:keep] {
		r -= c.p
		if r < 0 {
			return c.id
		}
	}
	return cands[keep-1].id
}

// Run feeds the prompt, then generates up to n tokens, calling emit with
// each new id; it stops early at eos (≥ 0) or when emit returns false. It
// returns the generated ids (without the prompt).
func Run(m *model.Model, prompt []int, n int, s *Sampler, eos int, emit func(id int) bool) ([]int, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	if n < 0 {
		return nil, fmt.Errorf("generate: %d tokens to generate", n)
	}
	limit := len(prompt) + n
	if limit < len(prompt) { // overflow
		limit = math.MaxInt
	}
	if m.Pos != nil && limit > m.MaxPos {
		limit = m.MaxPos
	}
	// The caches grow as needed; reserve no more than the model's context
	// up front, so a large n does not allocate what EOS may never need.
	reserve := limit
	if ctx := max(m.MaxPos, len(prompt)+1); reserve > ctx {
		reserve = ctx
	}
	st := m.NewState(reserve)
	logits, err := m.Forward(st, prompt, model.Options{LastOnly: true})
	if err != nil {
		return nil, err
	}
	var out []int
	for len(out) < n && st.Pos < limit {
		id := s.Sample(logits)
		if id == eos {
			break
		}
		out = append(out, id)
		if emit != nil && !emit(id) {
			break
		}
		if len(out) == n || st.Pos >= limit {
			break
		}
		if logits, err = m.Forward(st, []int{id}, model.Options{LastOnly: true}); err != nil {
			return out, err
		}
	}
	return out, nil
}
