package nn

import (
	"math"
	"slices"
	"sync"

	"llmq/kernels"
)

// KVCache stores the keys and values of every position seen so far for one
// layer: K and V are [Len × KVHeads·HeadDim] in FP32, or — an INT8 cache,
// chosen by an attention whose quantization is dynamic int8 per token and
// head — Kq/Vq hold int8 codes and Ks/Vs one scale per token and head
// ([Len × KVHeads]), a quarter of the memory.
type KVCache struct {
	K, V    []float32
	Kq, Vq  []int8
	Ks, Vs  []float32
	Len     int
	KVHeads int
	HeadDim int
	int8    bool
	// With integer attention BMMs the value codes are kept transposed
	// instead of in Vq: VT[(g·HeadDim + d)·capT + j] is value d of KV head
	// g at position j, so that each output dimension's codes are one
	// contiguous row for P·V (attention_int8.go).
	bmm     bool
	VT      []int8
	capT    int
	reserve int // positions NewKVCache was asked for
}

// Int8 reports whether the cache stores int8 codes.
func (c *KVCache) Int8() bool { return c.int8 }

// appendInt8 quantizes rows new positions per token and head (the int8
// grid of quant's int8-sym-g<HeadDim>, bit for bit) and appends them.
func (c *KVCache) appendInt8(k, v []float32, rows int) {
	w := c.KVHeads * c.HeadDim
	n := rows * c.KVHeads
	for _, t := range []struct {
		q *[]int8
		s *[]float32
		x []float32
	}{{&c.Kq, &c.Ks, k}, {&c.Vq, &c.Vs, v}} {
		q0, s0 := len(*t.q), len(*t.s)
		*t.q = slices.Grow(*t.q, rows*w)[:q0+rows*w]
		*t.s = slices.Grow(*t.s, n)[:s0+n]
		kernels.QuantizeRowsS8((*t.q)[q0:], (*t.s)[s0:], t.x[:rows*w], n, c.HeadDim)
	}
	if c.bmm {
		c.transposeV(rows)
	}
	c.Len += rows
}

// transposeV moves the codes of the rows values just appended to Vq into
// VT (growing it to the reserved capacity, then by doubling), leaving Vq
// empty.
func (c *KVCache) transposeV(rows int) {
	w := c.KVHeads * c.HeadDim
	if need := c.Len + rows; need > c.capT {
		capT := max(need, 2*c.capT, c.reserve)
		vt := make([]int8, w*capT)
		for r := 0; r < w; r++ {
			copy(vt[r*capT:r*capT+c.Len], c.VT[r*c.capT:r*c.capT+c.Len])
		}
		c.VT, c.capT = vt, capT
	}
	for t := 0; t < rows; t++ {
		j := c.Len + t
		for r, v := range c.Vq[t*w : (t+1)*w] {
			c.VT[r*c.capT+j] = v
		}
	}
	c.Vq = c.Vq[:0]
}

// dequant writes rows [0, n) of head g of codes q (scales s) to dst
// [n × HeadDim]: the values the simulated quantization would have stored.
func (c *KVCache) dequant(dst []float32, q []int8, s []float32, g, n int) {
	hd := c.HeadDim
	kernels.DequantizeRowsS8(dst, hd, q[g*hd:], c.KVHeads*hd, s[g:], c.KVHeads, n, hd)
}

// NewKVCache reserves room for capacity positions (it grows if exceeded).
func NewKVCache(kvHeads, headDim, capacity int) *KVCache {
	w := kvHeads * headDim
	return &KVCache{K: make([]float32, 0, capacity*w), V: make([]float32, 0, capacity*w), KVHeads: kvHeads, HeadDim: headDim, reserve: capacity}
}

// Reset forgets every position but keeps the memory.
func (c *KVCache) Reset() {
	c.K, c.V, c.Len, c.int8 = c.K[:0], c.V[:0], 0, false
	c.Kq, c.Vq, c.Ks, c.Vs = c.Kq[:0], c.Vq[:0], c.Ks[:0], c.Vs[:0]
	c.bmm = false // VT's memory is kept (capT) for the next use
}

// Append adds rows new positions.
func (c *KVCache) Append(k, v []float32, rows int) {
	w := c.KVHeads * c.HeadDim
	c.K = append(c.K, k[:rows*w]...)
	c.V = append(c.V, v[:rows*w]...)
	c.Len += rows
}

