package ctensors

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// Golden words computed by hand from the packing definition (pack.go; the
// first case is the worked example in the docstring of compressed-tensors'
// pack_to_int32: num_bits 8, [1, 2] → [129, 130] → 33409).
func TestPackRowsGolden(t *testing.T) {
	cases := []struct {
		name       string
		bits       int
		rows, cols int
		codes      []int32
		want       []uint32
	}{
		{"docstring 8-bit", 8, 1, 2, []int32{1, 2}, []uint32{33409}},
		// 4 bits: u = q + 8 = 0…15, element i in bits 4i…4i+3.
		{"int4 ramp", 4, 1, 8, []int32{-8, -7, -6, -5, -4, -3, -2, -1}, []uint32{0x76543210}},
		{"int4 top half", 4, 1, 8, []int32{0, 1, 2, 3, 4, 5, 6, 7}, []uint32{0xFEDCBA98}},
		// A ninth code starts a second word; the rest of it is padding 0.
		{"int4 padded", 4, 1, 9, []int32{0, 0, 0, 0, 0, 0, 0, 0, 7}, []uint32{0x88888888, 0x0000000F}},
		// Two rows pack independently.
		{"int4 two rows", 4, 2, 2, []int32{-8, 7, 1, -1}, []uint32{0xF0, 0x79}},
		// 8 bits: four bytes per word, first in the low byte; −128 → 0, 127 → 255.
		{"int8", 8, 1, 4, []int32{-128, 127, 0, -1}, []uint32{0x7F80FF00}},
		// 3 bits: ten codes per word (bits 0–29), u = q + 4.
		{"int3", 3, 1, 10, []int32{-4, -3, -2, -1, 0, 1, 2, 3, -4, 3}, []uint32{0 | 1<<3 | 2<<6 | 3<<9 | 4<<12 | 5<<15 | 6<<18 | 7<<21 | 0<<24 | 7<<27}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := packRows(tc.codes, tc.rows, tc.cols, tc.bits)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("words %#x, want %#x", got, tc.want)
			}
			back, err := unpackRows(got, tc.rows, len(got)/tc.rows, tc.cols, tc.bits)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back, tc.codes) {
				t.Fatalf("unpacked %v, want %v", back, tc.codes)
			}
		})
	}
}

// Zero points pack down the columns (packed_dim=0): word [k][g] holds rows
// 8k…8k+7 of column g.
func TestPackColsGolden(t *testing.T) {
	// 9 rows × 2 columns of int4 zero points; column 0 is the ramp −8…0,
	// column 1 is all 7.
	zp := make([]int32, 9*2)
	for r := 0; r < 9; r++ {
		zp[2*r] = int32(r) - 8
		zp[2*r+1] = 7
	}
	got, err := packCols(zp, 9, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint32{0x76543210, 0xFFFFFFFF, 0x00000008, 0x0000000F}
	if !slices.Equal(got, want) {
		t.Fatalf("words %#x, want %#x", got, want)
	}
	back, err := unpackCols(got, 2, 9, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back, zp) {
		t.Fatalf("unpacked %v, want %v", back, zp)
	}
}

// Random codes of every width survive packing both ways.
func TestPackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for bits := 1; bits <= 8; bits++ {
		for _, shape := range [][2]int{{1, 1}, {3, 7}, {5, 33}, {17, 64}} {
			rows, cols := shape[0], shape[1]
			q := make([]int32, rows*cols)
			for i := range q {
				q[i] = int32(rng.IntN(1<<bits)) - codeOffset(bits)
			}
			w, err := packRows(q, rows, cols, bits)
			if err != nil {
				t.Fatal(err)
			}
			back, err := unpackRows(w, rows, len(w)/rows, cols, bits)
			if err != nil || !slices.Equal(back, q) {
				t.Fatalf("%d bits %v: rows round trip failed (%v)", bits, shape, err)
			}
			wc, err := packCols(q, rows, cols, bits)
			if err != nil {
				t.Fatal(err)
			}
			back, err = unpackCols(wc, len(wc)/cols, rows, cols, bits)
			if err != nil || !slices.Equal(back, q) {
				t.Fatalf("%d bits %v: cols round trip failed (%v)", bits, shape, err)
			}
		}
	}
}

func TestPackErrors(t *testing.T) {
	if _, err := packRows([]int32{8}, 1, 1, 4); err == nil {
		t.Error("code 8 packed into 4 bits")
	}
	if _, err := packCols([]int32{-9}, 1, 1, 4); err == nil {
		t.Error("zero point −9 packed into 4 bits")
	}
	if _, err := unpackRows(make([]uint32, 3), 1, 3, 8, 4); err == nil {
		t.Error("3 words accepted for 8 int4 codes")
	}
	if _, err := unpackCols(make([]uint32, 2), 1, 9, 2, 4); err == nil {
		t.Error("1 word row accepted for 9 rows of int4 zero points")
	}
}
