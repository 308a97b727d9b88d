package methods

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"llmq/calib"
	"llmq/kernels"
	"llmq/quant"
)

// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers").
//
// For a linear layer with weight W [out×in] and calibration inputs
// X [N×in], GPTQ minimizes the layer's output error
//
//	‖X·Wᵀ − X·Ŵᵀ‖²_F = Σ_rows (w − ŵ)ᵀ·H·(w − ŵ),   H = XᵀX
//
// (the paper writes H = 2XXᵀ with X [in×N]; constant factors cancel below
// and are dropped). The objective splits over the rows of W, which share H,
// and GPTQ solves it greedily column by column, in the style of Optimal
// Brain Quantization: quantize column j of every row, then move the
// rounding error onto the not-yet-quantized columns F, where it can still be
// compensated. The optimal update for quantizing coordinate j is
//
//	δ_F = −(w_j − q_j)/[H_F⁻¹]_jj · (H_F⁻¹)_{:,j}
//
// with H_F⁻¹ the inverse Hessian restricted to the remaining columns.
// Removing column j from H_F⁻¹ is one step of Gaussian elimination, so the
// rows [H_F⁻¹]_{j,j:} needed over the whole pass are exactly the rows of the
// upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), scaled by U_jj. Writing
//
//	err_j = (w_j − q_j)/U_jj,   W_{:, j+1:} −= err_j · U_{j, j+1:}
//
// is the paper's Algorithm 1: one Cholesky factorization replaces the
// per-column inverse updates. Σ err_j² over rows and columns is the output
// error the layer is left with (Loss).
//
// Lazy batch updates: the update of column j touches every later column,
// a memory-bound rank-1 update. GPTQ applies it immediately only inside a
// block of BlockSize columns, collects the block's errors E [out×B], and
// updates everything to the right with one GEMM, W_{:, i2:} −= E·U_{i1:i2,
// i2:} (kernels.Sgemm) — the same arithmetic, reordered. This
// implementation keeps W transposed ([in×out], one column of W per row) so
// each in-block update is a contiguous AXPY, and splits the rows of W over
// goroutines (they are independent given U).
//
// Numerical care, as in the reference implementation:
//
//   - Dead inputs (H_jj = 0: the channel is zero on every calibration token)
//     carry no information; W[:, j] is set to 0 and H_jj to a positive value
//     so H stays invertible. (The reference sets H_jj = 1; we use the mean
//     of the live diagonal, which is scale-consistent: with H = 1 for dead
//     columns the damping below would depend on the activation scale.)
//   - Dampening: λ = DampFrac·mean(diag H) is added to the diagonal (1% by
//     default). It bounds the condition number of H, which the tokens of a
//     small calibration set leave rank-deficient or nearly so. If the
//     Cholesky factorization still fails, λ is multiplied by 10 and the
//     factorization retried (up to 3 times) before giving up with an error
//     naming the layer.
//   - NaN or Inf in the weights or the Hessian is an error, never a NaN
//     layer.
//
// Precision and cost at real widths: H is accumulated in float32 (calib)
// and factored in float32 (lowerCholOfInverse32: blocked Cholesky and
// triangular inverse on the GEMM kernels), as the reference implementations
// do on the GPU. For a 14336-wide input that is 0.8 GiB per n×n matrix
// instead of 1.6, and GEMM speed instead of scalar float64 dot products;
// against a float64 factor the layer's loss moves by ~10⁻⁴ relative on
// GPTQ-like Hessians with condition numbers ~10⁵ (gptq32_test.go). The
// column loop reads Uᵀ in float32 (its in-block factors, and in place the
// A operand of the lazy-batch GEMM) and computes errors and the loss in
// float64.
//
// Quantization parameters follow the Scheme's weight spec through the quant
// package's own rules (Spec.ParamsMinMax, ComputeParams, ConstrainRow), so
// symmetric/asymmetric, full-range, FP formats, FP16 scales and the
// ZeroQuant-FP scale constraints all behave as in RTN:
//
//   - per-channel/per-tensor: parameters from the (dead-zeroed) original
//     W, before any update, as the reference's find_params(W);
//   - per-group, "dynamic" (the reference's default): the parameters of a
//     group are computed from the current, already error-updated values of
//     its columns when its first column is reached. To make "current" exact
//     the block size is rounded to a multiple of the group size, so a group
//     never straddles a lazy update (the reference reads the group's columns
//     from W, which misses the updates of the group's own block);
//   - per-group, static (StaticGroups, and always with ActOrder or the
//     row-level pow2ratio constraint): every group's parameters come from
//     the original W before the loop, as AutoGPTQ's static_groups=True.
//
// Group ranges: min/max by default; with MSE (the recipe's weights
// observer "mse", the reference quantizer's mse=True) each group's range is
// the shrink p·[min, max] minimizing Σ|w − Q(w)|^2.4 over the group's
// current values (quant.Spec.ParamsMSE). At 4 bits and below, min/max spends
// the few levels on each group's extreme weights; on wiki-llama-25m W4A16
// g128 the search takes GPTQ from +1.5 % to −0.2 % ppl over FP32.
//
// Act-order (desc_act): columns are processed by decreasing H_jj, so the
// inputs with the most energy are quantized first, while many columns remain
// to absorb their error (a heuristic of the reference implementation, for
// layers dominated by a few input channels). The permutation is undone at
// the end. With groups, GPTQ's reference then groups columns in *permuted*
// order and records a g_idx mapping; here groups stay contiguous in the
// original order and their parameters are static (computed before the
// loop), so the resulting QTensor is a standard group-quantized weight that
// exports and dequantizes like any other.
//
// The final layer is built with quant.QuantizeWithParams from the
// dequantized values the loop chose, which reproduces exactly the loop's
// codes (checked), and quant.NewQuantLinear with the scheme's activation
// quantization (static ranges from the same calibration pass).
//
// TrueSequential (AutoGPTQ's true_sequential): the block's input groups are
// quantized in execution order — q/k/v, then o, then gate/up, then down —
// and the Hessians of each group are collected after the previous groups
// were quantized, so each linear compensates the error of its quantized
// predecessors in the block. Linears reading the same input (q/k/v,
// gate/up) share one Hessian and one factorization. Without it, all
// Hessians come from one pass through the FP block.
type GPTQ struct {
	Scheme Scheme
	Select *Selector
	// DampFrac is the dampening λ as a fraction of mean(diag H) (0: 0.01).
	DampFrac float64
	// BlockSize is the number of columns per lazy batch update (0: 128).
	BlockSize int
	// ActOrder processes columns by decreasing H_jj (desc_act).
	ActOrder bool
	// StaticGroups computes group parameters from the original weights
	// before the loop (implied by ActOrder).
	StaticGroups bool
	// MSE chooses each group's range by the shrink search of the
	// reference's mse=True quantizer (quant.Spec.ParamsMSE) instead of
	// min/max — the recipe's weights observer "mse".
	MSE bool
	// TrueSequential quantizes the block's input groups in order,
	// re-collecting Hessians after each (NewGPTQ sets it).
	TrueSequential bool
	// Loss records, per quantized linear, Σ err² over the weight. It equals
	// Σ_rows (w−ŵ)ᵀ·(H/N + λI)·(w−ŵ): the squared output error per
	// calibration token (summed over output channels) that GPTQ left, plus
	// the dampening term (for reports).
	Loss map[string]float64
}

