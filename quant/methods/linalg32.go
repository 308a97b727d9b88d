package methods

import (
	"fmt"
	"math"
	"slices"
	"time"

	"llmq/kernels"
)

// Blocked float32 factorizations for GPTQ's inverse Hessian at real widths
// (a 14336-wide down_proj has a 14336² Hessian: 0.8 GiB in float32 and
// n³/3 ≈ 10¹² multiply-adds per factorization). Each routine works in place
// on a row-major n×n []float32 and spends all but O(n²·nb) of its work in
// kernels.Sgemm (blocked, multi-threaded, AVX2/FMA), where the unblocked
// float64 routines of linalg.go spend it in scalar dot products reading
// memory. The nb×nb diagonal blocks are factored and inverted in float64
// (cholesky, invLower): they are where the pivots and the divisions are, and
// they cost O(n·nb²).
//
// Float32 is the precision of the reference implementation (GPTQ's
// gptq.py and llm-compressor factor the float32 Hessian with
// torch.linalg.cholesky in float32). Cholesky is backward stable: the
// computed factor is the exact factor of H + ΔH with ‖ΔH‖ of order
// √n·ε₃₂·‖H‖, far below GPTQ's dampening λ = 0.01·mean(diag H) for the
// Hessians of LLM layers (linalg32_test.go measures the factors against
// float64 on matrices with condition numbers up to 10⁶).

// chol32Block is the width of the diagonal blocks (nb): large enough that
// the trailing updates are deep GEMMs, small enough that the float64 work
// on the diagonal stays negligible.
const chol32Block = 256

// chol32Panel is the height of the row panels of the trailing updates:
// each updates only its part of the lower triangle, so the work wasted
// above the diagonal is a fraction nb/(2·panel) of it.
const chol32Panel = 512

// cholesky32 factors the symmetric positive definite n×n matrix a in place
// into its lower Cholesky factor L (a = L·Lᵀ), zeroing the strict upper
// triangle; only the lower triangle is read. A pivot that is not positive
// and finite gives an error wrapping errNotPD.
//
// Right-looking blocked algorithm (LAPACK's potrf): for each diagonal
// block column k of width nb,
//
//	L₁₁ = chol(A₁₁)                 float64, unblocked
//	L₂₁ = A₂₁·L₁₁⁻ᵀ                 one GEMM with the float64 inverse of L₁₁
//	A₂₂ −= L₂₁·L₂₁ᵀ                 lower triangle only, one GEMM per row panel
func cholesky32(a []float32, n int) error {
	if len(a) < n*n {
		return fmt.Errorf("cholesky32: %d values for a %d×%d matrix", len(a), n, n)
	}
	nb := min(chol32Block, n)
	d := make([]float64, nb*nb)
	dinv := make([]float32, nb*nb)
	panel := make([]float32, max(0, n-nb)*nb)
	neg := make([]float32, max(0, n-nb)*nb)
	for k := 0; k < n; k += nb {
		b := min(nb, n-k)
		dd := d[:b*b]
		for i := 0; i < b; i++ {
			row := a[(k+i)*n+k:]
			for j := 0; j <= i; j++ {
				dd[i*b+j] = float64(row[j])
			}
			clear(dd[i*b+i+1 : (i+1)*b])
		}
		if err := cholesky(dd, b); err != nil {
			if pe, ok := err.(*pivotError); ok {
				pe.pivot += k
			}
			return err
		}
		for i := 0; i < b; i++ {
			row := a[(k+i)*n+k:]
			for j := 0; j <= i; j++ {
				row[j] = float32(dd[i*b+j])
			}
		}
		r := n - k - b
		if r == 0 {
			break
		}
		invLower(dd, b)
		for i, v := range dd {
			dinv[i] = float32(v)
		}
		// L₂₁ = A₂₁·(L₁₁⁻¹)ᵀ: transB reads L₁₁⁻¹ [b×b] row-major as Bᵀ.
		p := panel[:r*b]
		kernels.Sgemm(true, r, b, b, a[(k+b)*n+k:], n, dinv, b, p, b, false)
		ng := neg[:r*b]
		for i := 0; i < r; i++ {
			copy(a[(k+b+i)*n+k:(k+b+i)*n+k+b], p[i*b:(i+1)*b])
		}
		for i, v := range p {
			ng[i] = -v
		}
		// A₂₂ −= L₂₁·L₂₁ᵀ on and below the diagonal, panel by panel: the
		// panel of rows [i0, i1) needs columns [0, i1) of the trailing
		// block.
		for i0 := 0; i0 < r; i0 += chol32Panel {
			i1 := min(i0+chol32Panel, r)
			kernels.Sgemm(true, i1-i0, i1, b, ng[i0*b:], b, p, b, a[(k+b+i0)*n+k+b:], n, true)
		}
	}
	for i := 0; i < n; i++ {
		clear(a[i*n+i+1 : (i+1)*n])
	}
	return nil
}

