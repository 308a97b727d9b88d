package methods

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"llmq/nn"
	"llmq/quant"
)

func lorcFrob(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i] - b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// The compensated weight Ŵ + A·B is closer to W than Ŵ, by exactly the
// energy of the r leading singular values of E (FP32 factors), and nearly
// as much with INT8 factors; the layer's outputs follow.
func TestLoRCReducesError(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const out, in, rank, rows = 64, 128, 8, 96
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	// A weight with a few structured (low-rank) features, as trained
	// weights have, plus outlier columns that coarsen the per-channel grid.
	for k := 0; k < 3; k++ {
		a, b := make([]float64, out), make([]float64, in)
		for i := range a {
			a[i] = rng.NormFloat64()
		}
		for j := range b {
			b[j] = rng.NormFloat64()
		}
		for i := 0; i < out; i++ {
			for j := 0; j < in; j++ {
				w[i*in+j] += float32(0.02 * a[i] * b[j])
			}
		}
	}
	bias := make([]float32, out)
	for i := range bias {
		bias[i] = float32(rng.NormFloat64())
	}
	x := make([]float32, rows*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ref := make([]float32, rows*out)
	nn.NewDense(w, bias, out, in).Forward(ref, x, rows)
	for _, spec := range []string{"int3-asym-channel", "int4-sym-g32"} {
		ql, err := quant.QuantizeLinear(w, bias, out, in, quant.MustParseSpec(spec), nil)
		if err != nil {
			t.Fatal(err)
		}
		base := lorcFrob(ql.DequantizedWeight(), w)
		yq := make([]float32, rows*out)
		ql.Forward(yq, x, rows)
		baseOut := lorcFrob(yq, ref)
		// Singular values of E, for the Eckart–Young check.
		e := make([]float64, out*in)
		for i := range e {
			e[i] = float64(w[i]) - float64(ql.DequantizedWeight()[i])
		}
		_, sv, _, err := truncatedSVD(e, out, in, rank)
		if err != nil {
			t.Fatal(err)
		}
		var top float64
		for _, s := range sv {
			top += s * s
		}
		for _, bits := range []int{0, 8} {
			lr, err := NewLowRankCompensation(w, ql, rank, bits)
			if err != nil {
				t.Fatal(err)
			}
			wq := ql.DequantizedWeight()
			corr := lr.Correction()
			comp := make([]float32, len(wq))
			for i := range comp {
				comp[i] = wq[i] + corr[i]
			}
			got := lorcFrob(comp, w)
			y := make([]float32, rows*out)
			lr.Forward(y, x, rows)
			gotOut := lorcFrob(y, ref)
			t.Logf("%s, factors %d bits: ‖W−Ŵ‖ %.4f → %.4f, output error %.4f → %.4f", spec, bits, base, got, baseOut, gotOut)
			if !(got < 0.97*base) || !(gotOut < 0.97*baseOut) {
				t.Errorf("%s bits %d: LoRC did not reduce the error (weight %.4f vs %.4f, output %.4f vs %.4f)", spec, bits, got, base, gotOut, baseOut)
			}
			if bits == 0 {
				want := math.Sqrt(base*base - top)
				if math.Abs(got-want) > 1e-4*base {
					t.Errorf("%s: ‖E − A·B‖ = %.6f, Eckart–Young %.6f", spec, got, want)
				}
			}
			// Forward is Base(x) + x·(A·B)ᵀ.
			want := make([]float32, rows*out)
			nn.NewDense(comp, bias, out, in).Forward(want, x, rows)
			if d := lorcFrob(y, want); d > 1e-4*lorcFrob(want, make([]float32, len(want))) {
				t.Errorf("%s bits %d: Forward differs from x·(Ŵ+AB)ᵀ + b by %g", spec, bits, d)
			}
			if bits == 8 {
				if lr.QA == nil || lr.QB == nil || lr.Bytes() >= ql.Bytes()+4*(len(lr.A)+len(lr.B)) {
					t.Errorf("INT8 factors: QA %v, QB %v, %d bytes", lr.QA != nil, lr.QB != nil, lr.Bytes())
				}
			}
		}
	}
}

// End to end on tiny-llama: W3 plus LoRC rank 8 is closer to FP than W3.
func TestLoRCTinyLlama(t *testing.T) {
	scheme := Scheme{Weights: quant.MustParseSpec("int3-asym-channel")}
	for _, base := range []func() Method{
		func() Method { return &RTN{Scheme: scheme} },
		func() Method { return NewGPTQ(scheme, nil) },
	} {
		plain := logitErr(t, base())
		fp32 := logitErr(t, &LoRC{Rank: 8, Base: base()})
		int8 := logitErr(t, &LoRC{Rank: 8, Bits: 8, Base: base()})
		t.Logf("%s W3 logit error: %.4f, + LoRC r8 %.4f, + LoRC r8 INT8 factors %.4f", base().Name(), plain, fp32, int8)
		if !(fp32 < plain) || !(int8 < plain) {
			t.Errorf("%s: LoRC did not help: %.4f / %.4f vs %.4f", base().Name(), fp32, int8, plain)
		}
	}
}

func TestLoRCErrors(t *testing.T) {
	m := loadTiny(t, "tiny-llama")
	calibration := calibSeqs(2, 16, m.Vocab)
	scheme := Scheme{Weights: quant.MustParseSpec("int4-asym-channel")}
	sel, _ := NewSelector([]string{"q_proj"}, nil)
	cases := []struct {
		stages []Method
		want   string
	}{
		{[]Method{&LoRC{Rank: 0, Base: &RTN{Scheme: scheme}}}, "rank"},
		{[]Method{&LoRC{Rank: 4, Bits: 1, Base: &RTN{Scheme: scheme}}}, "bits"},
		{[]Method{&LoRC{Rank: 4}}, "base"},
		// Following the quantizer instead of wrapping it: the FP weight is gone.
		{[]Method{&RTN{Scheme: scheme}, &LoRC{Rank: 4, Base: &SmoothQuant{Alpha: 0.5}, Select: sel}}, "must wrap the quantizer"},
		// A selected linear that the base leaves in FP.
		{[]Method{&LoRC{Rank: 4, Base: &SmoothQuant{Alpha: 0.5}, Select: sel}}, "not a quantized linear"},
	}
	for _, c := range cases {
		err := Run(loadTiny(t, "tiny-llama"), calibration, c.stages, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want it to mention %q", err, c.want)
		}
	}
	// Without a selector, linears the base leaves in FP are left alone.
	noDown, _ := NewSelector(nil, []string{"down_proj"})
	if err := Run(m, calibration, []Method{&LoRC{Rank: 4, Base: &RTN{Scheme: scheme, Select: noDown}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Blocks[0].Down.(*nn.Dense); !ok {
		t.Errorf("down_proj is %T, want it left FP", m.Blocks[0].Down)
	}
	if lr, ok := m.Blocks[0].Q.(*LowRankLinear); !ok || lr.Rank != 4 {
		t.Errorf("q_proj is %T, want a rank-4 LowRankLinear", m.Blocks[0].Q)
	}
}
