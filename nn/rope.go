package nn

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
)

// Rope applies rotary position embeddings (Su et al., RoFormer): the first
// RotDim features of every head are taken as RotDim/2 planar pairs, and
// pair i at position p is rotated by angle p·f_i, where the inverse
// frequency f_i is θ^(−2i/RotDim) for the original rope and a rescaled
// value for the context-extension variants (see RopeScaling).
//
// Two conventions exist for which features form a pair, and checkpoints are
// only correct under the one they were trained with:
//   - Hugging Face "rotate half" (Interleaved = false): pair i is
//     (x[i], x[i+RotDim/2]);
//   - llama2.c / Meta's original complex form (Interleaved = true): pair i is
//     (x[2i], x[2i+1]).
//
// Features beyond RotDim pass unchanged (GPT-NeoX's partial rotary).
//
// The numbers follow transformers' float32 arithmetic step by step: the
// frequencies are evaluated with the same float32 operations in the same
// order, the angle is the float32 product f_i·p (transformers multiplies
// float32 inv_freq by float32 position ids), and cos/sin are scaled by the
// attention factor in float32. The angle's rounding alone moves cos/sin by
// up to p·f·2⁻²⁴ — 3e-4 at position 5000 — so computing it more exactly
// would only move us away from the outputs everybody compares against.
//
// A Rope is safe for concurrent use: its tables are immutable once
// published and grow under a lock.
type Rope struct {
	HeadDim     int
	RotDim      int
	Theta       float64
	Interleaved bool
	// RoundFreq, if set, rounds each inverse frequency to a storage format.
	// transformers keeps inv_freq as a floating buffer that is cast with the
	// model, so a checkpoint run in its stored bf16 or fp16 dtype rotates by
	// half-precision frequencies — and so do the outputs everybody compares
	// against. Positions far from 0 expose the difference (0.2 % per
	// position step in bf16). It applies to the frequencies computed when
	// the model is built, after any scaling; the ones transformers
	// recomputes during a forward pass (dynamic beyond MaxPos, longrope's
	// long factors) are fresh float32 tensors and are not rounded.
	RoundFreq func(float32) float32
	// Scaling selects a context-extension variant; the zero value is the
	// original rope.
	Scaling RopeScaling

	mu     sync.Mutex
	static atomic.Pointer[ropeTable] // the frequencies fixed at build time (longrope: short)
	long   atomic.Pointer[ropeTable] // longrope beyond OriginalMaxPos
	dyn    []*ropeTable              // dynamic beyond MaxPos: recent per-length tables, under mu
}

// RopeScaling holds the parameters of the RoPE context-extension variants
// of Hugging Face transformers (rope_type in config.json). Defaults that
// transformers derives from other config fields (YaRN's and LongRoPE's
// attention factor, LongRoPE's factor) are resolved by the caller; see
// YarnAttentionFactor and LongRopeAttentionFactor.
type RopeScaling struct {
	// Type is "" or "default" (no scaling), "linear", "dynamic", "llama3",
	// "yarn" or "longrope".
	Type string
	// Factor is the context-extension ratio (linear, dynamic, llama3, yarn).
	Factor float64
	// MaxPos (dynamic) is max_position_embeddings: up to that sequence
	// length the frequencies are the original ones.
	MaxPos int
	// OriginalMaxPos (llama3, yarn, longrope) is the pre-training context,
	// original_max_position_embeddings.
	OriginalMaxPos int
	// LowFreqFactor and HighFreqFactor (llama3) bound the wavelength band
	// that is interpolated smoothly.
	LowFreqFactor, HighFreqFactor float64
	// BetaFast and BetaSlow (yarn) are the rotation counts that bound the
	// ramp between extrapolated and interpolated dimensions (32 and 1 when
	// zero, as in transformers).
	BetaFast, BetaSlow float64
	// NoTruncate (yarn, truncate: false) keeps the ramp's bounds fractional
	// instead of widening them to whole dimensions.
	NoTruncate bool
	// ShortFactor and LongFactor (longrope) divide the frequencies, one
	// value per pair: short for sequences up to OriginalMaxPos, long beyond.
	ShortFactor, LongFactor []float64
	// AttentionFactor multiplies cos and sin (yarn, longrope); zero means 1.
	AttentionFactor float64
}

