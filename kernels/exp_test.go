package kernels

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"testing"
)

const (
	minNormal32 = 0x1p-126
	expRelTol   = 4e-7 // max relative error of exp for normal results
)

var (
	inf32  = float32(math.Inf(1))
	ninf32 = float32(math.Inf(-1))
	nan32  = float32(math.NaN())
)

// expErr checks got = exp(v) (v a float32, the reference taken in float64)
// and returns its relative error (0 outside the normal range, where it is
// checked absolutely).
func expErr(v, got float32) (float64, error) {
	want := math.Exp(float64(v))
	switch w32 := float32(want); {
	case math.IsNaN(want):
		if got == got {
			return 0, fmt.Errorf("exp(%v) = %v, want NaN", v, got)
		}
		return 0, nil
	case math.IsInf(float64(w32), 1):
		if got != inf32 {
			return 0, fmt.Errorf("exp(%v) = %v, want +Inf", v, got)
		}
		return 0, nil
	case v <= expLo && got != 0:
		return 0, fmt.Errorf("exp(%v) = %v, want 0", v, got)
	case want < minNormal32:
		// subnormal or zero: within one subnormal step of the exact value
		if math.Abs(float64(got)-want) > 0x1p-149 {
			return 0, fmt.Errorf("exp(%v) = %g, want %g (subnormal)", v, got, want)
		}
		return 0, nil
	}
	rel := math.Abs(float64(got)-want) / want
	if rel > expRelTol || got != got {
		return rel, fmt.Errorf("exp(%v) = %v, want %v (rel err %.3g)", v, got, want, rel)
	}
	return rel, nil
}

// TestExpSweep checks the exp of both paths over a dense sweep of
// [−110, 95] and the special values, through ExpShift(y, x, 0, 1) (which
// computes exp(x_i) exactly as written) and the scalar twin.
func TestExpSweep(t *testing.T) {
	impls := paths(t)
	var xs []float32
	for x := -110.0; x < 95; x += 0.000731 {
		xs = append(xs, float32(x))
	}
	for x := float32(-1e-3); x < 1e-3; x += 1.37e-6 {
		xs = append(xs, x)
	}
	xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1e-45, -1e-45,
		88.72283, 88.722839, 88.7228394, 88.75, 88.76, 89, 100, 1e30, inf32,
		-87.33654, -87.3366, -103.97207, -103.972084, -103.98, -104, -104.5, -1e30, ninf32, nan32,
		math.Float32frombits(0x7fc00001), math.Float32frombits(0xffc00000))
	// the powers of two in range and their neighbours
	for e := -10; e <= 6; e++ {
		v := float32(math.Ldexp(1, e))
		for _, s := range []float32{1, -1} {
			xs = append(xs, s*v, s*math.Nextafter32(v, 0), s*math.Nextafter32(v, 200))
		}
	}
	y := make([]float32, len(xs))
	for _, asm := range impls {
		withAsm(asm, func() { ExpShift(y, xs, 0, 1) })
		var worst, worstAt float64
		fails := 0
		for i, v := range xs {
			rel, err := expErr(v, y[i])
			if err != nil && fails < 10 {
				t.Errorf("%s: %v", pathName(asm), err)
				fails++
			}
			if rel > worst {
				worst, worstAt = rel, float64(v)
			}
		}
		t.Logf("%s: %d points, max relative error %.3g (%.2f·2^-24) at x=%v", pathName(asm), len(xs), worst, worst/0x1p-24, worstAt)
	}
	// the scalar twin directly
	var worst float64
	for _, v := range xs {
		rel, err := expErr(v, expGo(v))
		if err != nil {
			t.Fatalf("expGo: %v", err)
		}
		worst = math.Max(worst, rel)
	}
	t.Logf("expGo: max relative error %.3g", worst)
}

