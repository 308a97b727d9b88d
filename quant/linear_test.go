package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"llmq/nn"
)

// naiveForward is y = xq·Ŵᵀ + b in float64.
func naiveForward(xq, wdq, b []float32, rows, in, out int) (y, mag []float64) {
	y = make([]float64, rows*out)
	mag = make([]float64, rows*out)
	for r := 0; r < rows; r++ {
		for o := 0; o < out; o++ {
			var s, m float64
			for k := 0; k < in; k++ {
				p := float64(xq[r*in+k]) * float64(wdq[o*in+k])
				s += p
				m += math.Abs(p)
			}
			if b != nil {
				s += float64(b[o])
				m += math.Abs(float64(b[o]))
			}
			y[r*out+o], mag[r*out+o] = s, m
		}
	}
	return y, mag
}

// naivePerTokenInt8 is an independent transcription of dynamic symmetric
// per-token INT8: s = absmax/127, x̂ = s·round(x/s).
func naivePerTokenInt8(x []float32, rows, in int) []float32 {
	out := make([]float32, len(x))
	for r := 0; r < rows; r++ {
		var a float64
		for _, v := range x[r*in : (r+1)*in] {
			a = math.Max(a, math.Abs(float64(v)))
		}
		s := float32(a / 127)
		if a == 0 {
			s = 1
		}
		for k := r * in; k < (r+1)*in; k++ {
			out[k] = s * float32(math.RoundToEven(float64(x[k]/s)))
		}
	}
	return out
}

func TestQuantLinearForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	in, out := 128, 48
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	b := make([]float32, out)
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	static, err := StaticAct(MustParseSpec("int8-asym-tensor"), -2, 3)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		wspec string
		act   *ActQuant
		bias  []float32
		naive func(x []float32, rows int) []float32
	}{
		{"w4 weight-only", "int4-asym-g32", nil, b, nil},
		{"w8a8 per-token", "int8-sym-channel", DynamicAct(MustParseSpec("int8-sym-token")), b,
			func(x []float32, rows int) []float32 { return naivePerTokenInt8(x, rows, in) }},
		{"w8a8 per-tensor", "int8-sym-channel", DynamicAct(MustParseSpec("int8-sym-tensor")), nil, nil},
		{"w8a8 static", "int8-sym-channel", static, b, nil},
		{"fp8 w/a", "fp8e4m3-channel", DynamicAct(MustParseSpec("fp8e4m3-token")), b, nil},
		{"w4a8 fp", "fp4e2m1-g32-pow2ratio", DynamicAct(MustParseSpec("fp8e4m3-tensor")), b, nil},
		{"a group", "int4-sym-g64", DynamicAct(MustParseSpec("int8-asym-g32")), nil, nil},
	}
	for _, c := range cases {
		l, err := QuantizeLinear(w, c.bias, out, in, MustParseSpec(c.wspec), c.act)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if l.In() != in || l.Out() != out || l.Weight().Spec.String() != c.wspec {
			t.Fatalf("%s: shape/accessors", c.name)
		}
		if (l.ActSpec() == nil) != (c.act == nil) {
			t.Fatalf("%s: ActSpec", c.name)
		}
		wdq := l.Weight().Dequantize()
		for _, rows := range []int{1, 3, 70} {
			x := make([]float32, rows*in)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 1.5)
			}
			var xq []float32
			switch {
			case c.act == nil:
				xq = x
			case c.naive != nil:
				xq = c.naive(x, rows)
			case c.act.Static:
				xq = make([]float32, len(x))
				if err := FakeQuantizeWithParams(xq, x, rows, in, c.act.Spec, []Params{c.act.Params}); err != nil {
					t.Fatal(err)
				}
			default:
				if xq, err = FakeQuantize(x, rows, in, c.act.Spec); err != nil {
					t.Fatal(err)
				}
			}
			want, mag := naiveForward(xq, wdq, c.bias, rows, in, out)
			y := make([]float32, rows*out)
			l.Forward(y, x, rows)
			for i := range y {
				if d := math.Abs(float64(y[i]) - want[i]); d > 1e-5*mag[i]+1e-6 {
					t.Fatalf("%s rows=%d: y[%d] = %v, want %v (|Σ| %v)", c.name, rows, i, y[i], want[i], mag[i])
				}
			}
		}
	}
}

