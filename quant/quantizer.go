package quant

import (
	"fmt"
	"math"
)

// Params are the quantization parameters of one group: the scale s and, for
// asymmetric integer grids, the integer zero-point z (0 otherwise). Slices of
// Params follow Spec.ParamShape (row-major, one per group).
type Params struct {
	Scale float32
	Zero  int32
}

// minScale is the scale floor of the spec's scale storage.
func (s Spec) minScale() float32 {
	if s.HalfScales {
		return MinScaleF16
	}
	return MinScale
}

// ParamsMinMax returns the parameters of one group whose values lie in
// [lo, hi] (finite, lo ≤ hi), for a validated spec:
//
//	integer symmetric:  s = 2·max(|lo|,|hi|)/(qmax − qmin), z = 0
//	integer asymmetric: s = (max(hi,0) − min(lo,0))/(2^b − 1),
//	                    z = clip(−round(min(lo,0)/s), 0, 2^b − 1)
//	minifloat:          s = max(|lo|,|hi|)/fpmax
//
// then the per-group scale rules of the spec, in order: the ZeroQuant-FP M1
// power-of-two rounding (ScalePow2), FP16 rounding (HalfScales), and the
// floor that keeps all-zero groups finite (MinScale, or MinScaleF16). The
// zero-point is computed from the final scale. The row-level M2 constraint is
// not applied here (it needs the whole row): see ConstrainRow.
//
// Methods that clip ranges (AWQ's or GPTQ's grid search over a shrink factor
// r) simply pass r·lo, r·hi.
func (s Spec) ParamsMinMax(lo, hi float32) Params {
	if s.Format == FormatInt && !s.Symmetric {
		qmin, qmax := s.IntRange()
		l, h := math.Min(float64(lo), 0), math.Max(float64(hi), 0)
		scale := s.finishScale((h - l) / float64(qmax-qmin))
		return Params{Scale: scale, Zero: intZero(float32(l), scale, qmin, qmax)}
	}
	return s.ParamsAbsMax(float32(math.Max(math.Abs(float64(lo)), math.Abs(float64(hi)))))
}

// ParamsAbsMax returns the parameters of a group with largest magnitude
// absmax, i.e. ParamsMinMax(−absmax, absmax).
func (s Spec) ParamsAbsMax(absmax float32) Params {
	a := math.Abs(float64(absmax))
	if s.IsFP() {
		return Params{Scale: s.finishScale(a / float64(s.FP().Max()))}
	}
	qmin, qmax := s.IntRange()
	if !s.Symmetric {
		return s.ParamsMinMax(-float32(a), float32(a))
	}
	return Params{Scale: s.finishScale(2 * a / float64(qmax-qmin))}
}

// finishScale applies the per-group scale rules (M1, FP16, floors) to a raw
// nonnegative scale.
func (s Spec) finishScale(raw float64) float32 {
	sc := clampScale(raw, s.minScale())
	if s.Scale == ScalePow2 {
		sc = Pow2Ceil(sc)
	}
	if s.HalfScales {
		sc = RoundScaleF16(sc)
	}
	return sc
}

// ConstrainRow applies the row-level scale constraint to the parameters of
// one row of groups (pcols entries of a PerGroup parameter slice): for
// ScalePow2Ratio (ZeroQuant-FP M2) every scale becomes S_max/2^k (see
// Pow2RatioScales). It is a no-op for other constraints, so methods can call
// it unconditionally after computing a row's parameters.
func (s Spec) ConstrainRow(row []Params) {
	if s.Scale != ScalePow2Ratio || len(row) == 0 {
		return
	}
	sc := make([]float32, len(row))
	for i, p := range row {
		sc[i] = p.Scale
	}
	Pow2RatioScales(sc)
	for i := range row {
		v := sc[i]
		if s.HalfScales {
			v = RoundScaleF16(v)
		}
		row[i].Scale = v
	}
}

