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

// SharedInput is implemented by linears that transform their input before
// the product — the W8A8 kernels quantize each row to int8 and pack it for
// the INT8 GEMM. Linears reading the same x with the same non-empty
// InputFormat can share one PrepareInput; ForwardShared arranges it.
type SharedInput interface {
	Linear
	// InputFormat names the prepared form ("" when there is none to share).
	InputFormat() string
	// PrepareInput transforms x [rows×In] once.
	PrepareInput(x []float32, rows int) Prepared
	// ForwardPrepared computes y [rows×Out] from a prepared input; it
	// gives exactly what Forward gives on the same x.
	ForwardPrepared(y []float32, in Prepared, rows int)
}

// Prepared is a prepared input; Release frees it after its last use.
type Prepared interface{ Release() }

// ForwardShared computes ys[i][rows×ls[i].Out()] = ls[i](x) for linears
// reading the same x (a block's q/k/v projections, its gate and up
// projections), preparing x once per input format.
func ForwardShared(x []float32, rows int, ls []Linear, ys [][]float32) {
	var formats []string
	var prepared []Prepared
	for i, l := range ls {
		s, ok := l.(SharedInput)
		f := ""
		if ok {
			f = s.InputFormat()
		}
		if f == "" {
			l.Forward(ys[i], x, rows)
			continue
		}
		j := 0
		for j < len(formats) && formats[j] != f {
			j++
		}
		if j == len(formats) {
			formats = append(formats, f)
			prepared = append(prepared, s.PrepareInput(x, rows))
		}
		s.ForwardPrepared(ys[i], prepared[j], rows)
	}
	for _, p := range prepared {
		p.Release()
	}
}
