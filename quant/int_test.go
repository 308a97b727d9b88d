package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestIntRange(t *testing.T) {
	cases := []struct {
		bits       int
		sym, full  bool
		qmin, qmax int32
	}{
		{8, true, false, -127, 127},
		{8, true, true, -128, 127},
		{8, false, false, 0, 255},
		{4, true, false, -7, 7},
		{4, true, true, -8, 7},
		{4, false, false, 0, 15},
		{3, true, false, -3, 3},
		{2, true, false, -1, 1},
		{2, true, true, -2, 1},
		{2, false, false, 0, 3},
		{5, false, true, 0, 31}, // full ignored for asymmetric
	}
	for _, c := range cases {
		lo, hi := IntRange(c.bits, c.sym, c.full)
		if lo != c.qmin || hi != c.qmax {
			t.Errorf("IntRange(%d, %v, %v) = [%d, %d], want [%d, %d]", c.bits, c.sym, c.full, lo, hi, c.qmin, c.qmax)
		}
	}
}

func TestRoundHalfEven(t *testing.T) {
	for _, c := range []struct{ x, want float32 }{
		{0.5, 0}, {1.5, 2}, {2.5, 2}, {3.5, 4}, {-0.5, 0}, {-1.5, -2}, {-2.5, -2},
		{2.4999998, 2}, {2.5000002, 3}, {-7.5, -8}, {126.5, 126}, {127.5, 128},
	} {
		if got := RoundHalfEven(c.x); got != c.want {
			t.Errorf("RoundHalfEven(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	// QuantizeInt rounds the same way: 2.5 steps → 2, 3.5 → 4.
	if q := QuantizeInt(2.5, 1, 0, -7, 7); q != 2 {
		t.Errorf("QuantizeInt(2.5) = %d", q)
	}
	if q := QuantizeInt(3.5, 1, 0, -7, 7); q != 4 {
		t.Errorf("QuantizeInt(3.5) = %d", q)
	}
}

func TestIntParamsKnown(t *testing.T) {
	cases := []struct {
		lo, hi    float32
		bits      int
		sym, full bool
		scale     float32
		zero      int32
	}{
		{-1, 1, 8, true, false, 1.0 / 127, 0},
		{-2, 0.5, 8, true, false, 2.0 / 127, 0},
		{-1, 1, 4, true, true, 2.0 / 15, 0}, // GPTQ sym: 2·absmax/(2^b−1)
		{0, 15, 4, false, false, 1, 0},
		{-5, 10, 4, false, false, 1, 5},
		{1, 2, 4, false, false, 2.0 / 15, 0},    // range widened to include 0
		{-3, -1, 4, false, false, 3.0 / 15, 15}, // all negative: zero at the top
	}
	for _, c := range cases {
		qmin, qmax := IntRange(c.bits, c.sym, c.full)
		s, z := IntParamsMinMax(c.lo, c.hi, qmin, qmax, c.sym, MinScale)
		if math.Abs(float64(s-c.scale)) > 1e-7 || z != c.zero {
			t.Errorf("IntParamsMinMax(%v, %v, b=%d sym=%v full=%v) = (%v, %d), want (%v, %d)", c.lo, c.hi, c.bits, c.sym, c.full, s, z, c.scale, c.zero)
		}
	}
}

// All-zero ranges give a positive finite scale and dequantize to exact
// zeros; NaN and Inf inputs to QuantizeInt never produce NaN.
func TestIntZeroRangeAndSpecials(t *testing.T) {
	for _, sym := range []bool{true, false} {
		qmin, qmax := IntRange(4, sym, false)
		s, z := IntParamsMinMax(0, 0, qmin, qmax, sym, MinScale)
		if !(s > 0) || math.IsInf(float64(s), 0) {
			t.Fatalf("zero range scale %v", s)
		}
		q := QuantizeInt(0, s, z, qmin, qmax)
		if v := DequantizeInt(q, s, z); v != 0 {
			t.Errorf("sym=%v: zero dequantizes to %v", sym, v)
		}
		// tiny but nonzero range: scale floored, still no NaN/Inf
		s, z = IntParamsMinMax(-1e-45, 1e-45, qmin, qmax, sym, MinScale)
		if s != MinScale {
			t.Errorf("denormal range scale %v, want floor %v", s, MinScale)
		}
		for _, x := range []float32{1e-45, -1e-45, 1, -1e30, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())} {
			q := QuantizeInt(x, s, z, qmin, qmax)
			if q < qmin || q > qmax {
				t.Errorf("QuantizeInt(%v) = %d outside range", x, q)
			}
			if v := DequantizeInt(q, s, z); math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Errorf("QuantizeInt(%v) dequantizes to %v", x, v)
			}
		}
		if q := QuantizeInt(float32(math.NaN()), 0.5, z, qmin, qmax); q != z {
			t.Errorf("NaN must map to the zero-point, got %d", q)
		}
	}
}

// On random data every grid reproduces values inside its range within half a
// step, codes stay in range, and fake quantization is idempotent.
func TestIntRandomErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	type grid struct {
		sym, full bool
	}
	for bits := 2; bits <= 8; bits++ {
		for _, g := range []grid{{true, false}, {true, true}, {false, false}} {
			qmin, qmax := IntRange(bits, g.sym, g.full)
			for trial := 0; trial < 40; trial++ {
				n := 64
				x := make([]float32, n)
				off := float32(rng.NormFloat64() * 2)
				mag := float32(math.Exp2(rng.Float64()*20 - 10))
				for i := range x {
					x[i] = mag * (float32(rng.NormFloat64()) + off)
				}
				lo, hi := MinMax(x)
				s, z := IntParamsMinMax(lo, hi, qmin, qmax, g.sym, MinScale)
				for _, v := range x {
					q := QuantizeInt(v, s, z, qmin, qmax)
					if q < qmin || q > qmax {
						t.Fatalf("code %d outside [%d, %d]", q, qmin, qmax)
					}
					xh := DequantizeInt(q, s, z)
					if d := math.Abs(float64(v) - float64(xh)); d > float64(s)/2+4*eps32*math.Abs(float64(v)) {
						t.Fatalf("b=%d sym=%v full=%v: |%v − %v| = %v > s/2 = %v (z=%d)", bits, g.sym, g.full, v, xh, d, s/2, z)
					}
					if q2 := QuantizeInt(xh, s, z, qmin, qmax); q2 != q {
						t.Fatalf("b=%d: requantizing %v gives %d, want %d", bits, xh, q2, q)
					}
				}
			}
		}
	}
}

// eps32 is the float32 machine epsilon: tolerances add a few ulps of |x| for
// the float32 rounding of s and of s·(q − z).
const eps32 = 0x1p-23