// ropeTable is the cos/sin of positions [p0, p0+n) for one set of
// frequencies, laid out [(p−p0)·RotDim/2 + i].
type ropeTable struct {
	inv      []float32
	seqLen   int // dynamic: the sequence length the frequencies are for
	p0       int
	cos, sin []float32
}

// dynTables is how many per-length dynamic tables are kept: the query and
// key calls of every layer of one forward pass share one.
const dynTables = 4

// NewRope builds the original rope (no scaling) with tables for the first
// maxPos positions; Apply extends them if a longer sequence arrives.
// roundFreq may be nil (see RoundFreq).
func NewRope(headDim, rotDim int, theta float64, interleaved bool, maxPos int, roundFreq func(float32) float32) *Rope {
	r := &Rope{HeadDim: headDim, RotDim: rotDim, Theta: theta, Interleaved: interleaved, RoundFreq: roundFreq}
	r.tableFor(0, maxPos)
	return r
}

// NewScaledRope builds a rope with a context-extension variant, checking
// its parameters; maxPos and roundFreq are as for NewRope.
func NewScaledRope(headDim, rotDim int, theta float64, interleaved bool, s RopeScaling, maxPos int, roundFreq func(float32) float32) (*Rope, error) {
	if err := s.check(rotDim); err != nil {
		return nil, err
	}
	switch {
	case rotDim < 2 || rotDim%2 != 0 || rotDim > headDim:
		return nil, fmt.Errorf("rope: rotary dimension %d must be even, at least 2 and at most the head dimension %d", rotDim, headDim)
	case !(theta > 0) || math.IsInf(theta, 0):
		return nil, fmt.Errorf("rope: theta must be positive, got %v", theta)
	}
	r := &Rope{HeadDim: headDim, RotDim: rotDim, Theta: theta, Interleaved: interleaved, RoundFreq: roundFreq, Scaling: s}
	// Only the build-time frequencies are tabulated ahead; the
	// length-dependent ones are made when a call needs them.
	switch s.Type {
	case "longrope":
		maxPos = min(maxPos, s.OriginalMaxPos)
	case "dynamic":
		maxPos = min(maxPos, s.MaxPos)
	}
	r.grown(&r.static, maxPos, r.staticFreqs)
	return r, nil
}

// RopeTypes are the Type values RopeScaling accepts (besides "").
var RopeTypes = []string{"default", "linear", "dynamic", "llama3", "yarn", "longrope"}

func (s *RopeScaling) check(rotDim int) error {
	pos := func(name string, v float64) error {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("rope %s: %s must be positive, got %v", s.Type, name, v)
		}
		return nil
	}
	switch s.Type {
	case "", "default":
	case "linear":
		return pos("factor", s.Factor)
	case "dynamic":
		if err := pos("factor", s.Factor); err != nil {
			return err
		}
		if s.MaxPos <= 0 {
			return fmt.Errorf("rope dynamic: max_position_embeddings must be positive, got %d", s.MaxPos)
		}
		if rotDim <= 2 {
			return fmt.Errorf("rope dynamic: the rotary dimension must exceed 2 (the NTK exponent is d/(d−2)), got %d", rotDim)
		}
	case "llama3":
		for _, f := range []struct {
			n string
			v float64
		}{{"factor", s.Factor}, {"low_freq_factor", s.LowFreqFactor}, {"high_freq_factor", s.HighFreqFactor}} {
			if err := pos(f.n, f.v); err != nil {
				return err
			}
		}
		if s.HighFreqFactor <= s.LowFreqFactor {
			return fmt.Errorf("rope llama3: high_freq_factor %v must exceed low_freq_factor %v", s.HighFreqFactor, s.LowFreqFactor)
		}
		if s.OriginalMaxPos <= 0 {
			return fmt.Errorf("rope llama3: original_max_position_embeddings must be positive, got %d", s.OriginalMaxPos)
		}
	case "yarn":
		if err := pos("factor", s.Factor); err != nil {
			return err
		}
		if s.OriginalMaxPos <= 0 {
			return fmt.Errorf("rope yarn: original_max_position_embeddings must be positive, got %d", s.OriginalMaxPos)
		}
		if s.BetaFast < 0 || s.BetaSlow < 0 {
			return fmt.Errorf("rope yarn: beta_fast and beta_slow must not be negative, got %v and %v", s.BetaFast, s.BetaSlow)
		}
	case "longrope":
		if s.OriginalMaxPos <= 0 {
			return fmt.Errorf("rope longrope: original_max_position_embeddings must be positive, got %d", s.OriginalMaxPos)
		}
		for _, f := range []struct {
			n string
			v []float64
		}{{"short_factor", s.ShortFactor}, {"long_factor", s.LongFactor}} {
			if len(f.v) != rotDim/2 {
				return fmt.Errorf("rope longrope: %s has %d values, want rotary dimension / 2 = %d", f.n, len(f.v), rotDim/2)
			}
			for i, v := range f.v {
				if !(v > 0) || math.IsInf(v, 0) {
					return fmt.Errorf("rope longrope: %s[%d] must be positive, got %v", f.n, i, v)
				}
			}
		}
	default:
		return fmt.Errorf("rope: unknown type %q (supported: %v)", s.Type, RopeTypes)
	}
	if s.AttentionFactor < 0 || math.IsInf(s.AttentionFactor, 0) || math.IsNaN(s.AttentionFactor) {
		return fmt.Errorf("rope %s: attention_factor must not be negative, got %v", s.Type, s.AttentionFactor)
	}
	return nil
}

