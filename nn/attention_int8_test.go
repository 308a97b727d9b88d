package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"llmq/kernels"
)

// int8Replica computes what forwardInt8 should, with scalar loops: the
// query codes, the exact integer dot products, the float32 epilogues in the
// same order, and the same softmax and probability folding (softmaxFold). It checks the integer path's plumbing — operand
// layouts, the transposed value cache, causal masks across row blocks,
// grouped-query heads stacked into one product — bit for bit.
func int8Replica(a *Attention, q []float32, cache *KVCache, rows int) []float32 {
	hd, L := a.HeadDim, cache.Len
	qw, kw := a.Heads*hd, a.KVHeads*hd
	pos0 := L - rows
	qc := make([]int8, rows*qw)
	qs := make([]float32, rows*a.Heads)
	kernels.QuantizeRowsS8(qc, qs, q, rows*a.Heads, hd)
	out := make([]float32, rows*qw)
	for t := 0; t < rows; t++ {
		// The row's block decides how many keys its GEMM saw (masked ones
		// get probability 0, so they do not change the result).
		lb := pos0 + min(rows, (t/attnRowBlock+1)*attnRowBlock)
		vis := pos0 + t + 1
		for h := 0; h < a.Heads; h++ {
			g := h / (a.Heads / a.KVHeads)
			s := make([]float32, lb)
			for j := 0; j < lb; j++ {
				var acc int32
				for d := 0; d < hd; d++ {
					acc += int32(qc[t*qw+h*hd+d]) * int32(cache.Kq[j*kw+g*hd+d])
				}
				s[j] = float32(acc) * (qs[t*a.Heads+h] * cache.Ks[j*a.KVHeads+g])
			}
			vs := make([]float32, lb)
			for j := range vs {
				vs[j] = cache.Vs[j*a.KVHeads+g]
			}
			pc := make([]int8, lb)
			ps := softmaxFold(pc, s, vis, a.Scale, vs)
			for d := 0; d < hd; d++ {
				var acc int32
				for j := 0; j < vis; j++ {
					acc += int32(pc[j]) * int32(cache.VT[(g*hd+d)*cache.capT+j])
				}
				out[t*qw+h*hd+d] = ps * float32(acc)
			}
		}
	}
	return out
}

// The integer attention (AttnQuant int8 + BMM) against its scalar replica
// (bit for bit) and against unquantized attention in float64 (within int8
// quantization error), for prompts shorter and longer than a row block,
// continuations after a cached prefix, and decode steps.
func TestAttentionInt8BMM(t *testing.T) {
	randv := normals(rand.New(rand.NewPCG(7, 8)))
	const heads, kvHeads, hd = 6, 2, 64
	for _, c := range []struct{ prefix, rows int }{{0, 1}, {0, 37}, {0, 150}, {70, 90}, {130, 1}, {3, 64}} {
		a := &Attention{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: float32(1 / math.Sqrt(hd)),
			Quant: &AttnQuant{Format: "int8", BMM: true}}
		L := c.prefix + c.rows
		keys, vals := randv(L*kvHeads*hd), randv(L*kvHeads*hd)
		cache := NewKVCache(kvHeads, hd, L)
		if c.prefix > 0 {
			// The prefix enters through Forward too, as in a real prefill.
			pq := randv(c.prefix * heads * hd)
			pout := make([]float32, c.prefix*heads*hd)
			a.Forward(pout, pq, append([]float32(nil), keys[:c.prefix*kvHeads*hd]...),
				append([]float32(nil), vals[:c.prefix*kvHeads*hd]...), c.prefix, cache)
		}
		q := randv(c.rows * heads * hd)
		out := make([]float32, c.rows*heads*hd)
		a.Forward(out, append([]float32(nil), q...), append([]float32(nil), keys[c.prefix*kvHeads*hd:]...),
			append([]float32(nil), vals[c.prefix*kvHeads*hd:]...), c.rows, cache)
		if !cache.Int8() || len(cache.K) != 0 {
			t.Fatalf("prefix %d, rows %d: the cache is not int8", c.prefix, c.rows)
		}
		want := int8Replica(a, q, cache, c.rows)
		for i := range want {
			if out[i] != want[i] {
				t.Fatalf("prefix %d, rows %d: out[%d] = %v, replica %v", c.prefix, c.rows, i, out[i], want[i])
			}
		}
		exact := naiveAttention(q, keys, vals, c.rows, L, heads, kvHeads, hd, float64(a.Scale))
		var num, den float64
		for i := range exact {
			d := float64(out[i]) - exact[i]
			num += d * d
			den += exact[i] * exact[i]
		}
		if r := math.Sqrt(num / den); r > 0.03 {
			t.Errorf("prefix %d, rows %d: relative RMS error %.3g against unquantized attention", c.prefix, c.rows, r)
		}
	}
}

