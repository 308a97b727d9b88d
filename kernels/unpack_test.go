package kernels_test

import (
	"math/rand"
	"slices"
	"testing"

	"llmq/kernels"
)

func TestPackedS8Unpack(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	for _, sh := range []struct{ n, k int }{{1, 1}, {17, 5}, {33, 64}, {16, 130}} {
		w := randS8(r, sh.n*sh.k, true)
		p := kernels.PackS8(w, sh.n, sh.k)
		got := make([]int8, sh.n*sh.k)
		p.Unpack(got)
		if !slices.Equal(got, w) {
			t.Fatalf("%d×%d: Unpack differs from the packed weights", sh.n, sh.k)
		}
		row := make([]int8, sh.k)
		p.Row(sh.n-1, row)
		if !slices.Equal(row, w[(sh.n-1)*sh.k:]) {
			t.Fatalf("%d×%d: last Row differs", sh.n, sh.k)
		}
	}
}

func TestPackedQ4Unpack(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	for _, c := range []struct {
		rows, cols, gs int
		asym           bool
	}{{37, 48, 16, true}, {37, 48, 16, false}, {5, 40, 40, true}, {16, 256, 128, false}} {
		rb := (c.cols + 1) / 2
		ng := c.cols / c.gs
		data := make([]byte, c.rows*rb)
		r.Read(data)
		scales := make([]float32, c.rows*ng)
		for i := range scales {
			scales[i] = r.Float32() + 0.01
		}
		var zeros []uint8
		if c.asym {
			zeros = make([]uint8, c.rows*ng)
			for i := range zeros {
				zeros[i] = uint8(r.Intn(16))
			}
		}
		p := kernels.PackQ4(data, c.rows, c.cols, c.gs, scales, zeros)
		d2, s2 := make([]byte, len(data)), make([]float32, len(scales))
		var z2 []uint8
		if c.asym {
			z2 = make([]uint8, len(zeros))
		}
		p.Unpack(d2, s2, z2)
		if !slices.Equal(d2, data) || !slices.Equal(s2, scales) || !slices.Equal(z2, zeros) {
			t.Fatalf("%+v: Unpack does not restore PackQ4's inputs", c)
		}
		// DequantRow against the storage definition: s·(u − z) or s·q.
		row := make([]float32, c.cols)
		j := c.rows - 1
		p.DequantRow(j, row)
		for col := 0; col < c.cols; col++ {
			nib := data[j*rb+col/2] >> (uint(col&1) * 4) & 0xF
			g := j*ng + col/c.gs
			var want float32
			if c.asym {
				want = scales[g] * float32(int32(nib)-int32(zeros[g]))
			} else {
				want = scales[g] * float32(int8(nib<<4)>>4)
			}
			if row[col] != want {
				t.Fatalf("%+v: W[%d][%d] = %v, want %v", c, j, col, row[col], want)
			}
		}
	}
}
