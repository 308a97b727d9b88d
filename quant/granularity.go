package quant

import (
	"errors"
	"fmt"
	"strings"
)

// Granularity: which values share one set of quantization parameters.
//
// A scale shared by more values is cheaper to store and to apply but must
// cover the largest magnitude among them, so one outlier coarsens the grid
// for all of them. The usual trade-offs for LLMs:
//
//   - PerTensor: one (s, z) for the whole matrix. Cheapest; the scale factors
//     out of the GEMM entirely. Fine for FP8, poor for INT4 weights.
//   - PerChannel: one per output channel, i.e. per row of W [out×in]. Each
//     row's scale multiplies its output column after an integer GEMM, so it is
//     free at run time; the standard for INT8 weights.
//   - PerToken: one per row of the activation X [tokens×in]. Also factors out
//     of the GEMM (it scales an output row); computed dynamically per token.
//   - PerGroup (g): one per g consecutive input columns within each row
//     (g ∈ {32, 64, 128, …}). Needed for ≤4-bit weights: the scales follow the
//     local magnitude, at a storage cost of 16–32 bits per g weights. They no
//     longer factor out of the GEMM and must be applied inside the reduction,
//     one partial sum per group.
//
// PerChannel and PerToken compute the same thing — one parameter set per row
// of the matrix being quantized — and differ only in intent (W vs X). Neither
// quantizes along columns: per-input-channel activation scales cannot be
// factored out of x·Wᵀ (that is the problem SmoothQuant migrates away).
type Granularity uint8

const (
	PerTensor Granularity = iota
	PerChannel
	PerToken
	PerGroup
)

func (g Granularity) String() string {
	switch g {
	case PerTensor:
		return "tensor"
	case PerChannel:
		return "channel"
	case PerToken:
		return "token"
	case PerGroup:
		return "group"
	}
	return fmt.Sprintf("Granularity(%d)", uint8(g))
}

// Format is the kind of code grid: integers or one of the minifloats.
type Format uint8

const (
	FormatInt     Format = iota // affine integer grid, 2..8 bits (int.go)
	FormatFP8E4M3               // OCP FP8 E4M3FN (fp.go)
	FormatFP8E5M2               // FP8 E5M2
	FormatFP4E2M1               // FP4 E2M1
)

func (k Format) String() string {
	switch k {
	case FormatInt:
		return "int"
	case FormatFP8E4M3:
		return "fp8e4m3"
	case FormatFP8E5M2:
		return "fp8e5m2"
	case FormatFP4E2M1:
		return "fp4e2m1"
	}
	return fmt.Sprintf("Format(%d)", uint8(k))
}

// ScaleConstraint restricts the values scales may take so that kernels can
// apply them by exponent arithmetic (see scale.go).
type ScaleConstraint uint8

const (
	ScaleAny       ScaleConstraint = iota // any positive float
	ScalePow2                             // ZeroQuant-FP M1: Ŝ = 2^ceil(log2 S)
	ScalePow2Ratio                        // ZeroQuant-FP M2: S_max(row) / 2^ceil(log2(S_max/S_i))
)

func (c ScaleConstraint) String() string {
	switch c {
	case ScaleAny:
		return "any"
	case ScalePow2:
		return "pow2"
	case ScalePow2Ratio:
		return "pow2ratio"
	}
	return fmt.Sprintf("ScaleConstraint(%d)", uint8(c))
}

// Errors returned (wrapped, with details) by validation and quantization.
// Test with errors.Is.
var (
	ErrSpec      = errors.New("quant: invalid spec")
	ErrGroupSize = errors.New("quant: group size does not divide the number of columns")
	ErrShape     = errors.New("quant: shape mismatch")
	ErrNonFinite = errors.New("quant: non-finite value")
	ErrParams    = errors.New("quant: invalid quantization parameters")
)

// Spec describes one quantization format completely: the code grid, which
// values share parameters, and how scales are constrained and stored. It is a
// small comparable value; recipes write it as a string (ParseSpec/String).
type Spec struct {
	Format Format
	// Bits is the code width: 2..8 for FormatInt; 8 for the FP8 formats and 4
	// for FP4 (it must match).
	Bits int
	// Symmetric: zero-point fixed at 0 (signed codes). Asymmetric integer
	// grids are unsigned with an integer zero-point. The FP formats are
	// always symmetric.
	Symmetric bool
	// FullRange selects the symmetric integer range [−2^(b−1), 2^(b−1)−1]
	// (GPTQ "sym") instead of the default [−(2^(b−1)−1), 2^(b−1)−1].
	FullRange   bool
	Granularity Granularity
	// GroupSize is the number of consecutive columns sharing parameters;
	// PerGroup only (0 otherwise).
	GroupSize int
	// Scale constrains scale values (ZeroQuant-FP M1/M2); symmetric formats
	// only. ScalePow2Ratio requires PerGroup.
	Scale ScaleConstraint
	// HalfScales stores scales as IEEE FP16: computed scales are rounded to
	// FP16 before codes are chosen, so stored and used scales agree.
	HalfScales bool
}

