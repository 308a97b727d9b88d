package methods

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"llmq/kernels"
)

// laGPTQHessian returns a GPTQ-like damped Hessian H = XᵀX/T + 0.01·mean(diag)·I
// for T tokens of n channels drawn like LLM activations (a rank-8 common
// part, noise of relative size noise, a few outlier channels ×10–40), with
// T < n making XᵀX singular. The values are float32 numbers held in both
// precisions, so both factorizations see the same matrix.
func laGPTQHessian(rng *rand.Rand, n, tokens int, noise float64) ([]float32, []float64) {
	const latent = 8
	mix := make([]float64, latent*n)
	for i := range mix {
		mix[i] = rng.NormFloat64()
	}
	gain := make([]float64, n)
	for j := range gain {
		gain[j] = 1
	}
	for k := 0; k < max(1, n/200); k++ {
		gain[rng.IntN(n)] = 10 + 30*rng.Float64()
	}
	xt := make([]float32, n*tokens) // Xᵀ
	f := make([]float64, latent)
	for t := 0; t < tokens; t++ {
		for k := range f {
			f[k] = rng.NormFloat64()
		}
		for j := 0; j < n; j++ {
			v := noise * rng.NormFloat64()
			for k, fk := range f {
				v += fk * mix[k*n+j] / math.Sqrt(latent)
			}
			xt[j*tokens+t] = float32(v * gain[j])
		}
	}
	h32 := make([]float32, n*n)
	kernels.Sgemm(true, n, n, tokens, xt, tokens, xt, tokens, h32, n, false)
	var mean float64
	for j := 0; j < n; j++ {
		mean += float64(h32[j*n+j])
	}
	damp := float32(0.01 * mean / float64(n))
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ { // exactly symmetric
			h32[j*n+i] = h32[i*n+j]
		}
		h32[i*n+i] += damp
	}
	h64 := make([]float64, n*n)
	for i, v := range h32 {
		h64[i] = float64(v)
	}
	return h32, h64
}

// laRelErr is ‖a − b‖_F / ‖b‖_F.
func laRelErr(a []float32, b []float64) float64 {
	var num, den float64
	for i, v := range b {
		d := float64(a[i]) - v
		num += d * d
		den += v * v
	}
	return math.Sqrt(num / den)
}

type laCase struct {
	name string
	n    int
	h32  []float32
	h64  []float64
}

func laCases(t *testing.T) []laCase {
	rng := rand.New(rand.NewPCG(32, 32))
	var cs []laCase
	for _, n := range []int{1, 7, 255, 256, 257, 600} {
		a := laRandSPD(rng, n, 0.1)
		h32 := make([]float32, n*n)
		h64 := make([]float64, n*n)
		for i, v := range a {
			h32[i] = float32(v)
			h64[i] = float64(h32[i])
		}
		for i := 0; i < n; i++ { // symmetric after rounding
			for j := 0; j < i; j++ {
				h32[j*n+i], h64[j*n+i] = h32[i*n+j], h64[i*n+j]
			}
		}
		cs = append(cs, laCase{"well-conditioned", n, h32, h64})
	}
	for _, c := range []struct {
		n, tokens int
		noise     float64
	}{{300, 2000, 0.3}, {520, 130, 0.3}, {777, 4000, 0.05}, {1030, 256, 0.02}} {
		h32, h64 := laGPTQHessian(rng, c.n, c.tokens, c.noise)
		cs = append(cs, laCase{"GPTQ-like", c.n, h32, h64})
	}
	return cs
}

// The blocked float32 Cholesky, triangular inverse and factor of the
// inverse against the float64 routines, on well-conditioned matrices and on
// damped, rank-deficient GPTQ-like Hessians (condition numbers up to ~10⁵).
// The error bars are 60·ε₃₂·√cond: the relative error of a triangular
// inverse is of order cond(L)·ε = √cond(H)·ε (measured: 2–10·ε·√cond).
func TestLinalg32AgainstFloat64(t *testing.T) {
	for _, c := range laCases(t) {
		n := c.n
		// Condition number from the float64 factor of H⁻¹ (‖H‖₂ by power
		// iteration would do too; the diagonal ratio is a lower bound that
		// is enough to scale the bars).
		u, err := upperCholOfInverse(c.h64, n)
		if err != nil {
			t.Fatal(err)
		}
		var hmax, umax float64
		for i := 0; i < n; i++ {
			hmax = math.Max(hmax, c.h64[i*n+i])
			umax = math.Max(umax, u[i*n+i]*u[i*n+i])
		}
		cond := math.Max(1, hmax*umax)
		bar := 60 * 0x1p-24 * math.Sqrt(cond)

		l64 := append([]float64(nil), c.h64...)
		if err := cholesky(l64, n); err != nil {
			t.Fatal(err)
		}
		l32 := append([]float32(nil), c.h32...)
		if err := cholesky32(l32, n); err != nil {
			t.Fatalf("%s n=%d: %v", c.name, n, err)
		}
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				if l32[i*n+j] != 0 {
					t.Fatalf("%s n=%d: L not lower triangular at (%d,%d)", c.name, n, i, j)
				}
			}
		}
		eL := laRelErr(l32, l64)

		invLower(l64, n)
		invLower32(l32, n)
		eX := laRelErr(l32, l64)

		f32 := append([]float32(nil), c.h32...)
		if err := lowerCholOfInverse32(f32, n); err != nil {
			t.Fatal(err)
		}
		eU := laRelErr(f32, laTranspose(u, n, n))
		t.Logf("%-16s n=%4d cond≳%8.3g: rel. error of L %.2g, of L⁻¹ %.2g, of chol(H⁻¹) %.2g (bar %.2g)", c.name, n, cond, eL, eX, eU, bar)
		if !(eL < bar && eX < bar && eU < bar) {
			t.Errorf("%s n=%d: errors %.3g %.3g %.3g above %.3g", c.name, n, eL, eX, eU, bar)
		}
	}
}

