package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refFP is an independent statement of each format's bit layout, written from
// the format definitions rather than from FPFormat's fields.
type refFP struct {
	name       string
	f          *FPFormat
	e, m, bias int
	width      int
	isNaN      func(exp, man int) bool
	isInf      func(exp, man int) bool
}

var refFPs = []refFP{
	{"e4m3", E4M3, 4, 3, 7, 8,
		func(e, m int) bool { return e == 15 && m == 7 },
		func(e, m int) bool { return false }},
	{"e5m2", E5M2, 5, 2, 15, 8,
		func(e, m int) bool { return e == 31 && m != 0 },
		func(e, m int) bool { return e == 31 && m == 0 }},
	{"e2m1", E2M1, 2, 1, 1, 4,
		func(e, m int) bool { return false },
		func(e, m int) bool { return false }},
}

// value decodes code c by the textbook formula: (−1)^s·2^(e−bias)·(1+m/2^M)
// for e > 0, (−1)^s·2^(1−bias)·(m/2^M) for e = 0.
func (r refFP) value(c int) float64 {
	s := c >> (r.width - 1) & 1
	e := c >> r.m & (1<<r.e - 1)
	m := c & (1<<r.m - 1)
	sign := 1.0
	if s == 1 {
		sign = -1
	}
	switch {
	case r.isNaN(e, m):
		return math.NaN()
	case r.isInf(e, m):
		return sign * math.Inf(1)
	case e == 0:
		return sign * math.Pow(2, float64(1-r.bias)) * float64(m) / math.Pow(2, float64(r.m))
	}
	return sign * math.Pow(2, float64(e-r.bias)) * (1 + float64(m)/math.Pow(2, float64(r.m)))
}

func TestFPDecodeAllCodes(t *testing.T) {
	for _, r := range refFPs {
		for c := 0; c < 1<<r.width; c++ {
			want := r.value(c)
			got := r.f.Decode(uint8(c))
			if math.IsNaN(want) {
				if !math.IsNaN(float64(got)) || !r.f.IsNaN(uint8(c)) {
					t.Errorf("%s: code %#02x decodes to %v, want NaN", r.name, c, got)
				}
				continue
			}
			if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
				t.Errorf("%s: code %#02x decodes to %v, want %v", r.name, c, got, want)
			}
		}
	}
}

func TestFPKnownValues(t *testing.T) {
	cases := []struct {
		f    *FPFormat
		code uint8
		want float64
	}{
		{E4M3, 0x7E, 448},
		{E4M3, 0xFE, -448},
		{E4M3, 0x01, 0x1p-9},
		{E4M3, 0x07, 7 * 0x1p-9},
		{E4M3, 0x08, 0x1p-6},
		{E4M3, 0x38, 1},
		{E4M3, 0x3C, 1.5},
		{E4M3, 0x77, 240},
		{E4M3, 0x78, 256},
		{E5M2, 0x7B, 57344},
		{E5M2, 0x01, 0x1p-16},
		{E5M2, 0x03, 3 * 0x1p-16},
		{E5M2, 0x04, 0x1p-14},
		{E5M2, 0x3C, 1},
		{E5M2, 0x7C, math.Inf(1)},
		{E5M2, 0xFC, math.Inf(-1)},
		{E2M1, 0x0, 0}, {E2M1, 0x1, 0.5}, {E2M1, 0x2, 1}, {E2M1, 0x3, 1.5},
		{E2M1, 0x4, 2}, {E2M1, 0x5, 3}, {E2M1, 0x6, 4}, {E2M1, 0x7, 6},
		{E2M1, 0x9, -0.5}, {E2M1, 0xF, -6},
	}
	for _, c := range cases {
		if got := c.f.Decode(c.code); float64(got) != c.want {
			t.Errorf("%s.Decode(%#02x) = %v, want %v", c.f, c.code, got, c.want)
		}
	}
	for _, c := range []struct {
		f    *FPFormat
		code uint8
	}{{E4M3, 0x7F}, {E4M3, 0xFF}, {E5M2, 0x7D}, {E5M2, 0x7E}, {E5M2, 0x7F}, {E5M2, 0xFD}} {
		if !c.f.IsNaN(c.code) {
			t.Errorf("%s code %#02x must be NaN", c.f, c.code)
		}
	}
	if E4M3.Max() != 448 || E5M2.Max() != 57344 || E2M1.Max() != 6 {
		t.Errorf("max values %v %v %v", E4M3.Max(), E5M2.Max(), E2M1.Max())
	}
	if E4M3.MinSubnormal() != 0x1p-9 || E5M2.MinSubnormal() != 0x1p-16 || E2M1.MinSubnormal() != 0.5 {
		t.Errorf("min subnormals %v %v %v", E4M3.MinSubnormal(), E5M2.MinSubnormal(), E2M1.MinSubnormal())
	}
}

