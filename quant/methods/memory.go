package methods

import (
	"fmt"

	"llmq/model"
)

// MemoryEstimate is what a quantization run holds at its peak, by kind, in
// bytes. It is an estimate from the shapes, made before anything is read,
// so that a run that cannot fit is refused at once instead of being killed
// by the kernel after an hour of calibration.
type MemoryEstimate struct {
	// Weights: the FP32 tables bound eagerly (embedding; the head once it
	// is quantized) and one block's FP32 weights, read as the pipeline
	// reaches it (all blocks when the model is not loaded lazily).
	Weights int64
	// Output: the quantized layers of the finished blocks, taken at 8 bits
	// a weight plus one FP32 scale per 32 (an upper bound for every int8,
	// int4 and FP8 scheme).
	Output int64
	// Activations: the calibration sequences entering the current block
	// (and the FP copies methods keep to compare against), plus one
	// sequence's intermediate buffers.
	Activations int64
	// Statistics: per-block statistics — GPTQ's Hessians XᵀX of every
	// input group, float32, collected together, and the factor of the
	// largest.
	Statistics int64
}

// Total is the sum of the parts.
func (e MemoryEstimate) Total() int64 { return e.Weights + e.Output + e.Activations + e.Statistics }

func (e MemoryEstimate) String() string {
	return fmt.Sprintf("%s (weights %s, quantized output ≤ %s, calibration activations %s, statistics %s)",
		Bytes(e.Total()), Bytes(e.Weights), Bytes(e.Output), Bytes(e.Activations), Bytes(e.Statistics))
}

// Bytes formats a byte count for messages.
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", (n+1023)/1024)
}

// baseOf is the method a wrapping method (LoRC, LKD) runs first, or nil.
func baseOf(s Method) Method {
	switch v := s.(type) {
	case *LoRC:
		return v.Base
	case *LKD:
		return v.Base
	}
	return nil
}

// EstimateRun estimates the peak memory of Run(m, seqs × seqlen tokens,
// stages), m loaded lazily (model.LoadLazy) or not.
func EstimateRun(m *model.Model, stages []Method, seqs, seqlen int, lazy bool) MemoryEstimate {
	var e MemoryEstimate
	H := int64(m.Hidden)
	e.Weights = 4 * int64(len(m.Embed)+len(m.Pos))
	if m.Head != nil && !m.HeadShared() {
		e.Weights += 4 * int64(m.Head.Out()) * int64(m.Head.In())
	}
	var blockMax, linears int64
	for _, b := range m.Blocks {
		var n int64
		for _, nl := range b.Linears() {
			n += int64((*nl.Linear).Out()) * int64((*nl.Linear).In())
		}
		blockMax = max(blockMax, 4*n)
		linears += n
	}
	if lazy {
		e.Weights += blockMax
	} else {
		e.Weights += 4 * linears
	}
	e.Output = linears + linears/8 // 1 byte a weight, a 4-byte scale per 32

	hessian, copies := false, 1
	for _, s := range stages {
		for ; s != nil; s = baseOf(s) {
			switch s.(type) {
			case *GPTQ:
				hessian = true
			case *SmoothQuant, *LKD, *AWQ:
				copies = 2 // the FP block outputs its searches compare against
			}
		}
	}
	if seqs > 0 {
		acts := int64(seqs) * int64(seqlen) * H * 4
		e.Activations = int64(copies) * acts
		// One sequence through a block: q/k/v, the MLP's two widest
		// buffers and a few hidden-wide ones, in FP32.
		qw := int64(m.Heads * m.HeadDim)
		e.Activations += int64(seqlen) * 4 * (3*qw + 2*int64(m.Intermediate) + 6*H)
	}
	if hessian && seqs > 0 {
		var all, largest int64
		for _, b := range m.Blocks[:1] {
			for _, g := range b.InputGroups() {
				in := int64((*b.Linear(g[0])).In())
				all += 4 * in * in
				largest = max(largest, 4*in*in)
			}
		}
		e.Statistics = all + largest // the Hessians (calib.Stats), and the factor of the largest
	}
	return e
}
