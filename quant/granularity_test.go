package quant

import (
	"errors"
	"testing"
)

func TestParseSpec(t *testing.T) {
	valid := []struct {
		str  string
		want Spec
	}{
		{"int8-sym-channel", Spec{Format: FormatInt, Bits: 8, Symmetric: true, Granularity: PerChannel}},
		{"int8-sym-token", Spec{Format: FormatInt, Bits: 8, Symmetric: true, Granularity: PerToken}},
		{"int8-asym-tensor", Spec{Format: FormatInt, Bits: 8, Granularity: PerTensor}},
		{"int4-asym-g128", Spec{Format: FormatInt, Bits: 4, Granularity: PerGroup, GroupSize: 128}},
		{"int4-sym-full-g64", Spec{Format: FormatInt, Bits: 4, Symmetric: true, FullRange: true, Granularity: PerGroup, GroupSize: 64}},
		{"int3-sym-g32-pow2", Spec{Format: FormatInt, Bits: 3, Symmetric: true, Granularity: PerGroup, GroupSize: 32, Scale: ScalePow2}},
		{"int2-asym-g16-f16scale", Spec{Format: FormatInt, Bits: 2, Granularity: PerGroup, GroupSize: 16, HalfScales: true}},
		{"fp8e4m3-tensor", Spec{Format: FormatFP8E4M3, Bits: 8, Symmetric: true, Granularity: PerTensor}},
		{"fp8e5m2-token", Spec{Format: FormatFP8E5M2, Bits: 8, Symmetric: true, Granularity: PerToken}},
		{"fp4e2m1-g128", Spec{Format: FormatFP4E2M1, Bits: 4, Symmetric: true, Granularity: PerGroup, GroupSize: 128}},
		{"fp4e2m1-g128-pow2ratio-f16scale", Spec{Format: FormatFP4E2M1, Bits: 4, Symmetric: true, Granularity: PerGroup, GroupSize: 128, Scale: ScalePow2Ratio, HalfScales: true}},
		{"fp4e2m1-channel-pow2", Spec{Format: FormatFP4E2M1, Bits: 4, Symmetric: true, Granularity: PerChannel, Scale: ScalePow2}},
	}
	for _, c := range valid {
		got, err := ParseSpec(c.str)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", c.str, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", c.str, got, c.want)
		}
		if s := got.String(); s != c.str {
			t.Errorf("String() = %q, want %q", s, c.str)
		}
	}
	invalid := []string{
		"", "int", "int1-sym-channel", "int9-sym-channel", "int16-sym-channel", "int8-channel",
		"int8-sym", "int8-sym-g0", "int8-sym-g012", "int8-sym-g+12", "int8-sym-g-12", "int8-sym-gx",
		"int8-asym-full-channel", "int8-sym-channel-full", "fp8e4m3-sym-tensor", "fp8e4m3-asym-tensor",
		"fp8-tensor", "fp8e4m3-full-tensor", "int8-asym-channel-pow2", "int4-sym-channel-pow2ratio",
		"fp4e2m1-g128-f16scale-pow2", "INT8-sym-channel", "int8-sym-channel-", "int8--sym-channel",
		"int8-sym-g99999999999999999999", "int8-sym-channel-f16scale-f16scale",
	}
	for _, s := range invalid {
		if sp, err := ParseSpec(s); err == nil {
			t.Errorf("ParseSpec(%q) = %v, want error", s, sp)
		} else if !errors.Is(err, ErrSpec) {
			t.Errorf("ParseSpec(%q) error %v does not wrap ErrSpec", s, err)
		}
	}
}

// Every valid Spec built field by field prints to a string that parses back
// to it.
func TestSpecStringRoundTrip(t *testing.T) {
	n := 0
	for _, f := range []Format{FormatInt, FormatFP8E4M3, FormatFP8E5M2, FormatFP4E2M1} {
		for bits := 2; bits <= 8; bits++ {
			for _, sym := range []bool{false, true} {
				for _, full := range []bool{false, true} {
					for _, g := range []Granularity{PerTensor, PerChannel, PerToken, PerGroup} {
						for _, sc := range []ScaleConstraint{ScaleAny, ScalePow2, ScalePow2Ratio} {
							for _, h := range []bool{false, true} {
								s := Spec{Format: f, Bits: bits, Symmetric: sym, FullRange: full, Granularity: g, Scale: sc, HalfScales: h}
								if g == PerGroup {
									s.GroupSize = 32
								}
								if s.check() != nil {
									continue
								}
								n++
								back, err := ParseSpec(s.String())
								if err != nil || back != s {
									t.Errorf("%+v → %q → %+v, %v", s, s.String(), back, err)
								}
							}
						}
					}
				}
			}
		}
	}
	if n < 100 {
		t.Errorf("only %d valid specs enumerated", n)
	}
}

