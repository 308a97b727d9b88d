package model

import "llmq/checkpoint"

// Qwen3 (Qwen team 2025) is Llama with an RMSNorm over each head's query
// and key before RoPE (q_norm, k_norm, one HeadDim-wide weight shared by
// the heads) and no q/k/v biases; head_dim is set apart from hidden/heads
// (128 for every size). Sliding windows follow Qwen2's rule.
func init() {
	register(&Family{ModelTypes: []string{"qwen3"}, Load: loadQwen3, Names: llamaNames})
}

func loadQwen3(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	lp, err := llamaConfig(cfg)
	if err != nil {
		return nil, err
	}
	d := &decoder{llamaParams: lp, names: &llamaNames, qkNorm: true}
	if err := d.slideQwen(cfg); err != nil {
		return nil, err
	}
	return d.build(cfg, w)
}
