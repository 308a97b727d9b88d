package methods

import (
	"fmt"
	"math"
	"sync"

	"llmq/kernels"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
)

// LoRC, low-rank compensation (Yao et al. 2023, "ZeroQuant-V2: Exploring
// Post-training Quantization in LLMs from Comprehensive Study to Low Rank
// Compensation", §5).
//
// Whatever the quantizer, a quantized weight leaves an error matrix
//
//	E = W − Ŵ   [out×in].
//
// LoRC stores a rank-r approximation of it next to the quantized weight.
// With the singular value decomposition E = U·Σ·Vᵀ, the best rank-r
// approximation in Frobenius (and spectral) norm is the truncation to the r
// largest singular values (Eckart–Young), ‖E − E_r‖²_F = Σ_{i>r} σ_i²; the
// paper splits it symmetrically into two thin factors
//
//	A = U_r·Σ_r^½   [out×r],   B = Σ_r^½·V_rᵀ   [r×in],   E_r = A·B,
//
// so that both factors have the same scale (which suits quantizing them).
// The layer then computes
//
//	y = Q(x)·Ŵᵀ + (x·Bᵀ)·Aᵀ + b,
//
// costing r·(in + out) extra weights — for r = 8 on a 4096×4096 layer
// 0.4% of its parameters — and two thin GEMMs. The factors can themselves be
// quantized (Bits), symmetric per-channel (a scale per row of A and of B),
// the values used at run time being the dequantized ones; at 8 bits the
// compensation is practically unchanged (TestLoRCReducesError).
//
// The correction's input. The paper adds E_r to the weight, W̃ = Ŵ + A·B.
// For weight-only schemes that is exactly what LowRankLinear computes. With
// quantized activations it is not: the base layer multiplies Q(x), and the
// correction branch here receives the layer's input x unquantized — it is a
// separate small product that a deployment runs in FP16 or on INT8
// weights with high-precision activations, the same way LoRA-style adapters
// run. The difference from folding E_r into the weight is (x − Q(x))·E_rᵀ,
// a product of two small errors.
//
// Mechanics. LoRC needs the FP weight, which a QuantLinear no longer has, so
// it wraps the quantizing stage: ApplyLayer remembers the FP32 (*nn.Dense)
// layer in each selected slot, runs Base.ApplyLayer, and for every slot
// that became a *quant.QuantLinear computes E from the Dense layer's W as
// Base left it — so a base that rescales W in place before quantizing (AWQ-
// or SmoothQuant-style folding) is compensated against the weight it really
// quantized — and the QuantLinear's dequantized weight. The slot is then
// replaced by a LowRankLinear around the QuantLinear. In a recipe, list
// LoRC{Base: quantizer} where the quantizer would be.
//
// The truncated SVD (truncatedSVD) is Lanczos with full
// reorthogonalization on the smaller Gram matrix, in float64.
type LoRC struct {
	// Rank r of the correction (> 0). It is capped at min(out, in).
	Rank int
	// Bits quantizes the factors: 0 keeps them FP32, 2…8 stores them as
	// symmetric per-channel integers (8 is the usual choice).
	Bits int
	// Base is the quantizing stage whose error is compensated.
	Base Method
	// Select limits compensation to some linears. nil: every linear Base
	// quantized in the block. With a selector, a selected linear that Base
	// did not turn into a *quant.QuantLinear is an error.
	Select *Selector
}

func (c *LoRC) Name() string {
	if c.Base == nil {
		return "lorc"
	}
	return "lorc+" + c.Base.Name()
}

func (c *LoRC) NeedsCalibration() bool { return c.Base != nil && c.Base.NeedsCalibration() }

func (c *LoRC) ApplyLayer(l *Layer) error {
	if c.Base == nil {
		return fmt.Errorf("LoRC needs a base quantization method")
	}
	if c.Rank < 1 {
		return fmt.Errorf("LoRC rank %d must be positive", c.Rank)
	}
	if c.Bits != 0 && (c.Bits < 2 || c.Bits > 8) {
		return fmt.Errorf("LoRC factor bits %d: want 0 (FP32) or 2…8", c.Bits)
	}
	type slot struct {
		role string
		d    *nn.Dense
	}
	var fp []slot
	for _, nl := range l.Block.Linears() {
		name := l.Name(nl.Role)
		if c.Select != nil && !c.Select.Selected(name) {
			continue
		}
		d, ok := (*nl.Linear).(*nn.Dense)
		if !ok {
			if c.Select != nil {
				return fmt.Errorf("%s is already %T before %s: LoRC needs the FP weight, so it must wrap the quantizer (LoRC{Base: …}) rather than follow it", name, *nl.Linear, c.Base.Name())
			}
			continue
		}
		fp = append(fp, slot{nl.Role, d})
	}
	if err := c.Base.ApplyLayer(l); err != nil {
		return err
	}
	for _, s := range fp {
		name := l.Name(s.role)
		ptr := l.Block.Linear(s.role)
		ql, ok := (*ptr).(*quant.QuantLinear)
		if !ok {
			if c.Select != nil {
				return fmt.Errorf("%s is %T after %s, not a quantized linear: LoRC compensates quantization error only", name, *ptr, c.Base.Name())
			}
			continue
		}
		lr, err := NewLowRankCompensation(s.d.W, ql, c.Rank, c.Bits)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*ptr = lr
	}
	return nil
}

// ApplyModel runs the base's model-level part, if it has one.
func (c *LoRC) ApplyModel(m *model.Model) error {
	if mm, ok := c.Base.(ModelMethod); ok {
		return mm.ApplyModel(m)
	}
	return nil
}

