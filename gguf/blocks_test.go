package gguf

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"llmq/tensor"
)

// block builds a 32-value block from a few set positions (the rest zero).
func block(set map[int]float32) []float32 {
	x := make([]float32, QK)
	for i, v := range set {
		x[i] = v
	}
	return x
}

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// TestBlockGolden checks the encoders against blocks worked out by hand
// from ggml's reference definitions (quantize_row_q8_0_ref,
// quantize_row_q4_0_ref); see the comments for the arithmetic.
func TestBlockGolden(t *testing.T) {
	tests := []struct {
		name string
		typ  Type
		x    []float32
		want []byte
		back []float32 // expected decoded values at the set positions (nil: skip)
	}{
		{
			// amax 127 → d = 1 (fp16 3c00), id = 1; roundf rounds halves away
			// from zero: 0.5→1, -0.5→-1, 1.5→2, 2.5→3 (not 2), -2.5→-3.
			name: "q8_0 unit scale", typ: Q8_0,
			x:    block(map[int]float32{0: 127, 1: -127, 2: 0.5, 3: -0.5, 4: 1.5, 5: 2.5, 6: -2.5}),
			want: cat([]byte{0x00, 0x3c, 0x7f, 0x81, 0x01, 0xff, 0x02, 0x03, 0xfd}, zeros(25)),
		},
		{
			// amax 1 → d = 1/127 = 0.0078740157 (float32). fp16: 2^-7·(1+m/1024)
			// with m = 8.06 → 8: bits 0 01000 0000001000 = 0x2008, value
			// 0.00787353515625. The codes use the FP32 id = 1/d, which rounds
			// to exactly 127: 0.5→63.5→64 (0x40), 0.49999→63.4987→63 (0x3f) —
			// dividing by the fp16 scale instead would give 63.5026→64.
			// Decoded: q·0.00787353515625.
			name: "q8_0 fp16 scale", typ: Q8_0,
			x:    block(map[int]float32{0: 1, 1: 0.5, 2: 0.49999, 3: -1}),
			want: cat([]byte{0x08, 0x20, 0x7f, 0x40, 0x3f, 0x81}, zeros(28)),
			back: []float32{127 * 0.00787353515625, 64 * 0.00787353515625, 63 * 0.00787353515625, -127 * 0.00787353515625},
		},
		{
			name: "q8_0 zero block", typ: Q8_0,
			x:    block(nil),
			want: zeros(34),
		},
		{
			// max = -8 (largest magnitude, negative) → d = -8/-8 = 1 (3c00).
			// q = min(15, trunc(x + 8.5)): -8→0, 7→15, 7.4→15, 0→8, 0.5→9,
			// -0.5→8, 1.49→9, -3.2→5; x16 = -7.9→0, x17 = 3→11, x18 = -8→0.
			// Byte j = q[j] | q[j+16]<<4: 00 bf 0f 88 89 88 89 85 88…
			name: "q4_0 negative max", typ: Q4_0,
			x: block(map[int]float32{0: -8, 1: 7, 2: 7.4, 4: 0.5, 5: -0.5, 6: 1.49, 7: -3.2,
				16: -7.9, 17: 3, 18: -8}),
			want: cat([]byte{0x00, 0x3c, 0x00, 0xbf, 0x0f, 0x88, 0x89, 0x88, 0x89, 0x85}, rep(0x88, 8)),
			back: []float32{-8, 7, 7, 0, 1, 0, 1, -3},
		},
		{
			// max = +4 at x3 (the later -4 at x7 ties and does not replace it)
			// → d = 4/-8 = -0.5 (fp16 b800), id = -2. q = trunc(-2x + 8.5):
			// 4→0, -4→16→15 (clamped: decodes to -3.5), 1→6, -1→10, 0.25→8,
			// -0.25→9, 0.3→7 (7.9 truncated). Bytes: 68 a8 88 80 88 98 78 8f 88…
			name: "q4_0 positive max", typ: Q4_0,
			x:    block(map[int]float32{3: 4, 7: -4, 16: 1, 17: -1, 20: 0.25, 21: -0.25, 22: 0.3}),
			want: cat([]byte{0x00, 0xb8, 0x68, 0xa8, 0x88, 0x80, 0x88, 0x98, 0x78, 0x8f}, rep(0x88, 8)),
		},
		{
			// max = 0 → d = 0/-8 = -0.0 (fp16 8000), id = 0, every q = 8.
			name: "q4_0 zero block", typ: Q4_0,
			x:    block(nil),
			want: cat([]byte{0x00, 0x80}, rep(0x88, 16)),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.typ, tc.x)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("encoded\n got  % x\n want % x", got, tc.want)
			}
			if tc.back == nil {
				return
			}
			dec, err := Decode(tc.typ, tc.want, QK)
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range tc.back {
				if dec[i] != w {
					t.Errorf("decoded[%d] = %v, want %v", i, dec[i], w)
				}
			}
		})
	}
}

// TestQ4_0Clamp: the second example's decoded values show the asymmetric
// grid [-8d, 7d] (d = -0.5): +4 exact, -4 clamped to -3.5.
func TestQ4_0Clamp(t *testing.T) {
	x := block(map[int]float32{3: 4, 7: -4, 16: 1, 17: -1, 21: -0.25, 22: 0.3})
	y, err := Round(Q4_0, x)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]float32{3: 4, 7: -3.5, 16: 1, 17: -1, 21: -0.5, 22: 0.5}
	for i, w := range want {
		if y[i] != w {
			t.Errorf("x[%d] = %v → %v, want %v", i, x[i], y[i], w)
		}
	}
}

// TestRoundErrorBound: on random data every value lands within half a step
// of the grid, the step being the stored fp16 scale (plus the difference
// between the fp16 and FP32 scales, which chose the codes) — for Q4_0 within
// a whole step, as values beyond 7.5 steps on the side opposite the maximum
// are clamped to 7 steps.
func TestRoundErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 64*QK)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * float32(math.Pow(10, float64(i/QK%7-4)))
	}
	for _, typ := range []Type{Q8_0, Q4_0} {
		y, err := Round(typ, x)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := Encode(typ, x)
		bb := 2 + QK
		qmax, half := float64(127), 0.5
		if typ == Q4_0 {
			bb, qmax, half = 2+QK/2, 8, 1
		}
		for b := 0; b < len(x)/QK; b++ {
			d := math.Abs(float64(tensor.F16ToF32(uint16(enc[b*bb]) | uint16(enc[b*bb+1])<<8)))
			var amax float64
			for _, v := range x[b*QK : (b+1)*QK] {
				amax = math.Max(amax, math.Abs(float64(v)))
			}
			exact := amax / qmax
			bound := d*half + qmax*math.Abs(d-exact) + 1e-6*amax
			for j := b * QK; j < (b+1)*QK; j++ {
				if e := math.Abs(float64(x[j] - y[j])); e > bound {
					t.Fatalf("%v block %d: |%v − %v| = %g exceeds %g", typ, b, x[j], y[j], e, bound)
				}
			}
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		typ  Type
		x    []float32
		want string
	}{
		{"nan", Q8_0, block(map[int]float32{3: float32(math.NaN())}), "NaN"},
		{"inf", F32, []float32{float32(math.Inf(1))}, "+Inf"},
		{"partial block", Q4_0, make([]float32, 40), "multiple of 32"},
		{"f16 overflow", F16, []float32{1e6}, "overflows F16"},
		{"q8_0 scale overflow", Q8_0, block(map[int]float32{0: 1e10}), "overflows F16"},
		{"unsupported", Type(12), make([]float32, 256), "not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(tc.typ, tc.x)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
