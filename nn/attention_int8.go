package nn

import (
	"sync"

	"llmq/kernels"
)

// Integer attention batched matmuls, used when the attention's quantization
// is dynamic int8 per token and head with the BMMs quantized too
// (AttnQuant{Format: "int8", BMM: true}: SmoothQuant-O3 with bmm, ZeroQuant-HERO
// level 3). The cache then holds int8 codes with one scale per token and
// head (KVCache.appendInt8), and both products run on the INT8 GEMM:
//
// Q·Kᵀ. Queries are quantized like keys, q_t = s_q[t]·qc_t per head, so
//
//	S[t][j] = Σ_d s_q[t]·qc[t][d] · s_k[j]·kc[j][d] = s_q[t]·s_k[j] · Σ_d qc[t][d]·kc[j][d]
//
// — the scales sit on the outer dimensions (one per row, one per column),
// exactly SmoothQuant's per-token × per-channel structure, and the sum over
// d is exact in int32 (kernels.GemmS8Scaled).
//
// P·V. Here the value scales s_v[j] sit on the reduction axis j:
// Σ_j P[t][j]·s_v[j]·vc[j][d] has one scale per term, so it cannot be taken
// out of an integer sum. Quantizing P alone (QuantizeProbs) and then
// multiplying by dequantized values, as the simulated formats do, leaves
// this product in floating point. Instead the value scales are folded into
// the probabilities before they are quantized:
//
//	P̃[t][j] = P[t][j]·s_v[j],   s̃[t] = max_j P̃[t][j] / 127,   p̃c = round(P̃/s̃) ∈ [0, 127]
//	(the int8 per-token grid of the activations, on non-negative values)
//	O[t][d] = s̃[t] · Σ_j p̃c[t][j]·vc[j][d]
//
// one grid per row (now of the weighted probabilities) and an exact int32
// sum. The codes use the non-negative half of int8, as SmoothQuant's INT8
// BMM does for probabilities (scale 1/127 there, the row maximum here):
// masked keys are code 0, and every operand is a plain int8 the GEMM takes
// on any kernel set.
//
// Layout. The group of query heads sharing a KV head is stacked into one
// GEMM per product (rows ordered head-major), so the key codes and value
// codes are read — or packed — once per task, and a decode step (one row per
// head) stays on the GEMM's few-row path, which streams B without packing.
// The values are kept transposed in the cache (KVCache.VT) so that each
// output dimension's codes are a contiguous row of B.

// int8AttnChunk bounds the keys summed in one int32 GEMM: 2¹⁶·127·127 < 2³¹.
const int8AttnChunk = 1 << 16

// int8Scratch holds one task's buffers for the integer path.
type int8Scratch struct {
	qc  []int8    // the group's query codes [group·n × hd]
	qs  []float32 // their scales [group·n]
	ks  []float32 // key scales of the KV head [lb]
	vs  []float32 // value scales of the KV head [lb]
	s   []float32 // scores, then probabilities [group·n × lb]
	pc  []int8    // p̃c [group·n × lb]
	ps  []float32 // s̃ per row [group·n]
	acc []int32   // P̃c·V [group·n × hd]

	callQC []int8    // forwardInt8's codes of all the call's queries [rows × Heads·hd]
	callQS []float32 // and their scales [rows × Heads]
}

var int8ScratchPool = sync.Pool{New: func() any { return new(int8Scratch) }}

// grow returns x resized to n elements, reusing its memory when it can.
func grow[T any](x []T, n int) []T {
	if cap(x) < n {
		return make([]T, n)
	}
	return x[:n]
}

// forwardInt8 computes out [rows × Heads·HeadDim] for the new queries q on
// the INT8 GEMM, the cache already holding this step's keys and values.
func (a *Attention) forwardInt8(out, q []float32, rows int, cache *KVCache) {
	qw := a.Heads * a.HeadDim
	qb := int8ScratchPool.Get().(*int8Scratch)
	qb.callQC, qb.callQS = grow(qb.callQC, rows*qw), grow(qb.callQS, rows*a.Heads)
	qc, qscale := qb.callQC, qb.callQS
	kernels.QuantizeRowsS8(qc, qscale, q[:rows*qw], rows*a.Heads, a.HeadDim)
	nb := (rows + attnRowBlock - 1) / attnRowBlock
	kernels.ParallelForFlops(a.KVHeads*nb, a.flops(rows, cache.Len), func(lo, hi int) {
		sc := int8ScratchPool.Get().(*int8Scratch)
		for task := lo; task < hi; task++ {
			g, blk := task/nb, task%nb
			t0 := blk * attnRowBlock
			a.int8Task(sc, out, qc, qscale, cache, g, t0, min(rows, t0+attnRowBlock), cache.Len-rows)
		}
		int8ScratchPool.Put(sc)
	})
	int8ScratchPool.Put(qb)
}