// IsFP reports whether the spec uses a minifloat format.
func (s Spec) IsFP() bool { return s.Format != FormatInt }

// FP returns the minifloat format, or nil for integer specs.
func (s Spec) FP() *FPFormat { return fpFormatOf(s.Format) }

// HasZero reports whether parameters carry a meaningful zero-point
// (asymmetric integer grids).
func (s Spec) HasZero() bool { return s.Format == FormatInt && !s.Symmetric }

// IntRange returns the integer code range [qmin, qmax] of an integer spec.
// For FP specs it returns the range of the codes' bit patterns
// [0, 2^Bits − 1].
func (s Spec) IntRange() (qmin, qmax int32) {
	if s.IsFP() {
		return 0, 1<<s.Bits - 1
	}
	return IntRange(s.Bits, s.Symmetric, s.FullRange)
}

// check validates the spec on its own (no shape).
func (s Spec) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w %v: %s", ErrSpec, s, fmt.Sprintf(format, a...))
	}
	switch s.Format {
	case FormatInt:
		if s.Bits < 2 || s.Bits > 8 {
			return bad("integer bits %d outside 2..8", s.Bits)
		}
		if s.FullRange && !s.Symmetric {
			return bad("full range applies to symmetric grids only")
		}
	case FormatFP8E4M3, FormatFP8E5M2, FormatFP4E2M1:
		if w := fpFormatOf(s.Format).Bits(); s.Bits != w {
			return bad("%s codes are %d bits, not %d", s.Format, w, s.Bits)
		}
		if !s.Symmetric {
			return bad("minifloat formats are symmetric")
		}
		if s.FullRange {
			return bad("full range applies to integer grids only")
		}
	default:
		return bad("unknown format %d", uint8(s.Format))
	}
	switch s.Granularity {
	case PerTensor, PerChannel, PerToken:
		if s.GroupSize != 0 {
			return bad("group size %d given for %s granularity", s.GroupSize, s.Granularity)
		}
	case PerGroup:
		if s.GroupSize < 1 {
			return bad("group size %d must be positive", s.GroupSize)
		}
	default:
		return bad("unknown granularity %d", uint8(s.Granularity))
	}
	switch s.Scale {
	case ScaleAny:
	case ScalePow2, ScalePow2Ratio:
		if !s.Symmetric {
			return bad("scale constraints need a symmetric grid (the zero-point would not follow the scale)")
		}
		if s.Scale == ScalePow2Ratio && s.Granularity != PerGroup {
			return bad("pow2ratio relates the group scales of a row and needs group granularity")
		}
	default:
		return bad("unknown scale constraint %d", uint8(s.Scale))
	}
	return nil
}

// Validate checks the spec and that it applies to a [rows×cols] matrix
// (rows, cols ≥ 1). A group size that does not divide cols gives an error
// wrapping ErrGroupSize; other problems wrap ErrSpec or ErrShape.
func (s Spec) Validate(rows, cols int) error {
	if err := s.check(); err != nil {
		return err
	}
	if rows < 1 || cols < 1 {
		return fmt.Errorf("%w: %d×%d matrix for %v", ErrShape, rows, cols, s)
	}
	if s.Granularity == PerGroup && cols%s.GroupSize != 0 {
		return fmt.Errorf("%w: group size %d, %d columns (%v)", ErrGroupSize, s.GroupSize, cols, s)
	}
	return nil
}

// ParamShape returns the layout of the parameters (one Params per group) of
// a [rows×cols] matrix: prows × pcols, row-major. PerTensor: 1×1;
// PerChannel/PerToken: rows×1; PerGroup: rows × cols/GroupSize.
func (s Spec) ParamShape(rows, cols int) (prows, pcols int) {
	switch s.Granularity {
	case PerTensor:
		return 1, 1
	case PerGroup:
		return rows, cols / s.GroupSize
	}
	return rows, 1
}

// NumParams is prows·pcols of ParamShape.
func (s Spec) NumParams(rows, cols int) int {
	pr, pc := s.ParamShape(rows, cols)
	return pr * pc
}

// ParamIndex returns the index into the parameter slice of element (r, c) of
// a matrix with cols columns.
func (s Spec) ParamIndex(r, c, cols int) int {
	switch s.Granularity {
	case PerTensor:
		return 0
	case PerGroup:
		return r*(cols/s.GroupSize) + c/s.GroupSize
	}
	return r
}

