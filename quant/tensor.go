package quant

import (
	"fmt"
	"math"

	"llmq/kernels"
)

// QTensor is a quantized matrix [Rows×Cols] (normally a weight W [out×in]):
// packed codes plus one Params per group, as laid out by Spec.ParamShape.
//
//	element (r, c) = Quantizer(Params[Spec.ParamIndex(r, c, Cols)]).Dequantize(Code(r, c))
//
// Storage: Data holds the codes row by row, each row starting on a byte
// boundary (RowBytes bytes per row; see pack.go for the byte and nibble
// layout), so rows can be processed independently and a 4-bit row of odd
// width ends in a zero nibble. Scales holds one float32 per group (values
// exactly representable in FP16 when Spec.HalfScales) and Zeros one uint8
// zero-point per group for asymmetric integer grids (nil otherwise).
//
// The fields are exported for kernels and exporters; treat them as
// read-only once built.
type QTensor struct {
	Rows, Cols int
	Spec       Spec
	Data       []byte
	Scales     []float32
	Zeros      []uint8
}

// RowBytes is the number of bytes of Data per row.
func (t *QTensor) RowBytes() int { return PackedLen(t.Cols, t.Spec.Bits) }

// signedCodes reports whether codes are stored as two's complement.
func (s Spec) signedCodes() bool { return s.Format == FormatInt && s.Symmetric }

// Code returns the code of element (r, c).
func (t *QTensor) Code(r, c int) int32 {
	row := t.Data[r*t.RowBytes():]
	signed := t.Spec.signedCodes()
	if t.Spec.Bits <= 4 {
		v := Nibble(row, c)
		if signed {
			return int32(SignExtend4(v))
		}
		return int32(v)
	}
	if signed {
		return int32(int8(row[c]))
	}
	return int32(row[c])
}

// Codes returns all codes, unpacked, row-major.
func (t *QTensor) Codes() []int32 {
	out := make([]int32, t.Rows*t.Cols)
	rb := t.RowBytes()
	for r := 0; r < t.Rows; r++ {
		UnpackCodes(out[r*t.Cols:(r+1)*t.Cols], t.Data[r*rb:(r+1)*rb], t.Spec.Bits, t.Spec.signedCodes())
	}
	return out
}

// Param returns the parameters of group i.
func (t *QTensor) Param(i int) Params {
	p := Params{Scale: t.Scales[i]}
	if t.Zeros != nil {
		p.Zero = int32(t.Zeros[i])
	}
	return p
}

// Params returns a copy of all group parameters (Spec.ParamShape layout).
func (t *QTensor) Params() []Params {
	ps := make([]Params, len(t.Scales))
	for i := range ps {
		ps[i] = t.Param(i)
	}
	return ps
}

// ScalesF16 returns the scales as FP16 bit patterns (exact when
// Spec.HalfScales).
func (t *QTensor) ScalesF16() []uint16 {
	h := make([]uint16, len(t.Scales))
	ScalesToF16(h, t.Scales)
	return h
}

// Bytes is the storage size: packed codes, scales (4 bytes each, 2 with
// HalfScales) and zero-points (1 byte each).
func (t *QTensor) Bytes() int {
	sb := 4
	if t.Spec.HalfScales {
		sb = 2
	}
	return len(t.Data) + sb*len(t.Scales) + len(t.Zeros)
}

// Dequantize returns the dequantized matrix [Rows×Cols].
func (t *QTensor) Dequantize() []float32 {
	out := make([]float32, t.Rows*t.Cols)
	t.DequantizeInto(out)
	return out
}

// DequantizeInto writes the dequantized matrix to dst (len Rows·Cols).
func (t *QTensor) DequantizeInto(dst []float32) {
	if len(dst) != t.Rows*t.Cols {
		panic("quant.QTensor.DequantizeInto: dst length does not match the shape")
	}
	parallelRows(t.Rows, t.Cols, func(r0, r1 int) {
		codes := make([]int32, t.Cols)
		for r := r0; r < r1; r++ {
			t.dequantizeRow(dst[r*t.Cols:(r+1)*t.Cols], r, codes)
		}
	})
}

// DequantizeRow writes row r to dst (len Cols).
func (t *QTensor) DequantizeRow(dst []float32, r int) {
	t.dequantizeRow(dst[:t.Cols], r, make([]int32, t.Cols))
}

func (t *QTensor) dequantizeRow(dst []float32, r int, codes []int32) {
	rb := t.RowBytes()
	UnpackCodes(codes, t.Data[r*rb:(r+1)*rb], t.Spec.Bits, t.Spec.signedCodes())
	gc := t.Spec.GroupCols(t.Cols)
	q := t.Spec.Quantizer(Params{})
	for c0 := 0; c0 < t.Cols; c0 += gc {
		p := t.Param(t.Spec.ParamIndex(r, c0, t.Cols))
		q.Scale, q.Zero = p.Scale, p.Zero
		q.DequantizeSlice(dst[c0:c0+gc], codes[c0:c0+gc])
	}
}

