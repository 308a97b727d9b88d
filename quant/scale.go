package quant

import (
	"fmt"
	"math"
)

// Scale constraints of ZeroQuant-FP (Wu, Yao, He 2023, "ZeroQuant-FP: A Leap
// Forward in LLMs Post-Training W4A8 Quantization Using Floating-Point
// Formats").
//
// In W4A8 with FP4 weights and FP8 activations the tensor cores compute in
// FP8, so every FP4 weight must be cast to FP8 before the GEMM. If the
// weight's scale were an arbitrary real, that cast would need a multiply and
// a re-rounding per weight. If instead the group scale is a power of two,
// fp4(w/s)·2^k is itself an FP8 value whose exponent is the FP4 exponent plus
// k: the cast is an integer add on the exponent field (FP4ToE4M3), exact, and
// the real-valued part of the scale, if any, is applied once per output row
// after the GEMM. The paper proposes two constraints:
//
// M1 (ScalePow2): round every scale up to a power of two,
//
//	Ŝ = 2^ceil(log2 S).
//
// Rounding up (never down) keeps the group's absmax inside the grid: no
// clipping, at the price of a grid up to 2× coarser.
//
// M2 (ScalePow2Ratio): keep one real scale per row, S_max = max_i S_i over
// the row's groups, and make every group scale a power-of-two fraction of it,
//
//	S̃_i = S_max / 2^ceil(log2(S_max/S_i)).
//
// The row scale is free to be any real (it is applied after the GEMM) and
// only the ratios are quantized, which the paper finds better than M1. Note
// the direction: ceil on the ratio makes S̃_i ≤ S_i (S̃_i ∈ (S_i/2, S_i]),
// i.e. a finer grid for group i whose largest values may saturate
// (by up to 2×); the group holding S_max is unchanged.

// Pow2Ceil returns 2^ceil(log2 s), the smallest power of two ≥ s (M1), for a
// positive finite s; a power of two is returned unchanged. Results beyond
// the float32 range are capped at 2^127. Non-positive or NaN inputs are
// returned unchanged.
func Pow2Ceil(s float32) float32 {
	if !(s > 0) || math.IsInf(float64(s), 1) {
		if s > 0 {
			return 0x1p127
		}
		return s
	}
	frac, exp := math.Frexp(float64(s)) // s = frac·2^exp, frac ∈ [0.5, 1)
	if frac == 0.5 {
		return s
	}
	if exp > 127 {
		return 0x1p127
	}
	return float32(math.Ldexp(1, exp))
}

// Pow2RatioScales applies M2 in place to the group scales of one row:
// S̃_i = S_max/2^k_i with k_i = ceil(log2(S_max/S_i)) ≥ 0, the smallest k
// with S_max·2^−k ≤ S_i (computed exactly, without log rounding). Entries
// that are not positive are left unchanged. Results are exact unless they
// fall below the float32 normal range.
func Pow2RatioScales(scales []float32) {
	var smax float32
	for _, s := range scales {
		if s > smax {
			smax = s
		}
	}
	if !(smax > 0) || math.IsInf(float64(smax), 1) {
		return
	}
	m := float64(smax)
	for i, s := range scales {
		if !(s > 0) {
			continue
		}
		si := float64(s)
		_, e1 := math.Frexp(m)
		_, e2 := math.Frexp(si)
		k := max(e1-e2, 0) // within one of the answer
		for k > 0 && math.Ldexp(m, -(k-1)) <= si {
			k--
		}
		for math.Ldexp(m, -k) > si {
			k++
		}
		scales[i] = float32(math.Ldexp(m, -k))
	}
}

// Pow2Exponent reports whether s is exactly 2^k, and k.
func Pow2Exponent(s float32) (k int, ok bool) {
	if !(s > 0) || math.IsInf(float64(s), 1) {
		return 0, false
	}
	frac, exp := math.Frexp(float64(s))
	return exp - 1, frac == 0.5
}

