package ctensors

import "fmt"

// Int32 packing of pack-quantized checkpoints (compressed-tensors'
// pack_to_int32 / unpack_from_int32).
//
// A signed b-bit code q ∈ [−2^(b−1), 2^(b−1)−1] is stored unsigned,
// u = q + 2^(b−1). Each int32 word holds pf = ⌊32/b⌋ consecutive codes of a
// row, the first in the lowest bits:
//
//	word[r][k] = Σ_i u[r][k·pf + i] << (b·i),   i = 0 … pf−1
//
// and a row whose length is not a multiple of pf is padded with u = 0. For
// b = 4 that is eight nibbles per word, element 0 in bits 0–3; for b = 8
// four bytes, i.e. the little-endian bytes of the word are the codes in
// order. Zero points of asymmetric group/channel weights are packed the
// same way along dimension 0 (packed_dim=0): word[k][g] holds
// zp[k·pf … k·pf+pf−1][g].
//
// Words are handled as uint32: the library sums the shifted codes in int32,
// which wraps exactly like the bit pattern here (the fields never overlap).

// packFactor is the number of b-bit codes per int32 word.
func packFactor(bits int) int { return 32 / bits }

// codeOffset is 2^(b−1), the shift between signed codes and stored fields.
func codeOffset(bits int) int32 { return 1 << (bits - 1) }

// checkCodes verifies that codes fit the signed b-bit grid.
func checkCodes(q []int32, bits int) error {
	lo, hi := -codeOffset(bits), codeOffset(bits)-1
	for i, v := range q {
		if v < lo || v > hi {
			return fmt.Errorf("code %d at %d outside the %d-bit grid [%d, %d]", v, i, bits, lo, hi)
		}
	}
	return nil
}

// packRows packs signed codes q [rows×cols] along rows into words
// [rows × ⌈cols/pf⌉].
func packRows(q []int32, rows, cols, bits int) ([]uint32, error) {
	if err := checkCodes(q, bits); err != nil {
		return nil, err
	}
	pf := packFactor(bits)
	wc := (cols + pf - 1) / pf
	out := make([]uint32, rows*wc)
	off := codeOffset(bits)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[r*wc+c/pf] |= uint32(q[r*cols+c]+off) << (bits * (c % pf))
		}
	}
	return out, nil
}

// packCols packs signed codes q [rows×cols] along columns (dimension 0)
// into words [⌈rows/pf⌉ × cols].
func packCols(q []int32, rows, cols, bits int) ([]uint32, error) {
	if err := checkCodes(q, bits); err != nil {
		return nil, err
	}
	pf := packFactor(bits)
	wr := (rows + pf - 1) / pf
	out := make([]uint32, wr*cols)
	off := codeOffset(bits)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[(r/pf)*cols+c] |= uint32(q[r*cols+c]+off) << (bits * (r % pf))
		}
	}
	return out, nil
}

// unpackRows is the inverse of packRows: words [rows × wcols] → signed codes
// [rows × cols]; wcols must be ⌈cols/pf⌉.
func unpackRows(w []uint32, rows, wcols, cols, bits int) ([]int32, error) {
	pf := packFactor(bits)
	if wcols != (cols+pf-1)/pf || len(w) != rows*wcols {
		return nil, fmt.Errorf("%d words as [%d × %d] cannot hold %d×%d %d-bit codes (need [%d × %d])", len(w), rows, wcols, rows, cols, bits, rows, (cols+pf-1)/pf)
	}
	out := make([]int32, rows*cols)
	mask := uint32(1)<<bits - 1
	off := codeOffset(bits)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[r*cols+c] = int32(w[r*wcols+c/pf]>>(bits*(c%pf))&mask) - off
		}
	}
	return out, nil
}

// unpackCols is the inverse of packCols: words [wrows × cols] → signed codes
// [rows × cols]; wrows must be ⌈rows/pf⌉.
func unpackCols(w []uint32, wrows, rows, cols, bits int) ([]int32, error) {
	pf := packFactor(bits)
	if wrows != (rows+pf-1)/pf || len(w) != wrows*cols {
		return nil, fmt.Errorf("%d words as [%d × %d] cannot hold %d×%d %d-bit zero points packed down the columns (need [%d × %d])", len(w), wrows, cols, rows, cols, bits, (rows+pf-1)/pf, cols)
	}
	out := make([]int32, rows*cols)
	mask := uint32(1)<<bits - 1
	off := codeOffset(bits)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[r*cols+c] = int32(w[(r/pf)*cols+c]>>(bits*(r%pf))&mask) - off
		}
	}
	return out, nil
}
