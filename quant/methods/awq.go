package methods

import (
	"fmt"
	"math"

	"llmq/calib"
	"llmq/kernels"
	"llmq/nn"
	"llmq/quant"
)

// AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for LLM
// Compression and Acceleration") is weight-only quantization (W4A16, W3A16)
// that protects the weights that matter by rescaling them before rounding.
//
// Observation: weights are not equally important. Keeping only 0.1–1 % of
// the input channels of each linear in FP16 — the channels whose
// activations have the largest average magnitude, not those with the
// largest weights — recovers most of the perplexity lost to INT3/INT4 RTN.
// Mixed precision is hardware-unfriendly, so AWQ protects the salient
// channels by scaling instead. With group quantization
// Q(w) = Δ·Round(w/Δ), Δ = max|w_group| / 2^(N−1), the error of a product is
//
//	Err(Q(w)·x)        = Δ ·RoundErr(w/Δ)·x
//	Err(Q(w·s)·(x/s))  = Δ'·RoundErr(w·s/Δ')·x·(1/s)
//
// RoundErr is roughly uniform on [0, 0.5] (expectation 0.25) whatever the
// scaling, and scaling up one channel of a group rarely changes the group's
// maximum, so Δ' ≈ Δ: the relative error of the salient channel shrinks by
// about 1/s. Scaling too much raises Δ' and hurts the other channels of the
// group, hence a search. Over a linear Y = X·Wᵀ (X: tokens × channels),
// AWQ minimizes
//
//	L(s) = ‖ (X·diag(s)⁻¹)·Q(W·diag(s))ᵀ − X·Wᵀ ‖²,   s = s_X^α,
//	α*   = argmin_{α ∈ {0, 1/n, …, (n−1)/n}} L(s_X^α)
//
// where s_X is the average magnitude of each input channel over the
// calibration tokens (calib.Stats AbsSum/Tokens) — a one-parameter search
// on activation statistics only, with no back-propagation and no
// reconstruction (unlike GPTQ), which is why AWQ over-fits the calibration
// set so little. As in the reference implementation, s is normalized as
// s / √(max(s)·min(s)) so the weights' range stays centred, and α = 0 (s = 1)
// is plain RTN: the search never does worse than RTN on its objective.
//
// diag(s)⁻¹ is folded into the operation producing X exactly as SmoothQuant
// does (a norm's weight and bias, or the rows of up/v; see Mapping and
// DefaultMappings), so the FP model computes the same function after
// scaling alone; only the quantization of W·diag(s) changes anything. All
// linears of a mapping share s and are searched together (their errors are
// summed). Under grouped-query attention, the o columns of all query heads
// sharing a kv head share that v row's factor (channelGroups), with s_X
// their mean. The loss is measured per linear over Rows kept calibration
// input rows (with the scheme's activation quantization applied to
// X·diag(s)⁻¹ when it has one); the reference measures it after the whole
// attention or MLP module, which costs a block forward pass per grid point.
// Every mapping is searched on the block as collected, then all are folded.
//
// Then, with Clip, AWQ also searches a clipping of the weight range (the
// reference's auto_clip): for every output row and quantization group it
// tries max-value shrink ratios r ∈ {1, 0.95, …, 0.5}, quantizes the group
// with the range clipped to [max(lo, −r·a), min(hi, r·a)] (a = max|w| of the
// group) and keeps the r that minimizes that group's partial output error
// Σ_t (x_t,g · (w_g − Q_r(w_g)))² over the (scaled) kept rows. Like the
// reference, q and k are not clipped: their errors act through
// softmax(QKᵀ), which an output MSE does not measure.
//
// Finally every selected linear becomes a quant.QuantLinear with the
// scheme's weight format and the searched parameters (and the scheme's
// activation quantization, if any; weight-only otherwise). The zero value
// of AWQ does not clip; NewAWQ sets the reference defaults.
type AWQ struct {
	Scheme Scheme // typically W4A16: int4-asym-g128 or int4-sym-g128
	Select *Selector
	// Grid is the number n of scale exponents α = i/n tried (0: 20).
	Grid int
	// Clip also searches per-group clipping ratios (auto_clip).
	Clip bool
	// Mappings to scale; nil means DefaultMappings of each block.
	Mappings []Mapping
	// Chosen records α per block and mapping, keyed "<block> <mapping>".
	Chosen map[string]float64
	// ClipRatio records the mean chosen clipping ratio per linear name.
	ClipRatio map[string]float64
	// TransformOnly applies the searched transforms to the FP32 weights —
	// the scales, and with Clip the clipping (each group clamped to its
	// range, as the reference's apply_clip does) — but leaves the linears
	// unquantized, for composing with another quantizer (AWQ, then GPTQ or
	// RTN, which then find the clipped ranges as the groups' min/max).
	// Scaling alone (Clip false) leaves the FP function unchanged.
	TransformOnly bool
	// Rows bounds the calibration input rows kept for the searches (0:
	// 1024); calib keeps at most 16 evenly spaced rows per sequence.
	Rows int

	// pow2 rounds the chosen factors to powers of two (tests only: the
	// scaling is then exact in floating point, so the FP model must be
	// bit-identical).
	pow2 bool
}