// int8Task is one (KV head g, query rows [t0, t1)) task of forwardInt8;
// pos0 is the absolute position of query row 0.
func (a *Attention) int8Task(sc *int8Scratch, out []float32, qc []int8, qscale []float32, cache *KVCache, g, t0, t1, pos0 int) {
	hd := a.HeadDim
	qw, kw := a.Heads*hd, a.KVHeads*hd
	group := a.Heads / a.KVHeads
	n := t1 - t0
	m := group * n  // GEMM rows: (head, query row) pairs, head-major
	lb := pos0 + t1 // keys visible to the block's last row
	sc.qc, sc.qs = grow(sc.qc, m*hd), grow(sc.qs, m)
	sc.ks, sc.vs = grow(sc.ks, lb), grow(sc.vs, lb)
	sc.s, sc.pc, sc.ps = grow(sc.s, m*lb), grow(sc.pc, m*lb), grow(sc.ps, m)
	sc.acc = grow(sc.acc, m*hd)
	for r := 0; r < m; r++ {
		h, t := stackedRow(g, group, t0, n, r)
		copy(sc.qc[r*hd:(r+1)*hd], qc[t*qw+h*hd:t*qw+h*hd+hd])
		sc.qs[r] = qscale[t*a.Heads+h]
	}
	for j := 0; j < lb; j++ {
		sc.ks[j] = cache.Ks[j*a.KVHeads+g]
		sc.vs[j] = cache.Vs[j*a.KVHeads+g]
	}
	// S = s_q·s_k · (Qc · Kc_g[:lb]ᵀ)  [m × lb]
	kernels.GemmS8Scaled(m, lb, hd, sc.qc, hd, sc.qs, cache.Kq[g*hd:], kw, sc.ks, nil, sc.s, lb)
	for r := 0; r < m; r++ {
		_, t := stackedRow(g, group, t0, n, r)
		from, vis := a.visible(pos0 + t) // keys visible to query row t
		row, pc := sc.s[r*lb:(r+1)*lb], sc.pc[r*lb:(r+1)*lb]
		sc.ps[r] = softmaxFold(pc[from:], row[from:], vis-from, a.capScores(row[from:vis]), sc.vs[from:])
		clear(pc[:from])
	}
	// O = s̃ · (P̃c · V_g[:lb])  [m × hd], V_g as the rows of VT
	vt := cache.VT[g*hd*cache.capT:]
	for j0 := 0; j0 < lb; j0 += int8AttnChunk {
		k := min(int8AttnChunk, lb-j0)
		kernels.GemmS8(m, hd, k, sc.pc[j0:], lb, vt[j0:], cache.capT, sc.acc, hd)
		for r := 0; r < m; r++ {
			h, t := stackedRow(g, group, t0, n, r)
			o := out[t*qw+h*hd : t*qw+h*hd+hd]
			s := sc.ps[r]
			for d, v := range sc.acc[r*hd : (r+1)*hd] {
				if j0 == 0 {
					o[d] = s * float32(v)
				} else {
					o[d] += s * float32(v)
				}
			}
		}
	}
}

// softmaxFold turns row[:vis] (raw scores) into the probabilities of
// softmax(scale·row[:vis]) weighted by the value scales,
// P̃_j = P_j·vs[j] (in place), and writes their codes to dst[:vis] on the
// int8 grid of the row's largest P̃ (kernels.QuantizeRowsS8: s̃ = max/127,
// codes in [0, 127] as P̃ ≥ 0); dst[vis:] (masked keys) is set to 0. It
// returns s̃.
func softmaxFold(dst []int8, row []float32, vis int, scale float32, vs []float32) float32 {
	r := row[:vis]
	m := kernels.MaxF32(r)
	sum := kernels.ExpShift(r, r, m, scale)
	kernels.ScaleMul(r, r, vs[:vis], float32(1/sum)) // (e_j·(1/Σe))·vs_j = P_j·vs_j
	var s [1]float32
	kernels.QuantizeRowsS8(dst[:vis], s[:], r, 1, vis)
	clear(dst[vis:])
	return s[0]
}