// NewGPTQ returns GPTQ with the reference defaults: 1% dampening, blocks of
// 128 columns, no act-order, true-sequential.
func NewGPTQ(scheme Scheme, sel *Selector) *GPTQ {
	return &GPTQ{Scheme: scheme, Select: sel, DampFrac: 0.01, BlockSize: 128, TrueSequential: true}
}

func (g *GPTQ) Name() string           { return "gptq" }
func (g *GPTQ) NeedsCalibration() bool { return true }

func (g *GPTQ) ApplyLayer(l *Layer) error {
	roles := g.Select.Roles(l)
	if len(roles) == 0 {
		return nil
	}
	selected := map[string]bool{}
	for _, r := range roles {
		selected[r] = true
	}
	var groups [][]string // selected roles by input group, execution order
	for _, grp := range l.Block.InputGroups() {
		var gr []string
		for _, r := range grp {
			if selected[r] {
				gr = append(gr, r)
			}
		}
		if len(gr) > 0 {
			groups = append(groups, gr)
		}
	}
	opt := calib.Options{Hessian: true}
	if !g.TrueSequential {
		stats, err := l.Collect(roles, opt)
		if err != nil {
			return err
		}
		for _, gr := range groups {
			if err := g.quantizeGroup(l, gr, stats); err != nil {
				return err
			}
		}
		return nil
	}
	for _, gr := range groups {
		t0 := time.Now()
		stats, err := l.Collect(gr, opt)
		if err != nil {
			return err
		}
		gptqPhase("collect (forward+XᵀX)", t0)
		if st := stats[gr[0]]; st != nil && gptqProfile != nil {
			gptqProfile.add("  of which XᵀX", st.HessianTime)
		}
		if err := g.quantizeGroup(l, gr, stats); err != nil {
			return err
		}
	}
	return nil
}

