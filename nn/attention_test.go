package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// normals returns a generator of n standard normal float32 values.
func normals(rng *rand.Rand) func(n int) []float32 {
	return func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
}

// naiveAttention is the definition: for each query row t at absolute
// position p = pos0+t, softmax over keys 0..p of scale·q·k, times V; query
// head h reads KV head h/(heads/kvHeads). Computed in float64.
func naiveAttention(q, keys, vals []float32, rows, L, heads, kvHeads, hd int, scale float64) []float64 {
	out := make([]float64, rows*heads*hd)
	pos0 := L - rows
	for t := 0; t < rows; t++ {
		for h := 0; h < heads; h++ {
			g := h / (heads / kvHeads)
			n := pos0 + t + 1
			w := make([]float64, n)
			mx := math.Inf(-1)
			for j := 0; j < n; j++ {
				var d float64
				for i := 0; i < hd; i++ {
					d += float64(q[t*heads*hd+h*hd+i]) * float64(keys[j*kvHeads*hd+g*hd+i])
				}
				w[j] = d * scale
				mx = math.Max(mx, w[j])
			}
			var sum float64
			for j := range w {
				w[j] = math.Exp(w[j] - mx)
				sum += w[j]
			}
			for j := range w {
				for i := 0; i < hd; i++ {
					out[t*heads*hd+h*hd+i] += w[j] / sum * float64(vals[j*kvHeads*hd+g*hd+i])
				}
			}
		}
	}
	return out
}

// Attention (causal row blocks, grouped-query sharing, a cache holding
// earlier positions) against the definition, for prompts shorter and longer
// than one row block and for a continuation after a cached prefix.
func TestAttentionCausal(t *testing.T) {
	randv := normals(rand.New(rand.NewPCG(5, 6)))
	const heads, kvHeads, hd = 4, 2, 16
	for _, c := range []struct{ prefix, rows int }{{0, 1}, {0, 37}, {0, 150}, {70, 90}, {130, 1}} {
		a := &Attention{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: float32(1 / math.Sqrt(hd))}
		L := c.prefix + c.rows
		keys, vals := randv(L*kvHeads*hd), randv(L*kvHeads*hd)
		cache := NewKVCache(kvHeads, hd, L)
		if c.prefix > 0 {
			cache.Append(keys[:c.prefix*kvHeads*hd], vals[:c.prefix*kvHeads*hd], c.prefix)
		}
		q := randv(c.rows * heads * hd)
		out := make([]float32, c.rows*heads*hd)
		k := append([]float32(nil), keys[c.prefix*kvHeads*hd:]...)
		v := append([]float32(nil), vals[c.prefix*kvHeads*hd:]...)
		a.Forward(out, append([]float32(nil), q...), k, v, c.rows, cache)
		want := naiveAttention(q, keys, vals, c.rows, L, heads, kvHeads, hd, float64(a.Scale))
		var worst float64
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(out[i])-want[i]))
		}
		if worst > 1e-5 {
			t.Errorf("prefix %d, rows %d: max error %.3g against the definition", c.prefix, c.rows, worst)
		}
	}
}
