package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestPow2Ceil(t *testing.T) {
	for _, c := range []struct{ in, want float32 }{
		{1, 1}, {0.75, 1}, {1.0000001, 2}, {3, 4}, {4, 4}, {0.3, 0.5}, {0.25, 0.25},
		{0x1p-126, 0x1p-126}, {1e-45, 0x1p-149}, {3e38, 0x1p127}, {0, 0},
	} {
		if got := Pow2Ceil(c.in); got != c.want {
			t.Errorf("Pow2Ceil(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 1000; i++ {
		s := float32(math.Exp2(rng.Float64()*60 - 30))
		p := Pow2Ceil(s)
		if _, ok := Pow2Exponent(p); !ok || p < s || p >= 2*s {
			t.Fatalf("Pow2Ceil(%v) = %v", s, p)
		}
	}
}

func TestPow2RatioScales(t *testing.T) {
	sc := []float32{1, 0.5, 0.3, 0.2500001, 0.25, 0.9, 3e-3, 0.2499999}
	Pow2RatioScales(sc)
	want := []float32{1, 0.5, 0.25, 0.25, 0.25, 0.5, 1.0 / 512, 0.125}
	for i := range sc {
		if sc[i] != want[i] {
			t.Errorf("M2 scale %d = %v, want %v", i, sc[i], want[i])
		}
	}
	// Properties on random rows: S̃_i ∈ (S_i/2, S_i], S_max unchanged and
	// S_max/S̃_i an exact power of two.
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 200; trial++ {
		orig := make([]float32, 1+rng.IntN(16))
		for i := range orig {
			orig[i] = float32(math.Exp2(rng.Float64()*12-20) * (1 + rng.Float64()))
		}
		sc := append([]float32(nil), orig...)
		Pow2RatioScales(sc)
		var smax float32
		for _, s := range orig {
			smax = max(smax, s)
		}
		for i := range sc {
			if !(sc[i] <= orig[i] && sc[i] > orig[i]/2) {
				t.Fatalf("S̃=%v for S=%v", sc[i], orig[i])
			}
			k, ok := Pow2Exponent(float32(float64(smax) / float64(sc[i])))
			if !ok || float64(smax)/float64(sc[i]) != math.Ldexp(1, k) {
				t.Fatalf("S_max/S̃ = %v not a power of two", float64(smax)/float64(sc[i]))
			}
			if orig[i] == smax && sc[i] != smax {
				t.Fatal("S_max changed")
			}
		}
	}
}

// FP4ToE4M3 is exact: for every FP4 code and every shift, it reports success
// exactly when fp4(c)·2^shift is an E4M3 value, and then returns that value's
// code (signed zeros included).
func TestFP4ToE4M3Exhaustive(t *testing.T) {
	// all E4M3 finite values, for the representability reference
	codeOf := map[float64]uint8{}
	for c := 0; c < 256; c++ {
		if v := float64(E4M3.Decode(uint8(c))); !math.IsNaN(v) && v != 0 {
			codeOf[v] = uint8(c)
		}
	}
	okCount := 0
	for shift := -14; shift <= 10; shift++ {
		for c := uint8(0); c < 16; c++ {
			v := math.Ldexp(float64(E2M1.Decode(c)), shift)
			got, ok := FP4ToE4M3(c, shift)
			if v == 0 {
				want := c & 8 << 4
				if !ok || got != want {
					t.Errorf("FP4ToE4M3(%#x, %d) = %#02x %v, want %#02x", c, shift, got, ok, want)
				}
				continue
			}
			want, exists := codeOf[v]
			if ok != exists {
				t.Errorf("FP4ToE4M3(%#x, %d): ok=%v but %v representable=%v", c, shift, ok, v, exists)
				continue
			}
			if ok {
				okCount++
				if got != want || float64(E4M3.Decode(got)) != v {
					t.Errorf("FP4ToE4M3(%#x, %d) = %#02x (%v), want %#02x (%v)", c, shift, got, E4M3.Decode(got), want, v)
				}
			}
		}
	}
	// the typical shifts used by W4A8 (row-relative, ≤ 0, down to −6) are all exact
	for shift := -6; shift <= 0; shift++ {
		for c := uint8(0); c < 16; c++ {
			if _, ok := FP4ToE4M3(c, shift); !ok {
				t.Errorf("shift %d code %#x must be exact", shift, c)
			}
		}
	}
	if okCount < 200 {
		t.Errorf("only %d exact conversions", okCount)
	}
}

func TestCastFP4ToE4M3(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	rows, cols := 6, 64
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64()) * float32(1+i%3)
	}
	for _, str := range []string{"fp4e2m1-g16-pow2ratio", "fp4e2m1-g16-pow2", "fp4e2m1-channel-pow2", "fp4e2m1-tensor-pow2", "fp4e2m1-g32-pow2ratio-f16scale"} {
		qt, err := QuantizeWeight(w, rows, cols, MustParseSpec(str))
		if err != nil {
			t.Fatal(err)
		}
		codes, rs, inexact, err := CastFP4ToE4M3(qt)
		if err != nil || inexact != 0 {
			t.Fatalf("%s: %v, %d inexact", str, err, inexact)
		}
		deq := qt.Dequantize()
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				if got := rs[r] * E4M3.Decode(codes[r*cols+c]); got != deq[r*cols+c] {
					t.Fatalf("%s (%d,%d): rowScale·e4m3 = %v, dequant = %v", str, r, c, got, deq[r*cols+c])
				}
			}
		}
	}
	qt, _ := QuantizeWeight(w, rows, cols, MustParseSpec("fp4e2m1-g16"))
	qt.Scales[1] = qt.Scales[0] * 0.7
	if _, _, _, err := CastFP4ToE4M3(qt); !errors.Is(err, ErrParams) {
		t.Errorf("non-pow2 ratios: %v, want ErrParams", err)
	}
	qi, _ := QuantizeWeight(w, rows, cols, MustParseSpec("int4-sym-g16"))
	if _, _, _, err := CastFP4ToE4M3(qi); !errors.Is(err, ErrSpec) {
		t.Errorf("int tensor: %v, want ErrSpec", err)
	}
}
