package methods

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"llmq/kernels"
)

// Dense float64 linear algebra for the methods that need it: Cholesky and
// triangular inversion (the diagonal blocks of GPTQ's float32 factorization
// in linalg32.go, and its reference in the tests) and a truncated SVD (LoRC's
// low-rank compensation). Matrices are row-major []float64 with explicit
// sizes. Everything here is our own code, in float64: the inputs are FP32
// weights and activation sums, and the extra precision makes the
// factorizations' own rounding negligible next to theirs.

// errNotPD is returned (wrapped) by cholesky when the matrix is not
// numerically positive definite.
var errNotPD = errors.New("matrix is not positive definite")

// pivotError is errNotPD at a given pivot.
type pivotError struct {
	pivot int
	value float64
}

func (e *pivotError) Error() string {
	return fmt.Sprintf("%v (pivot %d is %g)", errNotPD, e.pivot, e.value)
}

func (e *pivotError) Unwrap() error { return errNotPD }

// linalgParallelMin is the matrix order from which the O(n³) helpers split their
// inner loops over goroutines.
const linalgParallelMin = 192

// cholesky factors the symmetric positive definite n×n matrix a in place
// into its lower-triangular Cholesky factor L (a = L·Lᵀ); the strict upper
// triangle is zeroed. Only the lower triangle of a is read. A pivot that is
// not positive and finite gives an error wrapping errNotPD.
//
// The column-oriented (left-looking) form computes column j from the
// already finished columns 0…j−1:
//
//	L_jj = √(a_jj − Σ_{k<j} L_jk²),   L_ij = (a_ij − Σ_{k<j} L_ik·L_jk) / L_jj   (i > j)
//
// Each L_ij is a dot product of two contiguous row prefixes, and the rows
// below j are independent, so large matrices split them over goroutines.
func cholesky(a []float64, n int) error {
	for j := 0; j < n; j++ {
		rj := a[j*n : j*n+j]
		s := a[j*n+j] - linDot(rj, rj)
		if !(s > 0) || math.IsInf(s, 0) {
			return &pivotError{j, s}
		}
		ljj := math.Sqrt(s)
		a[j*n+j] = ljj
		inv := 1 / ljj
		col := func(lo, hi int) {
			for i := lo; i < hi; i++ {
				a[i*n+j] = (a[i*n+j] - linDot(a[i*n:i*n+j], rj)) * inv
			}
		}
		if rest := n - j - 1; n >= linalgParallelMin && rest*j >= 1<<14 {
			kernels.ParallelFor(rest, func(lo, hi int) { col(j+1+lo, j+1+hi) })
		} else {
			col(j+1, n)
		}
	}
	for i := 0; i < n; i++ {
		clear(a[i*n+i+1 : (i+1)*n])
	}
	return nil
}

// invLower replaces the nonsingular lower-triangular n×n matrix l by its
// inverse (also lower triangular). Column j of X = L⁻¹ solves L·x = e_j by
// forward substitution, x_j = 1/L_jj, x_i = −(Σ_{j≤k<i} L_ik·x_k)/L_ii; the
// columns are independent. The result is written back row-major.
func invLower(l []float64, n int) {
	x := make([]float64, n*n) // x[j*n+i] = X_ij (column-major while solving)
	solve := func(lo, hi int) {
		for j := lo; j < hi; j++ {
			xc := x[j*n : (j+1)*n]
			xc[j] = 1 / l[j*n+j]
			for i := j + 1; i < n; i++ {
				xc[i] = -linDot(l[i*n+j:i*n+i], xc[j:i]) / l[i*n+i]
			}
		}
	}
	if n >= linalgParallelMin {
		kernels.ParallelFor(n, solve)
	} else {
		solve(0, n)
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if j <= i {
				l[i*n+j] = x[j*n+i]
			} else {
				l[i*n+j] = 0
			}
		}
	}
}

