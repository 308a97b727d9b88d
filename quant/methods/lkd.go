package methods

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"

	"llmq/kernels"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
)

// LKD is ZeroQuant's layer-by-layer knowledge distillation (Yao et al.
// 2022, "ZeroQuant: Efficient and Affordable Post-Training Quantization for
// Large-Scale Transformers", §4.3).
//
// After a quantizer (RTN, GPTQ, …: Base) has turned a block's linears into
// quantized ones, LKD trains the block's quantized weights so the quantized
// block reproduces the full-precision block on calibration data. With L_k
// the k-th block and L̂_k its quantized version, the paper minimises, one
// block at a time,
//
//	L_LKD,k = MSE( L_k(X_k) − L̂_k(X_k) ),   X_k = L_{k−1}·…·L_1(X)     (eq. 5)
//
// so that only one block's weights and activations are ever in memory and
// no labels or original training data are needed. Here X_k are the
// calibration inputs the pipeline hands the block (methods.Run), which come
// through the already-quantized earlier blocks: the teacher L_k and the
// student L̂_k read the same inputs — the ones the student will really see —
// and the student is taught to give the FP block's answer on them.
//
// Per block, ApplyLayer:
//
//  1. computes the teacher outputs Y_i = L_k(X_i) with the block still in
//     FP32 (before Base runs), for the first Seqs calibration sequences;
//  2. runs Base.ApplyLayer, remembering the nn.Dense each slot held;
//  3. for every linear Base turned into a quant.QuantLinear, keeps a
//     trainable FP32 latent weight W and the QTensor's quantization
//     parameters (scales, zero-points), which stay fixed — ZeroQuant's LKD
//     trains weights under fixed quantization settings. The forward pass
//     uses Ŵ = fakequant(W) with those parameters, and the layer's
//     activation fake-quantization if it has one;
//  4. runs Steps Adam steps on the MSE over Batch sequences drawn
//     (seeded, without replacement within an epoch) from the Seqs,
//     backpropagating by hand through the whole block (lkd_grad.go) in
//     float32, with the straight-through estimator (STE) for both
//     quantizers: ∂Ŵ/∂W = 1 inside the grid's range, and the same for the
//     activations (dynamic ranges never clip);
//  5. rebuilds each layer with quant.QuantizeWithParams(W, same params)
//     and quant.NewQuantLinear (same bias and activation quantization) —
//     the codes are exactly fakequant(W)'s, the scales unchanged;
//  6. measures the block's output MSE on the Seqs through the production
//     forward pass before and after training (LossBefore, LossAfter, keyed
//     by block name). Should training end with a larger loss than the base
//     quantizer's (a learning rate far too high), the base layers are put
//     back and LossAfter equals LossBefore: LKD never makes a block worse
//     on its calibration data.
//
// What is trained: only the weights of the quantized linears. Norm weights,
// biases and linears Base left in FP32 are frozen, as in the paper, and the
// deployed layer keeps the base's formats and scales. Linears other than
// nn.Dense and quant.QuantLinear (LLM.int8, LoRC wrappers…) cannot be
// differentiated here, nor post-norm blocks: both are errors.
//
// Initialisation of the latent weight. Ŵ is on its grid; starting W = Ŵ
// would put every weight in the middle of its rounding cell, half a step
// from the nearest change of code. Instead W starts, element by element,
// at the FP weight Base quantized (the nn.Dense's W as Base left it, so an
// AWQ-style rescaling is included) whenever that weight rounds to the
// same code under the fixed parameters — always for RTN — and at Ŵ
// otherwise (GPTQ moved it to another code). Either way fakequant(W) = Ŵ
// exactly (checked), so training starts from the base quantizer's result
// while keeping the sub-grid information of the FP weights: a weight close
// to a rounding boundary needs only a small push to change code.
//
// STE and range. For an integer grid with scale s and zero-point z the
// latent is confined, after each step, to [s(qmin−z−½), s(qmax−z+½)] (±s·max
// for minifloats): the values the grid represents by rounding rather than
// clipping. Inside it the STE passes the gradient unchanged; confining the
// latent (a projection) keeps a weight from drifting into the clipped zone
// where the STE would freeze it for good.
//
// Learning rate. ZeroQuant's LKD runs Adam with a small fixed learning
// rate on the raw weights (5e-6 for its large models). A fixed raw rate
// does not carry across models and formats, because what matters is how far
// a weight moves relative to its quantization step s. LKD therefore runs
// Adam on W/s, the weight in units of its own grid step: the update of an
// element is W −= lr_t·s·m̂/(√v̂ + ε), with m̂, v̂ Adam's moments of the
// gradient ∂L/∂(W/s) = s·∂L/∂W. LR is thus in grid steps per iteration
// (Adam moves a weight by about lr per step when its gradient has a steady
// sign), the same for int4 and int8, per-channel or per-group. ε is 10⁻³
// times the first step's RMS gradient of the layer, so Adam's damping of
// tiny gradients does not depend on the loss scale. lr_t decays from LR to
// 0 on a cosine over the Steps, which lets the STE's flip-flopping of
// weights at cell boundaries settle before the codes are read out.
//
// The defaults — 100 steps of 4 sequences at LR 0.005, i.e. a travel
// budget of about a quarter to half a grid step per weight — come from
// wiki-llama-25m with W4A8 and W3A8 (g128 RTN, 32 × 512 calibration
// tokens; TestLKDWikiPerplexity): LR 0.005–0.01 at 50–100 steps all cut
// the KL divergence from FP32 by ~60% (W4A8) to ~65% (W3A8); 0.02 is no
// better, 0.05 worse, and 100 steps gain little over 50. One step costs
// about three forward passes of the block over the batch.
type LKD struct {
	// Base is the quantizer whose result is refined (RTN, GPTQ, AWQ…).
	Base Method
	// Steps is the number of Adam steps per block (0: 100).
	Steps int
	// LR is Adam's learning rate in units of each weight's quantization
	// step (0: 0.005; see the type's documentation).
	LR float64
	// Batch is the number of calibration sequences per step (0: 4).
	Batch int
	// Seqs limits training to the first Seqs calibration sequences (0: all).
	Seqs int
	// Seed seeds the order in which sequences are drawn (with the block
	// index).
	Seed uint64
	// LossBefore and LossAfter record, per block name, the MSE between the
	// block's output and the FP block's on the training sequences, with
	// the base quantizer's layers and after LKD.
	LossBefore, LossAfter map[string]float64
}