// The reference's route to the same factor — cholesky, cholesky_inverse
// (H⁻¹ = L⁻ᵀ·L⁻¹), cholesky of H⁻¹ — in float32 is twice the work and,
// through the explicit H⁻¹, no more accurate than the reversal route.
func TestLowerCholOfInverse32VersusReferenceRoute(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, c := range []struct {
		n, tokens int
		noise     float64
	}{{400, 3000, 0.3}, {700, 200, 0.02}} {
		n := c.n
		h32, h64 := laGPTQHessian(rng, n, c.tokens, c.noise)
		u, err := upperCholOfInverse(h64, n)
		if err != nil {
			t.Fatal(err)
		}
		ref := laTranspose(u, n, n)
		ours := append([]float32(nil), h32...)
		if err := lowerCholOfInverse32(ours, n); err != nil {
			t.Fatal(err)
		}
		// Reference route, all float32.
		l := append([]float32(nil), h32...)
		if err := cholesky32(l, n); err != nil {
			t.Fatal(err)
		}
		invLower32(l, n) // X = L⁻¹
		xt := append([]float32(nil), l...)
		transpose32(xt, n)
		hinv := make([]float32, n*n)
		kernels.Sgemm(false, n, n, n, xt, n, l, n, hinv, n, false) // Xᵀ·X
		for i := 0; i < n; i++ {
			for j := 0; j < i; j++ {
				hinv[j*n+i] = hinv[i*n+j]
			}
		}
		if err := cholesky32(hinv, n); err != nil { // lower factor of H⁻¹ = Uᵀ
			t.Fatal(err)
		}
		eOurs, eRef := laRelErr(ours, ref), laRelErr(hinv, ref)
		t.Logf("n=%d: rel. error of chol(H⁻¹) in float32: reversal %.3g, reference route %.3g", n, eOurs, eRef)
		if eOurs > 1.5*eRef {
			t.Errorf("n=%d: reversal route error %.3g well above the reference route's %.3g", n, eOurs, eRef)
		}
	}
}

func TestCholesky32Errors(t *testing.T) {
	// Indefinite in the second block: the pivot is reported in H's indices.
	n := 300
	a := make([]float32, n*n)
	for i := 0; i < n; i++ {
		a[i*n+i] = 1
	}
	a[280*n+280] = -1
	err := cholesky32(append([]float32(nil), a...), n)
	var pe *pivotError
	if !errors.Is(err, errNotPD) || !errors.As(err, &pe) || pe.pivot != 280 {
		t.Errorf("indefinite at 280: err = %v", err)
	}
	err = lowerCholOfInverse32(append([]float32(nil), a...), n)
	if !errors.As(err, &pe) || pe.pivot != 280 {
		t.Errorf("lowerCholOfInverse32, indefinite at 280: err = %v", err)
	}
	a[280*n+280] = float32(math.NaN())
	if err := cholesky32(a, n); !errors.Is(err, errNotPD) {
		t.Errorf("NaN pivot: err = %v", err)
	}
}

// BenchmarkLowerCholOfInverse32 times GPTQ's factorization at the widths of
// Llama-3.1-8B's inputs (4096 for q/k/v, o, gate/up; 14336 for down_proj):
//
//	go test ./quant/methods -run - -bench LowerCholOfInverse32 -benchtime 1x
func BenchmarkLowerCholOfInverse32(b *testing.B) {
	for _, n := range []int{1024, 4096, 14336} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := make([]float32, n*n)
			rng := rand.New(rand.NewPCG(1, 1))
			// A diagonally dominant SPD matrix: the time does not depend on
			// the values.
			for i := 0; i < n; i++ {
				for j := 0; j < i; j++ {
					v := float32(rng.NormFloat64()) / float32(n)
					h[i*n+j], h[j*n+i] = v, v
				}
				h[i*n+i] = 1
			}
			w := make([]float32, n*n)
			for b.Loop() {
				copy(w, h)
				if err := lowerCholOfInverse32(w, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*float64(n)*float64(n)*float64(n)/3/b.Elapsed().Seconds()*float64(b.N)/1e9, "GFLOPS")
		})
	}
}
