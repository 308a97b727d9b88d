package methods

import (
	"fmt"
	"math"

	"llmq/calib"
	"llmq/model"
	"llmq/nn"
)

// SmoothQuant (Xiao et al. 2023, "SmoothQuant: Accurate and Efficient
// Post-Training Quantization for Large Language Models").
//
// Activations of large LLMs have a few input channels with magnitudes
// 10–100× the rest, the same channels for every token; per-tensor or
// per-token activation scales are then set by the outliers and every other
// channel is rounded to a handful of levels. Weights have no such outliers.
// SmoothQuant migrates the difficulty: for a linear Y = X·Wᵀ it picks a
// per-input-channel factor
//
//	s_j = max|X_j|^α / max|W_{·j}|^(1−α)
//
// and computes Y = (X·diag(s)⁻¹)·(W·diag(s))ᵀ, which is the same function.
// X/s is never computed at run time: diag(s)⁻¹ is folded into the operation
// that produces X — a norm's weight (and bias), or the rows of a previous
// linear whose output feeds X linearly — and W·diag(s) is stored. α is the
// migration strength: 0 leaves activations alone, 1 moves all of their
// range into the weights; 0.5 suits most models.
//
// A Mapping says which operation is folded into ("smooth") and which
// linears read its output ("balance"; they share s, their columns scaled
// together). The defaults cover every linear whose input can be smoothed
// exactly:
//
//	norm1 → q, k, v          (the attention input norm)
//	norm2 → gate, up | fc1   (the MLP input norm)
//	up → down                (SwiGLU: down's input is act(gate)⊙up, linear in up)
//	up → down                (ReLU MLPs: ReLU(x/s) = ReLU(x)/s for s > 0)
//	v → o                    (attention output is P·V, linear in V)
//
// The reference implementation stops at the norms; its outlier-heavy
// down_proj inputs then wreck per-tensor activation quantization.
//
// With Search, α is chosen per block from AlphaGrid on calibration loss:
// the squared error between the block's FP output and its output after
// smoothing with that α and quantizing with SearchScheme, on a few
// calibration sequences. The block output (not each linear's) is the
// objective because errors in q and k matter through the softmax, which a
// per-linear error cannot see.
type SmoothQuant struct {
	Alpha        float64
	Search       bool
	SearchScheme Scheme
	// Mappings to smooth; nil means DefaultMappings of each block.
	Mappings []Mapping
	// Chosen records the α picked per block and mapping (for reports).
	Chosen map[string]float64
	// SearchSeqs bounds the calibration sequences the search runs (0: 8).
	SearchSeqs int
}

// Mapping is one smoothing: the operation whose output channels are divided
// by s (a role: "norm1", "norm2", or a linear such as "up" or "v") and the
// linears reading that output, whose input columns are multiplied by s.
type Mapping struct {
	Smooth  string
	Balance []string
}

func (m Mapping) String() string { return fmt.Sprintf("%s→%v", m.Smooth, m.Balance) }

// DefaultMappings lists every exact smoothing of a block (see SmoothQuant).
func DefaultMappings(l *Layer) []Mapping {
	b := l.Block
	var ms []Mapping
	// The second norm's output feeds the MLP's first linears: gate and up,
	// or in a mixture of experts the router and every expert's gate and up
	// (the router is rescaled with them, so routing is unchanged).
	groups := b.InputGroups()
	if !b.PostNorm {
		ms = append(ms, Mapping{"norm1", groups[0]}, Mapping{"norm2", groups[2]})
	}
	switch {
	case b.MoE != nil:
		for i := range b.MoE.Experts {
			ms = append(ms, Mapping{model.ExpertRole(i, "up"), []string{model.ExpertRole(i, "down")}})
		}
	case b.Gate != nil || isReLU(b.Act):
		ms = append(ms, Mapping{"up", []string{"down"}})
	}
	ms = append(ms, Mapping{"v", []string{"o"}})
	return ms
}

func isReLU(a nn.Activation) bool {
	x := []float32{-1, 2}
	a(x)
	return x[0] == 0 && x[1] == 2 // ReLU is the only supported activation with these values
}

func (s *SmoothQuant) Name() string           { return "smoothquant" }
func (s *SmoothQuant) NeedsCalibration() bool { return true }

// searchRows bounds the calibration rows kept for the α search.
const searchRows = 512