// invLower32 replaces the nonsingular lower-triangular n×n matrix l (strict
// upper triangle zero) by its inverse X = L⁻¹, also lower triangular.
//
// Blocked right to left (LAPACK's trtri): with the block columns to the
// right already inverted, L·X = I gives for block column j
//
//	X_jj = L_jj⁻¹                    float64, unblocked
//	X₂₁  = −X₂₂·L₂₁·X_jj             X₂₂ the trailing (inverted) block
//
// X₂₂·L₂₁ is computed one row panel at a time so that only X₂₂'s lower
// triangle (up to the panel's last row) is multiplied, and L₂₁ is read
// before it is overwritten by X₂₁.
func invLower32(l []float32, n int) {
	nb := min(chol32Block, n)
	d := make([]float64, nb*nb)
	negX := make([]float32, nb*nb)
	tmp := make([]float32, max(0, n-nb)*nb)
	last := (n - 1) / nb * nb
	for j := last; j >= 0; j -= nb {
		b := min(nb, n-j)
		dd := d[:b*b]
		for i := 0; i < b; i++ {
			row := l[(j+i)*n+j:]
			for c := 0; c < b; c++ {
				dd[i*b+c] = float64(row[c])
			}
		}
		invLower(dd, b)
		r := n - j - b
		if r > 0 {
			for i, v := range dd {
				negX[i] = -float32(v)
			}
			t := tmp[:r*b]
			// T = X₂₂·L₂₁, rows [p0, p1) of the trailing block: X₂₂'s
			// columns past p1 are zero.
			for p0 := 0; p0 < r; p0 += chol32Panel {
				p1 := min(p0+chol32Panel, r)
				kernels.Sgemm(false, p1-p0, b, p1, l[(j+b+p0)*n+j+b:], n, l[(j+b)*n+j:], n, t[p0*b:], b, false)
			}
			// X₂₁ = T·(−X_jj), over L₂₁.
			kernels.Sgemm(false, r, b, b, t, b, negX[:b*b], b, l[(j+b)*n+j:], n, false)
		}
		for i := 0; i < b; i++ {
			row := l[(j+i)*n+j:]
			for c := 0; c < b; c++ {
				row[c] = float32(dd[i*b+c])
			}
		}
	}
}

// transpose32 transposes the n×n matrix a in place, in 64×64 tiles (pairs
// of tiles swapped across the diagonal, rows of tiles in parallel).
func transpose32(a []float32, n int) {
	const t = 64
	nt := (n + t - 1) / t
	kernels.ParallelFor(nt, func(lo, hi int) {
		for bi := lo; bi < hi; bi++ {
			i0, i1 := bi*t, min(bi*t+t, n)
			for bj := 0; bj <= bi; bj++ {
				j0, j1 := bj*t, min(bj*t+t, n)
				for i := i0; i < i1; i++ {
					je := j1
					if bi == bj {
						je = i
					}
					for j := j0; j < je; j++ {
						a[i*n+j], a[j*n+i] = a[j*n+i], a[i*n+j]
					}
				}
			}
		}
	})
}

// lowerCholOfInverse32 replaces the symmetric positive definite n×n matrix
// h (row-major float32) by the lower Cholesky factor of its inverse,
// L̃ = Uᵀ with H⁻¹ = Uᵀ·U: the factor GPTQ's column loop reads (the rows of
// U are the rows [H_F⁻¹]_{j,j:}/√[H_F⁻¹]_jj of the paper's Algorithm 1),
// which the reference computes as cholesky(cholesky_inverse(cholesky(H)),
// upper=True).
//
// Here it is computed without forming H⁻¹ (see upperCholOfInverse): with J
// the reversal permutation, J·H·J = M·Mᵀ (M lower) gives U = J·M⁻¹·J, so
// Uᵀ = J·(M⁻¹)ᵀ·J. Reversing both the rows and the columns of a row-major
// matrix is reversing its n² values, so the two J products are free: the
// cost is one Cholesky and one triangular inverse (2·n³/3 multiply-adds,
// half of the reference's four n³/3 steps, and no rounding of an explicit
// H⁻¹). The strict upper triangle of the result is zero. On error
// (errNotPD) h holds partial results.
func lowerCholOfInverse32(h []float32, n int) error {
	h = h[:n*n]
	slices.Reverse(h) // J·H·J
	t0 := time.Now()
	if err := cholesky32(h, n); err != nil {
		if pe, ok := err.(*pivotError); ok {
			pe.pivot = n - 1 - pe.pivot // the column of H
		}
		return err
	}
	gptqPhase("cholesky", t0)
	t0 = time.Now()
	invLower32(h, n) // M⁻¹
	gptqPhase("inverse", t0)
	t0 = time.Now()
	transpose32(h, n) // (M⁻¹)ᵀ
	slices.Reverse(h) // J·(M⁻¹)ᵀ·J = Uᵀ
	gptqPhase("transpose", t0)
	for i := 0; i < n; i++ {
		if v := h[i*n+i]; !(v > 0) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w (inverse diagonal %d is %g)", errNotPD, i, v)
		}
	}
	return nil
}