// CheckParams verifies that params can be stored and used for a
// [rows×cols] matrix under s: the count matches ParamShape, every scale is
// positive and finite (and exactly representable in FP16 when HalfScales),
// and zero-points are 0 for symmetric grids and inside [qmin, qmax] for
// asymmetric ones. Scale constraints (M1/M2) are the caller's
// responsibility and are not re-verified. Errors wrap ErrParams or ErrShape.
func (s Spec) CheckParams(params []Params, rows, cols int) error {
	if err := s.Validate(rows, cols); err != nil {
		return err
	}
	if n := s.NumParams(rows, cols); len(params) != n {
		return fmt.Errorf("%w: %d params for %v on %d×%d (want %d)", ErrShape, len(params), s, rows, cols, n)
	}
	qmin, qmax := s.IntRange()
	for i, p := range params {
		if !(p.Scale > 0) || math.IsInf(float64(p.Scale), 1) {
			return fmt.Errorf("%w: scale[%d] = %v must be positive and finite", ErrParams, i, p.Scale)
		}
		if s.HalfScales && RoundScaleF16(p.Scale) != p.Scale {
			return fmt.Errorf("%w: scale[%d] = %v is not an FP16 value (f16scale)", ErrParams, i, p.Scale)
		}
		if s.HasZero() {
			if p.Zero < qmin || p.Zero > qmax {
				return fmt.Errorf("%w: zero[%d] = %d outside [%d, %d]", ErrParams, i, p.Zero, qmin, qmax)
			}
		} else if p.Zero != 0 {
			return fmt.Errorf("%w: zero[%d] = %d for a symmetric grid", ErrParams, i, p.Zero)
		}
	}
	return nil
}

// Quantizer quantizes single values onto one group's grid. It is a small
// value built once per group (Spec.Quantizer) and used in inner loops:
// GPTQ, for instance, builds the quantizers of a column's rows from
// precomputed Params and calls Fake on each weight.
//
// Codes are int32: the integer q for integer grids (signed for symmetric,
// unsigned for asymmetric), the bit pattern (0..255 or 0..15) for
// minifloats.
type Quantizer struct {
	Scale      float32
	Zero       int32
	QMin, QMax int32
	FP         *FPFormat // nil for integer grids
}

// Quantizer returns the quantizer of one group with parameters p.
func (s Spec) Quantizer(p Params) Quantizer {
	q := Quantizer{Scale: p.Scale, Zero: p.Zero, FP: s.FP()}
	q.QMin, q.QMax = s.IntRange()
	return q
}

// Quantize returns the code of x: clip(round(x/s) + z, qmin, qmax) for
// integers, Encode(x/s) (saturating) for minifloats.
func (q Quantizer) Quantize(x float32) int32 {
	if q.FP != nil {
		return int32(q.FP.encode(x/q.Scale, true))
	}
	return QuantizeInt(x, q.Scale, q.Zero, q.QMin, q.QMax)
}

// Dequantize returns the value of a code: s·(c − z) or s·Decode(c).
func (q Quantizer) Dequantize(c int32) float32 {
	if q.FP != nil {
		return q.Scale * q.FP.Decode(uint8(c))
	}
	return q.Scale * float32(c-q.Zero)
}

// Fake returns Dequantize(Quantize(x)), the value x is replaced by.
func (q Quantizer) Fake(x float32) float32 {
	if q.FP != nil {
		return q.Scale * q.FP.decode[q.FP.encode(x/q.Scale, true)]
	}
	return q.Scale * float32(QuantizeInt(x, q.Scale, q.Zero, q.QMin, q.QMax)-q.Zero)
}

// FakeSlice writes Fake(src[i]) to dst[i] (dst may alias src).
func (q Quantizer) FakeSlice(dst, src []float32) {
	dst = dst[:len(src)]
	if q.FP != nil {
		f := q.FP
		for i, x := range src {
			dst[i] = q.Scale * f.decode[f.encode(x/q.Scale, true)]
		}
		return
	}
	for i, x := range src {
		dst[i] = q.Scale * float32(QuantizeInt(x, q.Scale, q.Zero, q.QMin, q.QMax)-q.Zero)
	}
}

// QuantizeSlice writes the codes of src to dst.
func (q Quantizer) QuantizeSlice(dst []int32, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = q.Quantize(x)
	}
}

// DequantizeSlice writes the values of codes src to dst.
func (q Quantizer) DequantizeSlice(dst []float32, src []int32) {
	dst = dst[:len(src)]
	for i, c := range src {
		dst[i] = q.Dequantize(c)
	}
}

// FakeQuantizeColumn fake-quantizes column j of a [rows×cols] matrix under
// params (laid out by spec.ParamShape(rows, cols)): col[r] holds element
// (r, j) and dst[r] receives its quantized value (dst may alias col). This is
// GPTQ's inner step: one column at a time, each row with its own group's
// parameters.
func FakeQuantizeColumn(dst, col []float32, j, cols int, spec Spec, params []Params) {
	dst = dst[:len(col)]
	q := spec.Quantizer(Params{})
	for r, x := range col {
		p := params[spec.ParamIndex(r, j, cols)]
		q.Scale, q.Zero = p.Scale, p.Zero
		dst[r] = q.Fake(x)
	}
}