// NewAWQ returns AWQ with the reference defaults: a grid of 20 exponents
// and weight clipping.
func NewAWQ(scheme Scheme) *AWQ { return &AWQ{Scheme: scheme, Grid: 20, Clip: true} }

func (a *AWQ) Name() string           { return "awq" }
func (a *AWQ) NeedsCalibration() bool { return true }

const (
	awqRows     = 1024 // default kept calibration rows
	awqClipRows = 512  // rows used by the clip search (the reference's n_sample_token)
	awqMinScale = 1e-4 // floor on s_X^α before normalization, as the reference clamps
)

// awqClipRatios are the max-value shrink ratios the clip search tries.
var awqClipRatios = []float64{1, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5}

// awqPlan is one mapping's search state.
type awqPlan struct {
	mp     Mapping
	bal    []*nn.Dense // every balance linear (all are scaled)
	loss   []*nn.Dense // the selected ones (their quantization error is the loss)
	groups [][]int     // input channels sharing one factor
	sx     []float64   // mean |x| per group
	st     *calib.Stats
	f      []float64 // chosen factors per group
	alpha  float64
}

func (a *AWQ) ApplyLayer(l *Layer) error {
	if a.Grid < 0 {
		return fmt.Errorf("awq: grid %d must be positive", a.Grid)
	}
	grid := a.Grid
	if grid == 0 {
		grid = 20
	}
	keep := a.Rows
	if keep <= 0 {
		keep = awqRows
	}
	roles := a.Select.Roles(l)
	if len(roles) == 0 {
		return nil
	}
	selected := map[string]bool{}
	for _, role := range roles {
		d, err := dense(l, role)
		if err != nil {
			return err
		}
		if err := a.Scheme.Weights.Validate(d.Out(), d.In()); err != nil {
			return fmt.Errorf("%s: %w", l.Name(role), err)
		}
		selected[role] = true
	}
	stats, err := l.Collect(nil, calib.Options{KeepRows: keep})
	if err != nil {
		return err
	}
	rows := map[*calib.Stats][]float32{} // kept rows, flattened [N×In]
	flat := func(st *calib.Stats) []float32 {
		if x, ok := rows[st]; ok {
			return x
		}
		x := make([]float32, 0, len(st.Rows)*st.In)
		for _, r := range st.Rows {
			x = append(x, r...)
		}
		rows[st] = x
		return x
	}

	mappings := a.Mappings
	if mappings == nil {
		mappings = DefaultMappings(l)
	}
	var plans []*awqPlan
	for _, mp := range mappings {
		p, err := planAWQ(l, mp, stats, selected)
		if err != nil {
			return fmt.Errorf("%s: mapping %v: %w", l.Block.Name, mp, err)
		}
		if p == nil {
			continue
		}
		x := flat(p.st)
		p.alpha, p.f, err = awqSearchScales(x, len(p.st.Rows), p.bal[0].In(), p.loss, p.groups, p.sx, p.st.AbsMax, a.Scheme, grid)
		if err != nil {
			return fmt.Errorf("%s: mapping %v: %w", l.Block.Name, mp, err)
		}
		if a.pow2 {
			for g, v := range p.f {
				p.f[g] = math.Exp2(math.Round(math.Log2(v)))
			}
		}
		plans = append(plans, p)
	}
	// Fold only after every search, so each mapping is searched on the FP
	// block as it was collected (as the reference's auto_scale does): up
	// and v are both producers and balance linears, and their row scaling
	// must not reweight the other mapping's loss.
	if a.Chosen == nil {
		a.Chosen = map[string]float64{}
	}
	scaled := map[*calib.Stats]bool{}
	for _, p := range plans {
		if err := foldInto(l, p.mp.Smooth, p.f, len(p.groups)); err != nil {
			return fmt.Errorf("%s: mapping %v: %w", l.Block.Name, p.mp, err)
		}
		in := p.bal[0].In()
		cs := expand(p.f, p.groups, in)
		for _, d := range p.bal {
			scaleColumns(d.W, d.Out(), in, cs)
		}
		if !scaled[p.st] { // the kept inputs become X·diag(s)⁻¹
			scaled[p.st] = true
			x := flat(p.st)
			for i := range x {
				x[i] /= cs[i%in]
			}
		}
		a.Chosen[l.Block.Name+" "+p.mp.String()] = p.alpha
	}
	var actStats map[string]*calib.Stats
	if !a.TransformOnly {
		if actStats, err = statsFor(l, a.Scheme, roles); err != nil { // static ranges of the scaled inputs
			return err
		}
	}
	if a.ClipRatio == nil {
		a.ClipRatio = map[string]float64{}
	}
	spec := a.Scheme.Weights
	for _, role := range roles {
		d, err := dense(l, role)
		if err != nil {
			return err
		}
		out, in := d.Out(), d.In()
		var params []quant.Params
		st := stats[role]
		if a.Clip && role != "q" && role != "k" && spec.Granularity != quant.PerTensor && st != nil && len(st.Rows) > 0 {
			rlo, rhi, ratio, err := awqClipRanges(d.W, out, in, flat(st), len(st.Rows), spec)
			if err != nil {
				return fmt.Errorf("%s: %w", l.Name(role), err)
			}
			a.ClipRatio[l.Name(role)] = ratio
			if a.TransformOnly {
				awqClamp(d.W, out, in, rlo, rhi)
				continue
			}
			params = awqRangeParams(spec, rlo, rhi, out)
		} else {
			if a.TransformOnly {
				continue
			}
			if params, err = quant.ComputeParams(d.W, out, in, spec); err != nil {
				return fmt.Errorf("%s: %w", l.Name(role), err)
			}
		}
		qt, err := quant.QuantizeWithParams(d.W, out, in, spec, params)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(role), err)
		}
		act, err := a.Scheme.ActQuant(actStats[role])
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(role), err)
		}
		q, err := quant.NewQuantLinear(qt, d.B, act)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(role), err)
		}
		*l.Block.Linear(role) = q
	}
	return nil
}