// Attention is multi-head causal self-attention with grouped-query sharing:
// query head h reads key/value head h / (Heads/KVHeads) (Ainslie et al.
// 2023; KVHeads = Heads is plain multi-head attention).
type Attention struct {
	Heads, KVHeads, HeadDim int
	Scale                   float32 // usually 1/√HeadDim

	// Window, when positive, is a sliding window (Mistral, Gemma's local
	// layers, Qwen2/3 with use_sliding_window): the query at position p
	// sees the keys at positions p−Window < j ≤ p only, transformers'
	// sliding-window mask. The cache keeps every position.
	Window int
	// SoftCap, when positive, caps the scaled scores smoothly before the
	// softmax (Gemma 2): s ← SoftCap·tanh(s·Scale/SoftCap).
	SoftCap float32

	// Quantization hooks (nil: full precision). Each fake-quantizes in
	// place; nn does not know the formats, only where quantization happens:
	//   QuantK, QuantV: keys and values as they enter the cache,
	//            [rows × KVHeads·HeadDim] (a quantized KV cache);
	//   QuantQ:  the queries before Q·Kᵀ, [rows × Heads·HeadDim] (with
	//            QuantK, an integer Q·Kᵀ batched matmul);
	//   QuantP:  each row of attention probabilities before P·V (an
	//            integer P·V).
	// A Quant of dynamic int8 takes the real integer path instead of the
	// hooks: an INT8 cache, and with BMM both products on the INT8 GEMM
	// (attention_int8.go, which also says why P·V there quantizes the
	// probabilities weighted by the value scales).
	QuantK, QuantV func(x []float32, rows int)
	QuantQ         func(x []float32, rows int)
	QuantP         func(p []float32)
	// Quant describes the hooks above (which are functions) so that a
	// saved model can reinstall them; nil when there are none.
	Quant *AttnQuant
}

// AttnQuant is the serializable description of an attention's
// quantization: the KV cache format, static scales if calibrated, and
// whether the batched matmuls are quantized too.
type AttnQuant struct {
	Format string  `json:"format"`            // element format of K and V: int8, int4, fp8e4m3
	KScale float32 `json:"k_scale,omitempty"` // static per-layer scales (0: dynamic per token and head)
	VScale float32 `json:"v_scale,omitempty"`
	BMM    bool    `json:"bmm,omitempty"` // Q and the probabilities P quantized too
}

var scorePool sync.Pool

