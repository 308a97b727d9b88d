package nn

import (
	"math"

	"llmq/kernels"
)

// Norm normalises each row of x into y (y may alias x).
type Norm interface {
	Forward(y, x []float32, rows int)
	Width() int
}

// RMSNorm is Llama's y = x / sqrt(mean(x²) + ε) · w (Zhang & Sennrich 2019):
// no centring and no bias. The mean of squares is accumulated in float64 so
// that the wide rows of outlier-heavy activations lose nothing.
type RMSNorm struct {
	W   []float32
	Eps float32
	// Offset is what the checkpoint leaves out of W: Gemma stores w and
	// computes with (1 + w), so its norms hold W = 1 + w and Offset = 1,
	// and writers store W − Offset. Methods that fold scales into a norm
	// scale W, the weight actually applied.
	Offset float32
}

func (n *RMSNorm) Width() int { return len(n.W) }

func (n *RMSNorm) Forward(y, x []float32, rows int) {
	d := len(n.W)
	splitRows(rows, d, func(r0, r1 int) { n.forward(y, x, r0, r1) })
}

func (n *RMSNorm) forward(y, x []float32, r0, r1 int) {
	d := len(n.W)
	for r := r0; r < r1; r++ {
		xr, yr := x[r*d:r*d+d], y[r*d:r*d+d]
		inv := float32(1 / math.Sqrt(kernels.SumSquares(xr)/float64(d)+float64(n.Eps)))
		kernels.ScaleMul(yr, xr, n.W, inv)
	}
}

// LayerNorm is y = (x − mean) / sqrt(var + ε) · w + b with the biased
// variance, as torch.nn.LayerNorm computes it.
type LayerNorm struct {
	W, B []float32
	Eps  float32
}

func (n *LayerNorm) Width() int { return len(n.W) }

func (n *LayerNorm) Forward(y, x []float32, rows int) {
	d := len(n.W)
	splitRows(rows, d, func(r0, r1 int) { n.forward(y, x, r0, r1) })
}

func (n *LayerNorm) forward(y, x []float32, r0, r1 int) {
	d := len(n.W)
	for r := r0; r < r1; r++ {
		xr, yr := x[r*d:r*d+d], y[r*d:r*d+d]
		var s float64
		for _, v := range xr {
			s += float64(v)
		}
		mean := s / float64(d)
		var ss float64
		for _, v := range xr {
			c := float64(v) - mean
			ss += c * c
		}
		inv := 1 / math.Sqrt(ss/float64(d)+float64(n.Eps))
		m := float32(mean)
		for i, v := range xr {
			yr[i] = (v-m)*float32(inv)*n.W[i] + n.B[i]
		}
	}
}

// NormParams returns a norm's weight and bias (nil for RMSNorm), the
// tensors that methods such as SmoothQuant fold scales into.
func NormParams(n Norm) (w, b []float32) {
	switch v := n.(type) {
	case *RMSNorm:
		return v.W, nil
	case *LayerNorm:
		return v.W, v.B
	}
	return nil, nil
}

// splitRows runs f over ranges of rows of the given width, split across
// threads for a prefill's many rows (each row is computed the same way
// either way); norms and RoPE use it.
func splitRows(rows, width int, f func(r0, r1 int)) {
	if rows < 16 || rows*width < 1<<15 {
		f(0, rows)
		return
	}
	kernels.ParallelFor(rows, f)
}
