package quant

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"llmq/kernels"
	"llmq/nn"
)

// FastLinear runs a QuantLinear on the low-bit kernels instead of the
// reference dequantize-then-FP32 path, for the formats the kernels cover:
//
//	W8A8   int8 symmetric per-channel weights, int8 symmetric activations
//	       per token (dynamic) or per tensor (dynamic, or static with a
//	       calibrated scale: SmoothQuant's O2 and O3): y = s_x·s_w·(q_x·q_wᵀ)
//	       with an exact int32 product (SmoothQuant's point: both scales lie
//	       on the outer dimensions, so they factor out of the integer GEMM
//	       into its epilogue)
//	W4A16  int4 weights (symmetric or asymmetric, per group or per channel),
//	       FP32 activations: nibbles are unpacked in registers, so a decode
//	       step reads half a byte per weight instead of four
//	W4A8   the same weights with int8 per-token activations
//
// It computes the reference path's function up to FP32 summation order;
// the one deliberate difference is that a NaN or Inf activation is
// quantized (to 0 or ±127) instead of passed through. It holds the packed
// codes only — no FP32 copy of the weight and no second copy of the codes
// in the plain layout: Quant unpacks one when asked (saving, export).
type FastLinear struct {
	q   *QuantLinear // shape, formats, bias and activation quantizer; weight codes dropped
	s8  *kernels.PackedS8
	q4  *kernels.PackedQ4
	act bool // quantize activations to int8
	// perTensor: one activation scale for all rows of a call, static (the
	// calibrated scale) when static > 0; otherwise one per token.
	perTensor bool
	static    float32
	bufs      sync.Pool // *fastBuf
}

type fastBuf struct {
	qx []int8
	sx []float32
}

var _ nn.Linear = (*FastLinear)(nil)

// Fast returns the kernel-backed twin of l, or nil when no kernel covers
// its formats (it then stays on the reference path).
func Fast(l *QuantLinear) *FastLinear {
	t, a := l.w, l.act
	actS8, perTensor := false, false
	var static float32
	if a != nil {
		switch {
		case !a.Static && a.Spec == MustParseSpec("int8-sym-token"):
		case a.Spec == MustParseSpec("int8-sym-tensor") && (!a.Static || a.Params.Zero == 0 && a.Params.Scale > 0):
			perTensor = true
			if a.Static {
				static = a.Params.Scale
			}
		default:
			return nil
		}
		actS8 = true
	}
	s := t.Spec
	if s.Format != FormatInt || s.Scale != ScaleAny {
		return nil
	}
	// The shell keeps everything but the codes (and, for int4, the
	// parameters, which the packed form holds too).
	shell := &QuantLinear{w: &QTensor{Rows: t.Rows, Cols: t.Cols, Spec: t.Spec}, bias: l.bias, act: l.act}
	f := &FastLinear{q: shell, act: actS8, perTensor: perTensor, static: static}
	switch {
	case s.Bits == 8 && s.Symmetric && s.Granularity == PerChannel && actS8:
		// 8-bit symmetric codes are stored as two's complement bytes,
		// the kernel's int8 layout.
		f.s8 = kernels.PackS8(unsafeInt8s(t.Data), t.Rows, t.Cols)
		shell.w.Scales = t.Scales // the per-channel weight scales the epilogue applies
	case s.Bits == 4 && (s.Granularity == PerGroup || s.Granularity == PerChannel) && !perTensor:
		gs := s.GroupSize
		if s.Granularity == PerChannel {
			gs = t.Cols
		}
		f.q4 = kernels.PackQ4(t.Data, t.Rows, t.Cols, gs, t.Scales, t.Zeros)
	default:
		return nil
	}
	return f
}

// unsafeInt8s views bytes as int8 values (same size and alignment).
func unsafeInt8s(b []byte) []int8 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
}

func (f *FastLinear) In() int  { return f.q.In() }
func (f *FastLinear) Out() int { return f.q.Out() }