// planAWQ gathers a mapping's linears and activation magnitudes; it returns
// nil when none of its balance linears is selected (nothing to protect).
func planAWQ(l *Layer, mp Mapping, stats map[string]*calib.Stats, selected map[string]bool) (*awqPlan, error) {
	if len(mp.Balance) == 0 {
		return nil, fmt.Errorf("no balance linears")
	}
	used := false
	for _, role := range mp.Balance {
		used = used || selected[role]
	}
	if !used {
		return nil, nil
	}
	switch mp.Smooth {
	case "norm1", "norm2":
		if l.Block.PostNorm {
			return nil, fmt.Errorf("post-norm blocks read the residual stream directly; there is no norm to fold scales into")
		}
	default:
		if _, err := dense(l, mp.Smooth); err != nil {
			return nil, err
		}
	}
	p := &awqPlan{mp: mp}
	for _, role := range mp.Balance {
		d, err := dense(l, role)
		if err != nil {
			return nil, err
		}
		st := stats[role]
		switch {
		case st == nil:
			return nil, fmt.Errorf("no calibration statistics for %q", role)
		case p.st == nil:
			p.st = st
		case st != p.st:
			return nil, fmt.Errorf("balance linears must read the same input (%q does not)", role)
		}
		p.bal = append(p.bal, d)
		if selected[role] {
			p.loss = append(p.loss, d)
		}
	}
	if p.st.Tokens == 0 || len(p.st.Rows) == 0 {
		return nil, fmt.Errorf("no calibration tokens")
	}
	p.groups = channelGroups(l, mp, p.bal[0].In())
	p.sx = make([]float64, len(p.groups))
	for g, chans := range p.groups {
		for _, j := range chans {
			p.sx[g] += p.st.AbsSum[j] / float64(p.st.Tokens)
		}
		p.sx[g] /= float64(len(chans))
	}
	return p, nil
}

