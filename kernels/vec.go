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

// dot4 sets out[r] = Σ_{i<k} x[i]·w[r·ldw+i] for r < 4.
func dot4(asm bool, k int, x, w []float32, ldw int, out *[4]float32) {
	x = x[:k]
	_ = w[3*ldw+k-1]
	if asm && k >= 8 {
		k8 := k &^ 7
		dot4AVX2(k8, &x[0], &w[0], ldw, &out[0])
		for i := k8; i < k; i++ {
			xv := x[i]
			out[0] += xv * w[i]
			out[1] += xv * w[ldw+i]
			out[2] += xv * w[2*ldw+i]
			out[3] += xv * w[3*ldw+i]
		}
		return
	}
	for r := 0; r < 4; r++ {
		out[r] = dotGo(x, w[r*ldw:r*ldw+k])
	}
}
