package model

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"llmq/nn"
)

// TestMLP checks the MLP variants (fused SiLU gate, unfused gate, plain)
// against a float64 reference, with few rows (one call) and many (split
// over goroutines by forRows).
func TestMLP(t *testing.T) {
	const H, F = 24, 1024
	r := rand.New(rand.NewSource(1))
	rnd := func(n int, s float64) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * s)
		}
		return x
	}
	wg, wu, wd := rnd(F*H, 0.5), rnd(F*H, 0.5), rnd(H*F, 0.05)
	silu := func(v float64) float64 { return v / (1 + math.Exp(-v)) }
	gelu := func(v float64) float64 { return 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) }
	cases := []struct {
		name   string
		gated  bool
		act    nn.Activation
		isSiLU bool
		ref    func(float64) float64
	}{
		{"swiglu-fused", true, nn.SiLU, true, silu},
		{"swiglu", true, nn.SiLU, false, silu},
		{"geglu", true, nn.GELU, false, gelu},
		{"gelu", false, nn.GELU, false, gelu},
		{"silu", false, nn.SiLU, false, silu},
	}
	for _, c := range cases {
		for _, T := range []int{3, 48} {
			t.Run(fmt.Sprintf("%s/T=%d", c.name, T), func(t *testing.T) {
				b := &Block{Up: nn.NewDense(wu, nil, F, H), Down: nn.NewDense(wd, nil, H, F), Act: c.act, ActIsSiLU: c.isSiLU}
				if c.gated {
					b.Gate = nn.NewDense(wg, nil, F, H)
				}
				in := rnd(T*H, 1)
				out := make([]float32, T*H)
				s := &scratch{f: make([]float32, T*F), g: make([]float32, T*F)}
				b.mlp(out, in, T, s)
				var maxErr, maxRef float64
				a := make([]float64, F)
				for tt := 0; tt < T; tt++ {
					x := in[tt*H : (tt+1)*H]
					for j := range a {
						var up, gate float64
						for k, v := range x {
							up += float64(v) * float64(wu[j*H+k])
							gate += float64(v) * float64(wg[j*H+k])
						}
						if c.gated {
							a[j] = c.ref(gate) * up
						} else {
							a[j] = c.ref(up)
						}
					}
					for i := 0; i < H; i++ {
						var y float64
						for j, v := range a {
							y += v * float64(wd[i*F+j])
						}
						maxErr = math.Max(maxErr, math.Abs(y-float64(out[tt*H+i])))
						maxRef = math.Max(maxRef, math.Abs(y))
					}
				}
				if maxErr > 1e-5*maxRef || math.IsNaN(maxErr) {
					t.Errorf("max error %.3g (max |ref| %.3g)", maxErr, maxRef)
				}
			})
		}
	}
}
