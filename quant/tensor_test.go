package quant

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var weightSpecs = []string{
	"int8-sym-tensor", "int8-sym-channel", "int8-asym-channel", "int8-sym-full-channel", "int8-sym-token",
	"int4-sym-g32", "int4-asym-g32", "int4-sym-full-g16", "int3-asym-g16", "int2-sym-g32",
	"int5-sym-channel", "int6-asym-g64", "int7-sym-g32", "int4-asym-tensor",
	"fp8e4m3-tensor", "fp8e4m3-channel", "fp8e5m2-channel", "fp8e5m2-g32", "fp4e2m1-g32", "fp4e2m1-channel",
	"fp4e2m1-g16-pow2", "fp4e2m1-g16-pow2ratio", "int4-sym-g32-pow2", "int4-sym-g32-pow2ratio",
	"int4-asym-g32-f16scale", "fp8e4m3-channel-f16scale", "fp4e2m1-g32-pow2ratio-f16scale",
}

// randMatrix draws rows with very different magnitudes, a few outliers and
// a constant (nonzero) group, like real weights.
func randMatrix(rng *rand.Rand, rows, cols int) []float32 {
	w := make([]float32, rows*cols)
	for r := 0; r < rows; r++ {
		mag := math.Exp2(rng.Float64()*16 - 10)
		for c := 0; c < cols; c++ {
			v := rng.NormFloat64() * mag
			if rng.IntN(50) == 0 {
				v *= 20
			}
			w[r*cols+c] = float32(v)
		}
	}
	if rows > 2 && cols >= 16 {
		for c := 0; c < 16; c++ {
			w[2*cols+c] = 0.37
		}
	}
	return w
}

// bound is the theoretical error of quantizing x with quantizer q, inside
// the grid's range, plus a few float32 ulps.
func bound(q Quantizer, x float32) float64 {
	ax := math.Abs(float64(x))
	slack := 8 * eps32 * ax
	if q.FP == nil {
		return float64(q.Scale)/2 + slack
	}
	rel := ax * math.Exp2(-float64(q.FP.ManBits()+1))
	abs := float64(q.Scale) * float64(q.FP.MinSubnormal()) / 2
	return math.Max(rel, abs)*(1+1e-6) + slack
}

