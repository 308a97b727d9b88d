package kernels

// Dot returns Σ a[i]·b[i] over i < len(a). b must be at least as long as a.
func Dot(a, b []float32) float32 {
	return dotSel(asmOn.Load(), a, b)
}

func dotSel(asm bool, a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	if n >= 16 && asm {
		n8 := n &^ 7
		s := dotAVX2(n8, &a[0], &b[0])
		for i := n8; i < n; i++ {
			s += a[i] * b[i]
		}
		return s
	}
	return dotGo(a, b)
}

// Axpy computes y[i] += alpha·x[i] for i < len(x). y must be at least as long
// as x.
func Axpy(alpha float32, x, y []float32) {
	n := len(x)
	y = y[:n]
	if n >= 8 && asmOn.Load() {
		n8 := n &^ 7
		axpyAVX2(n8, alpha, &x[0], &y[0])
		for i := n8; i < n; i++ {
			y[i] += alpha * x[i]
		}
		return
	}
	axpyGo(alpha, x, y)
}
