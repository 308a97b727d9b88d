package methods

import (
	"fmt"
	"math"
	"sync"

	"llmq/kernels"
	"llmq/nn"
	"llmq/quant"
)

// LLMInt8 is LLM.int8() (Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix
// Multiplication for Transformers at Scale"): W8A8 with a mixed-precision
// decomposition that keeps the few outlier feature dimensions in floating
// point.
//
// Emergent outliers. From about 6.7B parameters on, transformers develop
// activation outliers — magnitudes up to 20× the rest (60 and more against
// a typical |x| < 3) — that are systematic: they sit in a handful of hidden
// dimensions (≤ 7 per layer in the paper's models), the same dimensions for
// most tokens and in almost every layer. They carry the model: zeroing them
// collapses top-1 accuracy and raises perplexity by 600–1000 %. Any
// per-token or per-tensor int8 scale is then set by the outlier, and every
// other feature of the token keeps only a few of the 255 levels.
//
// Vector-wise quantization. Each row of X and each output row of W gets its
// own absmax scale, s_x,t = max_j |x_tj| / 127 and s_w,i = max_j |W_ij| / 127,
// both of which factor out of the product, so the int8 GEMM accumulates
// exactly in int32 and is dequantized by an outer product:
//
//	Y_ti ≈ s_x,t · s_w,i · Σ_j q(x)_tj · q(W)_ij
//
// Mixed-precision decomposition. With O = { j : |x_tj| ≥ α for some token t
// of the batch } (α = 6 by default, found dynamically per batch as
// bitsandbytes does),
//
//	X·Wᵀ ≈ Σ_{j∈O} X_{·j}·W_{·j}ᵀ  (FP16 in the paper, FP32 here)
//	     + s_x ⊗ s_w · Σ_{j∉O} q(X)_{·j}·q(W)_{·j}ᵀ   (int8, int32 accumulation)
//
// with s_x taken over the non-outlier columns only. Typically ≪ 1 % of the
// columns are in O, so more than 99.9 % of the multiplications stay int8,
// and the outliers no longer coarsen the scales of the rest.
//
// Every selected linear becomes an Int8Linear. It needs no calibration:
// weight scales are computed from W, activation scales and O at run time.
// Threshold 0 means the paper's 6.0; +Inf disables the decomposition (plain
// vector-wise int8: per-channel weights, dynamic per-token activations).
type LLMInt8 struct {
	Threshold float64
	Select    *Selector
	// DequantOutliers takes the outlier columns of W from the int8 weights
	// (s_w,i·q(W)_ij, bitsandbytes' inference mode) instead of keeping an
	// FP32 copy of W: 1 byte per weight instead of 5, at the cost of the
	// weights' rounding error on the outlier columns.
	DequantOutliers bool
	// Layers records every layer created, by checkpoint name (for reports:
	// see Int8Linear.Stats and Summary).
	Layers map[string]*Int8Linear
}

func (m *LLMInt8) Name() string           { return "llm.int8" }
func (m *LLMInt8) NeedsCalibration() bool { return false }

// threshold is Threshold with its default.
func (m *LLMInt8) threshold() (float64, error) {
	t := m.Threshold
	if t == 0 {
		t = 6
	}
	if !(t > 0) {
		return 0, fmt.Errorf("llm.int8: outlier threshold %v must be positive (+Inf disables the decomposition)", m.Threshold)
	}
	return t, nil
}

func (m *LLMInt8) ApplyLayer(l *Layer) error {
	thr, err := m.threshold()
	if err != nil {
		return err
	}
	if m.Layers == nil {
		m.Layers = map[string]*Int8Linear{}
	}
	for _, role := range m.Select.Roles(l) {
		d, err := dense(l, role)
		if err != nil {
			return err
		}
		q, err := NewInt8Linear(d.W, d.B, d.Out(), d.In(), thr, !m.DequantOutliers)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(role), err)
		}
		*l.Block.Linear(role) = q
		m.Layers[l.Name(role)] = q
	}
	return nil
}

