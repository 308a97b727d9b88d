package methods

import (
	"fmt"

	"llmq/model"
	"llmq/nn"
	"llmq/quant"
)

// HERO applies the mixed-precision W8A8 levels of ZeroQuant-HERO (Yao et
// al. 2023, "ZeroQuant-HERO: Hardware-Enhanced Robust Optimized
// Post-Training Quantization Framework for W8A8 Transformers"). The paper
// quantizes every module of a transformer to INT8 — including the
// memory-bound ones (the embedding, the attention batched matmuls) — and
// lets the modules most sensitive to quantization fall back to FP16/BF16,
// as named modes. llmq's levels, from most to least conservative:
//
//	level 1: INT8 embedding, QKV projections, first MLP projections
//	         (gate/up or fc1); FP attention BMMs, output projection and
//	         down projection (the two linears whose inputs carry the
//	         largest activation outliers)
//	level 2: level 1 plus the output and down projections (every linear)
//	level 3: level 2 plus the attention BMMs (Q·Kᵀ and P·V) and the KV
//	         cache in INT8 — the fully INT8 transformer
//
// Linears use int8 per-channel weights and int8 per-token dynamic
// activations (the token-wise scales HERO computes in its fused
// LayerNorm/GeLU kernels); the embedding table is int8 per row. The level
// assignment is llmq's reading of the paper's modes; the paper's own mode
// table could not be consulted when this was written.
type HERO struct {
	Level int
	rtn   *RTN
	kv    *KVCache
}

// NewHERO returns the method for a level (1–3).
func NewHERO(level int) (*HERO, error) {
	roles := map[int][]string{
		1: {"q", "k", "v", "gate", "up"},
		2: {"q", "k", "v", "o", "gate", "up", "down"},
		3: {"q", "k", "v", "o", "gate", "up", "down"},
	}[level]
	if roles == nil {
		return nil, fmt.Errorf("ZeroQuant-HERO level %d: want 1, 2 or 3", level)
	}
	acts := quant.MustParseSpec("int8-sym-token")
	h := &HERO{Level: level, rtn: &RTN{Scheme: Scheme{Weights: quant.MustParseSpec("int8-sym-channel"), Acts: &acts}}}
	h.rtn.Select = &Selector{Targets: []string{"Linear"}}
	h.rtn.roles = roles
	if level == 3 {
		h.kv = &KVCache{Format: "int8", BMM: true}
	}
	return h, nil
}

func (h *HERO) Name() string           { return fmt.Sprintf("zeroquant-hero-m%d", h.Level) }
func (h *HERO) NeedsCalibration() bool { return false }

func (h *HERO) ApplyLayer(l *Layer) error {
	if err := h.rtn.ApplyLayer(l); err != nil {
		return err
	}
	if h.kv != nil {
		return h.kv.ApplyLayer(l)
	}
	return nil
}

// ApplyModel quantizes the token embedding table to int8 per row. A head
// tied to the embedding keeps an FP copy (it is a separate GEMM operand).
func (h *HERO) ApplyModel(m *model.Model) error {
	if len(m.Embed) == 0 {
		return nil // the table is a quantized head's weight already
	}
	if d, ok := m.Head.(*nn.Dense); ok && m.HeadShared() {
		m.Head = nn.NewDense(append([]float32(nil), d.W...), d.B, d.Out(), d.In())
	}
	q, err := quant.FakeQuantize(m.Embed, m.Vocab, m.Hidden, quant.MustParseSpec("int8-sym-channel"))
	if err != nil {
		return fmt.Errorf("embedding: %w", err)
	}
	copy(m.Embed, q)
	return nil
}
