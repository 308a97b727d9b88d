package kernels

// Pure-Go versions of the assembly routines. They operate on exactly the same
// packed layouts, so the driver code (blocking, threading, edges) is shared
// and only the innermost loops differ.

// kernelGo computes C[rows×cols] (= or +=) A·B for one micro-tile: a is a packed
// A micro-panel [kc][rows], b a packed B micro-panel [kc][nr] (only the first
// cols columns are used), c the top-left element of the tile with row stride
// ldc. It works on 2×4 sub-tiles so the accumulators stay in registers.
func kernelGo(rows, cols, kc int, a, b, c []float32, ldc int, accum bool) {
	var t [mr * nr]float32
	a = a[:kc*rows]
	b = b[:kc*nr]
	for r := 0; r < rows; r += 2 {
		for j := 0; j < cols; j += 4 {
			var s00, s01, s02, s03, s10, s11, s12, s13 float32
			if r+1 < rows {
				for p := 0; p < kc; p++ {
					bb := (*[4]float32)(b[p*nr+j:])
					aa := (*[2]float32)(a[p*rows+r:])
					a0, a1 := aa[0], aa[1]
					s00 += a0 * bb[0]
					s01 += a0 * bb[1]
					s02 += a0 * bb[2]
					s03 += a0 * bb[3]
					s10 += a1 * bb[0]
					s11 += a1 * bb[1]
					s12 += a1 * bb[2]
					s13 += a1 * bb[3]
				}
				t[(r+1)*nr+j], t[(r+1)*nr+j+1], t[(r+1)*nr+j+2], t[(r+1)*nr+j+3] = s10, s11, s12, s13
			} else {
				for p := 0; p < kc; p++ {
					bb := (*[4]float32)(b[p*nr+j:])
					a0 := a[p*rows+r]
					s00 += a0 * bb[0]
					s01 += a0 * bb[1]
					s02 += a0 * bb[2]
					s03 += a0 * bb[3]
				}
			}
			t[r*nr+j], t[r*nr+j+1], t[r*nr+j+2], t[r*nr+j+3] = s00, s01, s02, s03
		}
	}
	for r := 0; r < rows; r++ {
		cr := c[r*ldc : r*ldc+cols]
		tr := t[r*nr : r*nr+cols]
		if accum {
			for j, v := range tr {
				cr[j] += v
			}
		} else {
			copy(cr, tr)
		}
	}
}

// packAGo packs rows (≤ mr) rows of a (row stride lda), columns [0,k), into
// dst[p*rows+r].
func packAGo(dst, a []float32, lda, rows, k int) {
	dst = dst[:k*rows]
	for r := 0; r < rows; r++ {
		src := a[r*lda : r*lda+k]
		for p, v := range src {
			dst[p*rows+r] = v
		}
	}
}

// packBTGo packs cols (≤ nr) rows of b (row stride ldb), columns [p0,k),
// as columns of a B micro-panel: dst[p*nr+j] = b[j*ldb+p], zero padding
// columns cols..nr-1.
func packBTGo(dst, b []float32, ldb, cols, p0, k int) {
	dst = dst[:k*nr]
	for j := 0; j < cols; j++ {
		src := b[j*ldb : j*ldb+k]
		for p := p0; p < k; p++ {
			dst[p*nr+j] = src[p]
		}
	}
	if cols < nr {
		for p := p0; p < k; p++ {
			clear(dst[p*nr+cols : p*nr+nr])
		}
	}
}

// packBNGo packs columns [0,cols) (cols ≤ nr) of the k×? matrix b (row stride
// ldb) into dst[p*nr+j], zero padding.
func packBNGo(dst, b []float32, ldb, cols, k int) {
	dst = dst[:k*nr]
	if cols == nr {
		_ = b[(k-1)*ldb+nr-1]
		for p := 0; p < k; p++ {
			*(*[nr]float32)(dst[p*nr:]) = *(*[nr]float32)(b[p*ldb:])
		}
		return
	}
	for p := 0; p < k; p++ {
		d := dst[p*nr : p*nr+nr]
		copy(d, b[p*ldb:p*ldb+cols])
		clear(d[cols:])
	}
}

func dotGo(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGo(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}