// checkInput validates spec, shape and finiteness of a matrix.
func checkInput(what string, x []float32, rows, cols int, spec Spec) error {
	if err := spec.Validate(rows, cols); err != nil {
		return err
	}
	if len(x) != rows*cols {
		return fmt.Errorf("%w: %s has %d values, %d×%d needs %d", ErrShape, what, len(x), rows, cols, rows*cols)
	}
	return checkFinite(what, x, cols)
}

// checkActs validates an activation batch: rows may be 0, dst must match.
func checkActs(dst, x []float32, rows, cols int, spec Spec) error {
	if rows < 0 {
		return fmt.Errorf("%w: %d rows", ErrShape, rows)
	}
	if err := spec.Validate(max(rows, 1), cols); err != nil {
		return err
	}
	if len(x) != rows*cols || len(dst) != len(x) {
		return fmt.Errorf("%w: x has %d values, dst %d, %d×%d needs %d", ErrShape, len(x), len(dst), rows, cols, rows*cols)
	}
	return checkFinite("x", x, cols)
}

func checkFinite(what string, x []float32, cols int) error {
	for i, v := range x {
		if v-v != 0 { // NaN or ±Inf
			return fmt.Errorf("%w: %s[%d, %d] = %v", ErrNonFinite, what, i/cols, i%cols, v)
		}
	}
	return nil
}

// MinMax returns the smallest and largest finite values of x (0, 0 if there
// are none). Non-finite values are skipped.
func MinMax(x []float32) (lo, hi float32) {
	lo, hi = float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range x {
		if v-v != 0 { // NaN or ±Inf
			continue
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo > hi {
		return 0, 0
	}
	return lo, hi
}

// AbsMax returns the largest finite magnitude in x (0 if none).
func AbsMax(x []float32) float32 {
	lo, hi := MinMax(x)
	return max(-lo, hi)
}

// parallelRows runs f over row ranges, in parallel when the matrix is large
// enough to pay for goroutines.
func parallelRows(rows, cols int, f func(r0, r1 int)) {
	if rows < 2 || rows*cols < 1<<16 {
		f(0, rows)
		return
	}
	kernels.ParallelFor(rows, f)
}

// computeParams returns the RTN parameters of x (stats over finite values).
func computeParams(x []float32, rows, cols int, spec Spec) []Params {
	pr, pc := spec.ParamShape(rows, cols)
	params := make([]Params, pr*pc)
	if spec.Granularity == PerTensor {
		lo, hi := MinMax(x)
		params[0] = spec.ParamsMinMax(lo, hi)
		return params
	}
	gc := spec.GroupCols(cols)
	parallelRows(rows, cols, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			row := params[r*pc : (r+1)*pc]
			for g := range row {
				lo, hi := MinMax(x[r*cols+g*gc : r*cols+(g+1)*gc])
				row[g] = spec.ParamsMinMax(lo, hi)
			}
			spec.ConstrainRow(row)
		}
	})
	return params
}

// ComputeParams returns the round-to-nearest parameters of the [rows×cols]
// matrix w under spec: each group's min/max (or absmax) through
// Spec.ParamsMinMax, then Spec.ConstrainRow per row. Errors: invalid spec or
// shape, group size not dividing cols (ErrGroupSize), NaN/Inf in w
// (ErrNonFinite, with the position).
func ComputeParams(w []float32, rows, cols int, spec Spec) ([]Params, error) {
	if err := checkInput("weight", w, rows, cols, spec); err != nil {
		return nil, err
	}
	return computeParams(w, rows, cols, spec), nil
}

// QuantizeWeight quantizes w [rows×cols] by round-to-nearest with the
// spec's granularity: ComputeParams then QuantizeWithParams. NaN or Inf in
// w is an error (ErrNonFinite), never a NaN in the result.
func QuantizeWeight(w []float32, rows, cols int, spec Spec) (*QTensor, error) {
	params, err := ComputeParams(w, rows, cols, spec)
	if err != nil {
		return nil, err
	}
	return quantizeWithParams(w, rows, cols, spec, params), nil
}

