package tensor

import (
	"math"
	"testing"
)

func TestF16Table(t *testing.T) {
	cases := []struct {
		bits uint16
		want float32
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x7bff, 65504},
		{0x0400, float32(math.Ldexp(1, -14))}, // smallest normal
		{0x0001, float32(math.Ldexp(1, -24))}, // smallest subnormal
		{0x03ff, float32(math.Ldexp(1023, -24))},
		{0x3555, 0.333251953125},
		{0x7c00, float32(math.Inf(1))},
		{0xfc00, float32(math.Inf(-1))},
	}
	for _, c := range cases {
		if got := F16ToF32(c.bits); got != c.want {
			t.Errorf("F16ToF32(%#04x) = %v, want %v", c.bits, got, c.want)
		}
		if got := F32ToF16(c.want); got != c.bits {
			t.Errorf("F32ToF16(%v) = %#04x, want %#04x", c.want, got, c.bits)
		}
	}
	if !math.IsNaN(float64(F16ToF32(0x7e00))) {
		t.Error("0x7e00 must decode to NaN")
	}
}

// Every finite half value survives a round trip through float32, and the
// float32 halfway points between neighbours round to the even one.
func TestF16RoundTripAll(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("round trip %#04x -> %v -> %#04x", h, f, back)
		}
	}
	// 1 + 2^-11 lies exactly between 1 (0x3c00, even) and 1+2^-10 (0x3c01).
	if got := F32ToF16(1 + 1.0/2048); got != 0x3c00 {
		t.Errorf("tie must round to even: got %#04x", got)
	}
	if got := F32ToF16(1 + 3.0/2048); got != 0x3c02 {
		t.Errorf("tie must round to even: got %#04x", got)
	}
	if got := F32ToF16(65520); got != 0x7c00 {
		t.Errorf("65520 must overflow to Inf, got %#04x", got)
	}
}

func TestBF16(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := BF16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if back := F32ToBF16(f); back != uint16(h) {
			t.Fatalf("round trip %#04x -> %v -> %#04x", h, f, back)
		}
	}
	// 1 + 2^-8 is halfway between 1 (0x3f80) and 1+2^-7 (0x3f81): even wins.
	if got := F32ToBF16(1 + 1.0/256); got != 0x3f80 {
		t.Errorf("tie: got %#04x", got)
	}
	if got := F32ToBF16(1 + 1.0/256 + 1.0/4096); got != 0x3f81 {
		t.Errorf("above tie: got %#04x", got)
	}
}