// softmaxFold against its definition in float64: probabilities weighted
// by the value scales on the grid [0, 127] of the row's largest one, masked
// keys code 0. A float32 value within rounding of a code boundary may land
// on the neighbouring code; no code may be further off.
func TestSoftmaxFold(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ n, vis int }{{1, 1}, {5, 3}, {64, 64}, {300, 217}} {
		row := make([]float32, c.n)
		vs := make([]float32, c.n)
		for j := range row {
			row[j] = float32(rng.NormFloat64() * 4)
			vs[j] = float32(rng.Float64()*0.05 + 0.001)
		}
		orig := append([]float32(nil), row...)
		dst := make([]int8, c.n)
		for j := range dst {
			dst[j] = 99 // must be overwritten
		}
		const scale = 0.7
		s := softmaxFold(dst, row, c.vis, scale, vs)
		// float64 definition
		mx := math.Inf(-1)
		for _, v := range orig[:c.vis] {
			mx = math.Max(mx, float64(v)*scale)
		}
		w := make([]float64, c.vis)
		var sum, top float64
		for j := range w {
			w[j] = math.Exp(float64(orig[j])*scale - mx)
			sum += w[j]
		}
		for j := range w {
			w[j] = w[j] / sum * float64(vs[j])
			top = math.Max(top, w[j])
		}
		if math.Abs(float64(s)-top/127) > 1e-5*top/127 {
			t.Fatalf("n=%d vis=%d: scale %v, want %v", c.n, c.vis, s, top/127)
		}
		off := 0
		for j := range dst {
			want := 0.0
			if j < c.vis {
				want = math.RoundToEven(w[j] / (top / 127))
			}
			switch d := math.Abs(float64(dst[j]) - want); {
			case d > 1 || (j >= c.vis && d != 0):
				t.Fatalf("n=%d vis=%d: code[%d] = %d, want %v", c.n, c.vis, j, dst[j], want)
			case d == 1:
				off++
			}
		}
		if off > 1+c.vis/50 {
			t.Errorf("n=%d vis=%d: %d codes one step off the float64 definition", c.n, c.vis, off)
		}
	}
}

// BenchmarkAttention compares one layer's attention on an FP32 cache with
// the INT8 cache (dequantized for FP32 products) and with the integer BMMs,
// at wiki-llama-25m's shape (6 query heads, 2 KV heads, head_dim 64): a
// 512-token prefill, and one decode step over a 512-position cache.
func BenchmarkAttention(b *testing.B) {
	const heads, kvHeads, hd, L = 6, 2, 64, 512
	randv := normals(rand.New(rand.NewPCG(1, 1)))
	q, k, v := randv(L*heads*hd), randv(L*kvHeads*hd), randv(L*kvHeads*hd)
	out := make([]float32, L*heads*hd)
	for _, c := range []struct {
		name  string
		quant *AttnQuant
	}{{"fp32", nil}, {"int8-cache", &AttnQuant{Format: "int8"}}, {"int8-bmm", &AttnQuant{Format: "int8", BMM: true}}} {
		a := &Attention{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.125, Quant: c.quant}
		cache := NewKVCache(kvHeads, hd, L+1)
		b.Run(c.name+"/prefill512", func(b *testing.B) {
			for range b.N {
				cache.Reset()
				a.Forward(out, q, k, v, L, cache)
			}
			b.ReportMetric(float64(b.N*L)/b.Elapsed().Seconds(), "tok/s")
		})
		b.Run(c.name+"/decode@512", func(b *testing.B) {
			cache.Reset()
			a.Forward(out, q, k, v, L-1, cache)
			for range b.N {
				a.Forward(out, q[:heads*hd], k[:kvHeads*hd], v[:kvHeads*hd], 1, cache)
				cache.Len-- // stay at 512 positions
				if cache.Int8() {
					cache.Kq = cache.Kq[:len(cache.Kq)-kvHeads*hd]
					if len(cache.Vq) > 0 { // (with BMM the values live in VT, by position)
						cache.Vq = cache.Vq[:len(cache.Vq)-kvHeads*hd]
					}
					cache.Ks, cache.Vs = cache.Ks[:len(cache.Ks)-kvHeads], cache.Vs[:len(cache.Vs)-kvHeads]
				} else {
					cache.K, cache.V = cache.K[:len(cache.K)-kvHeads*hd], cache.V[:len(cache.V)-kvHeads*hd]
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