// Defaults of LKD's zero fields.
const (
	LKDDefaultSteps = 100
	LKDDefaultLR    = 0.005
	LKDDefaultBatch = 4
)

func (k *LKD) Name() string {
	if k.Base == nil {
		return "lkd"
	}
	return "lkd+" + k.Base.Name()
}

func (k *LKD) NeedsCalibration() bool { return true }

// ApplyModel runs the base's model-level part, if it has one.
func (k *LKD) ApplyModel(m *model.Model) error {
	if mm, ok := k.Base.(ModelMethod); ok {
		return mm.ApplyModel(m)
	}
	return nil
}

func (k *LKD) config() (steps, batch int, lr float64, err error) {
	steps, batch, lr = k.Steps, k.Batch, k.LR
	if steps == 0 {
		steps = LKDDefaultSteps
	}
	if batch == 0 {
		batch = LKDDefaultBatch
	}
	if lr == 0 {
		lr = LKDDefaultLR
	}
	if steps < 0 || batch < 0 || k.Seqs < 0 || !(lr > 0) || math.IsInf(lr, 0) {
		return 0, 0, 0, fmt.Errorf("LKD: steps %d, batch %d, seqs %d and learning rate %v must be positive", k.Steps, k.Batch, k.Seqs, k.LR)
	}
	return steps, batch, lr, nil
}

