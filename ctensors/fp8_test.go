package ctensors

import (
	"math"
	"testing"

	"llmq/quant"
)

// Values of E4M3FN codes from the OCP FP8 specification's table (bias 7,
// subnormals m/8·2^−6, max 448, S.1111.111 NaN).
func TestDecodeE4M3(t *testing.T) {
	cases := []struct {
		code byte
		want float64
	}{
		{0x00, 0},
		{0x01, 0x1p-9}, // smallest subnormal
		{0x07, 7 * 0x1p-9},
		{0x08, 0x1p-6}, // smallest normal
		{0x38, 1},
		{0x3C, 1.5},
		{0x40, 2},
		{0x77, 240},
		{0x7E, 448}, // largest finite
		{0xB8, -1},
		{0xFE, -448},
	}
	for _, tc := range cases {
		if got := decodeE4M3(tc.code); float64(got) != tc.want {
			t.Errorf("decodeE4M3(%#02x) = %v, want %v", tc.code, got, tc.want)
		}
	}
	if got := decodeE4M3(0x80); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("decodeE4M3(0x80) = %v, want -0", got)
	}
	for _, c := range []byte{0x7F, 0xFF} {
		if v := decodeE4M3(c); v == v {
			t.Errorf("decodeE4M3(%#02x) = %v, want NaN", c, v)
		}
	}
}

// The decoder written from the specification agrees with llmq's FP8 grid
// on all 256 codes (so exported FP8 weights read back as llmq used them).
func TestDecodeE4M3MatchesQuant(t *testing.T) {
	f := quant.FormatFP8E4M3.FP()
	for c := 0; c < 256; c++ {
		a, b := decodeE4M3(byte(c)), f.Decode(uint8(c))
		if math.Float32bits(a) != math.Float32bits(b) && !(a != a && b != b) {
			t.Errorf("code %#02x: %v, llmq %v", c, a, b)
		}
	}
}
