package quant

import (
	"fmt"
	"sync"
	"sync/atomic"

	"llmq/kernels"
	"llmq/nn"
)

// ActQuant describes how a QuantLinear quantizes its input activations
// X [rows×In] before the product.
//
//   - Dynamic (Static false): parameters are computed from each input as it
//     arrives, per token (PerToken: one scale per row of X, the
//     LLM.int8()/ZeroQuant choice), per tensor (PerTensor: one scale for the
//     whole batch) or per group of columns within a token (PerGroup).
//   - Static (Static true): PerTensor with Params fixed offline by
//     calibration (SmoothQuant's static W8A8); no statistics at run time.
//     Values beyond the calibrated range saturate.
//
// PerChannel is rejected for activations: a channel of X is a column, and
// per-column scales cannot be factored out of x·Wᵀ.
type ActQuant struct {
	Spec   Spec
	Static bool
	Params Params // Static only
}

// DynamicAct returns dynamic activation quantization with spec.
func DynamicAct(spec Spec) *ActQuant { return &ActQuant{Spec: spec} }

// StaticAct returns static per-tensor activation quantization whose
// parameters come from a calibrated range [lo, hi] (for example the
// min/max, or a percentile, observed over calibration data).
func StaticAct(spec Spec, lo, hi float32) (*ActQuant, error) {
	if spec.Granularity != PerTensor {
		return nil, fmt.Errorf("%w: static activation quantization is per-tensor, have %v", ErrSpec, spec)
	}
	if err := spec.check(); err != nil {
		return nil, err
	}
	if lo-lo != 0 || hi-hi != 0 || lo > hi {
		return nil, fmt.Errorf("%w: calibrated range [%v, %v]", ErrParams, lo, hi)
	}
	return &ActQuant{Spec: spec, Static: true, Params: spec.ParamsMinMax(lo, hi)}, nil
}

func (a *ActQuant) String() string {
	if a == nil {
		return "none"
	}
	if a.Static {
		return fmt.Sprintf("static %v (scale %g, zero %d)", a.Spec, a.Params.Scale, a.Params.Zero)
	}
	return "dynamic " + a.Spec.String()
}

// validate checks a against an input width.
func (a *ActQuant) validate(in int) error {
	if a.Spec.Granularity == PerChannel {
		return fmt.Errorf("%w: per-channel activation quantization (%v) is not supported; use token, tensor or g<N>", ErrSpec, a.Spec)
	}
	if err := a.Spec.Validate(1, in); err != nil {
		return err
	}
	if a.Static {
		if a.Spec.Granularity != PerTensor {
			return fmt.Errorf("%w: static activation quantization is per-tensor, have %v", ErrSpec, a.Spec)
		}
		return a.Spec.CheckParams([]Params{a.Params}, 1, in)
	}
	return nil
}

// QuantLinear is an nn.Linear over a quantized weight: y = Q(x)·Ŵᵀ + b,
// where Ŵ is the dequantized QTensor and Q is the optional activation
// fake-quantization (nil: weight-only quantization, x used as is).
//
// Forward is the reference path: it fake-quantizes x in FP32 and multiplies
// by a dequantized FP32 copy of W cached at construction, with kernels.Sgemm.
// It computes exactly what an integer/FP8 kernel approximates, up to FP32
// summation order, and is what accuracy evaluations of a quantized model
// run; fast low-bit kernels live elsewhere and are checked against it.
type QuantLinear struct {
	w    *QTensor
	wdq  atomic.Pointer[[]float32] // dequantized W [out×in], built on first use
	bias []float32
	act  *ActQuant
	bufs sync.Pool // *[]float32 scratch for quantized activations
}

var _ nn.Linear = (*QuantLinear)(nil)