// FP4ToE4M3 casts the FP4 E2M1 code c scaled by 2^shift to the FP8 E4M3 code
// of the same value, by exponent arithmetic alone. It reports false when the
// value fp4(c)·2^shift is not exactly representable in E4M3 (shift too large
// for 448, or too small for E4M3's subnormals); the returned code is then
// meaningless.
//
// E2M1 normal codes are 2^(e−1)·(1 + m/2); E4M3 normal codes are
// 2^(E−7)·(1 + M/8). So the E4M3 code of fp4·2^shift has E = e − 1 + shift + 7
// and M = m<<2 (the one FP4 mantissa bit becomes the top E4M3 mantissa bit):
// a shift of the exponent field and of the mantissa field, no rounding. The
// FP4 subnormal 0.5 = 2^−1·1.0 is treated as a normal with e − 1 = −1. When
// E ≤ 0 the value falls into E4M3's subnormals M'·2^−9, with
// M' = (2 + m)·2^(E+1), exact only while that is an integer: for E = 0
// M' ∈ {4, 6}, for E = −1 M' ∈ {2, 3}, for E = −2 only m = 0 (M' = 1).
func FP4ToE4M3(c uint8, shift int) (uint8, bool) {
	sign := (c & 0x8) << 4
	e := int(c>>1) & 3
	m := c & 1
	if e == 0 && m == 0 {
		return sign, true // ±0
	}
	u, mant := e-1, m // value = 2^u·(1 + mant/2)
	if e == 0 {
		u, mant = -1, 0 // subnormal 0.5
	}
	E := u + shift + 7
	switch {
	case E > 15:
		return 0, false
	case E >= 1: // mantissa ≤ 4 < 7, so never the NaN code S.1111.111
		return sign | uint8(E)<<3 | mant<<2, true
	}
	// Subnormal E4M3: value = 2^(E−7)·(2 + mant)/2 = M'·2^−9, M' = (2+mant)·2^(E+1).
	t := E + 1
	sig := uint8(2 + mant)
	switch {
	case t >= 0:
		return sign | sig<<t, true // t ≤ 1: M' ≤ 6
	case t == -1 && mant == 0:
		return sign | 1, true
	}
	return 0, false
}

// CastFP4ToE4M3 converts an FP4 E2M1 weight whose scales are power-of-two
// related within each row (ScalePow2 or ScalePow2Ratio, or any scales that
// happen to satisfy it) into what a W4A8 FP8 kernel consumes: E4M3 codes
// [rows×cols] and one real scale per row, with
//
//	W[r][c] = rowScale[r] · E4M3(codes[r·cols + c]),
//	rowScale[r] = max_i S_{r,i},  codes = FP4ToE4M3(fp4, log2(S_{r,i}/rowScale[r])).
//
// Codes not exactly representable (an FP4 value in a group more than about
// 2^8 times finer than the row's coarsest) are rounded with E4M3.Encode and
// counted in inexact. It fails if the tensor is not FP4 or a scale ratio in
// a row is not a power of two.
func CastFP4ToE4M3(t *QTensor) (codes []uint8, rowScale []float32, inexact int, err error) {
	if t.Spec.Format != FormatFP4E2M1 {
		return nil, nil, 0, fmt.Errorf("%w: CastFP4ToE4M3 needs an fp4e2m1 tensor, have %v", ErrSpec, t.Spec)
	}
	pr, pc := t.Spec.ParamShape(t.Rows, t.Cols)
	codes = make([]uint8, t.Rows*t.Cols)
	rowScale = make([]float32, t.Rows)
	shifts := make([]int, pc)
	for r := 0; r < t.Rows; r++ {
		prow := r
		if pr == 1 {
			prow = 0
		}
		sc := t.Scales[prow*pc : prow*pc+pc]
		var smax float32
		for _, s := range sc {
			smax = max(smax, s)
		}
		rowScale[r] = smax
		for i, s := range sc {
			k, ok := Pow2Exponent(float32(float64(s) / float64(smax)))
			if !ok || float64(s)/float64(smax) != math.Ldexp(1, k) {
				return nil, nil, 0, fmt.Errorf("%w: row %d scale %v is not a power-of-two fraction of %v", ErrParams, r, s, smax)
			}
			shifts[i] = k
		}
		gc := t.Spec.GroupCols(t.Cols)
		for c := 0; c < t.Cols; c++ {
			fp4 := uint8(t.Code(r, c))
			k := shifts[c/gc]
			e, ok := FP4ToE4M3(fp4, k)
			if !ok {
				inexact++
				e = E4M3.Encode(float32(math.Ldexp(float64(E2M1.Decode(fp4)), k)))
			}
			codes[r*t.Cols+c] = e
		}
	}
	return codes, rowScale, inexact, nil
}
