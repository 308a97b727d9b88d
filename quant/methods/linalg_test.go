package methods

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// laRandSPD returns a random symmetric positive definite n×n matrix AᵀA/n + δI.
func laRandSPD(rng *rand.Rand, n int, delta float64) []float64 {
	a := make([]float64, 2*n*n)
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	rows := 2 * n
	h := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for k := 0; k < rows; k++ {
				s += a[k*n+i] * a[k*n+j]
			}
			h[i*n+j] = s / float64(rows)
		}
		h[i*n+i] += delta
	}
	return h
}

func laMatMul(a, b []float64, m, k, n int) []float64 {
	c := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			linAxpy(a[i*k+p], b[p*n:(p+1)*n], c[i*n:(i+1)*n])
		}
	}
	return c
}

func laTranspose(a []float64, m, n int) []float64 {
	t := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			t[j*m+i] = a[i*n+j]
		}
	}
	return t
}

func laMaxAbsDiff(a, b []float64) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

// laGaussJordanInverse is an independent reference inverse (partial pivoting).
func laGaussJordanInverse(h []float64, n int) []float64 {
	a := append([]float64(nil), h...)
	inv := make([]float64, n*n)
	for i := 0; i < n; i++ {
		inv[i*n+i] = 1
	}
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(a[r*n+c]) > math.Abs(a[p*n+c]) {
				p = r
			}
		}
		for j := 0; j < n; j++ {
			a[c*n+j], a[p*n+j] = a[p*n+j], a[c*n+j]
			inv[c*n+j], inv[p*n+j] = inv[p*n+j], inv[c*n+j]
		}
		f := 1 / a[c*n+c]
		for j := 0; j < n; j++ {
			a[c*n+j] *= f
			inv[c*n+j] *= f
		}
		for r := 0; r < n; r++ {
			if r != c && a[r*n+c] != 0 {
				g := a[r*n+c]
				linAxpy(-g, a[c*n:(c+1)*n], a[r*n:(r+1)*n])
				linAxpy(-g, inv[c*n:(c+1)*n], inv[r*n:(r+1)*n])
			}
		}
	}
	return inv
}

// laJacobiEig is an independent reference symmetric eigensolver (cyclic
// Jacobi): eigenvalues descending and eigenvectors as columns of v.
func laJacobiEig(a []float64, n int) (vals, v []float64) {
	a = append([]float64(nil), a...)
	v = make([]float64, n*n)
	for i := 0; i < n; i++ {
		v[i*n+i] = 1
	}
	for sweep := 0; sweep < 100; sweep++ {
		var off float64
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				off += a[i*n+j] * a[i*n+j]
			}
		}
		if off < 1e-30 {
			break
		}
		for p := 0; p < n; p++ {
			for q := p + 1; q < n; q++ {
				if a[p*n+q] == 0 {
					continue
				}
				theta := (a[q*n+q] - a[p*n+p]) / (2 * a[p*n+q])
				t := math.Copysign(1, theta) / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				for k := 0; k < n; k++ { // A ← A·J
					akp, akq := a[k*n+p], a[k*n+q]
					a[k*n+p] = c*akp - s*akq
					a[k*n+q] = s*akp + c*akq
				}
				for k := 0; k < n; k++ { // A ← Jᵀ·A
					apk, aqk := a[p*n+k], a[q*n+k]
					a[p*n+k] = c*apk - s*aqk
					a[q*n+k] = s*apk + c*aqk
				}
				for k := 0; k < n; k++ {
					vkp, vkq := v[k*n+p], v[k*n+q]
					v[k*n+p] = c*vkp - s*vkq
					v[k*n+q] = s*vkp + c*vkq
				}
			}
		}
	}
	vals = make([]float64, n)
	for i := range vals {
		vals[i] = a[i*n+i]
	}
	// sort descending
	for i := 0; i < n; i++ {
		k := i
		for j := i + 1; j < n; j++ {
			if vals[j] > vals[k] {
				k = j
			}
		}
		vals[i], vals[k] = vals[k], vals[i]
		for r := 0; r < n; r++ {
			v[r*n+i], v[r*n+k] = v[r*n+k], v[r*n+i]
		}
	}
	return vals, v
}