// upperCholOfInverse returns the upper-triangular U with positive diagonal
// such that H⁻¹ = Uᵀ·U, for a symmetric positive definite n×n H (not
// modified): what GPTQ computes as cholesky(cholesky_inverse(cholesky(H)),
// upper=True), without forming H⁻¹.
//
// With J the reversal permutation, factor J·H·J = M·Mᵀ (M lower). Then
// H = (J·M·J)·(J·M·J)ᵀ where Ũ = J·M·J is upper triangular, so
// H⁻¹ = Ũ⁻ᵀ·Ũ⁻¹ = Uᵀ·U with U = Ũ⁻¹ = J·M⁻¹·J — upper triangular with a
// positive diagonal, hence the (unique) Cholesky factor of H⁻¹. Cost: one
// Cholesky and one triangular inverse, n³/3 multiply-adds each.
func upperCholOfInverse(h []float64, n int) ([]float64, error) {
	m := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			m[i*n+j] = h[(n-1-i)*n+(n-1-j)]
		}
	}
	if err := cholesky(m, n); err != nil {
		return nil, err
	}
	invLower(m, n)
	u := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			u[i*n+j] = m[(n-1-i)*n+(n-1-j)]
		}
	}
	return u, nil
}

// linDot is Σ a[i]·b[i] over len(a), four independent accumulators.
func linDot(a, b []float64) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// linAxpy is y += α·x over len(x).
func linAxpy(alpha float64, x, y []float64) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

// tridiagEig computes the eigenvalues of the symmetric tridiagonal matrix
// with diagonal d and off-diagonal e (e[i] = T[i][i+1] for i < n−1; e has
// length n and e[n−1] is ignored) by the implicit QL method with Wilkinson
// shifts (EISPACK tql2). d receives the eigenvalues in descending order; e
// is destroyed. z, if not nil, holds p rows of length n that are multiplied
// on the right by the accumulated rotations and column-permuted like the
// eigenvalues: start from rows of the identity to get those rows of the
// eigenvector matrix (all n rows for every eigenvector, or just the last
// row for Lanczos' residual estimates, at O(n) per rotation instead of
// O(n²)).
func tridiagEig(d, e []float64, z [][]float64) error {
	n := len(d)
	if n == 0 {
		return nil
	}
	e[n-1] = 0
	var f, tst1 float64
	const eps = 0x1p-52
	for l := 0; l < n; l++ {
		tst1 = math.Max(tst1, math.Abs(d[l])+math.Abs(e[l]))
		m := l
		for m < n-1 && math.Abs(e[m]) > eps*tst1 {
			m++
		}
		for iter := 0; m > l; iter++ {
			if iter == 60 {
				return fmt.Errorf("tridiagonal eigenvalues: no convergence at %d of %d", l, n)
			}
			// Implicit shift from the leading 2×2 block.
			g := d[l]
			p := (d[l+1] - g) / (2 * e[l])
			r := math.Hypot(p, 1)
			if p < 0 {
				r = -r
			}
			d[l] = e[l] / (p + r)
			d[l+1] = e[l] * (p + r)
			dl1 := d[l+1]
			h := g - d[l]
			for i := l + 2; i < n; i++ {
				d[i] -= h
			}
			f += h
			// Implicit QL sweep from m back to l.
			p = d[m]
			c, c2, c3 := 1.0, 1.0, 1.0
			el1 := e[l+1]
			s, s2 := 0.0, 0.0
			for i := m - 1; i >= l; i-- {
				c3 = c2
				c2 = c
				s2 = s
				g = c * e[i]
				h = c * p
				r = math.Hypot(p, e[i])
				e[i+1] = s * r
				s = e[i] / r
				c = p / r
				p = c*d[i] - s*g
				d[i+1] = h + s*(c*g+s*d[i])
				for _, zr := range z {
					h = zr[i+1]
					zr[i+1] = s*zr[i] + c*h
					zr[i] = c*zr[i] - s*h
				}
			}
			p = -s * s2 * c3 * el1 * e[l] / dl1
			e[l] = s * p
			d[l] = c * p
			if math.Abs(e[l]) <= eps*tst1 {
				break
			}
		}
		d[l] += f
		e[l] = 0
	}
	// Selection sort, descending (n is small: Lanczos steps).
	for i := 0; i < n-1; i++ {
		k := i
		for j := i + 1; j < n; j++ {
			if d[j] > d[k] {
				k = j
			}
		}
		if k != i {
			d[i], d[k] = d[k], d[i]
			for _, zr := range z {
				zr[i], zr[k] = zr[k], zr[i]
			}
		}
	}
	return nil
}