// NewQuantLinear wraps a quantized weight [out×in], an optional bias (len
// out; not copied) and optional activation quantization (copied).
func NewQuantLinear(w *QTensor, bias []float32, act *ActQuant) (*QuantLinear, error) {
	if w == nil {
		return nil, fmt.Errorf("%w: nil weight", ErrShape)
	}
	if bias != nil && len(bias) != w.Rows {
		return nil, fmt.Errorf("%w: bias has %d values for %d outputs", ErrShape, len(bias), w.Rows)
	}
	if err := checkFinite("bias", bias, max(len(bias), 1)); err != nil {
		return nil, err
	}
	l := &QuantLinear{w: w, bias: bias}
	if act != nil {
		if err := act.validate(w.Cols); err != nil {
			return nil, err
		}
		a := *act
		l.act = &a
	}
	return l, nil
}

// QuantizeLinear is the RTN shortcut: QuantizeWeight(w [out×in], wspec) then
// NewQuantLinear.
func QuantizeLinear(w, bias []float32, out, in int, wspec Spec, act *ActQuant) (*QuantLinear, error) {
	qt, err := QuantizeWeight(w, out, in, wspec)
	if err != nil {
		return nil, err
	}
	return NewQuantLinear(qt, bias, act)
}

func (l *QuantLinear) In() int  { return l.w.Cols }
func (l *QuantLinear) Out() int { return l.w.Rows }

// Weight returns the quantized weight (shared; do not modify).
func (l *QuantLinear) Weight() *QTensor { return l.w }

// Bias returns the bias, or nil.
func (l *QuantLinear) Bias() []float32 { return l.bias }

// ActSpec returns a copy of the activation quantization, or nil for
// weight-only quantization.
func (l *QuantLinear) ActSpec() *ActQuant {
	if l.act == nil {
		return nil
	}
	a := *l.act
	return &a
}

// DequantizedWeight returns the cached FP32 Ŵ [out×in] (shared; read-only).
func (l *QuantLinear) DequantizedWeight() []float32 {
	if p := l.wdq.Load(); p != nil {
		return *p
	}
	w := l.w.Dequantize()
	l.wdq.Store(&w) // concurrent first calls may both dequantize; the results are identical
	return w
}

// ReleaseCache drops the FP32 copy of the weight that the reference Forward
// multiplies with; the next Forward rebuilds it. Layer-by-layer
// quantization releases the blocks it has finished, so only the packed
// codes of the quantized part of a model stay in memory.
func (l *QuantLinear) ReleaseCache() { l.wdq.Store(nil) }

// Bytes is the storage of the layer: the quantized weight plus an FP32 bias
// (the cached FP32 copy is a reference-path artefact and not counted).
func (l *QuantLinear) Bytes() int { return l.w.Bytes() + 4*len(l.bias) }

// Forward computes y[rows×Out] = Q(x)[rows×In]·Ŵᵀ + b. Activation
// quantization uses the same rules as FakeQuantize, except that a NaN or Inf
// in x is passed through unquantized (a forward pass cannot return an error,
// and a diverging model should stay visibly NaN rather than be clipped).
func (l *QuantLinear) Forward(y, x []float32, rows int) {
	in, out := l.w.Cols, l.w.Rows
	a := x
	if l.act != nil && rows > 0 {
		n := rows * in
		bp, _ := l.bufs.Get().(*[]float32)
		if bp == nil || cap(*bp) < n {
			b := make([]float32, n)
			bp = &b
		}
		a = (*bp)[:n]
		var params []Params
		if l.act.Static {
			params = []Params{l.act.Params}
		}
		fakeQuantize(a, x[:n], rows, in, l.act.Spec, params)
		defer l.bufs.Put(bp)
	}
	kernels.Sgemm(true, rows, out, in, a, in, l.DequantizedWeight(), in, y, out, false)
	nn.AddBias(y, l.bias, rows)
}

func (l *QuantLinear) String() string {
	return fmt.Sprintf("QuantLinear(%d→%d, W %v, act %v)", l.w.Cols, l.w.Rows, l.w.Spec, l.act)
}

// Row writes the dequantized weight row id to dst (len In()): the
// embedding of token id when this layer is a head tied to the embedding.
func (l *QuantLinear) Row(dst []float32, id int) { l.w.DequantizeRow(dst, id) }
