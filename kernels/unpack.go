package kernels

import "fmt"

// Reading weights back out of the kernel layouts. A loaded quantized model
// keeps only the packed form of each weight (so its memory is the packed
// size, not twice it); the rare users of the plain layout — saving,
// exporting, an embedding table tied to a quantized head — unpack it.

// Bytes returns the size of the packed weights and their column sums.
func (p *PackedS8) Bytes() int { return len(p.data) + 4*len(p.corr) }

// Row writes W[j][0:k] to dst (len ≥ k).
func (p *PackedS8) Row(j int, dst []int8) {
	if j < 0 || j >= p.n || len(dst) < p.k {
		panic(fmt.Sprintf("kernels.PackedS8.Row: row %d of %d, len(dst)=%d < k=%d", j, p.n, len(dst), p.k))
	}
	base := (j/s8NR)*p.k4*s8PanelB + (j%s8NR)*4
	for q := 0; q < p.k; q++ {
		dst[q] = int8(p.data[base+(q/4)*s8PanelB+q%4])
	}
}

// Unpack writes W [n×k] row-major to dst (len ≥ n·k), the inverse of PackS8.
func (p *PackedS8) Unpack(dst []int8) {
	if len(dst) < p.n*p.k {
		panic(fmt.Sprintf("kernels.PackedS8.Unpack: len(dst)=%d < n·k=%d", len(dst), p.n*p.k))
	}
	for j := 0; j < p.n; j++ {
		p.Row(j, dst[j*p.k:(j+1)*p.k])
	}
}

// Symmetric reports whether the codes were packed as two's complement
// nibbles (no zero-points given to PackQ4).
func (p *PackedQ4) Symmetric() bool { return p.sym }

// nibble returns the unsigned stored code of W[j][c] (q+8 for symmetric
// codes) and its group's scale and zero-point.
func (p *PackedQ4) nibble(j, c int) (u uint32, scale float32, zero int32) {
	q, l := j/q4NR, j%q4NR
	g, r := c/p.gs, c%p.gs
	bb, i := r/8, r%8
	d := p.data[((q*p.ng+g)*p.gk+bb)*q4BlkDw+l]
	return d >> (4 * i) & q4NibMask, p.sz[(q*p.ng+g)*q4SzPer+l], p.zi[(q*p.ng+g)*q4ZiPer+l]
}

// DequantRow writes row j of the weight, scale·(u − z) per element, to dst
// (len ≥ k).
func (p *PackedQ4) DequantRow(j int, dst []float32) {
	if j < 0 || j >= p.n || len(dst) < p.k {
		panic(fmt.Sprintf("kernels.PackedQ4.DequantRow: row %d of %d, len(dst)=%d < k=%d", j, p.n, len(dst), p.k))
	}
	for c := 0; c < p.k; c++ {
		u, s, z := p.nibble(j, c)
		dst[c] = s * float32(int32(u)-z)
	}
}

// Unpack restores PackQ4's inputs: data (rows of ⌈k/2⌉ bytes, two codes per
// byte, low nibble first), scales (n × k/groupSize) and, for asymmetric
// codes, zeros (same shape; pass nil for symmetric ones).
func (p *PackedQ4) Unpack(data []byte, scales []float32, zeros []uint8) {
	rb := (p.k + 1) / 2
	if len(data) < p.n*rb || len(scales) < p.n*p.ng || (!p.sym && len(zeros) < p.n*p.ng) {
		panic(fmt.Sprintf("kernels.PackedQ4.Unpack: buffers too short for %d×%d, group %d", p.n, p.k, p.gs))
	}
	for j := 0; j < p.n; j++ {
		row := data[j*rb : (j+1)*rb]
		clear(row)
		for c := 0; c < p.k; c++ {
			u, s, z := p.nibble(j, c)
			if c%p.gs == 0 {
				scales[j*p.ng+c/p.gs] = s
				if !p.sym {
					zeros[j*p.ng+c/p.gs] = uint8(z)
				}
			}
			if p.sym {
				u ^= 8 // stored q+8 ↦ two's complement q
			}
			row[c>>1] |= byte(u) << (uint(c&1) * 4)
		}
	}
}
