package model

import "llmq/checkpoint"

// Gemma 3 (Gemma Team 2025), text decoder: Gemma 2's blocks (sandwich
// norms, (1 + w) RMSNorm, √hidden-scaled embeddings, query_pre_attn_scalar)
// with per-head q/k norms — also (1 + w) — instead of soft-capping, five
// local layers to every global one (sliding_window_pattern 6, or
// layer_types), and a rotary base per layer type: rope_parameters keyed by
// "sliding_attention" / "full_attention" (older configs: rope_local_base_freq
// for the local layers, rope_theta and rope_scaling for the global ones).
func init() {
	register(&Family{ModelTypes: []string{"gemma3_text"}, Load: loadGemma3, Names: gemmaNames})
}

func loadGemma3(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	pattern, err := cfg.IntOr(6, "sliding_window_pattern", "_sliding_window_pattern")
	if err != nil {
		return nil, err
	}
	d, err := gemmaDecoder(cfg, w, func(i int) string {
		if pattern > 0 && (i+1)%pattern == 0 {
			return fullAttention
		}
		return slidingAttention
	})
	if err != nil {
		return nil, err
	}
	d.qkNorm = true
	return d.build(cfg, w)
}
