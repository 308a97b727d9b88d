package modelio

import (
	"fmt"
	"math"

	"llmq/nn"
)

// ggufRope is a rotary embedding as llama.cpp parameterises it: ggml_rope_ext
// rotates pair i at position p by p·base^(−2i/rotDim) / factors[i], where
// factors is the rope_freqs tensor (nil: all 1).
type ggufRope struct {
	theta       float64
	rotDim      int
	interleaved bool // llama2.c's adjacent pairs (no q/k permutation needed)
	factors     []float32
}

func (r ggufRope) equal(o ggufRope) bool {
	if r.theta != o.theta || r.rotDim != o.rotDim || r.interleaved != o.interleaved || len(r.factors) != len(o.factors) {
		return false
	}
	for i := range r.factors {
		if r.factors[i] != o.factors[i] {
			return false
		}
	}
	return true
}

// ropeApplier is what the probe needs of a rotary embedding.
type ropeApplier interface {
	Apply(x []float32, rows, heads, pos0 int)
}

// ropeUnitTol is how far from 1 a measured frequency ratio may be and still
// be the unscaled frequency: the probe reads angles back from float32 cos
// and sin (relative error ~1e-7), and the frequencies may have been
// evaluated in float32 (another ~1e-7). Real scalings move the ratio by far
// more (Llama 3's smallest change is its smooth band's, at least a few %).
const ropeUnitTol = 1e-6

// ggufRopeOf measures what a rotary embedding computes and expresses it in
// llama.cpp's terms. The frequencies are not read from the Rope's
// configuration but from its output: the embedding is applied to a unit
// vector in every pair at position 1, so the angle of pair i is its inverse
// frequency f_i and the vector's length is the scale applied to cos and
// sin. Whatever variant computed them (the original rope, Llama 3's scaled
// frequencies, a linear interpolation), the divisors llama.cpp needs are
// then base^(−2i/d) / f_i, written as rope_freqs — the tensor
// convert_hf_to_gguf.py computes for Llama 3 from the config.
//
// What a position-1 probe cannot see is a frequency change that depends on
// the sequence length (dynamic NTK scaling beyond max_position_embeddings,
// LongRoPE's long factors); such models are exported with the frequencies
// of short sequences.
func ggufRopeOf(r *nn.Rope) (ggufRope, error) {
	return probeRope(r, r.HeadDim, r.RotDim, r.Theta, r.Interleaved)
}

func probeRope(r ropeApplier, headDim, rotDim int, theta float64, interleaved bool) (ggufRope, error) {
	out := ggufRope{theta: theta, rotDim: rotDim, interleaved: interleaved}
	half := rotDim / 2
	pair := func(i int) (int, int) {
		if interleaved {
			return 2 * i, 2*i + 1
		}
		return i, i + half
	}
	x := make([]float32, 2*headDim) // positions 0 and 1, one head
	for i := 0; i < half; i++ {
		a, _ := pair(i)
		x[a], x[headDim+a] = 1, 1
	}
	r.Apply(x, 2, 1, 0)
	at1 := x[headDim:]
	factors := make([]float32, half)
	scaled := false
	for i := 0; i < half; i++ {
		a, b := pair(i)
		c, s := float64(at1[a]), float64(at1[b])
		if g := math.Hypot(c, s); math.Abs(g-1) > 1e-5 {
			return out, fmt.Errorf("the rotary embedding scales cos and sin by %.6g (an attention factor, as YaRN and LongRoPE have), which a GGUF file of these architectures cannot carry", g)
		}
		if g0 := math.Hypot(float64(x[a]), float64(x[b])); math.Abs(g0-1) > 1e-5 {
			return out, fmt.Errorf("the rotary embedding scales position 0 by %.6g; a GGUF file cannot carry that", g0)
		}
		f := math.Atan2(s, c)
		if f <= 0 {
			return out, fmt.Errorf("rotary pair %d turns by %.6g rad per position; only frequencies in (0, π) can be measured", i, f)
		}
		ratio := math.Pow(theta, -float64(2*i)/float64(rotDim)) / f
		if math.Abs(ratio-1) > ropeUnitTol {
			scaled = true
		} else {
			ratio = 1
		}
		factors[i] = float32(ratio)
	}
	if scaled {
		out.factors = factors
	}
	return out, nil
}