func (s *SmoothQuant) ApplyLayer(l *Layer) error {
	if l.Block.PostNorm {
		return fmt.Errorf("%s: post-norm blocks read the residual stream directly; there is no norm to fold smoothing into", l.Block.Name)
	}
	if s.Alpha < 0 || s.Alpha > 1 || math.IsNaN(s.Alpha) {
		return fmt.Errorf("smoothing strength α = %v must be in [0, 1]", s.Alpha)
	}
	stats, err := l.Collect(nil, calib.Options{})
	if err != nil {
		return err
	}
	mappings := s.Mappings
	if mappings == nil {
		mappings = DefaultMappings(l)
	}
	plans := make([]*smoothPlan, len(mappings))
	for i, mp := range mappings {
		if plans[i], err = planSmoothing(l, mp, stats[mp.Balance[0]]); err != nil {
			return fmt.Errorf("%s: mapping %v: %w", l.Block.Name, mp, err)
		}
	}
	alpha := s.Alpha
	if s.Search {
		if alpha, err = s.searchAlpha(l, plans); err != nil {
			return fmt.Errorf("%s: α search: %w", l.Block.Name, err)
		}
	}
	if s.Chosen == nil {
		s.Chosen = map[string]float64{}
	}
	s.Chosen[l.Block.Name] = alpha
	for _, p := range plans {
		if err := p.apply(l, alpha); err != nil {
			return fmt.Errorf("%s: mapping %v: %w", l.Block.Name, p.mp, err)
		}
	}
	return nil
}

// smoothPlan holds what a mapping's factors are computed from.
type smoothPlan struct {
	mp           Mapping
	bal          []*nn.Dense
	groups       [][]int // input channels sharing one factor
	actMax, wMax []float64
}

func planSmoothing(l *Layer, mp Mapping, st *calib.Stats) (*smoothPlan, error) {
	p := &smoothPlan{mp: mp}
	for _, role := range mp.Balance {
		d, err := dense(l, role)
		if err != nil {
			return nil, err
		}
		p.bal = append(p.bal, d)
	}
	in := p.bal[0].In()
	p.groups = channelGroups(l, mp, in)
	p.actMax = make([]float64, len(p.groups))
	p.wMax = make([]float64, len(p.groups))
	for g, chans := range p.groups {
		for _, j := range chans {
			p.actMax[g] = math.Max(p.actMax[g], float64(st.AbsMax[j]))
			for _, d := range p.bal {
				for r := 0; r < d.Out(); r++ {
					p.wMax[g] = math.Max(p.wMax[g], math.Abs(float64(d.W[r*in+j])))
				}
			}
		}
	}
	return p, nil
}

// apply smooths with strength alpha: the producer's output channel g is
// divided by s_g and the consumers' input columns multiplied by it.
func (p *smoothPlan) apply(l *Layer, alpha float64) error {
	factors := smoothFactors(p.actMax, p.wMax, alpha)
	if err := foldInto(l, p.mp.Smooth, factors, len(p.groups)); err != nil {
		return err
	}
	in := p.bal[0].In()
	colScale := expand(factors, p.groups, in)
	for _, d := range p.bal {
		scaleColumns(d.W, d.Out(), in, colScale)
	}
	return nil
}

// smoothFactors is s_g = actMax_g^α / wMax_g^(1−α), with 1 for channels
// that never fire or have no weight (nothing to migrate), clamped to a
// range that keeps float32 weights finite and normal.
func smoothFactors(actMax, wMax []float64, alpha float64) []float64 {
	f := make([]float64, len(actMax))
	for g := range f {
		if actMax[g] == 0 || wMax[g] == 0 {
			f[g] = 1
			continue
		}
		f[g] = math.Pow(actMax[g], alpha) / math.Pow(wMax[g], 1-alpha)
		f[g] = math.Min(math.Max(f[g], 1e-5), 1e5)
	}
	return f
}

// channelGroups returns, for the balance linears' input channels, the sets
// that share a factor: singletons, except for v→o under GQA where o's
// columns (head h, dim d) share the factor of v's row (kv group of h, d).
func channelGroups(l *Layer, mp Mapping, in int) [][]int {
	b := l.Block
	if mp.Smooth == "v" && b.Attn.KVHeads < b.Attn.Heads {
		hd := b.Attn.HeadDim
		rep := b.Attn.Heads / b.Attn.KVHeads
		groups := make([][]int, b.Attn.KVHeads*hd)
		for h := 0; h < b.Attn.Heads; h++ {
			for d := 0; d < hd; d++ {
				g := (h/rep)*hd + d
				groups[g] = append(groups[g], h*hd+d)
			}
		}
		return groups
	}
	groups := make([][]int, in)
	for j := range groups {
		groups[j] = []int{j}
	}
	return groups
}

// expand maps per-group factors to per-channel ones.
func expand(f []float64, groups [][]int, in int) []float32 {
	out := make([]float32, in)
	for g, chans := range groups {
		for _, j := range chans {
			out[j] = float32(f[g])
		}
	}
	return out
}