// Every non-NaN code survives Encode(Decode(c)), signed zeros included;
// E5M2's infinities survive the non-saturating EncodeIEEE.
func TestFPRoundTripAllCodes(t *testing.T) {
	for _, r := range refFPs {
		for c := 0; c < 1<<r.width; c++ {
			v := r.f.Decode(uint8(c))
			switch {
			case math.IsNaN(float64(v)):
				if back := r.f.Decode(r.f.Encode(v)); !math.IsNaN(float64(back)) {
					t.Errorf("%s: NaN code %#02x re-encodes to non-NaN %v", r.name, c, back)
				}
			case math.IsInf(float64(v), 0):
				if got := r.f.EncodeIEEE(v); got != uint8(c) {
					t.Errorf("%s: EncodeIEEE(%v) = %#02x, want %#02x", r.name, v, got, c)
				}
				if got := r.f.Encode(v); r.f.Decode(got) != float32(math.Copysign(float64(r.f.Max()), float64(v))) {
					t.Errorf("%s: Encode(%v) = %#02x must saturate", r.name, v, got)
				}
			default:
				if got := r.f.Encode(v); got != uint8(c) {
					t.Errorf("%s: Encode(Decode(%#02x) = %v) = %#02x", r.name, c, v, got)
				}
				if got := r.f.EncodeIEEE(v); got != uint8(c) {
					t.Errorf("%s: EncodeIEEE(Decode(%#02x) = %v) = %#02x", r.name, c, v, got)
				}
			}
		}
	}
}

// At the midpoint of every pair of neighbouring positive values the encoder
// picks the even code (positive codes are ordered by value, so the even one
// of c, c+1 is the one with mantissa LSB 0); just off the midpoint it picks
// the nearer neighbour. Negative values mirror.
func TestFPTiesToEven(t *testing.T) {
	for _, r := range refFPs {
		f := r.f
		signBit := uint8(1) << (r.width - 1)
		for c := 0; c < int(f.MaxCode()); c++ {
			lo, hi := float64(f.Decode(uint8(c))), float64(f.Decode(uint8(c+1)))
			mid := (lo + hi) / 2
			if float64(float32(mid)) != mid {
				t.Fatalf("%s: midpoint %v not exact in float32", r.name, mid)
			}
			even := uint8(c)
			if c&1 == 1 {
				even = uint8(c + 1)
			}
			for _, sg := range []float64{1, -1} {
				sb := uint8(0)
				if sg < 0 {
					sb = signBit
				}
				if got := f.Encode(float32(sg * mid)); got != even|sb {
					t.Errorf("%s: Encode(%v) = %#02x, want even %#02x", r.name, sg*mid, got, even|sb)
				}
				below := math.Nextafter32(float32(mid), 0)
				above := math.Nextafter32(float32(mid), float32(math.Inf(1)))
				if got := f.Encode(float32(sg) * below); got != uint8(c)|sb {
					t.Errorf("%s: Encode(%v) = %#02x, want %#02x", r.name, float32(sg)*below, got, uint8(c)|sb)
				}
				if got := f.Encode(float32(sg) * above); got != uint8(c+1)|sb {
					t.Errorf("%s: Encode(%v) = %#02x, want %#02x", r.name, float32(sg)*above, got, uint8(c+1)|sb)
				}
			}
		}
	}
}

