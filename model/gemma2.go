package model

import (
	"math"

	"llmq/checkpoint"
)

// Gemma 2 (Gemma Team 2024): a Llama-like decoder with
//   - sandwich norms: x += PostAttnNorm(Attn(InputNorm x)),
//     x += PostFFNorm(MLP(PreFFNorm x));
//   - RMSNorm computed with (1 + w), so a stored w = 0 is the identity;
//   - embeddings multiplied by √hidden_size;
//   - attention scores scaled by query_pre_attn_scalar^(−1/2) and capped,
//     s ← c·tanh(s/c) with c = attn_logit_softcapping, and the final logits
//     capped likewise with final_logit_softcapping;
//   - local (sliding-window) and global layers alternating, local first
//     (layer_types when the config lists them);
//   - a GELU (tanh) gated MLP and a head tied to the embedding.
func init() {
	register(&Family{ModelTypes: []string{"gemma2"}, Load: loadGemma2, Names: gemmaNames})
}

// gemmaNames: Gemma calls the norm after attention post_attention_layernorm
// and the one before the MLP pre_feedforward_layernorm.
var gemmaNames = llamaNames.withParts(map[string]string{
	"norm2": "pre_feedforward_layernorm", "post_attn_norm": "post_attention_layernorm",
	"post_mlp_norm": "post_feedforward_layernorm",
})

func loadGemma2(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	d, err := gemmaDecoder(cfg, w, func(i int) string {
		if i%2 == 0 {
			return slidingAttention
		}
		return fullAttention
	})
	if err != nil {
		return nil, err
	}
	attnCap, err := cfg.FloatOr(0, "attn_logit_softcapping")
	if err != nil {
		return nil, err
	}
	logitCap, err := cfg.FloatOr(0, "final_logit_softcapping")
	if err != nil {
		return nil, err
	}
	d.attnCap, d.logitCap = float32(attnCap), float32(logitCap)
	return d.build(cfg, w)
}

// gemmaDecoder reads what Gemma 2 and Gemma 3 share; defType gives the
// layer types when the config has no layer_types.
func gemmaDecoder(cfg *checkpoint.Config, w checkpoint.Tensors, defType func(int) string) (*decoder, error) {
	lp, err := llamaConfig(cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.Has("tie_word_embeddings") {
		lp.tied = true // Gemma's default
	}
	// The √hidden multiplier is a tensor of the model's dtype in
	// transformers: rounded to bf16 (√2304 = 48 → 48, but √128 = 11.3137 →
	// 11.3125) in a bf16 checkpoint, and everyone's reference outputs use it.
	d := &decoder{llamaParams: lp, names: &gemmaNames, sandwich: true, normOffset: 1, embedScale: sqrt32(float64(lp.Hidden))}
	if round := storageRounding(cfg, w, gemmaNames.Embed); round != nil {
		d.embedScale = round(d.embedScale)
	}
	scalar, err := cfg.FloatOr(float64(lp.HeadDim), "query_pre_attn_scalar")
	if err != nil {
		return nil, err
	}
	d.attnScale = 1 / math.Sqrt(scalar)
	if d.layerTypes, err = layerTypes(cfg, lp.Layers, defType); err != nil {
		return nil, err
	}
	if d.window, err = cfg.IntOr(4096, "sliding_window"); err != nil {
		return nil, err
	}
	return d, nil
}