// Summary adds up the outlier statistics of every layer (MaxOutlierColumns
// is the largest of any layer).
func (m *LLMInt8) Summary() Int8Stats {
	var s Int8Stats
	for _, l := range m.Layers {
		ls := l.Stats()
		s.Forwards += ls.Forwards
		s.Rows += ls.Rows
		s.OutlierColumns += ls.OutlierColumns
		s.DistinctColumns += ls.DistinctColumns
		s.MaxOutlierColumns = max(s.MaxOutlierColumns, ls.MaxOutlierColumns)
	}
	return s
}

var (
	int8Weights = quant.MustParseSpec("int8-sym-channel")
	int8Tokens  = quant.MustParseSpec("int8-sym-token")
)

// Int8Stats count the outlier columns an Int8Linear has seen.
type Int8Stats struct {
	Forwards          int64 // Forward calls
	Rows              int64 // tokens multiplied
	OutlierColumns    int64 // Σ over calls of |O|, the columns sent to the FP path
	MaxOutlierColumns int   // largest |O| of one call
	DistinctColumns   int   // input columns that were outliers at least once
}

// MeanOutlierColumns is the average |O| per call.
func (s Int8Stats) MeanOutlierColumns() float64 {
	if s.Forwards == 0 {
		return 0
	}
	return float64(s.OutlierColumns) / float64(s.Forwards)
}

// Int8Linear is an LLM.int8() linear layer (see LLMInt8): y = x·Wᵀ + b with
// W stored as int8 codes and one FP32 scale per output row, the input
// quantized per token at run time, outlier input columns multiplied in
// FP32.
//
// Memory: the int8 codes (1 byte per weight), the row scales and the bias;
// plus, unless built with keepFP false, an FP32 copy of W (4 bytes per
// weight) from which the outlier columns are read — the paper keeps the
// FP16 weights for them. The int8 product runs on the INT8 GEMM kernels
// (kernels.PackedS8, VNNI or AVX2, exact int32 accumulation) over the codes
// packed once at construction; Int8MatMul is the int32 reference it equals.
//
// Forward is safe for concurrent use.
type Int8Linear struct {
	in, out   int
	threshold float32
	codes     []int8            // q(W) [out×in]
	scales    []float32         // s_w per output row
	packed    *kernels.PackedS8 // the codes in the INT8 GEMM's layout
	w         []float32         // FP32 W for the outlier columns (nil: dequantize the codes)
	bias      []float32

	mu      sync.Mutex
	stats   Int8Stats
	colHits []int64 // per input column: calls in which it was an outlier
	bufs    sync.Pool
}

var _ nn.Linear = (*Int8Linear)(nil)

// NewInt8Linear quantizes w [out×in] (copied, as is the bias b, which may be
// nil) to int8 per output channel. Input columns with |x| ≥ threshold in a
// batch go through the FP path (+Inf: none, except non-finite values, which
// are always routed there so that they propagate). keepFP keeps an FP32
// copy of w for those columns; otherwise they use the dequantized int8
// weights.
func NewInt8Linear(w, b []float32, out, in int, threshold float64, keepFP bool) (*Int8Linear, error) {
	if !(threshold > 0) {
		return nil, fmt.Errorf("outlier threshold %v must be positive", threshold)
	}
	if b != nil && len(b) != out {
		return nil, fmt.Errorf("%w: bias has %d values for %d outputs", quant.ErrShape, len(b), out)
	}
	qt, err := quant.QuantizeWeight(w, out, in, int8Weights)
	if err != nil {
		return nil, err
	}
	l := &Int8Linear{in: in, out: out, threshold: float32(threshold), colHits: make([]int64, in)}
	l.codes = make([]int8, out*in)
	for i, c := range qt.Codes() {
		l.codes[i] = int8(c)
	}
	l.packed = kernels.PackS8(l.codes, out, in)
	l.scales = append([]float32(nil), qt.Scales...)
	if keepFP {
		l.w = append([]float32(nil), w...)
	}
	if b != nil {
		l.bias = append([]float32(nil), b...)
	}
	return l, nil
}