// YarnAttentionFactor is YaRN's default attention factor (Peng et al.
// 2023, "mscale"): m(factor, mscale) / m(factor, mscaleAllDim) with
// m(s, k) = 0.1·k·ln s + 1 for s > 1 (else 1) — DeepSeek's form — when
// both mscale and mscaleAllDim are non-zero, and m(factor, 1) otherwise
// (a lone mscale is ignored, as in transformers). The factor compensates
// for the flatter attention that interpolated positions produce.
func YarnAttentionFactor(factor, mscale, mscaleAllDim float64) float64 {
	m := func(s, k float64) float64 {
		if s <= 1 {
			return 1
		}
		return 0.1*k*math.Log(s) + 1
	}
	if mscale != 0 && mscaleAllDim != 0 {
		return m(factor, mscale) / m(factor, mscaleAllDim)
	}
	return m(factor, 1)
}

// LongRopeAttentionFactor is LongRoPE's default attention factor,
// √(1 + ln factor / ln originalMaxPos) for factor > 1 (else 1), where
// factor is the context-extension ratio.
func LongRopeAttentionFactor(factor float64, originalMaxPos int) float64 {
	if factor <= 1 {
		return 1
	}
	return math.Sqrt(1 + math.Log(factor)/math.Log(float64(originalMaxPos)))
}

// InvFreq returns the inverse frequencies a call of sequence length seqLen
// (pos0+rows, see Apply) rotates by.
func (r *Rope) InvFreq(seqLen int) []float32 {
	switch r.regime(seqLen) {
	case regimeLong:
		return r.longFreqs()
	case regimeDynamic:
		return r.dynamicFreqs(seqLen)
	}
	return r.staticFreqs()
}

// attention returns the factor cos and sin are scaled by.
func (r *Rope) attention() float32 {
	if r.Scaling.AttentionFactor == 0 {
		return 1
	}
	return float32(r.Scaling.AttentionFactor)
}

const (
	regimeStatic = iota
	regimeLong
	regimeDynamic
)

// regime tells which frequencies a call of sequence length seqLen uses.
//
// transformers decides per forward call from seq_len = max(position_ids)+1,
// which for a call at positions pos0 … pos0+rows−1 is pos0+rows:
//   - longrope uses the long factors when seq_len > OriginalMaxPos;
//   - dynamic recomputes its base for seq_len when seq_len > MaxPos.
//
// In a KV-cached decode every step is its own call, so the new token's
// query and key get the frequencies of the length so far, while keys
// already in the cache keep the rotation they were stored with — exactly
// what calling Apply on each step's rows gives. One difference remains:
// transformers' dynamic module remembers the longest length it has seen
// and keeps those frequencies for any later call that is shorter but still
// beyond MaxPos (until a call shorter than MaxPos resets it); Apply depends
// only on the call itself, which is what a fresh module computes and what
// the usual growing-then-restarting use of one module gives.
func (r *Rope) regime(seqLen int) int {
	switch r.Scaling.Type {
	case "longrope":
		if seqLen > r.Scaling.OriginalMaxPos {
			return regimeLong
		}
	case "dynamic":
		if seqLen > r.Scaling.MaxPos {
			return regimeDynamic
		}
	}
	return regimeStatic
}

