package nn

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// rotateRef rotates x (rows × heads × headDim) by the given frequencies in
// float64, rotate-half layout, scaled by att.
func rotateRef(x []float32, rows, heads, headDim, pos0 int, inv []float32, att float64) []float64 {
	half := len(inv)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	for t := 0; t < rows; t++ {
		for h := 0; h < heads; h++ {
			v := out[(t*heads+h)*headDim:]
			for i := 0; i < half; i++ {
				a := float64(pos0+t) * float64(inv[i])
				c, s := math.Cos(a)*att, math.Sin(a)*att
				x0, x1 := v[i], v[i+half]
				v[i], v[i+half] = x0*c-x1*s, x1*c+x0*s
			}
		}
	}
	return out
}

func TestRopeDefaultMatchesFormula(t *testing.T) {
	const hd, rot, heads = 16, 12, 2
	r := NewRope(hd, rot, 10000, false, 8, nil)
	inv := r.InvFreq(1)
	for i, f := range inv {
		want := math.Pow(10000, -float64(2*i)/rot)
		// float32 exponent 2i/d, power and reciprocal, as transformers.
		if math.Abs(float64(f)-want) > 1e-6*want {
			t.Errorf("inv_freq[%d] = %g, want %g", i, f, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, pos0 := range []int{0, 5, 300} { // 300 grows the table past 8
		x := make([]float32, 3*heads*hd)
		for i := range x {
			x[i] = rng.Float32()*2 - 1
		}
		orig := slices.Clone(x)
		want := rotateRef(x, 3, heads, hd, pos0, inv, 1)
		r.Apply(x, 3, heads, pos0)
		for i := range x {
			// float32 angle: |Δ| ≲ p·2⁻²⁴ per unit of amplitude.
			if d := math.Abs(float64(x[i]) - want[i]); d > 2e-7+float64(pos0+3)*1.2e-7 {
				t.Fatalf("pos0 %d: x[%d] = %g, want %g", pos0, i, x[i], want[i])
			}
		}
		for i := 0; i < 3*heads; i++ { // features beyond RotDim pass unchanged
			if !slices.Equal(x[i*hd+rot:(i+1)*hd], orig[i*hd+rot:(i+1)*hd]) {
				t.Fatalf("pos0 %d: features beyond the rotary dimension changed", pos0)
			}
		}
	}
}

// TestRopeLengthRegimes checks which frequencies a call uses: dynamic NTK
// keeps the original ones up to MaxPos and recomputes them for the call's
// length pos0+rows beyond; longrope switches from short to long factors
// past OriginalMaxPos; the attention factor scales cos and sin.
func TestRopeLengthRegimes(t *testing.T) {
	const hd = 8
	plain := NewRope(hd, hd, 10000, false, 16, nil).InvFreq(1)
	dyn, err := NewScaledRope(hd, hd, 10000, false, RopeScaling{Type: "dynamic", Factor: 2, MaxPos: 32}, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dyn.InvFreq(32), plain) {
		t.Errorf("dynamic at MaxPos: %v, want the plain %v", dyn.InvFreq(32), plain)
	}
	// θ' = θ·(2·64/32 − 1)^(8/6) at length 64.
	want := NewRope(hd, hd, float64(float32(10000*math.Pow(3, 8.0/6))), false, 1, nil).InvFreq(1)
	got := dyn.InvFreq(64)
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > 2e-7*float64(want[i]) {
			t.Errorf("dynamic at 64: inv_freq[%d] = %g, want %g", i, got[i], want[i])
		}
	}
	// A decode step at position 63 uses the length-64 frequencies.
	x := make([]float32, hd)
	for i := range x {
		x[i] = float32(i + 1)
	}
	ref := rotateRef(x, 1, 1, hd, 63, got, 1)
	dyn.Apply(x, 1, 1, 63)
	for i := range x {
		if math.Abs(float64(x[i])-ref[i]) > 1e-4 {
			t.Fatalf("dynamic decode step: x[%d] = %g, want %g", i, x[i], ref[i])
		}
	}

	short, long := []float64{1, 1.5, 2, 3}, []float64{1, 4, 9, 16}
	lr, err := NewScaledRope(hd, hd, 10000, false, RopeScaling{Type: "longrope", OriginalMaxPos: 10, ShortFactor: short, LongFactor: long, AttentionFactor: 1.25}, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	for L, lambda := range map[int][]float64{10: short, 11: long} {
		got := lr.InvFreq(L)
		for i := range got {
			want := plain[i] / float32(lambda[i])
			if math.Abs(float64(got[i]-want)) > 1e-7*float64(want) {
				t.Errorf("longrope length %d: inv_freq[%d] = %g, want %g", L, i, got[i], want)
			}
		}
		// The attention factor scales the rotation: |rotated| = 1.25·|x|.
		x := []float32{1, 0, 0, 0, 0, 0, 0, 0}
		lr.Apply(x, 1, 1, L-1)
		if n := math.Hypot(float64(x[0]), float64(x[4])); math.Abs(n-1.25) > 1e-6 {
			t.Errorf("longrope length %d: rotated norm %g, want 1.25", L, n)
		}
	}
}

// TestRopeConcurrent shares one rope of each kind between goroutines that
// rotate different sequences at different lengths (run with -race): every
// result must equal that of a rope used alone.
func TestRopeConcurrent(t *testing.T) {
	const hd, heads = 16, 2
	kinds := []RopeScaling{
		{},
		{Type: "dynamic", Factor: 4, MaxPos: 24},
		{Type: "longrope", OriginalMaxPos: 20, ShortFactor: []float64{1, 1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6}, LongFactor: []float64{1, 2, 3, 4, 5, 6, 7, 8}},
		{Type: "yarn", Factor: 4, OriginalMaxPos: 16, AttentionFactor: YarnAttentionFactor(4, 0, 0)},
	}
	for _, s := range kinds {
		shared, err := NewScaledRope(hd, hd, 10000, false, s, 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		type job struct{ pos0, rows int }
		var jobs []job
		for i := 0; i < 48; i++ {
			jobs = append(jobs, job{pos0: (i * 7) % 40, rows: 1 + (i*5)%30})
		}
		input := func(j job) []float32 {
			x := make([]float32, j.rows*heads*hd)
			for i := range x {
				x[i] = float32(math.Sin(float64(i*(j.pos0+1)) + float64(j.rows)))
			}
			return x
		}
		var wg sync.WaitGroup
		got := make([][]float32, len(jobs))
		for i, j := range jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x := input(j)
				shared.Apply(x, j.rows, heads, j.pos0)
				got[i] = x
			}()
		}
		wg.Wait()
		for i, j := range jobs {
			alone, _ := NewScaledRope(hd, hd, 10000, false, s, 4, nil)
			x := input(j)
			alone.Apply(x, j.rows, heads, j.pos0)
			if !slices.Equal(x, got[i]) {
				t.Errorf("%q: pos0 %d rows %d differs when the rope is shared", s.Type, j.pos0, j.rows)
			}
		}
	}
}

func TestNewScaledRopeErrors(t *testing.T) {
	for _, c := range []struct {
		s    RopeScaling
		rot  int
		want string
	}{
		{RopeScaling{Type: "fancy"}, 8, `unknown type "fancy"`},
		{RopeScaling{Type: "linear", Factor: -1}, 8, "factor must be positive"},
		{RopeScaling{Type: "dynamic", Factor: 2}, 8, "max_position_embeddings must be positive"},
		{RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 4, HighFreqFactor: 4, OriginalMaxPos: 64}, 8, "must exceed"},
		{RopeScaling{Type: "yarn", Factor: 4}, 8, "original_max_position_embeddings"},
		{RopeScaling{Type: "longrope", OriginalMaxPos: 8, ShortFactor: []float64{1, 1, 1, 1}, LongFactor: []float64{1, 1, 1}}, 8, "long_factor has 3 values, want rotary dimension / 2 = 4"},
		{RopeScaling{Type: "longrope", OriginalMaxPos: 8, ShortFactor: []float64{1, 0, 1, 1}, LongFactor: []float64{1, 1, 1, 1}}, 8, "short_factor[1] must be positive"},
		{RopeScaling{}, 7, "must be even"},
	} {
		_, err := NewScaledRope(8, c.rot, 10000, false, c.s, 4, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.s, err, c.want)
		}
	}
}