func TestQuantLinearIsLinear(t *testing.T) {
	var l nn.Linear
	qt, _ := QuantizeWeight(make([]float32, 8*16), 8, 16, MustParseSpec("int8-sym-channel"))
	ql, err := NewQuantLinear(qt, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l = ql
	y := make([]float32, 2*8)
	l.Forward(y, make([]float32, 2*16), 2)
	for _, v := range y {
		if v != 0 {
			t.Fatal("zero weights must give zero output")
		}
	}
	l.Forward(nil, nil, 0) // no rows: no work
}

func TestQuantLinearErrors(t *testing.T) {
	qt, _ := QuantizeWeight(make([]float32, 8*64), 8, 64, MustParseSpec("int4-sym-g32"))
	if _, err := NewQuantLinear(nil, nil, nil); !errors.Is(err, ErrShape) {
		t.Errorf("nil weight: %v", err)
	}
	if _, err := NewQuantLinear(qt, make([]float32, 7), nil); !errors.Is(err, ErrShape) {
		t.Errorf("short bias: %v", err)
	}
	nb := make([]float32, 8)
	nb[3] = float32(math.NaN())
	if _, err := NewQuantLinear(qt, nb, nil); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN bias: %v", err)
	}
	if _, err := NewQuantLinear(qt, nil, DynamicAct(MustParseSpec("int8-sym-channel"))); !errors.Is(err, ErrSpec) {
		t.Errorf("per-channel activations: %v", err)
	}
	if _, err := NewQuantLinear(qt, nil, DynamicAct(MustParseSpec("int8-sym-g48"))); !errors.Is(err, ErrGroupSize) {
		t.Errorf("activation group 48 on 64: %v", err)
	}
	if _, err := StaticAct(MustParseSpec("int8-sym-token"), -1, 1); !errors.Is(err, ErrSpec) {
		t.Errorf("static per-token: %v", err)
	}
	if _, err := StaticAct(MustParseSpec("int8-sym-tensor"), 1, float32(math.Inf(1))); !errors.Is(err, ErrParams) {
		t.Errorf("static Inf range: %v", err)
	}
	bad := &ActQuant{Spec: MustParseSpec("int8-sym-tensor"), Static: true}
	if _, err := NewQuantLinear(qt, nil, bad); !errors.Is(err, ErrParams) {
		t.Errorf("static zero scale: %v", err)
	}
}

// A NaN activation propagates instead of being clipped away, and only
// poisons the outputs of its own token.
func TestQuantLinearNaNPassThrough(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	w := randMatrix(rng, 4, 32)
	l, err := QuantizeLinear(w, nil, 4, 32, MustParseSpec("int8-sym-channel"), DynamicAct(MustParseSpec("int8-sym-token")))
	if err != nil {
		t.Fatal(err)
	}
	x := randMatrix(rng, 2, 32)
	x[5] = float32(math.NaN())
	y := make([]float32, 2*4)
	l.Forward(y, x, 2)
	for o := 0; o < 4; o++ {
		if !math.IsNaN(float64(y[o])) || math.IsNaN(float64(y[4+o])) {
			t.Fatalf("y = %v", y)
		}
	}
}

func TestQuantLinearConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	in, out := 64, 16
	l, err := QuantizeLinear(randMatrix(rng, out, in), nil, out, in, MustParseSpec("int4-sym-g32"), DynamicAct(MustParseSpec("int8-sym-token")))
	if err != nil {
		t.Fatal(err)
	}
	x := randMatrix(rng, 5, in)
	ref := make([]float32, 5*out)
	l.Forward(ref, x, 5)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			y := make([]float32, 5*out)
			for it := 0; it < 20; it++ {
				l.Forward(y, x, 5)
				for i := range y {
					if y[i] != ref[i] {
						t.Errorf("concurrent Forward differs")
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

func TestQuantLinearAccessors(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	w := randMatrix(rng, 8, 64)
	b := make([]float32, 8)
	act := DynamicAct(MustParseSpec("fp8e4m3-token"))
	l, err := QuantizeLinear(w, b, 8, 64, MustParseSpec("int4-asym-g32-f16scale"), act)
	if err != nil {
		t.Fatal(err)
	}
	act.Spec = MustParseSpec("int8-sym-tensor") // the layer holds its own copy
	if l.ActSpec().Spec.String() != "fp8e4m3-token" || &l.Bias()[0] != &b[0] {
		t.Error("ActSpec/Bias")
	}
	deq := l.Weight().Dequantize()
	for i, v := range l.DequantizedWeight() {
		if v != deq[i] {
			t.Fatal("DequantizedWeight differs from Dequantize")
		}
	}
	// 8 rows × 32 bytes of nibbles + 16 groups × (2-byte scale + 1-byte zero) + 32 bytes of bias
	if got := l.Bytes(); got != 8*32+16*3+8*4 {
		t.Errorf("Bytes() = %d", got)
	}
	h := l.Weight().ScalesF16()
	back := make([]float32, len(h))
	ScalesFromF16(back, h)
	for i := range back {
		if back[i] != l.Weight().Scales[i] {
			t.Fatal("FP16 scales are not exact")
		}
	}
	if l.String() == "" || (*ActQuant)(nil).String() != "none" {
		t.Error("String")
	}
	if _, err := QuantizeLinear(w[:10], nil, 8, 64, MustParseSpec("int4-asym-g32"), nil); !errors.Is(err, ErrShape) {
		t.Errorf("short weights: %v", err)
	}
}