func checkQTensor(t *testing.T, str string, w []float32, rows, cols int) {
	t.Helper()
	spec := MustParseSpec(str)
	qt, err := QuantizeWeight(w, rows, cols, spec)
	if err != nil {
		t.Fatalf("%s: %v", str, err)
	}
	params := qt.Params()
	if len(params) != spec.NumParams(rows, cols) || len(qt.Data) != rows*PackedLen(cols, spec.Bits) {
		t.Fatalf("%s: %d params, %d bytes", str, len(params), len(qt.Data))
	}
	cp, err := ComputeParams(w, rows, cols, spec)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range params {
		if p != cp[i] {
			t.Fatalf("%s: ComputeParams[%d] = %v, QTensor has %v", str, i, cp[i], p)
		}
		if !(p.Scale > 0) || math.IsInf(float64(p.Scale), 0) {
			t.Fatalf("%s: scale %v", str, p.Scale)
		}
		if spec.HalfScales && RoundScaleF16(p.Scale) != p.Scale {
			t.Fatalf("%s: scale %v not FP16", str, p.Scale)
		}
		if spec.Scale == ScalePow2 {
			if _, ok := Pow2Exponent(p.Scale); !ok {
				t.Fatalf("%s: scale %v not a power of two", str, p.Scale)
			}
		}
	}
	if spec.Scale == ScalePow2Ratio {
		_, pc := spec.ParamShape(rows, cols)
		for r := 0; r < rows; r++ {
			var smax float32
			for _, p := range params[r*pc : (r+1)*pc] {
				smax = max(smax, p.Scale)
			}
			for _, p := range params[r*pc : (r+1)*pc] {
				ratio := float64(smax) / float64(p.Scale)
				if f, _ := math.Frexp(ratio); f != 0.5 {
					t.Fatalf("%s: row %d ratio %v not a power of two", str, r, ratio)
				}
			}
		}
	}
	deq := qt.Dequantize()
	qmin, qmax := spec.IntRange()
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			i := r*cols + c
			q := spec.Quantizer(params[spec.ParamIndex(r, c, cols)])
			code := qt.Code(r, c)
			if code < qmin || code > qmax {
				t.Fatalf("%s: code %d outside [%d, %d]", str, code, qmin, qmax)
			}
			if code != q.Quantize(w[i]) || deq[i] != q.Dequantize(code) || deq[i] != q.Fake(w[i]) {
				t.Fatalf("%s (%d,%d): code %d deq %v, quantizer says %d / %v", str, r, c, code, deq[i], q.Quantize(w[i]), q.Fake(w[i]))
			}
			if math.IsNaN(float64(deq[i])) || math.IsInf(float64(deq[i]), 0) {
				t.Fatalf("%s: non-finite output", str)
			}
			if w[i] == 0 && deq[i] != 0 {
				t.Fatalf("%s: 0 dequantizes to %v", str, deq[i])
			}
			// M2 shrinks scales (up to 2×) and may saturate; elsewhere every
			// value lies inside its group's range.
			if spec.Scale != ScalePow2Ratio {
				if d := math.Abs(float64(w[i]) - float64(deq[i])); d > bound(q, w[i]) {
					t.Fatalf("%s (%d,%d): |%v − %v| = %v > bound %v (scale %v)", str, r, c, w[i], deq[i], d, bound(q, w[i]), q.Scale)
				}
			}
		}
	}
	// Requantizing the dequantized weights with the same parameters gives the
	// same codes (what GPTQ relies on when it hands over its final weights).
	qt2, err := QuantizeWithParams(deq, rows, cols, spec, params)
	if err != nil {
		t.Fatalf("%s: QuantizeWithParams: %v", str, err)
	}
	if !bytes.Equal(qt2.Data, qt.Data) {
		t.Fatalf("%s: requantized codes differ", str)
	}
	// Fake quantization of the same matrix is the same RTN.
	fq, err := FakeQuantize(w, rows, cols, spec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range fq {
		if fq[i] != deq[i] {
			t.Fatalf("%s: FakeQuantize[%d] = %v, Dequantize = %v", str, i, fq[i], deq[i])
		}
	}
	// Codes() and DequantizeRow agree with Code/Dequantize.
	codes := qt.Codes()
	row := make([]float32, cols)
	for r := 0; r < rows; r++ {
		qt.DequantizeRow(row, r)
		for c := 0; c < cols; c++ {
			if codes[r*cols+c] != qt.Code(r, c) || row[c] != deq[r*cols+c] {
				t.Fatalf("%s: Codes/DequantizeRow mismatch at (%d,%d)", str, r, c)
			}
		}
	}
	// Storage size.
	sb := 4
	if spec.HalfScales {
		sb = 2
	}
	want := rows*PackedLen(cols, spec.Bits) + sb*len(params)
	if spec.HasZero() {
		want += len(params)
	}
	if qt.Bytes() != want {
		t.Fatalf("%s: Bytes() = %d, want %d", str, qt.Bytes(), want)
	}
}

func TestQuantizeWeightAllSpecs(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, str := range weightSpecs {
		rows, cols := 7, 128
		checkQTensor(t, str, randMatrix(rng, rows, cols), rows, cols)
		if MustParseSpec(str).Granularity != PerGroup {
			// odd width: nibble rows end in a padding nibble
			checkQTensor(t, str, randMatrix(rng, 5, 63), 5, 63)
		}
	}
	// A bigger matrix goes through the parallel paths.
	checkQTensor(t, "int4-asym-g128", randMatrix(rng, 96, 1024), 96, 1024)
}

func TestKnownInt8Codes(t *testing.T) {
	w := []float32{-1, -0.5, 0, 0.25, 1, 2, 4, 8}
	qt, err := QuantizeWeight(w, 2, 4, MustParseSpec("int8-sym-channel"))
	if err != nil {
		t.Fatal(err)
	}
	// row 0: s = 1/127 → codes −127, round(−63.5) = −64, 0, round(31.75) = 32
	// row 1: s = 8/127 → 15.875→16, 31.75→32, 63.5→64 (tie to even), 127
	want := []int32{-127, -64, 0, 32, 16, 32, 64, 127}
	for i, c := range qt.Codes() {
		if c != want[i] {
			t.Errorf("code %d = %d, want %d", i, c, want[i])
		}
	}
	if int8(qt.Data[0]) != -127 || qt.Bytes() != 8+2*4 {
		t.Errorf("storage: byte %d, Bytes %d", int8(qt.Data[0]), qt.Bytes())
	}
}

