package modelio

import (
	"math"
	"strings"
	"testing"

	"llmq/nn"
)

// freqRope is a rotate-half rotary embedding with given inverse
// frequencies and a cos/sin scale, standing in for the variants nn.Rope
// does not compute yet.
type freqRope struct {
	headDim int
	inv     []float64
	gain    float64
}

func (r freqRope) Apply(x []float32, rows, heads, pos0 int) {
	half := len(r.inv)
	for t := 0; t < rows; t++ {
		for h := 0; h < heads; h++ {
			v := x[(t*heads+h)*r.headDim:]
			for i := 0; i < half; i++ {
				s, c := math.Sincos(float64(pos0+t) * r.inv[i])
				a, b := float64(v[i]), float64(v[i+half])
				v[i] = float32(r.gain * (a*c - b*s))
				v[i+half] = float32(r.gain * (b*c + a*s))
			}
		}
	}
}

// llama3InvFreq is transformers' _compute_llama3_parameters: the original
// frequencies divided by factor below the low-frequency wavelength bound,
// kept above the high one, and interpolated smoothly between.
func llama3InvFreq(theta float64, dim int, factor, low, high float64, oldCtx int) []float64 {
	var inv []float64
	lowWave, highWave := float64(oldCtx)/low, float64(oldCtx)/high
	for i := 0; i < dim/2; i++ {
		f := 1 / math.Pow(theta, float64(2*i)/float64(dim))
		wave := 2 * math.Pi / f
		switch {
		case wave > lowWave:
			f /= factor
		case wave >= highWave:
			s := (float64(oldCtx)/wave - low) / (high - low)
			f = (1-s)*f/factor + s*f
		}
		inv = append(inv, f)
	}
	return inv
}

// TestGGUFRopeFreqs: the divisors measured from a Llama 3 rope are the
// rope_freqs convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors
// computes from the config (here tiny-llama3's: factor 8, low/high
// frequency factors 1 and 4, original context 64, θ = 500000, head 32);
// the original rope has none; an attention factor is refused.
func TestGGUFRopeFreqs(t *testing.T) {
	const theta, dim, factor, low, high, oldCtx = 500000.0, 32, 8.0, 1.0, 4.0, 64
	// The converter's formula, in its own terms (factor per wavelength).
	var want []float64
	for i := 0; i < dim/2; i++ {
		freq := 1 / math.Pow(theta, float64(2*i)/dim)
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < oldCtx/high:
			want = append(want, 1)
		case wavelen > oldCtx/low:
			want = append(want, factor)
		default:
			smooth := (oldCtx/wavelen - low) / (high - low)
			want = append(want, 1/((1-smooth)/factor+smooth))
		}
	}
	r, err := probeRope(freqRope{dim, llama3InvFreq(theta, dim, factor, low, high, oldCtx), 1}, dim, dim, theta, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.factors) != dim/2 {
		t.Fatalf("factors %v, want %d", r.factors, dim/2)
	}
	smooth := 0
	for i, w := range want {
		if math.Abs(float64(r.factors[i])/w-1) > 1e-6 {
			t.Errorf("factor %d = %v, want %v", i, r.factors[i], w)
		}
		if w != 1 && w != factor {
			smooth++
		}
	}
	if smooth == 0 || r.factors[0] != 1 {
		t.Errorf("the probe should cover all three bands: factors %v", r.factors)
	}
	for _, c := range []struct {
		name          string
		rot           int
		interleaved   bool
		headDim       int
		theta         float64
		wantNoFactors bool
	}{{"rotate-half", 64, false, 64, 10000, true}, {"interleaved", 48, true, 48, 1e6, true}, {"partial", 24, false, 32, 10000, true}} {
		r, err := ggufRopeOf(nn.NewRope(c.headDim, c.rot, c.theta, c.interleaved, 64, nil))
		if err != nil || r.factors != nil || r.rotDim != c.rot || r.theta != c.theta {
			t.Errorf("%s: %+v, %v; want no factors", c.name, r, err)
		}
	}
	plain := make([]float64, dim/2)
	for i := range plain {
		plain[i] = 1 / math.Pow(10000, float64(2*i)/dim)
	}
	if _, err := probeRope(freqRope{dim, plain, 1.2}, dim, dim, 10000, false); err == nil || !strings.Contains(err.Error(), "attention factor") {
		t.Errorf("a rope scaling cos/sin by 1.2: err = %v", err)
	}
}