// svdOp is a real m×n matrix E (row-major float64) seen through the two
// products Lanczos needs; both split over goroutines for large matrices.
type svdOp struct {
	e    []float64
	m, n int
}

// mul computes dst[m] = E·x[n].
func (o *svdOp) mul(dst, x []float64) {
	f := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = linDot(o.e[i*o.n:(i+1)*o.n], x)
		}
	}
	if o.m*o.n >= 1<<16 {
		kernels.ParallelFor(o.m, f)
	} else {
		f(0, o.m)
	}
}

// mulT computes dst[n] = Eᵀ·y[m]; each goroutine owns a range of outputs
// and streams the rows of E once.
func (o *svdOp) mulT(dst, y []float64) {
	f := func(lo, hi int) {
		d := dst[lo:hi]
		clear(d)
		for i := 0; i < o.m; i++ {
			if y[i] != 0 {
				linAxpy(y[i], o.e[i*o.n+lo:i*o.n+hi], d)
			}
		}
	}
	if o.m*o.n >= 1<<16 {
		kernels.ParallelFor(o.n, f)
	} else {
		f(0, o.n)
	}
}

// svdTol is the convergence threshold of truncatedSVD: every returned Ritz
// pair (θ, v) of the Gram matrix G has ‖G·v − θ·v‖ ≤ svdTol·θ_max. The
// eigenvalue error is then of order (svdTol·θ_max)²/gap — far below what
// matters for a rank-r correction — and the vectors are accurate to about
// svdTol·θ_max/gap.
const svdTol = 1e-9

