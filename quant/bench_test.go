package quant

import (
	"math/rand/v2"
	"testing"
)

func BenchmarkQuantizeWeight(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	rows, cols := 1024, 4096
	w := randMatrix(rng, rows, cols)
	for _, str := range []string{"int4-asym-g128", "int8-sym-channel", "fp8e4m3-channel", "fp4e2m1-g32-pow2ratio"} {
		spec := MustParseSpec(str)
		b.Run(str, func(b *testing.B) {
			b.SetBytes(int64(4 * len(w)))
			for b.Loop() {
				if _, err := QuantizeWeight(w, rows, cols, spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFakeQuantizePerToken(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	rows, cols := 512, 4096
	x := randMatrix(rng, rows, cols)
	dst := make([]float32, len(x))
	for _, str := range []string{"int8-sym-token", "fp8e4m3-token"} {
		spec := MustParseSpec(str)
		b.Run(str, func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if err := FakeQuantizeInto(dst, x, rows, cols, spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