// GroupCols is the number of consecutive columns of one row that share
// parameters: GroupSize for PerGroup, cols otherwise.
func (s Spec) GroupCols(cols int) int {
	if s.Granularity == PerGroup {
		return s.GroupSize
	}
	return cols
}

// String form of a Spec.
//
// The canonical form is a dash-separated list, in this order:
//
//	format        int2 … int8 | fp8e4m3 | fp8e5m2 | fp4e2m1
//	sym | asym    integer formats only (required)
//	full          symmetric integer full range (optional)
//	granularity   tensor | channel | token | g<N> (N ≥ 1, no leading zeros)
//	constraint    pow2 | pow2ratio (optional)
//	f16scale      FP16 scale storage (optional)
//
// for example "int8-sym-channel", "int4-asym-g128", "int4-sym-full-g128",
// "fp8e4m3-tensor", "fp4e2m1-g128-pow2ratio-f16scale". ParseSpec accepts
// exactly the canonical form, so a string that parses is its own String().

// String returns the canonical string form.
func (s Spec) String() string {
	var b strings.Builder
	if s.Format == FormatInt {
		fmt.Fprintf(&b, "int%d", s.Bits)
		if s.Symmetric {
			b.WriteString("-sym")
		} else {
			b.WriteString("-asym")
		}
		if s.FullRange {
			b.WriteString("-full")
		}
	} else {
		b.WriteString(s.Format.String())
	}
	if s.Granularity == PerGroup {
		fmt.Fprintf(&b, "-g%d", s.GroupSize)
	} else {
		b.WriteString("-" + s.Granularity.String())
	}
	if s.Scale != ScaleAny {
		b.WriteString("-" + s.Scale.String())
	}
	if s.HalfScales {
		b.WriteString("-f16scale")
	}
	return b.String()
}

// maxGroupSize bounds parsed group sizes (keeps the arithmetic far from
// overflow; no real layer is wider).
const maxGroupSize = 1 << 24

// ParseSpec parses the canonical string form (see Spec.String) and validates
// the result (shape-independent checks). Errors wrap ErrSpec.
func ParseSpec(str string) (Spec, error) {
	fail := func(format string, a ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("%w %q: %s", ErrSpec, str, fmt.Sprintf(format, a...))
	}
	toks := strings.Split(str, "-")
	var s Spec
	i := 0
	next := func() string {
		if i < len(toks) {
			return toks[i]
		}
		return ""
	}
	switch f := next(); f {
	case "fp8e4m3":
		s.Format, s.Bits, s.Symmetric = FormatFP8E4M3, 8, true
	case "fp8e5m2":
		s.Format, s.Bits, s.Symmetric = FormatFP8E5M2, 8, true
	case "fp4e2m1":
		s.Format, s.Bits, s.Symmetric = FormatFP4E2M1, 4, true
	default:
		if len(f) != 4 || f[:3] != "int" || f[3] < '2' || f[3] > '8' {
			return fail("format %q: want int2…int8, fp8e4m3, fp8e5m2 or fp4e2m1", f)
		}
		s.Format, s.Bits = FormatInt, int(f[3]-'0')
	}
	i++
	if s.Format == FormatInt {
		switch next() {
		case "sym":
			s.Symmetric = true
		case "asym":
		default:
			return fail("integer format needs sym or asym after %q", toks[0])
		}
		i++
		if next() == "full" {
			s.FullRange = true
			i++
		}
	}
	switch g := next(); g {
	case "tensor":
		s.Granularity = PerTensor
	case "channel":
		s.Granularity = PerChannel
	case "token":
		s.Granularity = PerToken
	default:
		n, ok := parseGroup(g)
		if !ok {
			return fail("granularity %q: want tensor, channel, token or g<N>", g)
		}
		s.Granularity, s.GroupSize = PerGroup, n
	}
	i++
	switch next() {
	case "pow2":
		s.Scale = ScalePow2
		i++
	case "pow2ratio":
		s.Scale = ScalePow2Ratio
		i++
	}
	if next() == "f16scale" {
		s.HalfScales = true
		i++
	}
	if i < len(toks) {
		return fail("unexpected %q (order: format, sym|asym, full, granularity, pow2|pow2ratio, f16scale)", toks[i])
	}
	if err := s.check(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// parseGroup parses "g<N>": decimal digits, no sign, no leading zero.
func parseGroup(g string) (int, bool) {
	if len(g) < 2 || g[0] != 'g' || g[1] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range g[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > maxGroupSize {
			return 0, false
		}
	}
	return n, true
}

// MustParseSpec is ParseSpec for constant strings; it panics on error.
func MustParseSpec(str string) Spec {
	s, err := ParseSpec(str)
	if err != nil {
		panic(err)
	}
	return s
}