// truncatedSVD returns the r leading singular triplets of the m×n matrix
// e (row-major, not modified): u [m×r] and v [n×r] row-major with
// orthonormal columns and s descending, so that E_r = u·diag(s)·vᵀ (singular
// values that are zero to rounding come with zero columns). If r ≥
// min(m, n) the decomposition is complete. The rank-r approximation is the
// orthogonal projection of E onto the computed singular subspace, so
// ‖E − E_r‖²_F = ‖E‖²_F − Σ s_i² exactly; with exact singular vectors it is
// the Eckart–Young optimum Σ_{i>r} σ_i².
//
// Method: Lanczos with full reorthogonalization on the Gram matrix of the
// smaller side (G = EᵀE if n ≤ m, else EEᵀ), applied as two products with E
// so G is never formed. After k steps the Krylov basis Q_k and the
// tridiagonal T_k = Q_kᵀ·G·Q_k give Ritz pairs (θ_i, Q_k·s_i), whose residual
// norms are β_k·|s_{k,i}| (the last components of T_k's eigenvectors,
// tracked cheaply by tridiagEig). The iteration stops when the r leading
// residuals are below svdTol·θ_1 or the Krylov space is the whole space.
// Lanczos converges to the extreme eigenvalues much faster than subspace
// iteration — it matters for quantization errors, whose spectra are nearly
// flat — and the full reorthogonalization (twice, Gram–Schmidt) keeps Q_k
// orthonormal to working precision, so no spurious copies appear. A
// breakdown (β ≈ 0: an invariant subspace, e.g. an exactly low-rank E)
// restarts from a fresh random vector orthogonal to Q_k, which also finds
// the null space (singular values 0). Each step costs 2·m·n multiply-adds
// plus 2·k·min(m,n) for the reorthogonalization; for a 1024×1024 error with
// r = 8 a few dozen to a couple of hundred steps suffice.
//
// The other side follows from the converged one: with v_i from G = EᵀE,
// s_i = ‖E·v_i‖ and u_i = E·v_i/s_i (so E_r = E·V·Vᵀ); symmetrically when
// G = EEᵀ.
func truncatedSVD(e []float64, m, n, r int) (u, s, v []float64, err error) {
	if len(e) != m*n || m < 1 || n < 1 {
		return nil, nil, nil, fmt.Errorf("truncatedSVD: %d values for a %d×%d matrix", len(e), m, n)
	}
	for i, x := range e {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, nil, nil, fmt.Errorf("truncatedSVD: element (%d, %d) is %v", i/n, i%n, x)
		}
	}
	d := min(m, n)
	r = min(max(r, 0), d)
	if r == 0 {
		return []float64{}, []float64{}, []float64{}, nil
	}
	op := &svdOp{e: e, m: m, n: n}
	big := max(m, n)
	tmp := make([]float64, big)
	// gram applies G on the small side.
	gram := func(dst, x []float64) {
		if n <= m {
			op.mul(tmp[:m], x)
			op.mulT(dst, tmp[:m])
		} else {
			op.mulT(tmp[:n], x)
			op.mul(dst, tmp[:n])
		}
	}
	_, vecs, err := lanczosTop(d, r, gram)
	if err != nil {
		return nil, nil, nil, err
	}
	u = make([]float64, m*r)
	v = make([]float64, n*r)
	s = make([]float64, r)
	other := make([]float64, big)
	for i := 0; i < r; i++ {
		x := vecs[i] // a unit vector on the small side
		var o []float64
		if n <= m {
			o = other[:m]
			op.mul(o, x)
		} else {
			o = other[:n]
			op.mulT(o, x)
		}
		si := math.Sqrt(linDot(o, o))
		s[i] = si
		if si > 0 {
			for k := range o {
				o[k] /= si
			}
		} else {
			clear(o)
		}
		small, large := v, u
		ls, ll := n, m
		if n > m {
			small, large = u, v
			ls, ll = m, n
		}
		for k := 0; k < ls; k++ {
			small[k*r+i] = x[k]
		}
		for k := 0; k < ll; k++ {
			large[k*r+i] = o[k]
		}
	}
	// Singular values at rounding level are zero: their vectors would be
	// rounding noise divided by rounding noise.
	smax := slices.Max(s)
	for i := range s {
		if s[i] <= 1e-12*smax {
			s[i] = 0
			for k := 0; k < m; k++ {
				u[k*r+i] = 0
			}
			for k := 0; k < n; k++ {
				v[k*r+i] = 0
			}
		}
	}
	// Order by the recomputed singular values (equal to √θ up to rounding).
	idx := make([]int, r)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case s[a] > s[b]:
			return -1
		case s[a] < s[b]:
			return 1
		}
		return 0
	})
	if !slices.IsSorted(idx) {
		u, s, v = svdPermuteCols(u, m, r, idx), svdPermuted(s, idx), svdPermuteCols(v, n, r, idx)
	}
	return u, s, v, nil
}

func svdPermuted(x []float64, idx []int) []float64 {
	out := make([]float64, len(idx))
	for i, k := range idx {
		out[i] = x[k]
	}
	return out
}

func svdPermuteCols(a []float64, rows, cols int, idx []int) []float64 {
	out := make([]float64, len(a))
	for i := 0; i < rows; i++ {
		for j, k := range idx {
			out[i*cols+j] = a[i*cols+k]
		}
	}
	return out
}