func TestFPSaturationAndSpecials(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	cases := []struct {
		f         *FPFormat
		x         float32
		sat, ieee uint8
	}{
		// E4M3: 464 is the tie between 448 (mantissa 110, even) and 480 (would
		// be the NaN code): rounds to 448. Anything larger overflows.
		{E4M3, 464, 0x7E, 0x7E},
		{E4M3, math.Nextafter32(464, 1000), 0x7E, 0x7F},
		{E4M3, 1e6, 0x7E, 0x7F},
		{E4M3, -1e6, 0xFE, 0xFF},
		{E4M3, inf, 0x7E, 0x7F},
		{E4M3, -inf, 0xFE, 0xFF},
		{E4M3, nan, 0x7F, 0x7F},
		// E5M2: 61440 is the tie between 57344 (mantissa 11) and 65536: even
		// rounds up, i.e. overflow.
		{E5M2, 61440, 0x7B, 0x7C},
		{E5M2, math.Nextafter32(61440, 0), 0x7B, 0x7B},
		{E5M2, inf, 0x7B, 0x7C},
		{E5M2, -inf, 0xFB, 0xFC},
		{E5M2, nan, 0x7E, 0x7E},
		// E2M1: 5 is the tie between 4 (even) and 6; 7 is the tie between 6 and
		// the virtual 8 — saturates either way.
		{E2M1, 5, 0x6, 0x6},
		{E2M1, 7, 0x7, 0x7},
		{E2M1, 100, 0x7, 0x7},
		{E2M1, -inf, 0xF, 0xF},
		{E2M1, nan, 0x0, 0x0},
		// Underflow: half the smallest subnormal ties to zero (even).
		{E4M3, 0x1p-10, 0x00, 0x00},
		{E4M3, math.Nextafter32(0x1p-10, 1), 0x01, 0x01},
		{E4M3, -0x1p-10, 0x80, 0x80},
		{E5M2, 0x1p-17, 0x00, 0x00},
		{E5M2, 1e-30, 0x00, 0x00},
		{E2M1, 0.25, 0x0, 0x0},
		{E2M1, 0.2500001, 0x1, 0x1},
		// Subnormal rounding up into the first normal binade.
		{E4M3, 15 * 0x1p-10, 0x08, 0x08},
	}
	for _, c := range cases {
		if got := c.f.Encode(c.x); got != c.sat {
			t.Errorf("%s.Encode(%v) = %#02x, want %#02x", c.f, c.x, got, c.sat)
		}
		if got := c.f.EncodeIEEE(c.x); got != c.ieee {
			t.Errorf("%s.EncodeIEEE(%v) = %#02x, want %#02x", c.f, c.x, got, c.ieee)
		}
	}
}

// On random inputs over the whole range, Round(x) is a nearest
// representable value and within the format's error bound.
func TestFPRandomNearestAndBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, r := range refFPs {
		f := r.f
		var vals []float64
		for c := 0; c < 1<<r.width; c++ {
			if v := float64(f.Decode(uint8(c))); !math.IsNaN(v) && !math.IsInf(v, 0) {
				vals = append(vals, v)
			}
		}
		maxv := float64(f.Max())
		for i := 0; i < 3000; i++ {
			// log-uniform magnitudes from well below the subnormals to above max
			x := float32(math.Exp2(rng.Float64()*(math.Log2(maxv)+float64(r.bias)+float64(r.m)+4)-float64(r.bias)-float64(r.m)-2) * float64(1-2*rng.IntN(2)))
			got := float64(f.Round(x))
			best := math.Inf(1)
			for _, v := range vals {
				best = math.Min(best, math.Abs(v-float64(x)))
			}
			if d := math.Abs(got - float64(x)); d != best {
				t.Fatalf("%s: Round(%v) = %v at distance %v, nearest is at %v", r.name, x, got, d, best)
			}
			if math.Abs(float64(x)) <= maxv {
				bound := math.Max(math.Abs(float64(x))*math.Exp2(-float64(r.m+1)), float64(f.MinSubnormal())/2)
				if d := math.Abs(got - float64(x)); d > bound {
					t.Fatalf("%s: |%v − %v| = %v exceeds bound %v", r.name, x, got, d, bound)
				}
			}
		}
	}
}

