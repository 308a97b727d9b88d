package model

import "llmq/checkpoint"

// Mixtral (Jiang et al. 2024): Mistral's attention with a sparse mixture
// of SwiGLU experts in place of the MLP — a router
// (block_sparse_moe.gate) picks num_experts_per_tok of num_local_experts
// experts per token and their outputs are summed with the renormalised
// router probabilities (MoE). Expert i stores w1 (gate), w3 (up) and w2
// (down), each intermediate_size wide.
func init() {
	register(&Family{ModelTypes: []string{"mixtral"}, Load: loadMixtral, Names: mixtralNames})
}

var mixtralNames = func() Names {
	n := llamaNames.withParts(map[string]string{"router": "block_sparse_moe.gate"})
	n.Experts = "block_sparse_moe.experts.%d"
	n.ExpertParts = map[string]string{"gate": "w1", "up": "w3", "down": "w2"}
	return n
}()

func loadMixtral(cfg *checkpoint.Config, w checkpoint.Tensors) (*Model, error) {
	lp, err := llamaConfig(cfg)
	if err != nil {
		return nil, err
	}
	experts, topK, err := moeConfig(cfg)
	if err != nil {
		return nil, err
	}
	d := &decoder{llamaParams: lp, names: &mixtralNames}
	if err := d.slideAll(cfg); err != nil {
		return nil, err
	}
	d.moe = func(b *binder, prefix string, l int) *MoE {
		return bindExperts(b, &mixtralNames, prefix, experts, topK, lp.Hidden, lp.Intermediate, true)
	}
	return d.build(cfg, w)
}