func (l *Int8Linear) In() int  { return l.in }
func (l *Int8Linear) Out() int { return l.out }

// Threshold is the outlier threshold α.
func (l *Int8Linear) Threshold() float64 { return float64(l.threshold) }

// Weight returns the int8 codes [out×in] and the per-row scales (shared;
// read-only).
func (l *Int8Linear) Weight() (codes []int8, scales []float32) { return l.codes, l.scales }

// Bias returns the bias, or nil.
func (l *Int8Linear) Bias() []float32 { return l.bias }

// FPWeight is the FP32 copy of W kept for the outlier columns (nil when
// the layer dequantizes them from the int8 codes).
func (l *Int8Linear) FPWeight() []float32 { return l.w }

// Bytes is the storage of the layer: int8 codes, FP32 row scales and bias,
// and the FP32 copy of W when kept (the float32 code cache is a
// reference-path artefact and not counted).
func (l *Int8Linear) Bytes() int {
	return len(l.codes) + 4*len(l.scales) + 4*len(l.bias) + 4*len(l.w)
}

func (l *Int8Linear) String() string {
	fp := "FP32 outlier weights"
	if l.w == nil {
		fp = "int8 outlier weights"
	}
	return fmt.Sprintf("Int8Linear(%d→%d, threshold %g, %s)", l.in, l.out, l.threshold, fp)
}

// Stats returns the outlier counters accumulated since construction or the
// last ResetStats.
func (l *Int8Linear) Stats() Int8Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	for _, h := range l.colHits {
		if h > 0 {
			s.DistinctColumns++
		}
	}
	return s
}

// OutlierColumnCounts returns, per input column, the number of Forward calls
// in which it was an outlier column.
func (l *Int8Linear) OutlierColumnCounts() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.colHits...)
}

// ResetStats zeroes the counters.
func (l *Int8Linear) ResetStats() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats = Int8Stats{}
	clear(l.colHits)
}

// int8Scratch is one Forward call's working memory.
type int8Scratch struct {
	isOut  []bool
	cols   []int
	qx     []int8 // q(X) [rows×in], outlier columns zeroed
	sx     []float32
	acc    []int32 // exact Σ q(x)·q(w) [rows×out]
	xo, wo []float32
}