// TestExpExhaustive checks every float32 in [−105, 89] on both paths. It
// takes a minute, so it runs only with LLMQ_LONG=1.
func TestExpExhaustive(t *testing.T) {
	impls := paths(t)
	if long, _ := strconv.ParseBool(os.Getenv("LLMQ_LONG")); !long {
		t.Skip("set LLMQ_LONG=1 to run")
	}
	// [lo, hi] over the bit patterns: positives 0…89 and negatives −0…−105
	ranges := [][2]uint32{{0, math.Float32bits(89)}, {0x80000000, math.Float32bits(-105)}}
	for _, asm := range impls {
		var mu sync.Mutex
		var worst float64
		var worstX float32
		var firstErr error
		for _, r := range ranges {
			const chunk = 1 << 16
			n := int(r[1]-r[0]) + 1
			ParallelFor((n+chunk-1)/chunk, func(lo, hi int) {
				x := make([]float32, chunk)
				y := make([]float32, chunk)
				var w float64
				var wx float32
				var ferr error
				for c := lo; c < hi; c++ {
					m := min(chunk, n-c*chunk)
					for i := range m {
						x[i] = math.Float32frombits(r[0] + uint32(c*chunk+i))
					}
					withAsmLocal(asm, y[:m], x[:m])
					for i, v := range x[:m] {
						rel, err := expErr(v, y[i])
						if err != nil && ferr == nil {
							ferr = err
						}
						if rel > w {
							w, wx = rel, v
						}
					}
				}
				mu.Lock()
				if w > worst {
					worst, worstX = w, wx
				}
				if firstErr == nil {
					firstErr = ferr
				}
				mu.Unlock()
			})
		}
		if firstErr != nil {
			t.Errorf("%s: %v", pathName(asm), firstErr)
		}
		t.Logf("%s: every float32 in [-105, 89]: max relative error %.4g (%.2f·2^-24) at x=%v", pathName(asm), worst, worst/0x1p-24, worstX)
	}
}

// withAsmLocal computes y = exp(x) on the chosen path without touching the
// global switch (the exhaustive test runs it from several goroutines).
func withAsmLocal(asm bool, y, x []float32) {
	if asm {
		expShiftAVX2(len(x), &y[0], &x[0], 0, 1)
		return
	}
	expShiftGo(y, x, 0, 1)
}

// edgeValues are mixed into the random inputs of the table-driven tests.
var edgeValues = []float32{0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1e-40, 88.72, 88.73, 89, 100,
	-87.3, -88.8, -100, -103.97, -104, -200, 1e30, -1e30, inf32, ninf32, nan32, 3e38, -3e38}

// testInput returns n values: mostly N(0, scale²), and with special set a
// few edge values at random places.
func testInput(r *rand.Rand, n int, scale float64, special bool) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * scale)
		if special && r.Intn(8) == 0 {
			x[i] = edgeValues[r.Intn(len(edgeValues))]
		}
	}
	return x
}

// near checks got against the float64 reference ref: NaN and ±Inf (after
// rounding ref to float32) must match exactly, other values within
// rel·|ref| + abs.
func near(got float32, ref, rel, abs float64) bool {
	if math.IsNaN(ref) {
		return got != got
	}
	if r32 := float32(ref); math.IsInf(float64(r32), 0) {
		return got == r32
	}
	return math.Abs(float64(got)-ref) <= rel*math.Abs(ref)+abs
}

// sameClass reports whether a and b are both NaN, or equal infinities, or
// both finite and within 1e-6 relative of each other (or 1e-36 absolute):
// the asm and Go paths must agree this closely.
func sameClass(a, b float32) bool {
	switch {
	case a != a || b != b:
		return a != a && b != b
	case math.IsInf(float64(a), 0) || math.IsInf(float64(b), 0):
		return a == b
	}
	return math.Abs(float64(a)-float64(b)) <= 1e-6*math.Abs(float64(b))+1e-36
}

// offsets are the starting positions of the test slices inside their
// backing arrays (every alignment of 8 floats).
var expLengths = func() []int {
	var l []int
	for n := 0; n <= 40; n++ {
		l = append(l, n)
	}
	return append(l, 63, 64, 65, 255, 1000, 4097, 32000)
}()

// guarded returns a copy of x placed at offset off of a larger buffer whose
// other elements are sentinels, and a check that the sentinels survived.
func guarded(x []float32, off int) ([]float32, func() error) {
	const sentinel = -12345.5
	buf := make([]float32, off+len(x)+16)
	for i := range buf {
		buf[i] = sentinel
	}
	s := buf[off : off+len(x)]
	copy(s, x)
	return s, func() error {
		for i, v := range buf {
			if (i < off || i >= off+len(x)) && v != sentinel {
				return fmt.Errorf("element %d outside the slice [%d, %d) was overwritten: %v", i, off, off+len(x), v)
			}
		}
		return nil
	}
}

