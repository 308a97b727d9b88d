package nn

import "math"

// Rope applies rotary position embeddings (Su et al., RoFormer): the first
// RotDim features of every head are taken as RotDim/2 planar pairs, and
// pair i at position p is rotated by angle p·θ^(−2i/RotDim).
//
// Two conventions exist for which features form a pair, and checkpoints are
// only correct under the one they were trained with:
//   - Hugging Face "rotate half" (Interleaved = false): pair i is
//     (x[i], x[i+RotDim/2]);
//   - llama2.c / Meta's original complex form (Interleaved = true): pair i is
//     (x[2i], x[2i+1]).
//
// Features beyond RotDim pass unchanged (GPT-NeoX's partial rotary).
type Rope struct {
	HeadDim     int
	RotDim      int
	Theta       float64
	Interleaved bool
	// RoundFreq, if set, rounds each inverse frequency θ^(−2i/RotDim) to a
	// storage format. transformers keeps inv_freq as a floating buffer that
	// is cast with the model, so a checkpoint loaded in its stored bf16 or
	// fp16 dtype rotates by half-precision frequencies — and so do the
	// outputs everybody compares against. Positions far from 0 expose the
	// difference (0.2 % per position step in bf16).
	RoundFreq func(float32) float32
	cos, sin  []float32 // [positions × RotDim/2]
}

// NewRope builds the tables for the first maxPos positions; Apply extends
// them if a longer sequence arrives. roundFreq may be nil (see RoundFreq).
func NewRope(headDim, rotDim int, theta float64, interleaved bool, maxPos int, roundFreq func(float32) float32) *Rope {
	r := &Rope{HeadDim: headDim, RotDim: rotDim, Theta: theta, Interleaved: interleaved, RoundFreq: roundFreq}
	r.grow(maxPos)
	return r
}

// grow computes the angles in float64 and rounds once, so the table is as
// exact as float32 allows.
func (r *Rope) grow(n int) {
	half := r.RotDim / 2
	have := len(r.cos) / half
	for p := have; p < n; p++ {
		for i := 0; i < half; i++ {
			invFreq := math.Pow(r.Theta, -float64(2*i)/float64(r.RotDim))
			if r.RoundFreq != nil {
				invFreq = float64(r.RoundFreq(float32(invFreq)))
			}
			s, c := math.Sincos(float64(p) * invFreq)
			r.cos = append(r.cos, float32(c))
			r.sin = append(r.sin, float32(s))
		}
	}
}

// Apply rotates x, which holds rows tokens at positions pos0, pos0+1, … each
// made of heads vectors of HeadDim features.
func (r *Rope) Apply(x []float32, rows, heads, pos0 int) {
	half := r.RotDim / 2
	if need := pos0 + rows; need*half > len(r.cos) {
		r.grow(need)
	}
	width := heads * r.HeadDim
	splitRows(rows, width, func(t0, t1 int) { r.apply(x, t0, t1, heads, pos0) })
}

// apply rotates rows [t0, t1) of x.
func (r *Rope) apply(x []float32, t0, t1, heads, pos0 int) {
	half := r.RotDim / 2
	width := heads * r.HeadDim
	for t := t0; t < t1; t++ {
		cs := r.cos[(pos0+t)*half : (pos0+t+1)*half]
		sn := r.sin[(pos0+t)*half : (pos0+t+1)*half]
		for h := 0; h < heads; h++ {
			v := x[t*width+h*r.HeadDim : t*width+h*r.HeadDim+r.RotDim]
			if r.Interleaved {
				for i := 0; i < half; i++ {
					a, b := v[2*i], v[2*i+1]
					v[2*i] = a*cs[i] - b*sn[i]
					v[2*i+1] = a*sn[i] + b*cs[i]
				}
				continue
			}
			for i := 0; i < half; i++ {
				a, b := v[i], v[i+half]
				v[i] = a*cs[i] - b*sn[i]
				v[i+half] = b*cs[i] + a*sn[i]
			}
		}
	}
}