func int8Grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// Forward computes y[rows×Out] = x[rows×In]·Wᵀ + b by the decomposition.
func (l *Int8Linear) Forward(y, x []float32, rows int) {
	if rows <= 0 {
		return
	}
	in, out := l.in, l.out
	x, y = x[:rows*in], y[:rows*out]
	s, _ := l.bufs.Get().(*int8Scratch)
	if s == nil {
		s = &int8Scratch{isOut: make([]bool, in)}
	}
	defer l.bufs.Put(s)

	// Outlier columns: any |x_tj| ≥ α in the batch (non-finite: always).
	clear(s.isOut)
	thr := l.threshold
	for t := 0; t < rows; t++ {
		for j, v := range x[t*in : (t+1)*in] {
			a := float32(math.Abs(float64(v)))
			if a >= thr || a != a {
				s.isOut[j] = true
			}
		}
	}
	s.cols = s.cols[:0]
	for j, o := range s.isOut {
		if o {
			s.cols = append(s.cols, j)
		}
	}

	// Per-token absmax quantization of the other columns.
	if cap(s.qx) < rows*in {
		s.qx = make([]int8, rows*in)
	}
	s.qx = s.qx[:rows*in]
	s.sx = int8Grow(s.sx, rows)
	quantRows := func(t0, t1 int) {
		q := int8Tokens.Quantizer(quant.Params{})
		for t := t0; t < t1; t++ {
			xr, qr := x[t*in:(t+1)*in], s.qx[t*in:(t+1)*in]
			var amax float32
			for j, v := range xr {
				if !s.isOut[j] {
					amax = max(amax, float32(math.Abs(float64(v))))
				}
			}
			p := int8Tokens.ParamsAbsMax(amax)
			s.sx[t] = p.Scale
			for j, v := range xr {
				if s.isOut[j] {
					qr[j] = 0
				} else {
					qr[j] = int8(quant.QuantizeInt(v, p.Scale, 0, q.QMin, q.QMax))
				}
			}
		}
	}
	if rows*in >= 1<<15 {
		kernels.ParallelFor(rows, quantRows)
	} else {
		quantRows(0, rows)
	}

	// Exact integer product, then dequantization by s_x,t·s_w,i.
	if cap(s.acc) < rows*out {
		s.acc = make([]int32, rows*out)
	}
	s.acc = s.acc[:rows*out]
	l.packed.MatMul(s.acc, s.qx, rows)
	for t := 0; t < rows; t++ {
		sx := float64(s.sx[t])
		yr, ar := y[t*out:(t+1)*out], s.acc[t*out:(t+1)*out]
		for i, a := range ar {
			yr[i] = float32(float64(a) * sx * float64(l.scales[i]))
		}
	}

	// FP path for the outlier columns.
	if n := len(s.cols); n > 0 {
		s.xo = int8Grow(s.xo, rows*n)
		s.wo = int8Grow(s.wo, out*n)
		for t := 0; t < rows; t++ {
			for k, j := range s.cols {
				s.xo[t*n+k] = x[t*in+j]
			}
		}
		for i := 0; i < out; i++ {
			for k, j := range s.cols {
				if l.w != nil {
					s.wo[i*n+k] = l.w[i*in+j]
				} else {
					s.wo[i*n+k] = l.scales[i] * float32(l.codes[i*in+j])
				}
			}
		}
		kernels.Sgemm(true, rows, out, n, s.xo, n, s.wo, n, y, out, true)
	}
	nn.AddBias(y, l.bias, rows)

	l.mu.Lock()
	l.stats.Forwards++
	l.stats.Rows += int64(rows)
	l.stats.OutlierColumns += int64(len(s.cols))
	l.stats.MaxOutlierColumns = max(l.stats.MaxOutlierColumns, len(s.cols))
	for _, j := range s.cols {
		l.colHits[j]++
	}
	l.mu.Unlock()
}

// Int8MatMul computes c[m×n] = a[m×k]·b[n×k]ᵀ for int8 matrices with exact
// int32 accumulation, the arithmetic of an int8 tensor-core GEMM (IMMA,
// VNNI). |c| ≤ 127²·k (128²·k with −128 codes), so k up to 131 071 cannot
// overflow. The work is split over the rows of b with kernels.ParallelFor.
func Int8MatMul(c []int32, a, b []int8, m, n, k int) {
	if m < 0 || n < 0 || k < 0 || len(a) < m*k || len(b) < n*k || len(c) < m*n {
		panic(fmt.Sprintf("methods.Int8MatMul: bad shapes m=%d n=%d k=%d (len a=%d b=%d c=%d)", m, n, k, len(a), len(b), len(c)))
	}
	work := func(j0, j1 int) {
		for i := 0; i < m; i++ {
			ar := a[i*k : (i+1)*k]
			for j := j0; j < j1; j++ {
				c[i*n+j] = dotInt8(ar, b[j*k:(j+1)*k])
			}
		}
	}
	if m*n*k < 1<<16 {
		work(0, n)
		return
	}
	kernels.ParallelFor(n, work)
}

// dotInt8 is Σ a_i·b_i in int32, four independent accumulators.
func dotInt8(a, b []int8) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
		s2 += int32(a[i+2]) * int32(b[i+2])
		s3 += int32(a[i+3]) * int32(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return s0 + s1 + s2 + s3
}