// awqFactors is s = s_X^α (floored at 1e-4), normalized by √(max·min).
func awqFactors(sx []float64, alpha float64) []float64 {
	f := make([]float64, len(sx))
	lo, hi := math.Inf(1), 0.0
	for g, v := range sx {
		f[g] = math.Max(math.Pow(v, alpha), awqMinScale)
		lo, hi = math.Min(lo, f[g]), math.Max(hi, f[g])
	}
	norm := math.Sqrt(lo * hi)
	for g := range f {
		f[g] /= norm
	}
	return f
}

// awqSearchScales returns the α (and its factors) minimizing
// Σ_linears ‖X·Wᵀ − Q_a(X·diag(s)⁻¹)·Q(W·diag(s))ᵀ‖² over the kept rows x
// [n×in] (Q_a: the scheme's activation quantization, identity for
// weight-only; absMax gives static ranges). groups share factors; sx are
// the groups' mean magnitudes.
func awqSearchScales(x []float32, n, in int, lins []*nn.Dense, groups [][]int, sx []float64, absMax []float32, scheme Scheme, grid int) (float64, []float64, error) {
	refs := make([][]float32, len(lins))
	maxOut := 0
	for i, d := range lins {
		refs[i] = make([]float32, n*d.Out())
		kernels.Sgemm(true, n, d.Out(), in, x, in, d.W, in, refs[i], d.Out(), false)
		maxOut = max(maxOut, d.Out())
	}
	xs := make([]float32, n*in)
	ws := make([]float32, maxOut*in)
	y := make([]float32, n*maxOut)
	bestAlpha, bestF, bestErr := 0.0, []float64(nil), math.Inf(1)
	for i := 0; i < grid; i++ {
		alpha := float64(i) / float64(grid)
		f := awqFactors(sx, alpha)
		cs := expand(f, groups, in)
		for t := 0; t < n; t++ {
			for j := 0; j < in; j++ {
				xs[t*in+j] = x[t*in+j] / cs[j]
			}
		}
		if err := awqFakeActs(xs, n, in, scheme, absMax, cs); err != nil {
			return 0, nil, err
		}
		var total float64
		for k, d := range lins {
			out := d.Out()
			w := ws[:out*in]
			for r := 0; r < out; r++ {
				for j := 0; j < in; j++ {
					w[r*in+j] = d.W[r*in+j] * cs[j]
				}
			}
			qt, err := quant.QuantizeWeight(w, out, in, scheme.Weights)
			if err != nil {
				return 0, nil, err
			}
			qt.DequantizeInto(w)
			yk := y[:n*out]
			kernels.Sgemm(true, n, out, in, xs, in, w, in, yk, out, false)
			total += awqSqDiff(yk, refs[k])
		}
		if total < bestErr {
			bestAlpha, bestF, bestErr = alpha, f, total
		}
	}
	if bestF == nil { // every loss was NaN: fall back to RTN
		bestF = awqFactors(sx, 0)
	}
	return bestAlpha, bestF, nil
}

// awqFakeActs applies the scheme's activation quantization to the scaled
// rows xs (in place): dynamic from the rows themselves, static from the
// calibrated per-channel maxima divided by the factors cs.
func awqFakeActs(xs []float32, n, in int, scheme Scheme, absMax, cs []float32) error {
	if scheme.Acts == nil {
		return nil
	}
	if !scheme.StaticActs {
		return quant.FakeQuantizeInto(xs, xs, n, in, *scheme.Acts)
	}
	var m float32
	for j, v := range absMax {
		m = max(m, v/cs[j])
	}
	p := scheme.Acts.ParamsMinMax(-m, m)
	return quant.FakeQuantizeWithParams(xs, xs, n, in, *scheme.Acts, []quant.Params{p})
}

func awqSqDiff(a, b []float32) float64 {
	var s float64
	for i, v := range a {
		e := float64(v - b[i])
		s += e * e
	}
	return s
}