// Apply rotates x, which holds rows tokens at positions pos0, pos0+1, … each
// made of heads vectors of HeadDim features. For the length-dependent
// variants the call's sequence length is pos0+rows (see regime).
func (r *Rope) Apply(x []float32, rows, heads, pos0 int) {
	if rows <= 0 {
		return
	}
	t := r.tableFor(pos0, pos0+rows)
	width := heads * r.HeadDim
	splitRows(rows, width, func(t0, t1 int) { r.apply(t, x, t0, t1, heads, pos0) })
}

// apply rotates rows [t0, t1) of x.
func (r *Rope) apply(tab *ropeTable, x []float32, t0, t1, heads, pos0 int) {
	half := r.RotDim / 2
	width := heads * r.HeadDim
	for t := t0; t < t1; t++ {
		p := pos0 + t - tab.p0
		cs := tab.cos[p*half : (p+1)*half]
		sn := tab.sin[p*half : (p+1)*half]
		for h := 0; h < heads; h++ {
			v := x[t*width+h*r.HeadDim : t*width+h*r.HeadDim+r.RotDim]
			if r.Interleaved {
				for i := 0; i < half; i++ {
					a, b := v[2*i], v[2*i+1]
					v[2*i] = a*cs[i] - b*sn[i]
					v[2*i+1] = a*sn[i] + b*cs[i]
				}
				continue
			}
			for i := 0; i < half; i++ {
				a, b := v[i], v[i+half]
				v[i] = a*cs[i] - b*sn[i]
				v[i+half] = b*cs[i] + a*sn[i]
			}
		}
	}
}

// tableFor returns a table holding positions [lo, hi) for a call of
// sequence length hi.
func (r *Rope) tableFor(lo, hi int) *ropeTable {
	switch r.regime(hi) {
	case regimeLong:
		return r.grown(&r.long, hi, r.longFreqs)
	case regimeDynamic:
		return r.dynamicTable(lo, hi)
	}
	return r.grown(&r.static, hi, r.staticFreqs)
}

