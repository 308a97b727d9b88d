package nn

import "llmq/kernels"

// Linear is y = x·Wᵀ + b for a batch of rows. It is the one seam between the
// model families and whatever computes the product: FP32 here, quantized or
// low-bit kernels elsewhere. Model code only ever calls Forward.
type Linear interface {
	In() int  // input features (columns of W)
	Out() int // output features (rows of W)
	// Forward computes y[rows×Out] from x[rows×In].
	Forward(y, x []float32, rows int)
}

// Dense is the FP32 linear layer. W is stored [Out×In] row-major, the
// PyTorch nn.Linear layout, so y = x·Wᵀ reads W row by row. B may be nil.
type Dense struct {
	W       []float32
	B       []float32
	in, out int
}

// NewDense wraps weights (not copied) of shape [out×in] and an optional bias.
func NewDense(w, b []float32, out, in int) *Dense {
	if len(w) != out*in || (b != nil && len(b) != out) {
		panic("nn.NewDense: weight or bias length does not match the shape") // programming error, not input
	}
	return &Dense{W: w, B: b, in: in, out: out}
}

// Bytes is the weights' storage: 4 bytes per weight and bias value.
func (d *Dense) Bytes() int { return 4 * (len(d.W) + len(d.B)) }

func (d *Dense) In() int  { return d.in }
func (d *Dense) Out() int { return d.out }

func (d *Dense) Forward(y, x []float32, rows int) {
	kernels.Sgemm(true, rows, d.out, d.in, x, d.in, d.W, d.in, y, d.out, false)
	AddBias(y, d.B, rows)
}

// AddBias adds b to each of the rows of y (no-op for a nil bias).
func AddBias(y, b []float32, rows int) {
	if b == nil {
		return
	}
	n := len(b)
	for r := 0; r < rows; r++ {
		row := y[r*n : r*n+n]
		for i, v := range b {
			row[i] += v
		}
	}
}