func (k *LKD) ApplyLayer(l *Layer) error {
	if k.Base == nil {
		return fmt.Errorf("LKD needs a base quantization method")
	}
	steps, batch, lr, err := k.config()
	if err != nil {
		return err
	}
	if l.Inputs == nil || len(l.Inputs.X) == 0 {
		return fmt.Errorf("%s: LKD needs calibration data", l.Block.Name)
	}
	// Refuse what the backward pass cannot do before anything changes.
	if l.Block.PostNorm {
		return fmt.Errorf("%s: post-norm blocks are not supported by LKD", l.Block.Name)
	}
	if _, err := lkdIdentifyAct(l.Block); err != nil {
		return err
	}
	n := len(l.Inputs.X)
	if k.Seqs > 0 && k.Seqs < n {
		n = k.Seqs
	}
	T, H := l.Inputs.T, l.Model.Hidden
	xs := l.Inputs.X[:n]

	fp := map[string]*nn.Dense{}
	for _, nl := range l.Block.Linears() {
		if d, ok := (*nl.Linear).(*nn.Dense); ok {
			fp[nl.Role] = d
		}
	}
	teacher := make([][]float32, n)
	for i, x := range xs {
		teacher[i] = append([]float32(nil), x...)
		l.Runner.Run(l.Index, teacher[i], T)
	}
	if err := k.Base.ApplyLayer(l); err != nil {
		return err
	}

	gb, err := newGBlock[float32](l.Block, l.Block.Rope)
	if err != nil {
		return err
	}
	var train []*lkdLinear
	for _, gl := range gb.linears() {
		slot := l.Block.Linear(gl.role)
		ql, ok := (*slot).(*quant.QuantLinear)
		if !ok {
			continue
		}
		tl, err := newLKDLinear(gl, ql, fp[gl.role], slot)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(gl.role), err)
		}
		train = append(train, tl)
	}
	if len(train) == 0 {
		return nil
	}
	before := lkdBlockMSE(l, xs, teacher)

	rng := rand.New(rand.NewPCG(k.Seed, uint64(l.Index)))
	order, pos := rng.Perm(n), 0
	batch = min(batch, n)
	dy := make([]float32, T*H)
	norm := 2 / float64(batch*T*H)
	for it := 1; it <= steps; it++ {
		for _, tl := range train {
			tl.refresh()
		}
		for b := 0; b < batch; b++ {
			if pos == n {
				order, pos = rng.Perm(n), 0
			}
			i := order[pos]
			pos++
			y, err := gb.forward(xs[i], T)
			if err != nil {
				return fmt.Errorf("%s: LKD forward: %w", l.Block.Name, err)
			}
			for j, v := range y {
				dy[j] = float32(norm * float64(v-teacher[i][j]))
			}
			gb.backward(dy, nil)
		}
		lrt := lr * 0.5 * (1 + math.Cos(math.Pi*float64(it-1)/float64(steps)))
		for _, tl := range train {
			tl.step(lrt, it)
		}
	}

	for _, tl := range train {
		qt, err := quant.QuantizeWithParams(tl.latent, tl.g.out, tl.g.in, tl.spec, tl.params)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(tl.g.role), err)
		}
		q, err := quant.NewQuantLinear(qt, tl.orig.Bias(), tl.orig.ActSpec())
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name(tl.g.role), err)
		}
		*tl.slot = q
	}
	after := lkdBlockMSE(l, xs, teacher)
	if !(after <= before) {
		for _, tl := range train {
			*tl.slot = tl.orig
		}
		after = before
	}
	if k.LossBefore == nil {
		k.LossBefore, k.LossAfter = map[string]float64{}, map[string]float64{}
	}
	k.LossBefore[l.Block.Name], k.LossAfter[l.Block.Name] = before, after
	return nil
}

// lkdBlockMSE is the mean squared difference between the block's outputs
// (production forward pass) and the teacher's.
func lkdBlockMSE(l *Layer, xs, teacher [][]float32) float64 {
	T := l.Inputs.T
	buf := make([]float32, len(xs[0]))
	var s float64
	for i, x := range xs {
		copy(buf, x)
		l.Runner.Run(l.Index, buf, T)
		for j, v := range buf {
			d := float64(v - teacher[i][j])
			s += d * d
		}
	}
	return s / float64(len(xs)*len(buf))
}

// lkdLinear is one trained layer: its latent weight, fixed quantization
// parameters and Adam state.
type lkdLinear struct {
	g      *gLinear[float32]
	slot   *nn.Linear
	orig   *quant.QuantLinear
	spec   quant.Spec
	params []quant.Params
	latent []float32
	m, v   []float32
	eps    float64
}

