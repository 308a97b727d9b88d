package nn

import (
	"fmt"
	"math"

	"llmq/kernels"
)

// Activation is an elementwise nonlinearity applied in place. Being
// elementwise, it may be run concurrently on disjoint parts of a slice.
type Activation func(x []float32)

// ActivationByName maps the names Hugging Face configs use (hidden_act,
// activation_function) to implementations.
func ActivationByName(name string) (Activation, error) {
	if IsSiLU(name) {
		return SiLU, nil
	}
	switch name {
	case "gelu":
		return GELU, nil
	case "gelu_new", "gelu_pytorch_tanh", "gelu_fast":
		return GELUTanh, nil
	case "relu":
		return ReLU, nil
	}
	return nil, fmt.Errorf("unsupported activation %q (supported: silu, gelu, gelu_new, gelu_pytorch_tanh, relu)", name)
}

// IsSiLU reports whether ActivationByName(name) is SiLU, so that a gated MLP
// can fuse it with the product by the up projection (kernels.SiLUMul).
func IsSiLU(name string) bool { return name == "silu" || name == "swish" }

// SiLU is x·σ(x) = x/(1 + e^−x), the gate nonlinearity of SwiGLU MLPs
// (vectorized: kernels.SiLU).
func SiLU(x []float32) { kernels.SiLU(x) }

// GELU is the exact x·Φ(x) = x/2·(1 + erf(x/√2)).
func GELU(x []float32) {
	for i, v := range x {
		x[i] = float32(0.5 * float64(v) * (1 + math.Erf(float64(v)/math.Sqrt2)))
	}
}

// GELUTanh is the tanh approximation GPT-2 was trained with:
// x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
func GELUTanh(x []float32) {
	const c = 0.7978845608028654 // √(2/π)
	for i, v := range x {
		f := float64(v)
		x[i] = float32(0.5 * f * (1 + math.Tanh(c*(f+0.044715*f*f*f))))
	}
}

// ReLU is max(x, 0).
func ReLU(x []float32) {
	for i, v := range x {
		if v < 0 {
			x[i] = 0
		}
	}
}
