// Package model runs decoder-only transformer language models. Every family
// (Llama, OPT, GPT-2, GPT-NeoX, llama2.c) is one file that reads its config,
// binds its checkpoint's tensors by name and sets the few architectural
// switches in which the families differ; the forward pass itself is shared
// (block.go), so quantization methods see every family through the same
// Block fields — which norm feeds which linears — and need no per-family code.
package model

import (
	"fmt"
	"io"
	"math"

	"llmq/nn"
)

// Hyper are the shape hyper-parameters every family has.
type Hyper struct {
	Vocab        int
	Hidden       int
	Layers       int
	Heads        int
	KVHeads      int
	HeadDim      int
	Intermediate int
	MaxPos       int // positions the model was trained for (learned tables end there)
	BOS, EOS     int // -1 when the config does not say
}

// Model is a loaded decoder-only language model.
type Model struct {
	Arch string // the config's model_type, e.g. "llama"
	Hyper

	Embed []float32 // token embeddings [Vocab × Hidden]
	// EmbedRows replaces Embed (then nil) when the embedding is tied to a
	// quantized head: the rows come from the head's packed weight, so the
	// table is held once, at its quantized size.
	EmbedRows RowSource
	Pos       []float32 // learned position embeddings, nil with RoPE
	PosOffset int       // OPT stores its positions shifted by 2
	Blocks    []*Block
	Norm      nn.Norm   // final norm before the head (nil: none)
	Head      nn.Linear // lm_head; tied models share Embed's memory
	Rope      *nn.Rope  // the blocks' rotary embedding when they share one (else see Block.Rope)
	// EmbedScale multiplies the embeddings (Gemma: √Hidden; 0: none).
	EmbedScale float32
	// LogitCap, when positive, caps the logits smoothly (Gemma 2's final
	// soft-capping): z ← LogitCap·tanh(z/LogitCap).
	LogitCap float32
	names    *Names // how the family's checkpoints name the tensors
	// Unused lists the checkpoint tensors the family did not bind (see
	// unusedTensors); loaders warn about them.
	Unused []string

	closer io.Closer // the checkpoint of a lazily loaded model
}

// RowSource yields rows of a weight matrix: Row writes row id (dequantized
// to FP32) to dst. Quantized linears implement it, so a head tied to the
// embedding can serve the embedding lookups.
type RowSource interface {
	Row(dst []float32, id int)
}

// State is one sequence being processed: its position and KV caches, and
// scratch buffers reused between calls.
type State struct {
	Pos    int
	caches []*nn.KVCache
	s      scratch
}

// NewState prepares a sequence with room for capacity positions (it grows
// beyond that if needed).
func (m *Model) NewState(capacity int) *State {
	st := &State{}
	for range m.Blocks {
		st.caches = append(st.caches, nn.NewKVCache(m.KVHeads, m.HeadDim, capacity))
	}
	return st
}

// Reset starts a new sequence, keeping the memory.
func (s *State) Reset() {
	s.Pos = 0
	for _, c := range s.caches {
		c.Reset()
	}
}

// Options tune a forward call.
type Options struct {
	// LastOnly computes logits for the last token only (generation).
	LastOnly bool
	// Hidden, when set, receives the hidden states in Hugging Face's
	// output_hidden_states convention: index 0 is the embedding output,
	// index i (1 ≤ i < Layers) the output of block i−1, and index Layers the
	// last block's output after the final norm. h is [rows × Hidden] and
	// only valid during the call.
	Hidden func(index int, h []float32)
}

// Forward feeds tokens at the state's next positions and returns logits
// [rows × Vocab] (or [1 × Vocab] with LastOnly).
func (m *Model) Forward(st *State, tokens []int, opt Options) ([]float32, error) {
	T := len(tokens)
	if T == 0 {
		return nil, fmt.Errorf("forward: no tokens")
	}
	H := m.Hidden
	s := &st.s
	s.ensure(m, T)
	x := s.x[:T*H]
	if err := m.embed(x, tokens, st.Pos); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	if opt.Hidden != nil {
		opt.Hidden(0, x)
	}
	for l, b := range m.Blocks {
		b.Forward(x, T, st.caches[l], s)
		if opt.Hidden != nil && l < len(m.Blocks)-1 {
			opt.Hidden(l+1, x)
		}
	}
	st.Pos += T
	if opt.LastOnly {
		x = x[(T-1)*H:]
		T = 1
	}
	h := s.h[:T*H]
	if m.Norm != nil {
		m.Norm.Forward(h, x, T)
	} else {
		copy(h, x)
	}
	if opt.Hidden != nil {
		opt.Hidden(len(m.Blocks), h)
	}
	logits := make([]float32, T*m.Vocab)
	m.Head.Forward(logits, h, T)
	m.capLogits(logits)
	return logits, nil
}

// capLogits applies the final soft cap, if any.
func (m *Model) capLogits(z []float32) {
	if m.LogitCap <= 0 {
		return
	}
	c := float64(m.LogitCap)
	for i, v := range z {
		z[i] = float32(c * math.Tanh(float64(v)/c))
	}
}

// HeadShared reports whether the FP head is the embedding table itself (a
// tied head before quantization: one slice, two uses).
func (m *Model) HeadShared() bool {
	d, ok := m.Head.(*nn.Dense)
	return ok && len(d.W) > 0 && len(m.Embed) > 0 && &d.W[0] == &m.Embed[0]
}

// EmbedFromHead reports whether the embedding rows are served by a
// quantized head (a tied head after quantization: the table is the head's
// packed weight, held once).
func (m *Model) EmbedFromHead() bool { return m.Embed == nil && m.EmbedRows != nil }

// HeadTied reports whether head and embedding are one table, in either of
// the two forms above. Everything that counts, saves or exports the head
// asks here.
func (m *Model) HeadTied() bool { return m.HeadShared() || m.EmbedFromHead() }

// NumParams counts the distinct weights (a tied head counts once).
func (m *Model) NumParams() int {
	n := len(m.Embed) + len(m.Pos)
	if m.EmbedFromHead() {
		n += m.Vocab * m.Hidden // the tied head's weight, counted once
	}
	for _, b := range m.Blocks {
		n += b.numParams()
	}
	if !m.HeadTied() && m.Head != nil {
		if d, ok := m.Head.(*nn.Dense); ok {
			n += len(d.W) + len(d.B)
		} else {
			n += m.Head.Out() * m.Head.In()
		}
	}
	if m.Norm != nil {
		w, b := nn.NormParams(m.Norm)
		n += len(w) + len(b)
	}
	return n
}

// Cache returns the KV cache of block l (for inspection and tests).
func (s *State) Cache(l int) *nn.KVCache { return s.caches[l] }