// Quant is the layer's quantized form (for saving and reports).
func (f *FastLinear) Quant() *QuantLinear {
	sh := f.q.w
	t := &QTensor{Rows: sh.Rows, Cols: sh.Cols, Spec: sh.Spec, Data: make([]byte, sh.Rows*sh.RowBytes())}
	switch {
	case f.s8 != nil:
		f.s8.Unpack(unsafeInt8s(t.Data))
		t.Scales = append([]float32(nil), sh.Scales...)
	default:
		prows, pcols := sh.Spec.ParamShape(sh.Rows, sh.Cols)
		t.Scales = make([]float32, prows*pcols)
		if sh.Spec.HasZero() {
			t.Zeros = make([]uint8, prows*pcols)
		}
		f.q4.Unpack(t.Data, t.Scales, t.Zeros)
	}
	return &QuantLinear{w: t, bias: f.q.bias, act: f.q.act}
}

// Row writes the dequantized weight row id to dst (len In()): the
// embedding of token id when this layer is a head tied to the embedding.
func (f *FastLinear) Row(dst []float32, id int) {
	in := f.In()
	if f.s8 != nil {
		codes := make([]int8, in)
		f.s8.Row(id, codes)
		s := f.q.w.Scales[id]
		for i, c := range codes {
			dst[i] = s * float32(c)
		}
		return
	}
	f.q4.DequantRow(id, dst[:in])
}

// Bytes is the storage of the packed weights, scales and bias.
func (f *FastLinear) Bytes() int {
	n := 4 * len(f.q.bias)
	if f.s8 != nil {
		return n + f.s8.Bytes() + 4*len(f.q.w.Scales)
	}
	return n + f.q4.Bytes()
}

func (f *FastLinear) String() string {
	kind := "W4A16"
	switch {
	case f.s8 != nil:
		kind = "W8A8"
	case f.act:
		kind = "W4A8"
	}
	return fmt.Sprintf("FastLinear(%s, %d→%d, W %v)", kind, f.In(), f.Out(), f.q.w.Spec)
}

func (f *FastLinear) Forward(y, x []float32, rows int) {
	in, out := f.In(), f.Out()
	if !f.act {
		f.q4.MatMul(y[:rows*out], x[:rows*in], rows)
		nn.AddBias(y, f.q.bias, rows)
		return
	}
	if f.s8 != nil { // W8A8: the shared-input path with a private input
		a := f.PrepareInput(x, rows)
		f.ForwardPrepared(y, a, rows)
		a.Release()
		return
	}
	b, _ := f.bufs.Get().(*fastBuf)
	if b == nil {
		b = &fastBuf{}
	}
	if cap(b.qx) < rows*in {
		b.qx = make([]int8, rows*in)
	}
	if cap(b.sx) < rows {
		b.sx = make([]float32, rows)
	}
	qx, sx := b.qx[:rows*in], b.sx[:rows]
	kernels.QuantizeRowsS8(qx, sx, x, rows, in)
	f.q4.MatMulS8(y[:rows*out], qx, sx, rows) // W4A8
	nn.AddBias(y, f.q.bias, rows)
	f.bufs.Put(b)
}

var _ nn.SharedInput = (*FastLinear)(nil)

// InputFormat names the W8A8 activation quantization — "int8-sym-token",
// "int8-sym-tensor" (dynamic) or "int8-sym-tensor static=<scale>": linears
// reading the same input with the same format share its quantization and
// packing (nn.ForwardShared); "" for the other formats.
func (f *FastLinear) InputFormat() string {
	switch {
	case f.s8 == nil:
		return ""
	case f.static > 0:
		return fmt.Sprintf("int8-sym-tensor static=%x", math.Float32bits(f.static))
	case f.perTensor:
		return "int8-sym-tensor"
	}
	return "int8-sym-token"
}

// s8Acts is a prepared W8A8 input.
type s8Acts struct{ *kernels.ActsS8 }

// PrepareInput quantizes x (per token or per tensor) and packs it for the
// INT8 GEMM (W8A8 only: InputFormat says when).
func (f *FastLinear) PrepareInput(x []float32, rows int) nn.Prepared {
	if f.perTensor {
		return s8Acts{kernels.PrepareActsS8PerTensor(x, rows, f.In(), f.static)}
	}
	return s8Acts{kernels.PrepareActsS8(x, rows, f.In())}
}

// ForwardPrepared is Forward on a prepared input.
func (f *FastLinear) ForwardPrepared(y []float32, in nn.Prepared, rows int) {
	a := in.(s8Acts)
	f.s8.MatMulActs(y[:rows*f.Out()], a.ActsS8, f.q.w.Scales, f.q.bias)
}