// QuantizeWithParams quantizes w [rows×cols] onto the grids given by
// externally chosen parameters (one per group, Spec.ParamShape layout) — the
// final step of GPTQ, AWQ and other methods that choose scales themselves.
// Each code is q = clip(round(w/s) + z, qmin, qmax) (integers) or
// Encode(w/s) (minifloats); for a w that is already on the grid (GPTQ's
// quantized weights) this returns exactly its codes. The parameters are
// checked by Spec.CheckParams and copied.
func QuantizeWithParams(w []float32, rows, cols int, spec Spec, params []Params) (*QTensor, error) {
	if err := checkInput("weight", w, rows, cols, spec); err != nil {
		return nil, err
	}
	if err := spec.CheckParams(params, rows, cols); err != nil {
		return nil, err
	}
	return quantizeWithParams(w, rows, cols, spec, params), nil
}

func quantizeWithParams(w []float32, rows, cols int, spec Spec, params []Params) *QTensor {
	t := &QTensor{Rows: rows, Cols: cols, Spec: spec, Scales: make([]float32, len(params))}
	for i, p := range params {
		t.Scales[i] = p.Scale
	}
	if spec.HasZero() {
		t.Zeros = make([]uint8, len(params))
		for i, p := range params {
			t.Zeros[i] = uint8(p.Zero)
		}
	}
	rb := t.RowBytes()
	t.Data = make([]byte, rows*rb)
	gc := spec.GroupCols(cols)
	parallelRows(rows, cols, func(r0, r1 int) {
		codes := make([]int32, cols)
		q := spec.Quantizer(Params{})
		for r := r0; r < r1; r++ {
			for c0 := 0; c0 < cols; c0 += gc {
				p := params[spec.ParamIndex(r, c0, cols)]
				q.Scale, q.Zero = p.Scale, p.Zero
				q.QuantizeSlice(codes[c0:c0+gc], w[r*cols+c0:r*cols+c0+gc])
			}
			if err := PackCodes(t.Data[r*rb:(r+1)*rb], codes, spec.Bits, spec.signedCodes()); err != nil {
				panic("quant: internal error: " + err.Error()) // quantizers only emit in-range codes
			}
		}
	})
	return t
}

// FakeQuantize simulates quantization of x [rows×cols] (typically
// activations, with PerToken, PerTensor or PerGroup granularity): parameters
// are computed dynamically from x itself, exactly as QuantizeWeight would,
// and the dequantized values x̂ are returned. NaN/Inf give ErrNonFinite.
// rows may be 0.
func FakeQuantize(x []float32, rows, cols int, spec Spec) ([]float32, error) {
	dst := make([]float32, len(x))
	if err := FakeQuantizeInto(dst, x, rows, cols, spec); err != nil {
		return nil, err
	}
	return dst, nil
}

// FakeQuantizeInto is FakeQuantize writing into dst (len rows·cols; dst may
// alias x).
func FakeQuantizeInto(dst, x []float32, rows, cols int, spec Spec) error {
	if err := checkActs(dst, x, rows, cols, spec); err != nil {
		return err
	}
	fakeQuantize(dst, x, rows, cols, spec, nil)
	return nil
}

// FakeQuantizeWithParams fake-quantizes x [rows×cols] with given parameters
// (Spec.ParamShape layout for these rows; a single Params for PerTensor):
// static quantization with calibrated scales. dst may alias x.
func FakeQuantizeWithParams(dst, x []float32, rows, cols int, spec Spec, params []Params) error {
	if err := checkActs(dst, x, rows, cols, spec); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	if err := spec.CheckParams(params, rows, cols); err != nil {
		return err
	}
	fakeQuantize(dst, x, rows, cols, spec, params)
	return nil
}

// fakeQuantize is the unchecked core of fake quantization: params nil means
// dynamic (computed from the finite values of x). Non-finite inputs are
// passed through unchanged, so NaN stays visible downstream.
func fakeQuantize(dst, x []float32, rows, cols int, spec Spec, params []Params) {
	if rows == 0 {
		return
	}
	if params == nil {
		if spec.Granularity == PerTensor {
			lo, hi := MinMax(x)
			params = []Params{spec.ParamsMinMax(lo, hi)}
		} else {
			params = computeParams(x, rows, cols, spec)
		}
	}
	gc := spec.GroupCols(cols)
	parallelRows(rows, cols, func(r0, r1 int) {
		q := spec.Quantizer(Params{})
		for r := r0; r < r1; r++ {
			for c0 := 0; c0 < cols; c0 += gc {
				p := params[spec.ParamIndex(r, c0, cols)]
				q.Scale, q.Zero = p.Scale, p.Zero
				src, out := x[r*cols+c0:r*cols+c0+gc], dst[r*cols+c0:r*cols+c0+gc]
				for i, v := range src {
					if v-v != 0 { // NaN or ±Inf
						out[i] = v
					} else {
						out[i] = q.Fake(v)
					}
				}
			}
		}
	})
}