// grown returns *slot holding at least positions [0, n), growing it (at
// least doubling, so a token-by-token decode rebuilds it rarely) when it
// is shorter.
func (r *Rope) grown(slot *atomic.Pointer[ropeTable], n int, freqs func() []float32) *ropeTable {
	if t := slot.Load(); t != nil && t.p0+len(t.cos)/(r.RotDim/2) >= n {
		return t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := slot.Load()
	have := 0
	if old != nil {
		have = len(old.cos) / (r.RotDim / 2)
		if have >= n {
			return old
		}
	}
	t := &ropeTable{}
	if old != nil {
		t.inv = old.inv
	} else {
		t.inv = freqs()
	}
	m := max(n, 2*have)
	r.fill(t, 0, m, old)
	slot.Store(t)
	return t
}

// dynamicTable returns the table of a dynamic-NTK call of sequence length
// hi > MaxPos covering [lo, hi), from the recent ones when it is there.
func (r *Rope) dynamicTable(lo, hi int) *ropeTable {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, t := range r.dyn {
		if t.seqLen == hi && t.p0 <= lo {
			// Move to the front: the most recent first.
			copy(r.dyn[1:i+1], r.dyn[:i])
			r.dyn[0] = t
			return t
		}
	}
	t := &ropeTable{inv: r.dynamicFreqs(hi), seqLen: hi, p0: lo}
	r.fill(t, lo, hi, nil)
	if len(r.dyn) < dynTables {
		r.dyn = append(r.dyn, nil)
	}
	copy(r.dyn[1:], r.dyn[:len(r.dyn)-1])
	r.dyn[0] = t
	return t
}

// fill computes t's cos/sin for positions [lo, hi), copying those that old
// (same frequencies, starting at 0) already holds.
func (r *Rope) fill(t *ropeTable, lo, hi int, old *ropeTable) {
	half := r.RotDim / 2
	t.p0 = lo
	t.cos = make([]float32, (hi-lo)*half)
	t.sin = make([]float32, (hi-lo)*half)
	start := lo
	if old != nil && lo == 0 {
		n := copy(t.cos, old.cos)
		copy(t.sin, old.sin)
		start = n / half
	}
	att := r.attention()
	for p := start; p < hi; p++ {
		fp := float32(p)
		row := (p - lo) * half
		for i, f := range t.inv {
			// float32 angle, as transformers' inv_freq @ position_ids.
			a := float64(float32(f * fp))
			c, s := float32(math.Cos(a)), float32(math.Sin(a))
			if att != 1 {
				c, s = c*att, s*att
			}
			t.cos[row+i], t.sin[row+i] = c, s
		}
	}
}

// The frequency formulas below reproduce transformers' float32 tensor
// arithmetic: every tensor operation rounds to float32 (written here as an
// explicit float32 conversion, which also keeps the compiler from fusing a
// multiply and an add), Python scalars enter an operation as float32, and
// "scalar / tensor" is evaluated as reciprocal(tensor) × scalar, as torch
// does. Plain Python arithmetic on scalars (the ramp bounds, the llama3
// wavelength limits) stays in float64.

// exponents returns 2i/RotDim in float32, i < RotDim/2.
func (r *Rope) exponents() []float32 {
	half := r.RotDim / 2
	e := make([]float32, half)
	for i := range e {
		e[i] = float32(2*i) / float32(r.RotDim)
	}
	return e
}

// powers returns base^(2i/RotDim), each a float32 power of float32 inputs.
func (r *Rope) powers(base float32) []float32 {
	e := r.exponents()
	for i, x := range e {
		e[i] = float32(math.Pow(float64(base), float64(x)))
	}
	return e
}

// recip is the float32 reciprocal.
func recip(x float32) float32 { return float32(1 / x) }

// plainFreqs are the original rope's 1/θ^(2i/d).
func (r *Rope) plainFreqs(theta float32) []float32 {
	f := r.powers(theta)
	for i, p := range f {
		f[i] = recip(p)
	}
	return f
}

// staticFreqs returns the frequencies fixed when the model is built
// (inv_freq at initialisation), RoundFreq applied.
func (r *Rope) staticFreqs() []float32 {
	s := &r.Scaling
	theta := float32(r.Theta)
	var inv []float32
	switch s.Type {
	case "linear":
		// Position interpolation (Chen et al. 2023): positions divided by
		// factor, i.e. every frequency divided by it.
		inv = r.plainFreqs(theta)
		fac := float32(s.Factor)
		for i := range inv {
			inv[i] = float32(inv[i] / fac)
		}
	case "llama3":
		inv = r.llama3Freqs(theta)
	case "yarn":
		inv = r.yarnFreqs(theta)
	case "longrope":
		inv = r.longRopeFreqs(theta, s.ShortFactor)
	default: // "default", "dynamic" up to MaxPos
		inv = r.plainFreqs(theta)
	}
	if r.RoundFreq != nil {
		for i, f := range inv {
			inv[i] = r.RoundFreq(f)
		}
	}
	return inv
}

// longFreqs are longrope's frequencies beyond OriginalMaxPos.
func (r *Rope) longFreqs() []float32 {
	return r.longRopeFreqs(float32(r.Theta), r.Scaling.LongFactor)
}

// longRopeFreqs are LongRoPE's (Ding et al. 2024) per-pair rescaled
// frequencies 1/(λ_i·θ^(2i/d)), with λ the searched short or long factors.
func (r *Rope) longRopeFreqs(theta float32, lambda []float64) []float32 {
	f := r.powers(theta)
	for i, p := range f {
		f[i] = recip(float32(float32(lambda[i]) * p))
	}
	return f
}

// dynamicFreqs are dynamic NTK-aware scaling's frequencies for a sequence
// of length L > MaxPos: the original formula with θ replaced by
//
//	θ' = θ·(factor·L/MaxPos − (factor − 1))^(d/(d−2)),
//
// which stretches the lowest frequency by about factor·L/MaxPos − factor + 1
// while leaving the highest one alone. transformers evaluates it on the
// float32 tensor max(position_ids)+1, so it is float32 throughout except
// the power, whose exponent is a Python float (torch's CPU pow then
// computes in double).
func (r *Rope) dynamicFreqs(L int) []float32 {
	s := &r.Scaling
	d := float64(r.RotDim)
	x := float32(float32(s.Factor) * float32(L))
	x = float32(x / float32(s.MaxPos))
	x = float32(x - float32(s.Factor-1))
	x = float32(math.Pow(float64(x), d/(d-2)))
	base := float32(float32(r.Theta) * x)
	return r.plainFreqs(base)
}

// llama3Freqs is Llama 3.1's frequency-dependent interpolation. With
// wavelength λ_i = 2π/f_i and the pre-training context C:
//   - λ < C/high_freq_factor (high frequencies, many turns within C): kept;
//   - λ > C/low_freq_factor (low frequencies, less than a turn within C):
//     divided by factor, like linear interpolation;
//   - between: blended, f·((1−s)/factor + s) with s = (C/λ − low)/(high − low),
//     which runs from 0 at the low band edge to 1 at the high one.
func (r *Rope) llama3Freqs(theta float32) []float32 {
	s := &r.Scaling
	inv := r.plainFreqs(theta)
	old := float64(s.OriginalMaxPos)
	lowWave := float32(old / s.LowFreqFactor)
	highWave := float32(old / s.HighFreqFactor)
	fac := float32(s.Factor)
	lo, span := float32(s.LowFreqFactor), float32(s.HighFreqFactor-s.LowFreqFactor)
	twoPi, old32 := float32(2*math.Pi), float32(old)
	for i, f := range inv {
		wave := float32(recip(f) * twoPi)
		g := f
		if wave > lowWave {
			g = float32(f / fac)
		}
		if !(wave < highWave) && !(wave > lowWave) {
			sm := float32(float32(recip(wave)*old32) - lo)
			sm = float32(sm / span)
			a := float32(float32(float32(1-sm)*g) / fac)
			g = float32(a + float32(sm*g))
		}
		inv[i] = g
	}
	return inv
}

// yarnFreqs is YaRN's "NTK-by-parts" interpolation (Peng et al. 2023).
// Dimension i turns r_i = C·f_i/2π times within the pre-training context
// C. Dimensions that turn more than beta_fast times are extrapolated
// (frequency kept), those that turn less than beta_slow times are
// interpolated (frequency divided by factor), and a linear ramp over the
// dimension index blends the two in between. The bounds come from
// inverting r_i for i (the "correction dimension")
//
//	d·ln(C/(2π·β)) / (2·ln θ),
//
// floored and ceiled to whole dimensions unless NoTruncate, and clamped
// to [0, d−1].
func (r *Rope) yarnFreqs(theta float32) []float32 {
	s := &r.Scaling
	d := float64(r.RotDim)
	fast, slow := s.BetaFast, s.BetaSlow
	if fast == 0 {
		fast = 32
	}
	if slow == 0 {
		slow = 1
	}
	corr := func(rot float64) float64 {
		return d * math.Log(float64(s.OriginalMaxPos)/(rot*2*math.Pi)) / (2 * math.Log(r.Theta))
	}
	low, high := corr(fast), corr(slow)
	if !s.NoTruncate {
		low, high = math.Floor(low), math.Ceil(high)
	}
	low, high = max(low, 0), min(high, d-1)
	if low == high {
		high += 0.001 // as transformers, against a zero-width ramp
	}
	pos := r.powers(theta)
	fac := float32(s.Factor)
	low32, width := float32(low), float32(high-low)
	inv := make([]float32, len(pos))
	for i, p := range pos {
		extra := recip(p)
		inter := recip(float32(fac * p))
		ramp := float32(float32(float32(i)-low32) / width)
		ramp = min(max(ramp, 0), 1)
		keep := float32(1 - ramp) // weight of the extrapolated frequency
		inv[i] = float32(float32(inter*float32(1-keep)) + float32(extra*keep))
	}
	return inv
}