func TestSpecValidate(t *testing.T) {
	s := MustParseSpec("int4-asym-g128")
	if err := s.Validate(16, 256); err != nil {
		t.Errorf("Validate(16, 256): %v", err)
	}
	for _, cols := range []int{100, 129, 64} {
		if err := s.Validate(16, cols); !errors.Is(err, ErrGroupSize) {
			t.Errorf("Validate(16, %d) = %v, want ErrGroupSize", cols, err)
		}
	}
	for _, sh := range [][2]int{{0, 128}, {4, 0}, {-1, 128}} {
		if err := s.Validate(sh[0], sh[1]); !errors.Is(err, ErrShape) {
			t.Errorf("Validate(%d, %d) = %v, want ErrShape", sh[0], sh[1], err)
		}
	}
	bad := []Spec{
		{Format: FormatInt, Bits: 1, Symmetric: true},
		{Format: FormatInt, Bits: 9},
		{Format: FormatFP8E4M3, Bits: 4, Symmetric: true},
		{Format: FormatFP8E4M3, Bits: 8},
		{Format: FormatInt, Bits: 8, Symmetric: true, Granularity: PerChannel, GroupSize: 32},
		{Format: FormatInt, Bits: 8, Symmetric: true, Granularity: PerGroup},
		{Format: 9, Bits: 8},
		{Format: FormatInt, Bits: 8, Symmetric: true, Granularity: 7},
		{Format: FormatInt, Bits: 8, Symmetric: true, Scale: 5},
	}
	for _, b := range bad {
		if err := b.Validate(4, 64); !errors.Is(err, ErrSpec) {
			t.Errorf("Validate(%+v) = %v, want ErrSpec", b, err)
		}
	}
}

func TestParamLayout(t *testing.T) {
	rows, cols := 3, 8
	cases := []struct {
		spec   string
		pr, pc int
		idx    func(r, c int) int
	}{
		{"int8-sym-tensor", 1, 1, func(r, c int) int { return 0 }},
		{"int8-sym-channel", 3, 1, func(r, c int) int { return r }},
		{"int8-sym-token", 3, 1, func(r, c int) int { return r }},
		{"int4-sym-g4", 3, 2, func(r, c int) int { return r*2 + c/4 }},
		{"int4-sym-g2", 3, 4, func(r, c int) int { return r*4 + c/2 }},
	}
	for _, c := range cases {
		s := MustParseSpec(c.spec)
		pr, pc := s.ParamShape(rows, cols)
		if pr != c.pr || pc != c.pc || s.NumParams(rows, cols) != c.pr*c.pc {
			t.Errorf("%s: ParamShape = %d×%d, want %d×%d", c.spec, pr, pc, c.pr, c.pc)
		}
		for r := 0; r < rows; r++ {
			for col := 0; col < cols; col++ {
				if got := s.ParamIndex(r, col, cols); got != c.idx(r, col) {
					t.Errorf("%s: ParamIndex(%d, %d) = %d, want %d", c.spec, r, col, got, c.idx(r, col))
				}
			}
		}
	}
}

// FuzzParseSpec: ParseSpec never panics, and whatever it accepts is exactly
// its own canonical String and passes check.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"int8-sym-channel", "int4-asym-g128", "fp8e4m3-tensor", "fp4e2m1-g128",
		"int4-sym-full-g32-pow2-f16scale", "fp4e2m1-g64-pow2ratio", "int8-sym-g0", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, str string) {
		s, err := ParseSpec(str)
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("ParseSpec(%q) error %v does not wrap ErrSpec", str, err)
			}
			return
		}
		if got := s.String(); got != str {
			t.Fatalf("ParseSpec(%q).String() = %q", str, got)
		}
		if err := s.check(); err != nil {
			t.Fatalf("ParseSpec(%q) accepted an invalid spec: %v", str, err)
		}
		back, err := ParseSpec(s.String())
		if err != nil || back != s {
			t.Fatalf("round trip %q: %+v, %v", str, back, err)
		}
	})
}