// lanczosTop returns the r largest eigenvalues (descending) and their unit
// eigenvectors of the symmetric positive semidefinite operator g on R^d
// (see truncatedSVD for the method). The start vectors are pseudo-random
// with a fixed seed, so results are reproducible.
func lanczosTop(d, r int, g func(dst, x []float64)) ([]float64, [][]float64, error) {
	if r == 0 {
		return nil, nil, nil
	}
	rng := rand.New(rand.NewPCG(0x10c, uint64(d)))
	var (
		q     [][]float64 // orthonormal Krylov basis
		alpha []float64   // diagonal of T
		beta  []float64   // off-diagonal of T: beta[j] couples q_j and q_{j+1}
	)
	w := make([]float64, d)
	// newStart appends a random unit vector orthogonal to q; false if q
	// already spans R^d (numerically).
	newStart := func() bool {
		for try := 0; try < 3; try++ {
			x := make([]float64, d)
			for i := range x {
				x[i] = rng.NormFloat64()
			}
			n0 := math.Sqrt(linDot(x, x))
			lanczosReorth(x, q)
			if nx := math.Sqrt(linDot(x, x)); nx > 1e-8*n0 {
				for i := range x {
					x[i] /= nx
				}
				q = append(q, x)
				return true
			}
		}
		return false
	}
	newStart()
	var gnorm float64 // running estimate of ‖G‖ for the breakdown test
	for {
		k := len(q)
		qk := q[k-1]
		g(w, qk)
		a := linDot(qk, w)
		alpha = append(alpha, a)
		lanczosReorth(w, q)
		lanczosReorth(w, q)
		b := math.Sqrt(linDot(w, w))
		gnorm = math.Max(gnorm, math.Abs(a)+b)
		if k == d {
			break
		}
		if k >= r && lanczosConverged(alpha, beta, b, r) {
			break
		}
		if b <= 1e-12*gnorm || b == 0 {
			// Invariant subspace: continue from a fresh orthogonal direction
			// (the new block of T is decoupled, β = 0).
			beta = append(beta, 0)
			if !newStart() {
				beta = beta[:len(beta)-1]
				break
			}
			continue
		}
		beta = append(beta, b)
		x := make([]float64, d)
		for i, v := range w {
			x[i] = v / b
		}
		q = append(q, x)
	}
	k := len(alpha)
	q = q[:k]
	dd := append([]float64(nil), alpha...)
	ee := make([]float64, k)
	copy(ee, beta)
	z := make([][]float64, k) // identity rows → eigenvector matrix S (k×k)
	for i := range z {
		z[i] = make([]float64, k)
		z[i][i] = 1
	}
	if err := tridiagEig(dd, ee, z); err != nil {
		return nil, nil, err
	}
	vals := dd[:r]
	vecs := make([][]float64, r)
	for i := 0; i < r; i++ {
		x := make([]float64, d)
		for j := 0; j < k; j++ {
			linAxpy(z[j][i], q[j], x)
		}
		// Renormalize (Q is orthonormal to working precision already).
		nx := math.Sqrt(linDot(x, x))
		for j := range x {
			x[j] /= nx
		}
		vecs[i] = x
	}
	return vals, vecs, nil
}

// lanczosReorth removes from w its components along the orthonormal vectors q
// (classical Gram–Schmidt; callers apply it twice, "twice is enough").
func lanczosReorth(w []float64, q [][]float64) {
	for _, qi := range q {
		linAxpy(-linDot(qi, w), qi, w)
	}
}

// lanczosConverged reports whether the r leading Ritz pairs of the k×k
// tridiagonal (alpha, beta[:k−1]) have residuals b·|s_{k,i}| ≤
// svdTol·θ_1, where b is the norm of the next Lanczos vector.
func lanczosConverged(alpha, beta []float64, b float64, r int) bool {
	k := len(alpha)
	d := append([]float64(nil), alpha...)
	e := make([]float64, k)
	copy(e, beta)
	last := make([]float64, k)
	last[k-1] = 1
	if tridiagEig(d, e, [][]float64{last}) != nil {
		return false
	}
	tol := svdTol * math.Max(math.Abs(d[0]), math.SmallestNonzeroFloat64)
	for i := 0; i < r; i++ {
		if b*math.Abs(last[i]) > tol {
			return false
		}
	}
	return true
}