func TestSumExp(t *testing.T) {
	impls := paths(t)
	r := rand.New(rand.NewSource(11))
	for _, n := range expLengths {
		for _, special := range []bool{false, true} {
			for _, sc := range []float64{1, 30} {
				x := testInput(r, n, sc, special)
				shift := maxGo(x)
				if r.Intn(3) == 0 {
					shift = float32(r.NormFloat64() * 10) // unshifted terms may overflow
				}
				var ref float64
				for _, v := range x {
					ref += math.Exp(float64(v - shift))
				}
				var got [2]float64
				for _, asm := range impls {
					xs, check := guarded(x, n%8)
					withAsm(asm, func() { got[b2i(asm)] = SumExp(xs, shift) })
					if err := check(); err != nil {
						t.Fatal(err)
					}
					g := got[b2i(asm)]
					ok := g == ref || math.IsNaN(ref) && math.IsNaN(g) ||
						math.Abs(g-ref) <= expRelTol*ref+1e-44*float64(n)
					if math.IsInf(float64(float32(ref)), 1) { // some term overflowed float32
						ok = math.IsInf(g, 1)
					}
					if !ok {
						t.Errorf("%s n=%d special=%v scale=%v shift=%v: SumExp = %v, want %v (rel %.3g)",
							pathName(asm), n, special, sc, shift, g, ref, math.Abs(g-ref)/ref)
					}
				}
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestExpShift(t *testing.T) {
	impls := paths(t)
	r := rand.New(rand.NewSource(12))
	for _, n := range expLengths {
		for _, special := range []bool{false, true} {
			x := testInput(r, n, 10, special)
			shift := maxGo(x)
			scale := float32(0.125)
			if r.Intn(2) == 0 {
				scale = float32(r.Float64() * 3)
			}
			var out [2][]float32
			for _, asm := range impls {
				for _, alias := range []bool{false, true} {
					xs, checkX := guarded(x, (n+3)%8)
					y := xs
					checkY := checkX
					if !alias {
						y, checkY = guarded(make([]float32, n), n%8)
					}
					var sum float64
					withAsm(asm, func() { sum = ExpShift(y, xs, shift, scale) })
					if err := checkX(); err != nil {
						t.Fatal(err)
					}
					if err := checkY(); err != nil {
						t.Fatal(err)
					}
					var ref, refGot float64
					for i, v := range x {
						a := (v - shift) * scale
						if _, err := expErr(a, y[i]); err != nil {
							t.Fatalf("%s n=%d alias=%v i=%d: %v", pathName(asm), n, alias, i, err)
						}
						ref += math.Exp(float64(a))
						refGot += float64(y[i])
					}
					if !(sum == refGot || math.Abs(sum-refGot) <= 1e-15*refGot || math.IsNaN(refGot) && math.IsNaN(sum)) {
						t.Errorf("%s n=%d: returned sum %v, Σ y = %v", pathName(asm), n, sum, refGot)
					}
					if !near(float32(sum), ref, expRelTol, 1e-44*float64(n)) && !(math.IsInf(float64(float32(ref)), 1) && math.IsInf(sum, 1)) {
						t.Errorf("%s n=%d: sum %v, want %v", pathName(asm), n, sum, ref)
					}
					out[b2i(asm)] = append([]float32(nil), y...)
				}
			}
			if HasAsm() {
				for i := range out[0] {
					if !sameClass(out[1][i], out[0][i]) {
						t.Errorf("n=%d i=%d x=%v: asm %v, go %v", n, i, x[i], out[1][i], out[0][i])
					}
				}
			}
		}
	}
}

// siluRef is x/(1+e^−x) in float64.
func siluRef(x float32) float64 {
	v := float64(x)
	return v / (1 + math.Exp(-v))
}

func TestSiLU(t *testing.T) {
	impls := paths(t)
	r := rand.New(rand.NewSource(13))
	for _, n := range expLengths {
		for _, special := range []bool{false, true} {
			x := testInput(r, n, 4, special)
			u := testInput(r, n, 1, special)
			var outs, outm [2][]float32
			for _, asm := range impls {
				xs, check := guarded(x, n%8)
				withAsm(asm, func() { SiLU(xs) })
				if err := check(); err != nil {
					t.Fatal(err)
				}
				g, checkG := guarded(x, (n+5)%8)
				us, checkU := guarded(u, (n+1)%8)
				withAsm(asm, func() { SiLUMul(g, us) })
				for _, c := range []func() error{checkG, checkU} {
					if err := c(); err != nil {
						t.Fatal(err)
					}
				}
				for i, v := range x {
					// results below ~2^-118 may flush to ±0 (e^−x overflows first)
					ref := siluRef(v)
					if !near(xs[i], ref, 5e-7, 1e-35) {
						t.Fatalf("%s n=%d: SiLU(%v) = %v, want %v", pathName(asm), n, v, xs[i], ref)
					}
					refm := ref * float64(u[i])
					// (where SiLU flushes to ±0, that zero times u is right too)
					flushed := math.Abs(ref) < 1e-35 && near(g[i], math.Copysign(0, ref)*float64(u[i]), 0, 0)
					if !near(g[i], refm, 6e-7, 1e-35*math.Max(1, math.Abs(float64(u[i])))) && !flushed {
						t.Fatalf("%s n=%d: SiLU(%v)·%v = %v, want %v", pathName(asm), n, v, u[i], g[i], refm)
					}
				}
				outs[b2i(asm)] = xs
				outm[b2i(asm)] = g
			}
			if HasAsm() {
				for i := range x {
					if !sameClass(outs[1][i], outs[0][i]) || !sameClass(outm[1][i], outm[0][i]) {
						t.Errorf("n=%d x=%v u=%v: asm %v %v, go %v %v", n, x[i], u[i], outs[1][i], outm[1][i], outs[0][i], outm[0][i])
					}
				}
			}
		}
	}
	// the special values, exactly
	cases := []struct{ x, want float32 }{{0, 0}, {inf32, inf32}, {-200, 0}, {1e30, 1e30}}
	for _, asm := range impls {
		for _, c := range cases {
			x := []float32{c.x}
			withAsm(asm, func() { SiLU(x) })
			if x[0] != c.want {
				t.Errorf("%s: SiLU(%v) = %v, want %v", pathName(asm), c.x, x[0], c.want)
			}
		}
		x := []float32{nan32, ninf32}
		withAsm(asm, func() { SiLU(x) })
		if x[0] == x[0] || x[1] == x[1] {
			t.Errorf("%s: SiLU(NaN), SiLU(-Inf) = %v, want NaN (as x/(1+e^-x))", pathName(asm), x)
		}
	}
}

func TestMaxF32(t *testing.T) {
	impls := paths(t)
	r := rand.New(rand.NewSource(14))
	for _, n := range expLengths {
		for _, special := range []bool{false, true} {
			x := testInput(r, n, 100, special)
			if n > 0 && r.Intn(2) == 0 {
				x[r.Intn(n)] = 1e6 // the maximum anywhere, tails included
			}
			want := float32(math.Inf(-1))
			for _, v := range x {
				if v > want {
					want = v
				}
			}
			for _, asm := range impls {
				var got float32
				withAsm(asm, func() { got = MaxF32(x) })
				if got != want {
					t.Errorf("%s n=%d: MaxF32 = %v, want %v", pathName(asm), n, got, want)
				}
			}
		}
	}
	for _, asm := range impls {
		for _, n := range []int{0, 3, 8, 13, 40} {
			x := make([]float32, n)
			for i := range x {
				x[i] = nan32
			}
			var got float32
			withAsm(asm, func() { got = MaxF32(x) })
			if got != ninf32 {
				t.Errorf("%s: MaxF32 of %d NaNs = %v, want -Inf", pathName(asm), n, got)
			}
			if n > 0 {
				x[n-1] = -5
				withAsm(asm, func() { got = MaxF32(x) })
				if got != -5 {
					t.Errorf("%s: MaxF32 of NaNs and -5 = %v, want -5", pathName(asm), got)
				}
			}
		}
	}
}

func TestScale(t *testing.T) {
	impls := paths(t)
	r := rand.New(rand.NewSource(15))
	for _, n := range expLengths {
		x := testInput(r, n, 1, true)
		a := float32(r.NormFloat64())
		for _, asm := range impls {
			xs, check := guarded(x, n%8)
			withAsm(asm, func() { Scale(xs, a) })
			if err := check(); err != nil {
				t.Fatal(err)
			}
			for i, v := range x {
				if w := v * a; xs[i] != w && !(w != w && xs[i] != xs[i]) {
					t.Fatalf("%s n=%d: %v·%v = %v, want %v", pathName(asm), n, v, a, xs[i], w)
				}
			}
		}
	}
}