func TestCholeskyKnown(t *testing.T) {
	a := []float64{4, 12, -16, 12, 37, -43, -16, -43, 98}
	want := []float64{2, 0, 0, 6, 1, 0, -8, 5, 3}
	if err := cholesky(a, 3); err != nil {
		t.Fatal(err)
	}
	if d := laMaxAbsDiff(a, want); d > 1e-14 {
		t.Errorf("L = %v, want %v", a, want)
	}
	bad := []float64{1, 2, 2, 1} // eigenvalues 3, −1
	if err := cholesky(bad, 2); !errors.Is(err, errNotPD) {
		t.Errorf("indefinite matrix: err = %v, want errNotPD", err)
	}
	nan := []float64{1, 0, 0, math.NaN()}
	if err := cholesky(nan, 2); !errors.Is(err, errNotPD) {
		t.Errorf("NaN pivot: err = %v, want errNotPD", err)
	}
}

func TestCholeskyRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 7, 64, 260} { // 260 takes the parallel path
		h := laRandSPD(rng, n, 0.1)
		l := append([]float64(nil), h...)
		if err := cholesky(l, n); err != nil {
			t.Fatal(err)
		}
		llt := laMatMul(l, laTranspose(l, n, n), n, n, n)
		if d := laMaxAbsDiff(llt, h); d > 1e-12 {
			t.Errorf("n=%d: ‖LLᵀ − H‖max = %g", n, d)
		}
		linv := append([]float64(nil), l...)
		invLower(linv, n)
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				if linv[i*n+j] != 0 {
					t.Fatalf("n=%d: L⁻¹ not lower triangular at (%d,%d)", n, i, j)
				}
			}
		}
		id := laMatMul(l, linv, n, n, n)
		for i := 0; i < n; i++ {
			id[i*n+i]--
		}
		if d := laMaxAbsDiff(id, make([]float64, n*n)); d > 1e-11 {
			t.Errorf("n=%d: ‖L·L⁻¹ − I‖max = %g", n, d)
		}
	}
}

func TestInvLowerKnown(t *testing.T) {
	l := []float64{2, 0, 0, 6, 1, 0, -8, 5, 3}
	// Forward substitution by hand: column 0 of L⁻¹ is (1/2, −3, 109/6)…
	want := []float64{0.5, 0, 0, -3, 1, 0, (8*0.5 + 5*3) / 3, -5.0 / 3, 1.0 / 3}
	invLower(l, 3)
	if d := laMaxAbsDiff(l, want); d > 1e-14 {
		t.Errorf("L⁻¹ = %v, want %v", l, want)
	}
}