// quantizeGroup quantizes linears of one input group (sharing one Hessian).
func (g *GPTQ) quantizeGroup(l *Layer, roles []string, stats map[string]*calib.Stats) error {
	cfg := g.config()
	prepared := map[*calib.Stats]*gptqHessian{}
	for _, role := range roles {
		d, err := dense(l, role)
		if err != nil {
			return err
		}
		name := l.Name(role)
		st := stats[role]
		hs := prepared[st]
		if st == nil || hs == nil && st.Hessian == nil {
			return fmt.Errorf("%s: no Hessian was collected", name)
		}
		if err := g.Scheme.Weights.Validate(d.Out(), d.In()); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if hs == nil {
			t0 := time.Now()
			if hs, err = prepareHessian(st.Hessian, st.In, st.Tokens, cfg.damp, g.ActOrder); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			prepared[st] = hs
			st.Hessian = nil // the factor replaces it (0.8 GiB for a 14336-wide input)
			gptqPhase("= factorization total", t0)
		}
		t0 := time.Now()
		res, err := gptqQuantize(d.W, d.Out(), d.In(), hs, g.Scheme.Weights, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		gptqPhase("= quantization total", t0)
		act, err := g.Scheme.ActQuant(st)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		q, err := quant.NewQuantLinear(res.qt, d.B, act)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*l.Block.Linear(role) = q
		if g.Loss == nil {
			g.Loss = map[string]float64{}
		}
		g.Loss[name] = res.loss
	}
	return nil
}

// gptqConfig are the loop's options with defaults applied.
type gptqConfig struct {
	damp         float64
	blockSize    int
	mse          bool
	staticGroups bool
}

func (g *GPTQ) config() gptqConfig {
	c := gptqConfig{damp: g.DampFrac, blockSize: g.BlockSize, staticGroups: g.StaticGroups || g.ActOrder, mse: g.MSE || g.Scheme.MSEWeights}
	if c.damp <= 0 || math.IsNaN(c.damp) {
		c.damp = 0.01
	}
	if c.blockSize <= 0 {
		c.blockSize = 128
	}
	return c
}

// gptqHessian is what the loop needs from a (shared) Hessian: the Cholesky
// factor of the damped inverse, in processing order.
type gptqHessian struct {
	n    int
	perm []int  // processing position → original column (identity without act-order)
	dead []bool // original columns with H_jj = 0
	// ut is Uᵀ, the lower Cholesky factor of H⁻¹ = Uᵀ·U (row-major [n×n],
	// ut[k·n+j] = U_jk for k ≥ j): the diagonal and the in-block factors
	// of the loop, and, read in place with lda = n, the A operand of the
	// lazy-batch GEMM.
	ut   []float32
	damp float64 // the λ that was used
}

// maxDampRetries bounds how often dampening is multiplied by 10 after a
// failed factorization.
const maxDampRetries = 3

// prepareHessian turns Σ XᵀX over tokens (symmetric, row-major, not
// modified) into GPTQ's factor: normalize by the token count (keeps values
// O(activation²)), fix dead columns, permute for act-order, damp, and
// factor H⁻¹ = UᵀU (lowerCholOfInverse32, float32 on the GEMM kernels),
// retrying with 10× the dampening if H is numerically indefinite. It holds
// one n×n float32 work matrix, which becomes the factor.
func prepareHessian(hsum []float32, n, tokens int, dampFrac float64, actOrder bool) (*gptqHessian, error) {
	if len(hsum) != n*n || n < 1 {
		return nil, fmt.Errorf("Hessian has %d values for %d inputs", len(hsum), n)
	}
	if tokens < 1 {
		return nil, errors.New("Hessian from no calibration tokens")
	}
	t0 := time.Now()
	for i, v := range hsum {
		if v-v != 0 {
			return nil, fmt.Errorf("Hessian element (%d, %d) is %v", i/n, i%n, v)
		}
	}
	inv := 1 / float64(tokens)
	hs := &gptqHessian{n: n, dead: make([]bool, n)}
	diag := make([]float64, n) // normalized, dead columns filled
	var live float64
	nlive := 0
	for j := 0; j < n; j++ {
		diag[j] = float64(hsum[j*n+j]) * inv
		if diag[j] == 0 {
			hs.dead[j] = true
		} else {
			live += diag[j]
			nlive++
		}
	}
	fill := 1.0
	if nlive > 0 {
		fill = live / float64(nlive)
	}
	for j := 0; j < n; j++ {
		if hs.dead[j] {
			diag[j] = fill
		}
	}
	hs.perm = make([]int, n)
	for j := range hs.perm {
		hs.perm[j] = j
	}
	if actOrder {
		slices.SortStableFunc(hs.perm, func(a, b int) int {
			switch {
			case diag[a] > diag[b]:
				return -1
			case diag[a] < diag[b]:
				return 1
			}
			return 0
		})
	}
	var mean float64
	for _, d := range diag {
		mean += d
	}
	mean /= float64(n)
	damp := dampFrac * mean
	gptqPhase("prepare H", t0)
	// build writes the damped, permuted H into w: row i is original row
	// perm[i] scaled by 1/tokens, gathered in permuted column order.
	w := make([]float32, n*n)
	build := func(damp float64) {
		s := float32(inv)
		kernels.ParallelFor(n, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				src := hsum[hs.perm[i]*n : (hs.perm[i]+1)*n]
				dst := w[i*n : (i+1)*n]
				if actOrder {
					for j, pj := range hs.perm {
						dst[j] = src[pj] * s
					}
				} else {
					for j, v := range src {
						dst[j] = v * s
					}
				}
				dst[i] = float32(diag[hs.perm[i]] + damp)
			}
		})
	}
	for try := 0; ; try++ {
		t0 := time.Now()
		build(damp)
		gptqPhase("prepare H", t0)
		err := lowerCholOfInverse32(w, n)
		if err == nil {
			hs.ut, hs.damp = w, damp
			break
		}
		if !errors.Is(err, errNotPD) || try == maxDampRetries {
			return nil, fmt.Errorf("Hessian not positive definite even with dampening %g (%g × mean diagonal): %w",
				damp, damp/mean, err)
		}
		damp *= 10
	}
	return hs, nil
}