// awqClipRanges searches the clipping of w [out×in] under spec: for each
// (row, group) it returns the clipped range [lo, hi] (Spec.ParamShape
// layout) of the ratio r of awqClipRatios minimizing the group's partial
// output error Σ_t (x_t,g·(Q_r(w_g) − w_g))² over the rows x [n×in] (at
// most awqClipRows of them, evenly spaced), with Q_r the quantizer of the
// range [max(lo, −r·a), min(hi, r·a)], a = max|w_g|; and the mean chosen
// ratio. Ratio 1 is the RTN range, so no group does worse than RTN on its
// objective.
func awqClipRanges(w []float32, out, in int, x []float32, n int, spec quant.Spec) (rlo, rhi []float32, meanRatio float64, err error) {
	if err := spec.Validate(out, in); err != nil {
		return nil, nil, 0, err
	}
	if len(w) != out*in || len(x) < n*in {
		return nil, nil, 0, fmt.Errorf("%w: weight has %d values for %d×%d, input %d for %d×%d", quant.ErrShape, len(w), out, in, len(x), n, in)
	}
	for _, v := range w {
		if v-v != 0 {
			return nil, nil, 0, fmt.Errorf("%w: weight holds %v", quant.ErrNonFinite, v)
		}
	}
	if n > awqClipRows {
		sub := make([]float32, 0, awqClipRows*in)
		for i := 0; i < awqClipRows; i++ {
			t := i * n / awqClipRows
			sub = append(sub, x[t*in:(t+1)*in]...)
		}
		x, n = sub, awqClipRows
	}
	gc := spec.GroupCols(in)
	ng := in / gc
	rlo, rhi = make([]float32, out*ng), make([]float32, out*ng)
	lo, hi := make([]float32, out), make([]float32, out)
	clo, chi := make([]float32, out), make([]float32, out) // candidate ranges
	best := make([]float64, out)
	bestErr := make([]float64, out)
	errs := make([]float64, out)
	dw := make([]float32, out*gc)
	y := make([]float32, n*out)
	var ratioSum float64
	for g := 0; g < ng; g++ {
		c0 := g * gc
		for r := 0; r < out; r++ {
			lo[r], hi[r] = quant.MinMax(w[r*in+c0 : r*in+c0+gc])
			rlo[r*ng+g], rhi[r*ng+g] = lo[r], hi[r]
			best[r], bestErr[r] = 1, math.Inf(1)
		}
		for _, ratio := range awqClipRatios {
			kernels.ParallelFor(out, func(r0, r1 int) {
				for r := r0; r < r1; r++ {
					m := float32(ratio) * max(-lo[r], hi[r])
					clo[r], chi[r] = max(lo[r], -m), min(hi[r], m)
					q := spec.Quantizer(spec.ParamsMinMax(clo[r], chi[r]))
					src, d := w[r*in+c0:r*in+c0+gc], dw[r*gc:(r+1)*gc]
					q.FakeSlice(d, src)
					for j, v := range src {
						d[j] -= v
					}
				}
			})
			// y[t, r] = x_t,g · (Q(w_r,g) − w_r,g): the group's output error.
			kernels.Sgemm(true, n, out, gc, x[c0:], in, dw, gc, y, out, false)
			clear(errs)
			for t := 0; t < n; t++ {
				for r, v := range y[t*out : (t+1)*out] {
					errs[r] += float64(v) * float64(v)
				}
			}
			for r, e := range errs {
				if e < bestErr[r] { // NaN never wins: the RTN range stays
					bestErr[r], best[r] = e, ratio
					rlo[r*ng+g], rhi[r*ng+g] = clo[r], chi[r]
				}
			}
		}
		for _, b := range best {
			ratioSum += b
		}
	}
	return rlo, rhi, ratioSum / float64(out*ng), nil
}

// awqRangeParams turns per-group ranges into the spec's parameters
// (including its row-level scale constraint).
func awqRangeParams(spec quant.Spec, rlo, rhi []float32, out int) []quant.Params {
	params := make([]quant.Params, len(rlo))
	for i := range params {
		params[i] = spec.ParamsMinMax(rlo[i], rhi[i])
	}
	ng := len(params) / out
	for r := 0; r < out; r++ {
		spec.ConstrainRow(params[r*ng : (r+1)*ng])
	}
	return params
}

// awqClamp clamps each group of w [out×in] to its range (the reference's
// apply_clip), for TransformOnly: a later RTN or GPTQ then finds exactly
// these ranges as the groups' min/max.
func awqClamp(w []float32, out, in int, rlo, rhi []float32) {
	ng := len(rlo) / out
	gc := in / ng
	for r := 0; r < out; r++ {
		for j := 0; j < in; j++ {
			k := r*ng + j/gc
			w[r*in+j] = min(max(w[r*in+j], rlo[k]), rhi[k])
		}
	}
}
