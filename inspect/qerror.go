package inspect

import (
	"math"

	"llmq/nn"
)

// LinearError is the quantization error of one linear on the calibration
// inputs.
type LinearError struct {
	Role, Name string
	Quantized  bool   // false: the recipe left this linear in full precision
	Layer      string // the quantized layer, e.g. "int8-sym-channel W, int8-sym-token A"
	// RelMSE is ‖Y_q − Y‖² / ‖Y‖² summed over every calibration token and
	// output, where Y is the full-precision (rescaled) linear's output and
	// Y_q the quantized linear's, both on the same full-precision input. It
	// is NaN when the linear is not quantized or its outputs are all zero.
	RelMSE float64
}

// tap is a linear that runs the full-precision reference (whose output
// flows on, so every tapped linear sees full-precision inputs and the
// errors measured do not compound inside the block) and the quantized
// layer side by side, accumulating the squared difference of their
// outputs.
type tap struct {
	ref, q       nn.Linear
	yq           []float32
	errSq, refSq float64
}

func (t *tap) In() int  { return t.ref.In() }
func (t *tap) Out() int { return t.ref.Out() }

func (t *tap) Forward(y, x []float32, rows int) {
	t.ref.Forward(y, x, rows)
	n := rows * t.Out()
	if cap(t.yq) < n {
		t.yq = make([]float32, n)
	}
	yq := t.yq[:n]
	t.q.Forward(yq, x, rows)
	for i, v := range y[:n] {
		d := float64(yq[i] - v)
		t.errSq += d * d
		t.refSq += float64(v) * float64(v)
	}
}

// relMSE is the accumulated relative error (NaN with no signal).
func (t *tap) relMSE() float64 {
	if t.refSq == 0 {
		return math.NaN()
	}
	return t.errSq / t.refSq
}