// Forward appends k, v (rows new positions) to the cache, then computes for
// each new query at absolute position p = cache.Len−rows+t
//
//	out_t = softmax(q_t·Kᵀ·Scale, masked to positions ≤ p) · V
//
// out and q are [rows × Heads·HeadDim].
func (a *Attention) Forward(out, q, k, v []float32, rows int, cache *KVCache) {
	// Dynamic int8 per token and head: store codes (a real INT8 cache)
	// instead of fake-quantized floats; the values read back are the same.
	if cache.Len == 0 {
		cache.int8 = a.Quant != nil && a.Quant.Format == "int8" && a.Quant.KScale == 0
		cache.bmm = cache.int8 && a.Quant.BMM
	}
	if cache.int8 {
		cache.appendInt8(k, v, rows)
	} else {
		if a.QuantK != nil {
			a.QuantK(k, rows)
		}
		if a.QuantV != nil {
			a.QuantV(v, rows)
		}
		cache.Append(k, v, rows)
	}
	if cache.bmm {
		a.forwardInt8(out, q, rows, cache)
		return
	}
	if a.QuantQ != nil {
		a.QuantQ(q, rows)
	}
	L := cache.Len
	pos0 := L - rows
	hd := a.HeadDim
	qw := a.Heads * hd
	kw := a.KVHeads * hd
	group := a.Heads / a.KVHeads
	// Causal blocking: a block of query rows [t0, t1) attends to the
	// first pos0+t1 keys only, so long prompts skip the masked upper
	// triangle of Q·Kᵀ and P·V (about half of attention's work in a
	// prefill). Tasks are (head, row block) pairs.
	nb := (rows + attnRowBlock - 1) / attnRowBlock
	// Tasks are (KV head, row block) pairs; the query heads sharing the KV
	// head run inside, so an INT8 cache is dequantized once per task.
	kernels.ParallelForFlops(a.KVHeads*nb, a.flops(rows, cache.Len), func(lo, hi int) {
		rb := min(rows, attnRowBlock)
		// scores [group·rb × L], stacked queries and outputs [group·rb × hd] each
		need := group*rb*L + 2*group*rb*hd
		if cache.int8 {
			need += 2 * L * hd
		}
		bp, _ := scorePool.Get().(*[]float32)
		if bp == nil || cap(*bp) < need {
			b := make([]float32, need)
			bp = &b
		}
		for task := lo; task < hi; task++ {
			g, blk := task/nb, task%nb
			t0 := blk * attnRowBlock
			t1 := min(rows, t0+attnRowBlock)
			n := t1 - t0
			m := group * n  // rows of both products: (query head, row) pairs, head-major
			lb := pos0 + t1 // keys visible to the block's last row
			buf := *bp
			s, buf := buf[:m*lb], buf[m*lb:]
			qs, buf := buf[:m*hd], buf[m*hd:]
			os, buf := buf[:m*hd], buf[m*hd:]
			var keys, vals []float32
			ld := kw
			if !cache.int8 {
				keys, vals = cache.K[g*hd:], cache.V[g*hd:]
			} else {
				keys, vals = buf[:lb*hd], buf[lb*hd:2*lb*hd]
				cache.dequant(keys, cache.Kq, cache.Ks, g, lb)
				cache.dequant(vals, cache.Vq, cache.Vs, g, lb)
				ld = hd
			}
			// The group's query heads share K_g and V_g: one product each
			// instead of one per head, so the keys and values are packed
			// once per task.
			for r := 0; r < m; r++ {
				h, t := stackedRow(g, group, t0, n, r)
				copy(qs[r*hd:(r+1)*hd], q[t*qw+h*hd:t*qw+h*hd+hd])
			}
			// S = Q · K_g[:lb]ᵀ  [m × lb]
			kernels.Sgemm(true, m, lb, hd, qs, hd, keys, ld, s, lb, false)
			for r := 0; r < m; r++ {
				row := s[r*lb : (r+1)*lb]
				_, t := stackedRow(g, group, t0, n, r)
				from, vis := a.visible(pos0 + t) // keys visible to query row t
				softmaxCausal(row[from:], vis-from, a.capScores(row[from:vis]))
				clear(row[:from])
				if a.QuantP != nil {
					a.QuantP(row[:vis])
				}
			}
			// O = P · V_g[:lb]  [m × hd], then into each head's columns of out
			kernels.Sgemm(false, m, hd, lb, s, lb, vals, ld, os, hd, false)
			for r := 0; r < m; r++ {
				h, t := stackedRow(g, group, t0, n, r)
				copy(out[t*qw+h*hd:t*qw+h*hd+hd], os[r*hd:(r+1)*hd])
			}
		}
		scorePool.Put(bp)
	})
}

// stackedRow is the query head and row of row r of a task's stacked
// products: the group's query heads sharing KV head g, each with the n
// query rows from t0, head-major.
func stackedRow(g, group, t0, n, r int) (h, t int) {
	return g*group + r/n, t0 + r%n
}

// flops is about the work of one Forward over rows new queries with L
// positions in the cache: Q·Kᵀ and P·V, 2·HeadDim operations per query
// head, row and visible key each, the causal triangle counted as a square.
func (a *Attention) flops(rows, L int) float64 {
	return 4 * float64(a.Heads) * float64(a.HeadDim) * float64(rows) * float64(L)
}

// visible returns the range [from, to) of key positions the query at
// position p attends to: all earlier ones and itself, or with a sliding
// window the last Window of them.
func (a *Attention) visible(p int) (from, to int) {
	if a.Window > 0 {
		from = max(0, p-a.Window+1)
	}
	return from, p + 1
}

// capScores applies the soft cap to raw scores in place and returns the
// scale the softmax still has to apply: Scale, or 1 once capping has
// scaled them.
func (a *Attention) capScores(s []float32) float32 {
	if a.SoftCap <= 0 {
		return a.Scale
	}
	c := float64(a.SoftCap)
	k := float64(a.Scale) / c
	for i, v := range s {
		s[i] = float32(c * math.Tanh(float64(v)*k))
	}
	return 1
}

// attnRowBlock is the number of query rows per causal block.
const attnRowBlock = 64

// softmaxCausal turns row[:n] (raw scores) into probabilities of
// softmax(scale·row[:n]) and zeroes the masked tail row[n:]. scale must be
// positive (the maximum of row is the maximum of scale·row).
func softmaxCausal(row []float32, n int, scale float32) {
	r := row[:n]
	m := kernels.MaxF32(r)
	sum := kernels.ExpShift(r, r, m, scale) // r_i = exp((r_i − m)·scale) ≤ 1
	kernels.Scale(r, float32(1/sum))
	clear(row[n:])
}
