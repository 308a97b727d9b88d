package quant

import (
	"math"
	"testing"

	"llmq/tensor"
)

// Every signed and unsigned nibble value, at even and odd positions, for
// even and odd lengths; the byte layout is low nibble = even index.
func TestPackInt4Exhaustive(t *testing.T) {
	for n := 0; n <= 33; n++ {
		for base := -8; base <= 7; base++ {
			src := make([]int8, n)
			for i := range src {
				src[i] = int8((base+8+i*5)%16 - 8) // cycles through all 16 values
			}
			dst := make([]byte, PackedLen(n, 4))
			if err := PackInt4(dst, src); err != nil {
				t.Fatal(err)
			}
			for i, v := range src {
				want := uint8(v) & 0xF
				if got := dst[i/2] >> (4 * (i % 2)) & 0xF; got != want {
					t.Fatalf("n=%d: element %d stored as %#x, want %#x", n, i, got, want)
				}
			}
			if n%2 == 1 && dst[n/2]>>4 != 0 {
				t.Fatalf("n=%d: padding nibble %#x not zero", n, dst[n/2]>>4)
			}
			back := make([]int8, n)
			UnpackInt4(back, dst)
			for i := range src {
				if back[i] != src[i] {
					t.Fatalf("n=%d: element %d unpacked %d, want %d", n, i, back[i], src[i])
				}
			}
		}
	}
	// known bytes
	dst := make([]byte, 2)
	if err := PackInt4(dst, []int8{1, -1, -8}); err != nil || dst[0] != 0xF1 || dst[1] != 0x08 {
		t.Errorf("PackInt4({1,-1,-8}) = % x, %v; want f1 08", dst, err)
	}
	for _, v := range []int8{8, -9, 127, -128} {
		if err := PackInt4(make([]byte, 1), []int8{v}); err == nil {
			t.Errorf("PackInt4(%d) must fail", v)
		}
	}
}

func TestPackUint4Exhaustive(t *testing.T) {
	for n := 0; n <= 33; n++ {
		for base := 0; base < 16; base++ {
			src := make([]uint8, n)
			for i := range src {
				src[i] = uint8((base + i*7) % 16)
			}
			dst := make([]byte, PackedLen(n, 4))
			if err := PackUint4(dst, src); err != nil {
				t.Fatal(err)
			}
			back := make([]uint8, n)
			UnpackUint4(back, dst)
			for i := range src {
				if back[i] != src[i] || Nibble(dst, i) != src[i] {
					t.Fatalf("n=%d: element %d unpacked %d, want %d", n, i, back[i], src[i])
				}
			}
		}
	}
	dst := make([]byte, 1)
	if err := PackUint4(dst, []uint8{0x3, 0xC}); err != nil || dst[0] != 0xC3 {
		t.Errorf("PackUint4({3, 12}) = % x; want c3", dst)
	}
	if err := PackUint4(dst, []uint8{16}); err == nil {
		t.Error("PackUint4(16) must fail")
	}
}

func TestSetNibble(t *testing.T) {
	data := make([]byte, 3)
	for i := 0; i < 6; i++ {
		SetNibble(data, i, uint8(i+10))
	}
	for i := 0; i < 6; i++ {
		if Nibble(data, i) != uint8(i+10) {
			t.Fatalf("nibble %d = %d", i, Nibble(data, i))
		}
	}
	SetNibble(data, 3, 0)
	if Nibble(data, 2) != 12 || Nibble(data, 3) != 0 || Nibble(data, 4) != 14 {
		t.Fatal("SetNibble disturbed a neighbour")
	}
	for v := 0; v < 16; v++ {
		want := int8(v)
		if v >= 8 {
			want -= 16
		}
		if SignExtend4(uint8(v)) != want {
			t.Errorf("SignExtend4(%d) = %d", v, SignExtend4(uint8(v)))
		}
	}
}

func TestPackInt8(t *testing.T) {
	src := make([]int8, 256)
	for i := range src {
		src[i] = int8(i - 128)
	}
	dst := make([]byte, 256)
	PackInt8(dst, src)
	back := make([]int8, 256)
	UnpackInt8(back, dst)
	for i := range src {
		if back[i] != src[i] || dst[i] != byte(src[i]) {
			t.Fatalf("int8 %d: byte %#x back %d", src[i], dst[i], back[i])
		}
	}
}

// PackCodes/UnpackCodes for every width and signedness with every value of
// the width's range, odd lengths included, and range errors outside it.
func TestPackCodesExhaustive(t *testing.T) {
	for bits := 2; bits <= 8; bits++ {
		for _, signed := range []bool{false, true} {
			lo, hi := codeRange(bits, signed)
			var codes []int32
			for v := lo; v <= hi; v++ {
				codes = append(codes, v)
			}
			codes = append(codes, lo) // odd or even length variant
			for _, n := range []int{len(codes), len(codes) - 1, 1} {
				src := codes[:n]
				dst := make([]byte, PackedLen(n, bits))
				if err := PackCodes(dst, src, bits, signed); err != nil {
					t.Fatal(err)
				}
				back := make([]int32, n)
				UnpackCodes(back, dst, bits, signed)
				for i := range src {
					if back[i] != src[i] {
						t.Fatalf("bits=%d signed=%v: code %d unpacked as %d", bits, signed, src[i], back[i])
					}
				}
			}
			for _, bad := range []int32{lo - 1, hi + 1} {
				if err := PackCodes(make([]byte, 1), []int32{bad}, bits, signed); err == nil {
					t.Errorf("bits=%d signed=%v: code %d must fail", bits, signed, bad)
				}
			}
		}
	}
}

func TestPackLengthPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("short dst must panic")
		}
	}()
	_ = PackInt4(make([]byte, 1), make([]int8, 3))
}

func TestScalesF16(t *testing.T) {
	cases := []struct{ in, want float32 }{
		{1, 1},
		{0.1, tensor.F16ToF32(tensor.F32ToF16(0.1))},
		{1e-9, MinScaleF16}, // below FP16: raised to the smallest subnormal
		{0, MinScaleF16},    // zero scale never stored
		{1e6, MaxScaleF16},  // above FP16: capped
		{0x1p-20, 0x1p-20},  // subnormal FP16, exact
		{65504, 65504},
	}
	for _, c := range cases {
		if got := RoundScaleF16(c.in); got != c.want {
			t.Errorf("RoundScaleF16(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(float64(RoundScaleF16(float32(math.NaN())))) {
		t.Error("NaN must stay NaN")
	}
	src := []float32{1, 0.5, RoundScaleF16(0.0123), MinScaleF16, MaxScaleF16}
	h := make([]uint16, len(src))
	ScalesToF16(h, src)
	back := make([]float32, len(src))
	ScalesFromF16(back, h)
	for i := range src {
		if back[i] != src[i] {
			t.Errorf("F16 scale round trip %v → %#04x → %v", src[i], h[i], back[i])
		}
	}
}