func TestUpperCholOfInverse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 5, 50, 200} {
		h := laRandSPD(rng, n, 0.05)
		u, err := upperCholOfInverse(h, n)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if !(u[i*n+i] > 0) {
				t.Fatalf("n=%d: U_%d%d = %g not positive", n, i, i, u[i*n+i])
			}
			for j := 0; j < i; j++ {
				if u[i*n+j] != 0 {
					t.Fatalf("n=%d: U not upper triangular at (%d,%d)", n, i, j)
				}
			}
		}
		utu := laMatMul(laTranspose(u, n, n), u, n, n, n)
		ref := laGaussJordanInverse(h, n)
		scale := 0.0
		for _, v := range ref {
			scale = math.Max(scale, math.Abs(v))
		}
		if d := laMaxAbsDiff(utu, ref); d > 1e-11*scale {
			t.Errorf("n=%d: ‖UᵀU − H⁻¹‖max = %g (scale %g)", n, d, scale)
		}
	}
	// A known case: H = [[2,1],[1,2]], H⁻¹ = [[2,−1],[−1,2]]/3, whose upper
	// Cholesky factor is [[√(2/3), −1/√6], [0, 1/√2]].
	u, err := upperCholOfInverse([]float64{2, 1, 1, 2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{math.Sqrt(2.0 / 3), -1 / math.Sqrt(6), 0, 1 / math.Sqrt2}
	if d := laMaxAbsDiff(u, want); d > 1e-15 {
		t.Errorf("U = %v, want %v", u, want)
	}
	if _, err := upperCholOfInverse([]float64{1, 2, 2, 1}, 2); !errors.Is(err, errNotPD) {
		t.Errorf("indefinite H: err = %v, want errNotPD", err)
	}
}

func TestTridiagEig(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 9, 40} {
		d := make([]float64, n)
		e := make([]float64, n)
		a := make([]float64, n*n)
		for i := range d {
			d[i] = rng.NormFloat64()
			a[i*n+i] = d[i]
			if i+1 < n {
				e[i] = rng.NormFloat64()
				a[i*n+i+1], a[(i+1)*n+i] = e[i], e[i]
			}
		}
		if n == 9 { // a repeated eigenvalue through a decoupled block
			e[4] = 0
			a[4*n+5], a[5*n+4] = 0, 0
		}
		ref, _ := laJacobiEig(a, n)
		z := make([][]float64, n)
		for i := range z {
			z[i] = make([]float64, n)
			z[i][i] = 1
		}
		if err := tridiagEig(d, e, z); err != nil {
			t.Fatal(err)
		}
		for i := range d {
			if math.Abs(d[i]-ref[i]) > 1e-12 {
				t.Errorf("n=%d: λ_%d = %.15g, Jacobi %.15g", n, i, d[i], ref[i])
			}
		}
		// A·s_i = λ_i·s_i for the columns of z.
		for i := 0; i < n; i++ {
			for r := 0; r < n; r++ {
				var s float64
				for c := 0; c < n; c++ {
					s += a[r*n+c] * z[c][i]
				}
				if math.Abs(s-d[i]*z[r][i]) > 1e-12 {
					t.Fatalf("n=%d: eigenvector %d residual %g at row %d", n, i, s-d[i]*z[r][i], r)
				}
			}
		}
	}
}

// laCheckSVD verifies shapes, orthonormality of the factors and the
// projection identity ‖E − E_r‖² = ‖E‖² − Σ s².
func laCheckSVD(t *testing.T, e []float64, m, n, r int, u, s, v []float64) float64 {
	t.Helper()
	if len(u) != m*r || len(v) != n*r || len(s) != r {
		t.Fatalf("shapes: u %d, s %d, v %d for %d×%d rank %d", len(u), len(s), len(v), m, n, r)
	}
	for i := 1; i < r; i++ {
		if s[i] > s[i-1] {
			t.Fatalf("singular values not descending: %v", s)
		}
	}
	for a := 0; a < r; a++ {
		for b := 0; b < r; b++ {
			var uu, vv float64
			for k := 0; k < m; k++ {
				uu += u[k*r+a] * u[k*r+b]
			}
			for k := 0; k < n; k++ {
				vv += v[k*r+a] * v[k*r+b]
			}
			want := 0.0
			if a == b {
				want = 1
			}
			if s[a] > 0 && s[b] > 0 && (math.Abs(uu-want) > 1e-9 || math.Abs(vv-want) > 1e-9) {
				t.Fatalf("factors not orthonormal: uᵀu[%d,%d] = %g, vᵀv = %g", a, b, uu, vv)
			}
		}
	}
	var res, tot float64
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			x := e[i*n+j]
			for k := 0; k < r; k++ {
				x -= u[i*r+k] * s[k] * v[j*r+k]
			}
			res += x * x
			tot += e[i*n+j] * e[i*n+j]
		}
	}
	var ss float64
	for _, x := range s {
		ss += x * x
	}
	if math.Abs(res-(tot-ss)) > 1e-9*tot {
		t.Errorf("‖E − E_r‖² = %g but ‖E‖² − Σs² = %g", res, tot-ss)
	}
	return res
}

func TestTruncatedSVDExactLowRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct{ m, n, rank, r int }{{40, 30, 5, 5}, {30, 70, 4, 6}, {200, 150, 8, 8}} {
		// E = Σ σ_i a_i b_iᵀ with orthonormal a, b from Gram–Schmidt.
		orth := func(rows int) [][]float64 {
			var q [][]float64
			for len(q) < c.rank {
				x := make([]float64, rows)
				for i := range x {
					x[i] = rng.NormFloat64()
				}
				lanczosReorth(x, q)
				lanczosReorth(x, q)
				nx := math.Sqrt(linDot(x, x))
				for i := range x {
					x[i] /= nx
				}
				q = append(q, x)
			}
			return q
		}
		a, b := orth(c.m), orth(c.n)
		sig := make([]float64, c.rank)
		e := make([]float64, c.m*c.n)
		for k := range sig {
			sig[k] = float64(10 - k) // distinct
			for i := 0; i < c.m; i++ {
				linAxpy(sig[k]*a[k][i], b[k], e[i*c.n:(i+1)*c.n])
			}
		}
		u, s, v, err := truncatedSVD(e, c.m, c.n, c.r)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < c.r; k++ {
			want := 0.0
			if k < c.rank {
				want = sig[k]
			}
			if math.Abs(s[k]-want) > 1e-10 {
				t.Errorf("%d×%d rank %d: σ_%d = %.12g, want %g", c.m, c.n, c.rank, k, s[k], want)
			}
		}
		if res := laCheckSVD(t, e, c.m, c.n, c.r, u, s, v); res > 1e-18*float64(c.m*c.n) {
			t.Errorf("%d×%d rank %d: reconstruction error² %g", c.m, c.n, c.rank, res)
		}
	}
}

// Eckart–Young: the rank-r truncation error of a random matrix equals the
// sum of its trailing squared singular values (from an independent Jacobi
// eigendecomposition of the Gram matrix).
func TestTruncatedSVDEckartYoung(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []struct{ m, n, r int }{{60, 45, 6}, {45, 80, 8}, {120, 120, 4}, {10, 12, 12}} {
		e := make([]float64, c.m*c.n)
		for i := range e {
			e[i] = rng.NormFloat64()
		}
		d := min(c.m, c.n)
		u, s, v, err := truncatedSVD(e, c.m, c.n, c.r)
		if err != nil {
			t.Fatal(err)
		}
		res := laCheckSVD(t, e, c.m, c.n, min(c.r, d), u, s, v)
		var g []float64
		if c.n <= c.m {
			g = laMatMul(laTranspose(e, c.m, c.n), e, c.n, c.m, c.n)
		} else {
			g = laMatMul(e, laTranspose(e, c.m, c.n), c.m, c.n, c.m)
		}
		lam, _ := laJacobiEig(g, d)
		var tail float64
		for k := min(c.r, d); k < d; k++ {
			tail += math.Max(lam[k], 0)
		}
		for k := 0; k < min(c.r, d); k++ {
			if want := math.Sqrt(lam[k]); math.Abs(s[k]-want) > 1e-9*want {
				t.Errorf("%d×%d: σ_%d = %.12g, Jacobi %.12g", c.m, c.n, k, s[k], want)
			}
		}
		if math.Abs(res-tail) > 1e-9*(tail+1) {
			t.Errorf("%d×%d rank %d: truncation error² %.12g, Σ tail σ² %.12g", c.m, c.n, c.r, res, tail)
		}
	}
	if _, _, _, err := truncatedSVD([]float64{1, math.NaN()}, 1, 2, 1); err == nil {
		t.Error("NaN input must be an error")
	}
}

// A 1024×1024 quantization-error-like (flat-spectrum) matrix, rank 8: must
// stay well under a second.
func TestTruncatedSVDLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	const m, n, r = 1024, 1024, 8
	e := make([]float64, m*n)
	for i := range e {
		e[i] = rng.Float64() - 0.5
	}
	start := time.Now()
	_, s, _, err := truncatedSVD(e, m, n, r)
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("1024×1024 rank 8: %v, σ = %.4f…%.4f", el, s[0], s[r-1])
	if el > 3*time.Second {
		t.Errorf("truncated SVD took %v", el)
	}
}
