package model

import "llmq/checkpoint"

// Phi-3 / Phi-4-mini (Abdin et al. 2024): a Llama-like decoder whose
// checkpoints fuse q, k and v into one qkv_proj (rows q, then k, then v)
// and the MLP's gate and up into one gate_up_proj (rows gate, then up:
// h = down(SiLU(gate) ⊙ up)), split on load. Rotary embeddings cover
// partial_rotary_factor of each head (Phi-4-mini: 0.75), longrope scaling
// for the long-context variants, and a sliding window on every layer when
// the config sets one.
func init() {
	register(&Family{ModelTypes: []string{"phi3"}, Load: loadPhi3, Names: phi3Names})
}

// phi3Names name the split parts after their fused module (as GPT-2's
// c_attn parts are); llmq's own folders store them apart under these
// names, and exports fuse them back (Fused).
var phi3Names = func() Names {
	n := llamaNames.withParts(map[string]string{
		"q": "self_attn.qkv_proj.q", "k": "self_attn.qkv_proj.k", "v": "self_attn.qkv_proj.v",
		"gate": "mlp.gate_up_proj.gate", "up": "mlp.gate_up_proj.up",
	})
	n.Fused = map[string][]string{"self_attn.qkv_proj": {"q", "k", "v"}, "mlp.gate_up_proj": {"gate", "up"}}
	return n
}()

func loadPhi3(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	lp, err := llamaConfig(cfg)
	if err != nil {
		return nil, err
	}
	d := &decoder{llamaParams: lp, names: &phi3Names, fusedQKV: "self_attn.qkv_proj", fusedGateUp: "mlp.gate_up_proj"}
	if err := d.slideAll(cfg); err != nil {
		return nil, err
	}
	return d.build(cfg, w)
}