// All-zero rows, groups and tensors dequantize to exact zeros with finite
// scales, for every spec.
func TestZeroRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	rows, cols := 4, 64
	for _, str := range weightSpecs {
		w := randMatrix(rng, rows, cols)
		clear(w[:cols])             // row 0
		clear(w[cols+16 : cols+48]) // part of row 1: whole groups of 16/32
		checkQTensor(t, str, w, rows, cols)
		z := make([]float32, rows*cols)
		checkQTensor(t, str, z, rows, cols)
		qt, _ := QuantizeWeight(z, rows, cols, MustParseSpec(str))
		for _, v := range qt.Dequantize() {
			if v != 0 {
				t.Fatalf("%s: all-zero tensor dequantizes to %v", str, v)
			}
		}
	}
}

func TestQuantizeWeightErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	spec := MustParseSpec("int4-sym-g32")
	w := randMatrix(rng, 4, 64)
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		x := append([]float32(nil), w...)
		x[70] = bad
		qt, err := QuantizeWeight(x, 4, 64, spec)
		if !errors.Is(err, ErrNonFinite) || qt != nil {
			t.Errorf("weight with %v: %v, want ErrNonFinite", bad, err)
		}
		if _, err := FakeQuantize(x, 4, 64, spec); !errors.Is(err, ErrNonFinite) {
			t.Errorf("FakeQuantize with %v: %v", bad, err)
		}
		if _, err := ComputeParams(x, 4, 64, spec); !errors.Is(err, ErrNonFinite) {
			t.Errorf("ComputeParams with %v: %v", bad, err)
		}
	}
	w48 := randMatrix(rng, 4, 48)
	if _, err := QuantizeWeight(w48, 4, 48, spec); !errors.Is(err, ErrGroupSize) {
		t.Errorf("g32 on 48 columns: %v, want ErrGroupSize", err)
	}
	if _, err := FakeQuantize(w48, 4, 48, spec); !errors.Is(err, ErrGroupSize) {
		t.Errorf("FakeQuantize g32 on 48 columns: %v, want ErrGroupSize", err)
	}
	if _, err := QuantizeWeight(w[:100], 4, 64, spec); !errors.Is(err, ErrShape) {
		t.Errorf("short weight: %v, want ErrShape", err)
	}
	if _, err := QuantizeWeight(w, 4, 64, Spec{Format: FormatInt, Bits: 12}); !errors.Is(err, ErrSpec) {
		t.Errorf("bad spec: %v, want ErrSpec", err)
	}

	good, _ := ComputeParams(w, 4, 64, MustParseSpec("int4-asym-g32"))
	mod := func(f func(p []Params)) []Params {
		p := append([]Params(nil), good...)
		f(p)
		return p
	}
	asym := MustParseSpec("int4-asym-g32")
	cases := []struct {
		name   string
		spec   Spec
		params []Params
		want   error
	}{
		{"count", asym, good[:3], ErrShape},
		{"zero scale", asym, mod(func(p []Params) { p[2].Scale = 0 }), ErrParams},
		{"negative scale", asym, mod(func(p []Params) { p[2].Scale = -1 }), ErrParams},
		{"NaN scale", asym, mod(func(p []Params) { p[2].Scale = float32(math.NaN()) }), ErrParams},
		{"Inf scale", asym, mod(func(p []Params) { p[2].Scale = float32(math.Inf(1)) }), ErrParams},
		{"zero-point range", asym, mod(func(p []Params) { p[1].Zero = 16 }), ErrParams},
		{"sym zero-point", spec, mod(func(p []Params) { p[1].Zero = 1 }), ErrParams},
		{"f16 scale", MustParseSpec("int4-asym-g32-f16scale"), mod(func(p []Params) { p[0].Scale = 0.1 }), ErrParams},
	}
	for _, c := range cases {
		if _, err := QuantizeWithParams(w, 4, 64, c.spec, c.params); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// Externally chosen parameters (a clipped range, as AWQ/GPTQ grid searches
// pick) are used as given: values beyond the range saturate.
func TestQuantizeWithExternalParams(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	rows, cols := 3, 64
	w := randMatrix(rng, rows, cols)
	for _, str := range []string{"int4-asym-g32", "int4-sym-g32", "fp4e2m1-g32", "int8-sym-channel"} {
		spec := MustParseSpec(str)
		pr, pc := spec.ParamShape(rows, cols)
		params := make([]Params, pr*pc)
		gc := spec.GroupCols(cols)
		for r := 0; r < pr; r++ {
			for g := 0; g < pc; g++ {
				lo, hi := MinMax(w[r*cols+g*gc : r*cols+(g+1)*gc])
				params[r*pc+g] = spec.ParamsMinMax(0.7*lo, 0.7*hi)
			}
		}
		qt, err := QuantizeWithParams(w, rows, cols, spec, params)
		if err != nil {
			t.Fatal(err)
		}
		deq := qt.Dequantize()
		col := make([]float32, rows)
		got := make([]float32, rows)
		for c := 0; c < cols; c++ {
			for r := 0; r < rows; r++ {
				q := spec.Quantizer(params[spec.ParamIndex(r, c, cols)])
				if deq[r*cols+c] != q.Fake(w[r*cols+c]) {
					t.Fatalf("%s: (%d,%d) %v vs %v", str, r, c, deq[r*cols+c], q.Fake(w[r*cols+c]))
				}
				col[r] = w[r*cols+c]
			}
			FakeQuantizeColumn(got, col, c, cols, spec, params)
			for r := range got {
				if got[r] != deq[r*cols+c] {
					t.Fatalf("%s: FakeQuantizeColumn(%d)[%d] = %v, want %v", str, c, r, got[r], deq[r*cols+c])
				}
			}
		}
	}
}

// Dynamic per-token INT8 fake quantization matches a direct transcription of
// s = absmax/127, x̂ = s·round(x/s).
func TestFakeQuantizePerToken(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	rows, cols := 9, 40
	x := randMatrix(rng, rows, cols)
	got, err := FakeQuantize(x, rows, cols, MustParseSpec("int8-sym-token"))
	if err != nil {
		t.Fatal(err)
	}
	for r := 0; r < rows; r++ {
		var a float64
		for c := 0; c < cols; c++ {
			a = math.Max(a, math.Abs(float64(x[r*cols+c])))
		}
		s := float32(a / 127)
		for c := 0; c < cols; c++ {
			want := s * float32(math.RoundToEven(float64(x[r*cols+c]/s)))
			if got[r*cols+c] != want {
				t.Fatalf("(%d,%d): %v, want %v", r, c, got[r*cols+c], want)
			}
		}
	}
	// per-tensor uses one scale for everything
	pt, _ := FakeQuantize(x, rows, cols, MustParseSpec("int8-sym-tensor"))
	s := MustParseSpec("int8-sym-tensor").ParamsAbsMax(AbsMax(x)).Scale
	for i, v := range pt {
		if want := s * RoundHalfEven(x[i]/s); v != want {
			t.Fatalf("per-tensor [%d]: %v, want %v", i, v, want)
		}
	}
	// zero rows are fine
	if out, err := FakeQuantize(nil, 0, cols, MustParseSpec("int8-sym-token")); err != nil || len(out) != 0 {
		t.Errorf("0 rows: %v %v", out, err)
	}
	// static parameters
	spec := MustParseSpec("int8-asym-tensor")
	p := spec.ParamsMinMax(-1, 3)
	dst := make([]float32, len(x))
	if err := FakeQuantizeWithParams(dst, x, rows, cols, spec, []Params{p}); err != nil {
		t.Fatal(err)
	}
	q := spec.Quantizer(p)
	for i := range x {
		if dst[i] != q.Fake(x[i]) {
			t.Fatalf("static [%d]: %v, want %v", i, dst[i], q.Fake(x[i]))
		}
	}
	if err := FakeQuantizeWithParams(dst, x, rows, cols, spec, []Params{{Scale: 0}}); !errors.Is(err, ErrParams) {
		t.Errorf("zero static scale: %v", err)
	}
}

// Fusing parts quantized apart gives the layer whose rows are theirs.
func TestConcatRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, spec := range []string{"int8-sym-channel", "int4-asym-g8"} {
		var parts []*QuantLinear
		var want []float32
		for _, rows := range []int{3, 5, 2} {
			w := make([]float32, rows*16)
			for i := range w {
				w[i] = float32(rng.NormFloat64())
			}
			q, err := QuantizeWeight(w, rows, 16, MustParseSpec(spec))
			if err != nil {
				t.Fatal(err)
			}
			ql, err := NewQuantLinear(q, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, ql)
			want = append(want, q.Dequantize()...)
		}
		f, err := ConcatRows(parts...)
		if err != nil {
			t.Fatal(err)
		}
		if f.Out() != 10 || !slices.Equal(f.Weight().Dequantize(), want) {
			t.Errorf("%s: fused layer is not the parts stacked", spec)
		}
	}
	q, _ := QuantizeWeight(make([]float32, 16), 1, 16, MustParseSpec("int8-sym-tensor"))
	ql, _ := NewQuantLinear(q, nil, nil)
	if _, err := ConcatRows(ql, ql); err == nil {
		t.Error("per-tensor parts fused")
	}
}