func TestFPMetadata(t *testing.T) {
	cases := []struct {
		f                *FPFormat
		name             string
		bits, e, m, bias int
		minNormal        float32
		nan, inf         uint8
		hasNaN, hasInf   bool
		format           Format
	}{
		{E4M3, "e4m3", 8, 4, 3, 7, 0x1p-6, 0x7F, 0, true, false, FormatFP8E4M3},
		{E5M2, "e5m2", 8, 5, 2, 15, 0x1p-14, 0x7E, 0x7C, true, true, FormatFP8E5M2},
		{E2M1, "e2m1", 4, 2, 1, 1, 1, 0, 0, false, false, FormatFP4E2M1},
	}
	for _, c := range cases {
		f := c.f
		nan, hasNaN := f.NaNCode()
		inf, hasInf := f.InfCode()
		if f.String() != c.name || f.Bits() != c.bits || f.ExpBits() != c.e || f.ManBits() != c.m || f.Bias() != c.bias ||
			f.MinNormal() != c.minNormal || nan != c.nan || hasNaN != c.hasNaN || inf != c.inf || hasInf != c.hasInf ||
			c.format.FP() != f {
			t.Errorf("%s metadata wrong", c.name)
		}
	}
	if FormatInt.FP() != nil {
		t.Error("FormatInt.FP() must be nil")
	}
}

// Scaled FP quantization x̂ = s·fp(x/s), s = absmax/fpmax, is within the
// relative bound on random groups, and the helpers agree with Quantizer.
func TestScaledFP(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, str := range []string{"fp8e4m3-tensor", "fp8e5m2-tensor", "fp4e2m1-tensor"} {
		spec := MustParseSpec(str)
		f := spec.FP()
		for trial := 0; trial < 50; trial++ {
			x := make([]float32, 32)
			mag := math.Exp2(rng.Float64()*30 - 15)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * mag)
			}
			a := AbsMax(x)
			s := FPParamsAbsMax(a, f, MinScale)
			if s != a/f.Max() && math.Abs(float64(s)-float64(a)/float64(f.Max())) > eps32*float64(s) {
				t.Fatalf("%s: scale %v for absmax %v", str, s, a)
			}
			q := spec.Quantizer(spec.ParamsAbsMax(a))
			if q.Scale != s {
				t.Fatalf("%s: ParamsAbsMax scale %v, FPParamsAbsMax %v", str, q.Scale, s)
			}
			fake := make([]float32, len(x))
			q.FakeSlice(fake, x)
			for i, v := range x {
				c := QuantizeFP(v, s, f)
				xh := DequantizeFP(c, s, f)
				if int32(c) != q.Quantize(v) || xh != q.Fake(v) || fake[i] != xh {
					t.Fatalf("%s: helpers disagree on %v", str, v)
				}
				if d := math.Abs(float64(v) - float64(xh)); d > bound(q, v) {
					t.Fatalf("%s: |%v − %v| = %v > %v", str, v, xh, d, bound(q, v))
				}
			}
		}
		// all-zero group: positive scale, exact zeros
		if s := FPParamsAbsMax(0, f, MinScale); s != MinScale || DequantizeFP(QuantizeFP(0, s, f), s, f) != 0 {
			t.Errorf("%s: zero group scale %v", str, s)
		}
	}
}