// foldInto divides output channel g of the producing operation by f[g].
func foldInto(l *Layer, smooth string, f []float64, n int) error {
	b := l.Block
	switch smooth {
	case "norm1", "norm2":
		norm := b.Norm1
		if smooth == "norm2" {
			norm = b.Norm2
		}
		switch nm := norm.(type) {
		case *nn.RMSNorm:
			for j := range nm.W {
				nm.W[j] = float32(float64(nm.W[j]) / f[j])
			}
		case *nn.LayerNorm:
			for j := range nm.W {
				nm.W[j] = float32(float64(nm.W[j]) / f[j])
				nm.B[j] = float32(float64(nm.B[j]) / f[j])
			}
		default:
			return fmt.Errorf("cannot fold into a %T", norm)
		}
		return nil
	}
	d, err := dense(l, smooth)
	if err != nil {
		return err
	}
	if d.Out() != n {
		return fmt.Errorf("%s has %d outputs but its consumers %d smoothing groups", l.Name(smooth), d.Out(), n)
	}
	in := d.In()
	for r := 0; r < d.Out(); r++ {
		inv := float32(1 / f[r])
		row := d.W[r*in : (r+1)*in]
		for j := range row {
			row[j] *= inv
		}
		if d.B != nil {
			d.B[r] *= inv
		}
	}
	return nil
}

func scaleColumns(w []float32, rows, cols int, s []float32) {
	for r := 0; r < rows; r++ {
		row := w[r*cols : (r+1)*cols]
		for j := range row {
			row[j] *= s[j]
		}
	}
}

// AlphaGrid is the set of migration strengths the search tries.
var AlphaGrid = []float64{0, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 1}

// searchAlpha returns the α of AlphaGrid whose smoothing, followed by
// SearchScheme quantization of every balance linear, gives the block output
// closest to the FP block's on a few calibration sequences. The block is
// restored after each try.
func (s *SmoothQuant) searchAlpha(l *Layer, plans []*smoothPlan) (float64, error) {
	n := s.SearchSeqs
	if n <= 0 {
		n = 8
	}
	seqs := l.Inputs.X[:min(n, len(l.Inputs.X))]
	T, H := l.Inputs.T, l.Model.Hidden
	ref := make([][]float32, len(seqs))
	for i, x := range seqs {
		ref[i] = append([]float32(nil), x...)
		l.Runner.Run(l.Index, ref[i], T)
	}
	var roles []string
	for _, p := range plans {
		roles = append(roles, p.mp.Balance...)
	}
	snap := snapshotBlock(l.Block)
	defer snap.restore()
	best, bestErr := s.Alpha, math.Inf(1)
	out := make([]float32, T*H)
	for _, alpha := range AlphaGrid {
		snap.restore()
		for _, p := range plans {
			if err := p.apply(l, alpha); err != nil {
				return 0, err
			}
		}
		rtn := &RTN{Scheme: s.SearchScheme, Select: onlyRoles(l, roles)}
		stats := map[string]*calib.Stats{}
		if s.SearchScheme.NeedsCalibration() {
			// Static ranges of the smoothed activations, from the same sequences.
			sub := &Layer{Model: l.Model, Index: l.Index, Block: l.Block, Runner: l.Runner, Inputs: &calib.Activations{X: seqs, T: T}}
			var err error
			if stats, err = sub.Collect(roles, calib.Options{}); err != nil {
				return 0, err
			}
		}
		if err := rtn.quantize(l, roles, stats); err != nil {
			return 0, err
		}
		var total float64
		for i, x := range seqs {
			copy(out, x)
			l.Runner.Run(l.Index, out, T)
			for k, v := range out {
				e := float64(v - ref[i][k])
				total += e * e
			}
		}
		if total < bestErr {
			best, bestErr = alpha, total
		}
	}
	return best, nil
}

// blockSnapshot saves a block's FP weights so trial transforms can be undone.
type blockSnapshot struct {
	b      *model.Block
	slots  []nn.Linear
	saved  [][]float32 // per slot: W then B copies
	norms  [][]float32
	normsB [][]float32
}

func snapshotBlock(b *model.Block) *blockSnapshot {
	s := &blockSnapshot{b: b}
	for _, nl := range b.Linears() {
		s.slots = append(s.slots, *nl.Linear)
		if d, ok := (*nl.Linear).(*nn.Dense); ok {
			s.saved = append(s.saved, append([]float32(nil), d.W...), append([]float32(nil), d.B...))
		} else {
			s.saved = append(s.saved, nil, nil)
		}
	}
	for _, n := range []nn.Norm{b.Norm1, b.Norm2} {
		w, bias := nn.NormParams(n)
		s.norms = append(s.norms, append([]float32(nil), w...))
		s.normsB = append(s.normsB, append([]float32(nil), bias...))
	}
	return s
}

func (s *blockSnapshot) restore() {
	for i, nl := range s.b.Linears() {
		*nl.Linear = s.slots[i]
		if d, ok := s.slots[i].(*nn.Dense); ok {
			copy(d.W, s.saved[2*i])
			copy(d.B, s.saved[2*i+1])
		}
	}
	for i, n := range []nn.Norm{s.b.Norm1, s.b.Norm2} {
		w, bias := nn.NormParams(n)
		copy(w, s.norms[i])
		copy(bias, s.normsB[i])
	}
}

// onlyRoles selects exactly the given roles of a layer.
func onlyRoles(l *Layer, roles []string) *Selector {
	var names []string
	for _, r := range roles {
		names = append(names, l.Name(r))
	}
	s, _ := NewSelector(names, nil)
	return s
}
