package model

import (
	"llmq/checkpoint"
	"llmq/nn"
)

// LoadLlama2C loads a llama2.c legacy checkpoint (Karpathy's run.c format).
// The network is a Llama, so it binds through the Llama family; what differs
// is the file format (handled by checkpoint.ReadLlama2C, which gives the
// tensors Hugging Face names) and the RoPE convention: run.c rotates
// adjacent pairs (x[2i], x[2i+1]), Meta's original layout, where Hugging
// Face rotates (x[i], x[i+d/2]). Getting this wrong still produces fluent
// numbers — just not the model's.
func LoadLlama2C(path string) (*Model, error) {
	c, err := checkpoint.ReadLlama2C(path)
	if err != nil {
		return nil, err
	}
	hd := c.Header
	lp := &llamaParams{
		Hyper: Hyper{
			Vocab: hd.VocabSize, Hidden: hd.Dim, Layers: hd.Layers, Heads: hd.Heads,
			KVHeads: hd.KVHeads, HeadDim: hd.Dim / hd.Heads, Intermediate: hd.HiddenDim,
			MaxPos: hd.SeqLen, BOS: 1, EOS: 2,
		},
		eps:  1e-5, // run.c's rmsnorm
		act:  nn.SiLU,
		silu: true,
		tied: hd.Shared,
	}
	lp.rope = nn.NewRope(lp.HeadDim, lp.HeadDim, 10000, true, lp.MaxPos, nil)
	m, err := bindLlama(c, lp)
	if err != nil {
		return nil, err
	}
	m.Arch = "llama2c"
	return m, nil
}