// LowRankLinear is a linear layer plus a low-rank correction:
// y = Base(x) + (x·Bᵀ)·Aᵀ with A [Out×Rank] and B [Rank×In] row-major. The
// correction reads the same x as Base, before any activation quantization
// Base applies (see LoRC).
type LowRankLinear struct {
	Base nn.Linear
	A, B []float32 // the values used (dequantized when Bits > 0)
	Rank int
	// Bits is the factors' integer width (0: FP32); QA and QB are then the
	// stored factors (symmetric per-channel, rows of A and of B), nil
	// otherwise.
	Bits   int
	QA, QB *quant.QTensor
	bufs   sync.Pool // *[]float32 scratch for x·Bᵀ
}

var _ nn.Linear = (*LowRankLinear)(nil)

// NewLowRankLinear wraps base with the correction A·B (not copied).
func NewLowRankLinear(base nn.Linear, a, b []float32, rank int) (*LowRankLinear, error) {
	if rank < 1 || len(a) != base.Out()*rank || len(b) != rank*base.In() {
		return nil, fmt.Errorf("%w: rank %d factors of %d and %d values for a %d→%d layer", quant.ErrShape, rank, len(a), len(b), base.In(), base.Out())
	}
	for _, f := range [][]float32{a, b} {
		for i, v := range f {
			if v-v != 0 {
				return nil, fmt.Errorf("%w: low-rank factor element %d is %v", quant.ErrNonFinite, i, v)
			}
		}
	}
	return &LowRankLinear{Base: base, A: a, B: b, Rank: rank}, nil
}

// NewLowRankCompensation builds ZeroQuant-V2's LoRC layer for a quantized
// linear q whose FP weight was w [Out×In]: the rank-r truncated SVD of
// E = w − Ŵ split as A = U_r·Σ_r^½, B = Σ_r^½·V_rᵀ, the factors quantized to
// bits (symmetric per-channel integers) unless bits is 0.
func NewLowRankCompensation(w []float32, q *quant.QuantLinear, rank, bits int) (*LowRankLinear, error) {
	out, in := q.Out(), q.In()
	if len(w) != out*in {
		return nil, fmt.Errorf("%w: FP weight has %d values for a %d×%d quantized layer", quant.ErrShape, len(w), out, in)
	}
	wdq := q.DequantizedWeight()
	e := make([]float64, out*in)
	for i, v := range w {
		if v-v != 0 {
			return nil, fmt.Errorf("%w: weight[%d, %d] = %v", quant.ErrNonFinite, i/in, i%in, v)
		}
		e[i] = float64(v) - float64(wdq[i])
	}
	r := min(rank, out, in)
	u, s, v, err := truncatedSVD(e, out, in, r)
	if err != nil {
		return nil, err
	}
	a := make([]float32, out*r)
	b := make([]float32, r*in)
	for k := 0; k < r; k++ {
		h := math.Sqrt(s[k])
		for i := 0; i < out; i++ {
			a[i*r+k] = float32(u[i*r+k] * h)
		}
		for j := 0; j < in; j++ {
			b[k*in+j] = float32(h * v[j*r+k])
		}
	}
	lr, err := NewLowRankLinear(q, a, b, r)
	if err != nil {
		return nil, err
	}
	if bits > 0 {
		spec := quant.Spec{Format: quant.FormatInt, Bits: bits, Symmetric: true, Granularity: quant.PerChannel}
		if lr.QA, err = quant.QuantizeWeight(a, out, r, spec); err != nil {
			return nil, err
		}
		if lr.QB, err = quant.QuantizeWeight(b, r, in, spec); err != nil {
			return nil, err
		}
		lr.A, lr.B, lr.Bits = lr.QA.Dequantize(), lr.QB.Dequantize(), bits
	}
	return lr, nil
}

func (l *LowRankLinear) In() int  { return l.Base.In() }
func (l *LowRankLinear) Out() int { return l.Base.Out() }

// Forward computes y = Base(x) + (x·Bᵀ)·Aᵀ.
func (l *LowRankLinear) Forward(y, x []float32, rows int) {
	l.Base.Forward(y, x, rows)
	if rows == 0 {
		return
	}
	in, out, r := l.In(), l.Out(), l.Rank
	n := rows * r
	bp, _ := l.bufs.Get().(*[]float32)
	if bp == nil || cap(*bp) < n {
		b := make([]float32, n)
		bp = &b
	}
	t := (*bp)[:n]
	kernels.Sgemm(true, rows, r, in, x, in, l.B, in, t, r, false)
	kernels.Sgemm(true, rows, out, r, t, r, l.A, r, y, out, true)
	l.bufs.Put(bp)
}

// Correction returns A·B [Out×In], the compensated part of the weight.
func (l *LowRankLinear) Correction() []float32 {
	in, out := l.In(), l.Out()
	c := make([]float32, out*in)
	kernels.Sgemm(false, out, in, l.Rank, l.A, l.Rank, l.B, in, c, in, false)
	return c
}

// Bytes is the storage of the layer: the base's (when it reports it) plus
// the factors (FP32, or packed codes and scales).
func (l *LowRankLinear) Bytes() int {
	n := 0
	if b, ok := l.Base.(interface{ Bytes() int }); ok {
		n = b.Bytes()
	}
	if l.QA != nil {
		return n + l.QA.Bytes() + l.QB.Bytes()
	}
	return n + 4*(len(l.A)+len(l.B))
}

func (l *LowRankLinear) String() string {
	f := "fp32"
	if l.Bits > 0 {
		f = fmt.Sprintf("int%d", l.Bits)
	}
	return fmt.Sprintf("LowRank(%v + rank %d %s)", l.Base, l.Rank, f)
}
