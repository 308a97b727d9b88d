package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"sort"
)

// Llama2CHeader is the 7 × int32 header of a llama2.c legacy checkpoint
// (Karpathy's run.c `Config`). A negative VocabSize means the classifier
// weights follow the other tensors instead of being tied to the embedding.
type Llama2CHeader struct {
	Dim, HiddenDim, Layers, Heads, KVHeads, VocabSize, SeqLen int
	Shared                                                    bool
}

// Llama2C is a loaded llama2.c checkpoint. Its tensors are exposed under
// Hugging Face Llama names (model.layers.N.self_attn.q_proj.weight, …) so
// that the Llama family binds them unchanged; run.c stores every matrix as
// [out, in] row-major, which is PyTorch's nn.Linear layout.
type Llama2C struct {
	Path   string
	Header Llama2CHeader
	names  []string
	infos  map[string]TensorInfo
	data   map[string][]float32
}

// ReadLlama2C reads the whole file (these checkpoints are fp32 and small).
func ReadLlama2C(path string) (*Llama2C, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseLlama2C(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// ParseLlama2C decodes a llama2.c checkpoint held in memory.
func ParseLlama2C(raw []byte) (*Llama2C, error) {
	if len(raw) < 28 {
		return nil, fmt.Errorf("file too short for a llama2.c header (%d bytes, need 28)", len(raw))
	}
	var h [7]int
	for i := range h {
		h[i] = int(int32(binary.LittleEndian.Uint32(raw[4*i:])))
	}
	hd := Llama2CHeader{Dim: h[0], HiddenDim: h[1], Layers: h[2], Heads: h[3], KVHeads: h[4], VocabSize: h[5], SeqLen: h[6]}
	hd.Shared = hd.VocabSize > 0
	if hd.VocabSize < 0 {
		hd.VocabSize = -hd.VocabSize
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"dim", hd.Dim}, {"hidden_dim", hd.HiddenDim}, {"n_layers", hd.Layers}, {"n_heads", hd.Heads}, {"n_kv_heads", hd.KVHeads}, {"vocab_size", hd.VocabSize}, {"seq_len", hd.SeqLen}} {
		if f.v <= 0 || f.v > 1<<20 {
			return nil, fmt.Errorf("llama2.c header: %s = %d is out of range", f.name, f.v)
		}
	}
	if hd.Dim%hd.Heads != 0 || hd.Heads%hd.KVHeads != 0 || (hd.Dim/hd.Heads)%2 != 0 {
		return nil, fmt.Errorf("llama2.c header: dim %d, n_heads %d, n_kv_heads %d are inconsistent", hd.Dim, hd.Heads, hd.KVHeads)
	}
	headSize := hd.Dim / hd.Heads
	kvDim := headSize * hd.KVHeads
	L, D, F, V := hd.Layers, hd.Dim, hd.HiddenDim, hd.VocabSize

	c := &Llama2C{Header: hd, infos: map[string]TensorInfo{}, data: map[string][]float32{}}
	floats := raw[28:]
	if len(floats)%4 != 0 {
		return nil, fmt.Errorf("llama2.c body is %d bytes, not a whole number of float32s", len(floats))
	}
	all := make([]float32, len(floats)/4)
	for i := range all {
		all[i] = math.Float32frombits(binary.LittleEndian.Uint32(floats[4*i:]))
	}
	off := 0
	take := func(n int) ([]float32, error) {
		if off+n > len(all) {
			return nil, fmt.Errorf("truncated: the header promises more weights than the file holds (%d floats)", len(all))
		}
		s := all[off : off+n : off+n]
		off += n
		return s, nil
	}
	// The order of run.c's memory_map_weights.
	type part struct {
		name  string // HF name pattern; %d = layer
		shape []int  // per layer (or whole, when perLayer is false)
		layer bool
	}
	parts := []part{
		{"model.embed_tokens.weight", []int{V, D}, false},
		{"model.layers.%d.input_layernorm.weight", []int{D}, true},
		{"model.layers.%d.self_attn.q_proj.weight", []int{D, D}, true},
		{"model.layers.%d.self_attn.k_proj.weight", []int{kvDim, D}, true},
		{"model.layers.%d.self_attn.v_proj.weight", []int{kvDim, D}, true},
		{"model.layers.%d.self_attn.o_proj.weight", []int{D, D}, true},
		{"model.layers.%d.post_attention_layernorm.weight", []int{D}, true},
		{"model.layers.%d.mlp.gate_proj.weight", []int{F, D}, true},
		{"model.layers.%d.mlp.down_proj.weight", []int{D, F}, true},
		{"model.layers.%d.mlp.up_proj.weight", []int{F, D}, true},
		{"model.norm.weight", []int{D}, false},
	}
	for _, p := range parts {
		n := 1
		for _, d := range p.shape {
			n *= d
		}
		if !p.layer {
			s, err := take(n)
			if err != nil {
				return nil, err
			}
			c.put(p.name, p.shape, s)
			continue
		}
		for l := 0; l < L; l++ {
			s, err := take(n)
			if err != nil {
				return nil, err
			}
			c.put(fmt.Sprintf(p.name, l), p.shape, s)
		}
	}
	// run.c's precomputed RoPE tables (freq_cis_real/imag), unused: we compute RoPE.
	if _, err := take(hd.SeqLen * headSize); err != nil { // real and imaginary halves
		return nil, err
	}
	if !hd.Shared {
		s, err := take(V * D)
		if err != nil {
			return nil, err
		}
		c.put("lm_head.weight", []int{V, D}, s)
	}
	if off != len(all) {
		return nil, fmt.Errorf("%d unexpected trailing bytes after the weights", 4*(len(all)-off))
	}
	sort.Strings(c.names)
	return c, nil
}

func (c *Llama2C) put(name string, shape []int, s []float32) {
	c.names = append(c.names, name)
	c.infos[name] = TensorInfo{Name: name, DType: F32, Shape: shape, End: int64(4 * len(s))}
	c.data[name] = s
}

// Names lists the tensors under their Hugging Face names.
func (c *Llama2C) Names() []string { return c.names }

// Info describes a tensor.
func (c *Llama2C) Info(name string) (TensorInfo, bool) {
	t, ok := c.infos[name]
	return t, ok
}

// Float32 returns a copy of a tensor.
func (c *Llama2C) Float32(name string) ([]float32, TensorInfo, error) {
	s, ok := c.data[name]
	if !ok {
		return nil, TensorInfo{}, fmt.Errorf("%s: tensor %q not found", c.Path, name)
	}
	return append([]float32(nil), s...), c.infos[name], nil
}

// Close releases nothing: the weights live in ordinary memory.
func (c *Llama2C) Close() error { return nil }
