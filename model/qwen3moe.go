package model

import (
	"fmt"
	"slices"

	"llmq/checkpoint"
)

// Qwen3-MoE (Qwen team 2025): Qwen3's attention (q/k norms) with a sparse
// mixture of SwiGLU experts, moe_intermediate_size wide, in the layers that
// are sparse — every decoder_sparse_step-th layer not listed in
// mlp_only_layers; the others keep a dense MLP of intermediate_size. The
// router is mlp.gate; the top-k probabilities are renormalised when
// norm_topk_prob is set (MoE).
func init() {
	register(&Family{ModelTypes: []string{"qwen3_moe"}, Load: loadQwen3MoE, Names: qwen3MoENames})
}

var qwen3MoENames = func() Names {
	n := llamaNames.withParts(map[string]string{"router": "mlp.gate"})
	n.Experts = "mlp.experts.%d"
	n.ExpertParts = map[string]string{"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
	return n
}()

func loadQwen3MoE(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	lp, err := llamaConfig(cfg)
	if err != nil {
		return nil, err
	}
	experts, topK, err := moeConfig(cfg)
	if err != nil {
		return nil, err
	}
	F, err := cfg.Int("moe_intermediate_size")
	if err != nil {
		return nil, err
	}
	step, err := cfg.IntOr(1, "decoder_sparse_step")
	if err != nil {
		return nil, err
	}
	var dense []int
	if _, err := cfg.Decode("mlp_only_layers", &dense); err != nil {
		return nil, err
	}
	normTopK, err := cfg.BoolOr(false, "norm_topk_prob")
	if err != nil {
		return nil, err
	}
	if F <= 0 || step <= 0 {
		return nil, fmt.Errorf("%s: moe_intermediate_size and decoder_sparse_step must be positive", cfg.Path)
	}
	d := &decoder{llamaParams: lp, names: &qwen3MoENames, qkNorm: true}
	if err := d.slideQwen(cfg); err != nil {
		return nil, err
	}
	d.moe = func(b *binder, prefix string, l int) *MoE {
		if slices.Contains(dense, l) || (l+1)%step != 0 {
			return nil
		}
		return bindExperts(b, &qwen3MoENames, prefix, experts, topK, lp.Hidden, F, normTopK)
	}
	return d.build(cfg, w)
}