func newLKDLinear(g *gLinear[float32], ql *quant.QuantLinear, fp *nn.Dense, slot *nn.Linear) (*lkdLinear, error) {
	qt := ql.Weight()
	rows, cols := qt.Rows, qt.Cols
	t := &lkdLinear{g: g, slot: slot, orig: ql, spec: qt.Spec, params: qt.Params(),
		m: make([]float32, rows*cols), v: make([]float32, rows*cols)}
	wq := ql.DequantizedWeight()
	t.latent = append([]float32(nil), wq...)
	var w0 []float32
	if fp != nil && len(fp.W) == len(wq) {
		w0 = fp.W
	}
	var bad atomic.Int64
	t.eachGroup(func(i0, i1 int, q quant.Quantizer, lo, hi float32) {
		for i := i0; i < i1; i++ {
			if w0 != nil && q.Fake(w0[i]) == wq[i] {
				t.latent[i] = min(max(w0[i], lo), hi)
			}
			if q.Fake(t.latent[i]) != wq[i] {
				bad.Add(1)
			}
		}
	})
	if bad := bad.Load(); bad > 0 {
		return nil, fmt.Errorf("LKD: %d latent weights do not reproduce the quantized weight (internal error)", bad)
	}
	g.dW = make([]float32, rows*cols)
	return t, nil
}

// eachGroup calls f for each run [i0, i1) of weights sharing parameters
// (within one row), with the group's quantizer and latent range. Rows are
// processed in parallel for large layers; f must only touch its run.
func (t *lkdLinear) eachGroup(f func(i0, i1 int, q quant.Quantizer, lo, hi float32)) {
	rows, cols := t.g.out, t.g.in
	gc := t.spec.GroupCols(cols)
	body := func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			for c0 := 0; c0 < cols; c0 += gc {
				p := t.params[t.spec.ParamIndex(r, c0, cols)]
				lo, hi := lkdSTEBounds(t.spec, p)
				f(r*cols+c0, r*cols+c0+gc, t.spec.Quantizer(p), float32(lo), float32(hi))
			}
		}
	}
	if rows*cols < 1<<15 {
		body(0, rows)
		return
	}
	kernels.ParallelFor(rows, body)
}

// refresh sets the forward weight to fakequant(latent) and clears the
// gradient.
func (t *lkdLinear) refresh() {
	t.eachGroup(func(i0, i1 int, q quant.Quantizer, _, _ float32) {
		q.FakeSlice(t.g.W[i0:i1], t.latent[i0:i1])
	})
	clear(t.g.dW)
}

// step is Adam iteration it (from 1) on W/s with learning rate lr (grid
// steps), the STE gradient ∂L/∂W = ∂L/∂Ŵ, and the projection onto the
// grid's range.
func (t *lkdLinear) step(lr float64, it int) {
	const b1, b2 = 0.9, 0.999
	if it == 1 {
		var ss float64
		t.eachGroupSerial(func(i0, i1 int, s float64) {
			for _, g := range t.g.dW[i0:i1] {
				gu := float64(g) * s
				ss += gu * gu
			}
		})
		t.eps = 1e-3 * math.Sqrt(ss/float64(len(t.g.dW)))
		if !(t.eps > 0) {
			t.eps = math.SmallestNonzeroFloat64
		}
	}
	c1, c2 := 1-math.Pow(b1, float64(it)), 1-math.Pow(b2, float64(it))
	t.eachGroup(func(i0, i1 int, q quant.Quantizer, lo, hi float32) {
		s := float64(q.Scale)
		for i := i0; i < i1; i++ {
			gu := float64(t.g.dW[i]) * s
			m := b1*float64(t.m[i]) + (1-b1)*gu
			v := b2*float64(t.v[i]) + (1-b2)*gu*gu
			t.m[i], t.v[i] = float32(m), float32(v)
			w := float64(t.latent[i]) - lr*s*(m/c1)/(math.Sqrt(v/c2)+t.eps)
			t.latent[i] = min(max(float32(w), lo), hi)
		}
	})
}

// eachGroupSerial is eachGroup without parallelism, giving the group's scale.
func (t *lkdLinear) eachGroupSerial(f func(i0, i1 int, s float64)) {
	rows, cols := t.g.out, t.g.in
	gc := t.spec.GroupCols(cols)
	for r := 0; r < rows; r++ {
		for c0 := 0; c0 < cols; c0 += gc {
			f(r*cols+c0, r*cols+c0+gc, float64(t.params[t.spec.ParamIndex(r, c0, cols)].Scale))
		}
	}
}