// gptqResult is one quantized weight.
type gptqResult struct {
	qt    *quant.QTensor
	codes []int32 // the codes the loop chose, row-major [rows×cols], original order
	loss  float64 // Σ err² (see GPTQ.Loss)
}

// gptqQuantize runs GPTQ's column loop on w [rows×cols] (not modified) and
// returns the quantized tensor. spec must be valid for the shape.
func gptqQuantize(w []float32, rows, cols int, hs *gptqHessian, spec quant.Spec, cfg gptqConfig) (*gptqResult, error) {
	if hs.n != cols || len(w) != rows*cols {
		return nil, fmt.Errorf("%w: weight %d×%d (%d values), Hessian of %d inputs", quant.ErrShape, rows, cols, len(w), hs.n)
	}
	for i, v := range w {
		if v-v != 0 {
			return nil, fmt.Errorf("%w: weight[%d, %d] = %v", quant.ErrNonFinite, i/cols, i%cols, v)
		}
	}
	perm, ut := hs.perm, hs.ut
	// W with dead columns zeroed, original order (parameters), and
	// transposed in processing order (the loop's working copy).
	w0 := append([]float32(nil), w...)
	for r := 0; r < rows; r++ {
		for j, d := range hs.dead {
			if d {
				w0[r*cols+j] = 0
			}
		}
	}
	wt := make([]float32, cols*rows)
	for p, j := range perm {
		row := wt[p*rows : (p+1)*rows]
		for r := range row {
			row[r] = w0[r*cols+j]
		}
	}
	grouped := spec.Granularity == quant.PerGroup
	dynamic := grouped && !cfg.staticGroups && spec.Scale != quant.ScalePow2Ratio
	bs := cfg.blockSize
	var params []quant.Params
	if dynamic {
		// Identity permutation here (act-order implies static groups).
		gs := spec.GroupSize
		bs = max(1, (bs+gs/2)/gs) * gs
		params = make([]quant.Params, spec.NumParams(rows, cols))
	} else {
		var err error
		compute := quant.ComputeParams
		if cfg.mse {
			compute = quant.ComputeParamsMSE
		}
		if params, err = compute(w0, rows, cols, spec); err != nil {
			return nil, err
		}
		refinePow2(w0, rows, cols, spec, params) // best member of the pow2 constraint set (see pow2.go)
	}
	_, pc := spec.ParamShape(rows, cols)
	wq := make([]float32, rows*cols) // quantized values, original order
	codes := make([]int32, rows*cols)
	negErrT := make([]float32, bs*rows) // −(block errors), [column in block × rows]
	var (
		mu   sync.Mutex
		loss float64
	)
	for i1 := 0; i1 < cols; i1 += bs {
		i2 := min(i1+bs, cols)
		t0 := time.Now()
		kernels.ParallelFor(rows, func(r0, r1 int) {
			var obs time.Duration
			q := spec.Quantizer(quant.Params{})
			var part float64
			for p := i1; p < i2; p++ {
				j := perm[p]
				col := wt[p*rows+r0 : p*rows+r1]
				if dynamic && j%spec.GroupSize == 0 {
					t1 := time.Now()
					g := j / spec.GroupSize
					vals := make([]float32, spec.GroupSize) // the group's current values in one row
					for r := r0; r < r1; r++ {
						for c := range vals {
							vals[c] = wt[(p+c)*rows+r]
						}
						if cfg.mse && spec.Scale == quant.ScaleAny {
							params[r*pc+g] = spec.ParamsMSE(vals)
							continue
						}
						lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
						for _, v := range vals {
							lo, hi = min(lo, v), max(hi, v)
						}
						params[r*pc+g] = spec.ParamsMinMax(lo, hi)
						if spec.Scale == quant.ScalePow2 {
							params[r*pc+g] = bestPow2(vals, spec, params[r*pc+g], []float32{params[r*pc+g].Scale / 2})
						}
					}
					obs += time.Since(t1)
				}
				inv := 1 / float64(ut[p*cols+p])
				e := negErrT[(p-i1)*rows+r0 : (p-i1)*rows+r1]
				for i, x := range col {
					r := r0 + i
					pr := params[spec.ParamIndex(r, j, cols)]
					q.Scale, q.Zero = pr.Scale, pr.Zero
					c := q.Quantize(x)
					v := q.Dequantize(c)
					codes[r*cols+j] = c
					wq[r*cols+j] = v
					ev := float64(x-v) * inv
					e[i] = -float32(ev)
					part += ev * ev
				}
				for k := p + 1; k < i2; k++ {
					kernels.Axpy(ut[k*cols+p], e, wt[k*rows+r0:k*rows+r1])
				}
			}
			mu.Lock()
			loss += part
			mu.Unlock()
			if gptqProfile != nil {
				gptqProfile.add("observer (CPU-s)", obs)
			}
		})
		gptqPhase("column loop", t0)
		t0 = time.Now()
		if i2 < cols {
			// W[:, i2:] −= E·U[i1:i2, i2:], transposed:
			// Wt[i2:, :] += Uᵀ[i2:, i1:i2] · (−Errᵀ).
			kernels.Sgemm(false, cols-i2, rows, i2-i1, ut[i2*cols+i1:], cols, negErrT, rows, wt[i2*rows:], rows, true)
		}
		gptqPhase("lazy update GEMM", t0)
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return nil, fmt.Errorf("%w: GPTQ's error propagation diverged (loss %v)", quant.ErrNonFinite, loss)
	}
	qt, err := quant.QuantizeWithParams(wq, rows, cols, spec, params)
	if err != nil {
		return nil, err
	}
	got := qt.Codes()
	for i, c := range codes {
		if got[i] != c {
			return nil, fmt.Errorf("internal error: element (%d, %d) requantizes to code %d, the loop chose %d", i/cols, i%cols, got[i], c)
		}
	}
	return &gptqResult{qt: qt, codes: codes, loss: loss}, nil
}
