package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"llmq/nn"
)

// The kernel path computes what the reference path computes, up to FP32
// summation order.
func TestFastMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cases := []struct {
		w, a     string
		rows, in int
		fast     bool
		static   float32 // > 0: static activations calibrated to [−static, static]
	}{
		{"int8-sym-channel", "int8-sym-token", 5, 96, true, 0},
		{"int8-sym-channel", "int8-sym-token", 1, 200, true, 0},
		{"int4-sym-g32", "", 3, 128, true, 0},
		{"int4-asym-g64", "", 1, 256, true, 0},
		{"int4-asym-channel", "", 4, 77, true, 0},
		{"int4-sym-g32", "int8-sym-token", 6, 64, true, 0},
		{"int8-sym-channel", "", 2, 64, false, 0},                // W8A16: no kernel
		{"int4-sym-g32", "int8-sym-tensor", 2, 64, false, 0},     // W4A8 with per-tensor acts: no kernel
		{"int8-sym-channel", "int8-sym-tensor", 7, 96, true, 0},  // SmoothQuant O2
		{"int8-sym-channel", "int8-sym-tensor", 1, 96, true, 0},  // … one row
		{"int8-sym-channel", "int8-sym-tensor", 9, 130, true, 5}, // O3: static, values beyond ±5 saturate
		{"int8-sym-channel", "int8-asym-tensor", 3, 64, false, 5},
		{"fp4e2m1-g32", "", 2, 64, false, 0},
	}
	for _, c := range cases {
		out := 37
		w := make([]float32, out*c.in)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		bias := make([]float32, out)
		for i := range bias {
			bias[i] = float32(rng.NormFloat64())
		}
		var act *ActQuant
		if c.a != "" {
			act = DynamicAct(MustParseSpec(c.a))
		}
		if c.static > 0 {
			var err error
			if act, err = StaticAct(MustParseSpec(c.a), -c.static, c.static); err != nil {
				t.Fatal(err)
			}
		}
		ref, err := QuantizeLinear(w, bias, out, c.in, MustParseSpec(c.w), act)
		if err != nil {
			t.Fatal(err)
		}
		f := Fast(ref)
		if (f != nil) != c.fast {
			t.Errorf("%s / %q: Fast available = %v, want %v", c.w, c.a, f != nil, c.fast)
			continue
		}
		if f == nil {
			continue
		}
		x := make([]float32, c.rows*c.in)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 3)
		}
		want := make([]float32, c.rows*out)
		got := make([]float32, c.rows*out)
		ref.Forward(want, x, c.rows)
		f.Forward(got, x, c.rows)
		var num, den float64
		for i := range want {
			num = math.Max(num, math.Abs(float64(got[i]-want[i])))
			den = math.Max(den, math.Abs(float64(want[i])))
		}
		if num/den > 1e-5 {
			t.Errorf("%s / %q: kernel path differs from the reference by %.3g (relative)", c.w, c.a, num/den)
		}
		// The packed form is the only copy of the codes: Quant must give
		// the original weight back exactly, and Row its dequantized rows.
		back := f.Quant().Weight()
		orig := ref.Weight()
		if !slices.Equal(back.Data, orig.Data) || !slices.Equal(back.Scales, orig.Scales) || !slices.Equal(back.Zeros, orig.Zeros) || back.Spec != orig.Spec {
			t.Errorf("%s / %q: Quant() does not restore the weight", c.w, c.a)
		}
		row, wantRow := make([]float32, c.in), make([]float32, c.in)
		for _, id := range []int{0, out - 1} {
			f.Row(row, id)
			orig.DequantizeRow(wantRow, id)
			if !slices.Equal(row, wantRow) {
				t.Errorf("%s / %q: Row(%d) differs from the dequantized weight row", c.w, c.a, id)
			}
		}
	}
}

// Linears sharing one prepared input (nn.ForwardShared) compute exactly
// what their own Forward computes.
func TestFastSharedInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const in, rows = 96, 23
	mk := func(out int, wspec, aspec string, static float32) nn.Linear {
		w := make([]float32, out*in)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		var act *ActQuant
		if aspec != "" {
			act = DynamicAct(MustParseSpec(aspec))
		}
		if static > 0 {
			var err error
			if act, err = StaticAct(MustParseSpec(aspec), -static, static); err != nil {
				t.Fatal(err)
			}
		}
		q, err := QuantizeLinear(w, nil, out, in, MustParseSpec(wspec), act)
		if err != nil {
			t.Fatal(err)
		}
		return Fast(q)
	}
	ls := []nn.Linear{
		mk(40, "int8-sym-channel", "int8-sym-token", 0),
		mk(17, "int8-sym-channel", "int8-sym-token", 0),
		mk(33, "int4-asym-g32", "", 0), // not shareable: its own Forward
		mk(20, "int8-sym-channel", "int8-sym-tensor", 0),
		mk(21, "int8-sym-channel", "int8-sym-tensor", 6),
		mk(22, "int8-sym-channel", "int8-sym-tensor", 6),
		mk(23, "int8-sym-channel", "int8-sym-tensor", 9), // another static scale: not shared with the two above
	}
	x := make([]float32, rows*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 4)
	}
	ys := make([][]float32, len(ls))
	for i, l := range ls {
		ys[i] = make([]float32, rows*l.Out())
	}
	nn.ForwardShared(x, rows, ls, ys)
	for i, l := range ls {
		want := make([]float32, rows*l.Out())
		l.Forward(want, x, rows)
		if !slices.Equal(ys[i], want) {
			t.Errorf("linear %d: shared-input output differs from Forward", i)
		}
	}
}
