package modelio

// GGUF export for llama.cpp, in the layout its convert_hf_to_gguf.py writes
// and its loaders read, for every architecture of the name table
// (gguf_arch.go): llama (Llama 1–3, Mistral, Mixtral, llama2.c), qwen2,
// qwen3, qwen3moe, gemma2, gemma3 and phi3. A file written here runs in
// llama.cpp, and it imports back here (gguf_import.go) computing what the
// exported model computed.
//
// Which tensors get which type (the same rule for export and for
// RoundLikeGGUF, so the two agree exactly):
//   - 1-D tensors (norm weights, biases, rope_freqs) stay F32, the ggml
//     convention, and so does the MoE router ffn_gate_inp, as the
//     converter keeps it;
//   - every other matrix — the block linears (expert stacks included),
//     token_embd and output — gets the requested type, as
//     convert_hf_to_gguf.py --outtype q8_0 does; a matrix whose rows are
//     not a whole number of 32-element blocks falls back to F16, as that
//     converter does.
//
// Where llama.cpp computes something other than the model — it has no
// sliding window for Mistral, multiplies Gemma's embeddings by an unrounded
// √n_embd — the file still describes the model: the exact value goes under
// a key llama.cpp leaves unread (attention.sliding_window, embedding_scale)
// so that llmq reimports it faithfully, and the report's notes say what
// llama.cpp will do instead. What llama.cpp cannot compute at all is
// refused.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"llmq/gguf"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
	"llmq/quant/methods"
	"llmq/tokenizer"
)

// ggufTensorType is the stored type of a tensor of the given ggml dims when
// the file's linear-weight type is typ (see the rule at the top of the file).
func ggufTensorType(typ gguf.Type, dims []uint64) gguf.Type {
	if len(dims) < 2 {
		return gguf.F32
	}
	if _, err := typ.RowBytes(int64(dims[0])); err != nil {
		return gguf.F16
	}
	return typ
}

// permuteQK reorders the rows of a q_proj or k_proj weight (or bias, cols =
// 1) between Hugging Face's RoPE layout and ggml's, per head of hd rows.
// Hugging Face rotates feature pairs (i, i+hd/2) ("rotate half"); ggml's
// rope (mode 0, the original Meta layout) rotates adjacent pairs (2i, 2i+1).
// convert_hf_to_gguf.py therefore stores row h·hd + 2i + j of the GGUF
// tensor from row h·hd + j·hd/2 + i of the Hugging Face one (its permute:
// reshape(heads, 2, hd/2, cols).swapaxes(1, 2)); toGGML false undoes it.
// Only the llama architecture uses mode 0; the others rotate halves (NEOX).
func permuteQK(w []float32, heads, cols int, toGGML bool) []float32 {
	out := make([]float32, len(w))
	hd := len(w) / cols / heads
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				g := h*hd + 2*i + j    // ggml row
				f := h*hd + j*hd/2 + i // Hugging Face row
				if toGGML {
					copy(out[g*cols:(g+1)*cols], w[f*cols:(f+1)*cols])
				} else {
					copy(out[f*cols:(f+1)*cols], w[g*cols:(g+1)*cols])
				}
			}
		}
	}
	return out
}

// GGUFExport configures ExportGGUF.
type GGUFExport struct {
	Path string    // output file
	Type gguf.Type // type of the 2-D weights: F32, F16, BF16, Q8_0 or Q4_0
	Name string    // general.name
}

// GGUFReport summarises an export.
type GGUFReport struct {
	Arch    string            // general.architecture
	Tensors map[gguf.Type]int // tensors written, by type
	Notes   []string          // what the file cannot carry, and fallbacks taken
}

// ggufTensor is one tensor to export: its GGUF name, ggml dims and a
// function producing its FP32 values in ggml order.
type ggufTensor struct {
	name    string
	dims    []uint64
	values  func() ([]float32, error)
	keepF32 bool // stays F32 whatever the file type (the router)
}

// ExportGGUF writes a model as a GGUF file for llama.cpp, with the
// vocabulary of tok (nil: none, tokenizer.ggml.model = "no_vocab").
// Quantized layers are dequantized and re-encoded in the requested type.
// The file is written to a temporary name and renamed when complete.
func ExportGGUF(m *model.Model, tok *tokenizer.SentencePiece, opt GGUFExport) (*GGUFReport, error) {
	if !opt.Type.Supported() {
		return nil, fmt.Errorf("GGUF type %v cannot be written", opt.Type)
	}
	p, err := planGGUF(m)
	if err != nil {
		return nil, err
	}
	rep := &GGUFReport{Arch: p.arch.name, Tensors: map[gguf.Type]int{}, Notes: p.notes}
	tensors, notes, err := ggufTensors(m, p)
	if err != nil {
		return nil, err
	}
	rep.Notes = append(rep.Notes, notes...)
	w := &gguf.Writer{}
	if err := ggufMetadata(w, m, p, tok, opt, rep); err != nil {
		return nil, err
	}
	quantized := false
	for _, t := range tensors {
		typ := ggufTensorType(opt.Type, t.dims)
		if t.keepF32 {
			typ = gguf.F32
		} else if typ != opt.Type && len(t.dims) >= 2 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: rows of %d are not whole %v blocks, stored as %v", t.name, t.dims[0], opt.Type, typ))
		}
		quantized = quantized || typ.Quantized()
		rep.Tensors[typ]++
		w.AddTensor(gguf.WriterTensor{Name: t.name, Type: typ, Dims: t.dims, Data: func() ([]byte, error) {
			v, err := t.values()
			if err != nil {
				return nil, err
			}
			return gguf.Encode(typ, v)
		}})
	}
	if quantized {
		w.Set("general.quantization_version", gguf.Uint32(gguf.QuantizationVersion))
	}
	if err := w.WriteFile(opt.Path); err != nil {
		return nil, err
	}
	return rep, nil
}

// ggufPlan is what planGGUF found out about a model: its architecture and
// the values of the metadata that are not plain shapes.
type ggufPlan struct {
	arch *ggufArch
	eps  float32
	// rope is the rotary embedding of the full-attention layers (of every
	// layer unless swaRope is set); swaRope that of the sliding ones.
	rope    ggufRope
	swaRope *ggufRope
	permute bool // q/k rows go to ggml's adjacent-pair layout
	// sliding[l]: layer l attends through a window of window positions;
	// period is the sliding_window_pattern that reproduces sliding in
	// llama.cpp (0: the architecture has none).
	sliding []bool
	window  int
	period  int
	// ff is feed_forward_length; a mixture of experts (moe) has experts
	// experts of expertFF, topK used per token.
	ff                      int
	moe                     bool
	experts, topK, expertFF int
	attnCap, finalCap       float32
	embedScale              float32 // Gemma's multiplier when it is not llama.cpp's √n_embd (0: it is)
	notes                   []string
}

// isGELUTanh reports whether act is nn.GELUTanh (Gemma's gelu_pytorch_tanh,
// ggml's GELU).
func isGELUTanh(act nn.Activation) bool {
	return act != nil && reflect.ValueOf(act).Pointer() == reflect.ValueOf(nn.Activation(nn.GELUTanh)).Pointer()
}

// planGGUF checks that m is something llama.cpp computes under its
// family's architecture and gathers what the metadata needs. Every refusal
// names what llama.cpp lacks.
func planGGUF(m *model.Model) (*ggufPlan, error) {
	a, err := ggufArchFor(m.Arch)
	if err != nil {
		return nil, err
	}
	p := &ggufPlan{arch: a, ff: m.Intermediate}
	fail := func(format string, args ...any) (*ggufPlan, error) {
		return nil, fmt.Errorf("GGUF export (%s): "+format, append([]any{a.name}, args...)...)
	}
	if m.Pos != nil {
		return fail("llama.cpp's %s has no learned position embeddings", a.name)
	}
	for _, b := range m.Blocks {
		if r := b.Rope; r != nil {
			switch r.Scaling.Type {
			case "dynamic", "yarn", "longrope":
				return fail("RoPE scaling %q changes with the sequence length or scales cos/sin, which rope_freqs cannot carry", r.Scaling.Type)
			}
		}
	}
	if len(m.Blocks) == 0 {
		return fail("the model has no blocks")
	}
	if a.squareAttn && m.Heads*m.HeadDim != m.Hidden {
		return fail("llama.cpp's %s needs heads × head size = hidden size (%d × %d ≠ %d)", a.name, m.Heads, m.HeadDim, m.Hidden)
	}
	eps := func(what string, n nn.Norm) error {
		r, ok := n.(*nn.RMSNorm)
		if !ok {
			return fmt.Errorf("GGUF export (%s): %s is a %T; llama.cpp's %s uses RMSNorm", a.name, what, n, a.name)
		}
		if p.eps == 0 {
			p.eps = r.Eps
		} else if r.Eps != p.eps {
			return fmt.Errorf("GGUF export (%s): %s has epsilon %g, other norms %g; llama.cpp has one", a.name, what, r.Eps, p.eps)
		}
		return nil
	}
	if m.Norm == nil {
		return fail("the model has no final norm")
	}
	if err := eps("the final norm", m.Norm); err != nil {
		return nil, err
	}

	// Blocks: structure, parts, attention, MLP.
	wantScale := a.attnScale(m.Hidden, m.Heads, m.HeadDim, m.Layers)
	ropes := map[*nn.Rope]ggufRope{}
	p.sliding = make([]bool, len(m.Blocks))
	nMoE := 0
	for l, b := range m.Blocks {
		if b.ParallelResidual || b.PostNorm {
			return fail("block %d is not a pre-norm sequential block", l)
		}
		at := b.Attn
		if at.Heads != m.Heads || at.KVHeads != m.KVHeads || at.HeadDim != m.HeadDim {
			return fail("block %d has %d/%d heads of %d, the model %d/%d of %d", l, at.Heads, at.KVHeads, at.HeadDim, m.Heads, m.KVHeads, m.HeadDim)
		}
		if math.Abs(float64(at.Scale)/wantScale-1) > 1e-6 {
			if a.gemma {
				return fail("block %d scales queries by %g; llama.cpp's %s scales by %g (query_pre_attn_scalar must be the head size, or hidden/heads for its 27B model)", l, at.Scale, a.name, wantScale)
			}
			return fail("block %d scales queries by %g; llama.cpp's %s scales by 1/√head_dim = %g", l, at.Scale, a.name, wantScale)
		}
		if l == 0 {
			p.attnCap = at.SoftCap
		} else if at.SoftCap != p.attnCap {
			return fail("block %d caps attention scores at %g, block 0 at %g; llama.cpp has one cap", l, at.SoftCap, p.attnCap)
		}
		if at.Window > 0 {
			if p.window != 0 && at.Window != p.window {
				return fail("block %d has a sliding window of %d, others %d; llama.cpp has one", l, at.Window, p.window)
			}
			p.window, p.sliding[l] = at.Window, true
		}
		if a.gemma {
			if !isGELUTanh(b.Act) {
				return fail("block %d: llama.cpp's %s MLP is GELU (tanh)", l, a.name)
			}
		} else if !b.ActIsSiLU {
			return fail("block %d: llama.cpp's %s MLP is SwiGLU (SiLU)", l, a.name)
		}
		if b.Rope == nil {
			return fail("block %d has no rotary embedding", l)
		}
		if _, ok := ropes[b.Rope]; !ok {
			r, err := ggufRopeOf(b.Rope)
			if err != nil {
				return fail("block %d: %v", l, err)
			}
			ropes[b.Rope] = r
		}
		if err := checkBlockParts(a, l, b); err != nil {
			return nil, err
		}
		for _, pt := range b.Norms() {
			if err := eps(fmt.Sprintf("block %d's %s", l, pt.Role), *pt.Norm); err != nil {
				return nil, err
			}
		}
		if b.MoE != nil {
			nMoE++
			e := b.MoE
			if !e.NormTopK {
				return fail("block %d does not renormalise its top-%d router weights (norm_topk_prob false); llama.cpp's %s always does", l, e.TopK, a.name)
			}
			f := e.Experts[0].Up.Out()
			for _, x := range e.Experts {
				if x.Gate == nil || x.Up.Out() != f || x.Gate.Out() != f || x.Down.In() != f {
					return fail("block %d: every expert must be a gated MLP %d wide", l, f)
				}
			}
			if p.moe && (len(e.Experts) != p.experts || e.TopK != p.topK || f != p.expertFF) {
				return fail("block %d has %d experts (top %d) of %d, block 0 %d (top %d) of %d", l, len(e.Experts), e.TopK, f, p.experts, p.topK, p.expertFF)
			}
			p.moe, p.experts, p.topK, p.expertFF = true, len(e.Experts), e.TopK, f
		}
	}
	switch {
	case nMoE == 0:
	case a.moe == moeNone:
		return fail("llama.cpp's %s has no mixture of experts", a.name)
	case nMoE != len(m.Blocks):
		return fail("%d of %d blocks have experts; llama.cpp's %s needs them in every block", nMoE, len(m.Blocks), a.name)
	case a.moe == moeFFLength:
		p.ff = p.expertFF // llama's experts are feed_forward_length wide
	}
	if p.attnCap > 0 && !a.attnCap {
		return fail("the model caps attention scores; llama.cpp's %s does not", a.name)
	}
	if a.attnCap && p.attnCap == 0 {
		return fail("llama.cpp's %s always caps attention scores (attn_logit_softcapping); this model does not", a.name)
	}
	if m.LogitCap > 0 && !a.finalCap {
		return fail("the model caps its logits; llama.cpp's %s does not", a.name)
	}
	p.finalCap = m.LogitCap

	// Sliding windows.
	if err := planWindows(m, p); err != nil {
		return nil, err
	}

	// Rotary embeddings: one for every layer, or (swaRopeBase) one for the
	// full layers and one for the sliding ones, differing in base only.
	var full, swa *ggufRope
	for l, b := range m.Blocks {
		r := ropes[b.Rope]
		slot := &full
		if p.sliding[l] && a.swaRopeBase {
			slot = &swa
		}
		if *slot == nil {
			*slot = &r
		} else if !(*slot).equal(r) {
			return fail("block %d's rotary embedding differs from other blocks' of its kind; llama.cpp has one per kind", l)
		}
	}
	if full == nil { // every layer slides
		full = swa
	}
	p.rope = *full
	if swa != nil && !swa.equal(*full) {
		if swa.rotDim != full.rotDim || swa.interleaved != full.interleaved || swa.factors != nil || full.factors != nil {
			return fail("sliding and full layers' rotary embeddings differ in more than their base")
		}
		p.swaRope = swa
	}
	r := p.rope
	switch {
	case r.rotDim != m.HeadDim && !a.partialRotary:
		return fail("llama.cpp's %s rotates whole heads; this model rotates %d of %d features", a.name, r.rotDim, m.HeadDim)
	case r.interleaved && !a.normRope:
		return fail("the rotary embedding pairs adjacent features; llama.cpp's %s pairs halves", a.name)
	case r.factors != nil && !a.ropeFreqs:
		return fail("the rotary frequencies are scaled (factors %v…); llama.cpp's %s reads no rope_freqs", r.factors[:min(4, len(r.factors))], a.name)
	}
	p.permute = a.normRope && !r.interleaved

	// Embedding and head.
	if a.gemma {
		if s := float32(math.Sqrt(float64(m.Hidden))); m.EmbedScale != s {
			p.embedScale = m.EmbedScale
			p.notes = append(p.notes, fmt.Sprintf("the embeddings are multiplied by %g (√%d rounded to the checkpoint dtype, as transformers does); llama.cpp multiplies by %g — the exact value is kept in %s for llmq", m.EmbedScale, m.Hidden, s, a.key(kvEmbeddingScale)))
		}
	} else if m.EmbedScale != 0 && m.EmbedScale != 1 {
		return fail("the embeddings are scaled by %g; llama.cpp's %s does not scale them", m.EmbedScale, a.name)
	}
	if a.tiedOnly && !m.HeadTied() {
		return fail("llama.cpp's %s uses token_embd as the output; this model's head is separate", a.name)
	}
	if !m.HeadTied() {
		if bias, err := linearBias(m.Head); err != nil {
			return fail("output: %v", err)
		} else if bias != nil {
			return fail("output: llama.cpp's %s has no output bias", a.name)
		}
	}
	return p, nil
}

// checkBlockParts checks that every part of block l has a tensor in a's
// table and that every tensor the table requires of such a block is there.
func checkBlockParts(a *ggufArch, l int, b *model.Block) error {
	have := map[string]model.Part{}
	for _, pt := range b.Parts() {
		have[pt.Role] = pt
	}
	used := map[string]bool{}
	for _, gp := range a.parts {
		if !partIn(gp, b) {
			continue
		}
		for _, role := range gp.roles {
			roles := []string{role}
			if gp.experts {
				roles = roles[:0]
				for e := range b.MoE.Experts {
					roles = append(roles, model.ExpertRole(e, role))
				}
			}
			for _, r := range roles {
				pt, ok := have[r]
				if !ok {
					return fmt.Errorf("GGUF export (%s): block %d has no %s, which llama.cpp's %s requires (%s)", a.name, l, r, a.name, gp.name)
				}
				used[r] = true
				if pt.Linear == nil {
					continue
				}
				bias, err := linearBias(*pt.Linear)
				if err != nil {
					return fmt.Errorf("GGUF export (%s): block %d %s: %w", a.name, l, r, err)
				}
				if bias != nil && !gp.bias {
					return fmt.Errorf("GGUF export (%s): block %d's %s has a bias; llama.cpp's %s reads none for %s", a.name, l, r, a.name, gp.name)
				}
			}
		}
	}
	for _, pt := range b.Parts() {
		if !used[pt.Role] {
			return fmt.Errorf("GGUF export (%s): block %d's %s has no tensor in llama.cpp's %s", a.name, l, pt.Role, a.name)
		}
	}
	return nil
}

// partIn reports whether block b has table part gp (dense MLP parts in
// dense blocks, expert parts in MoE blocks).
func partIn(gp ggufPart, b *model.Block) bool {
	switch gp.where {
	case inDense:
		return b.MoE == nil
	case inMoE:
		return b.MoE != nil
	}
	return true
}

// planWindows works out how llama.cpp will see the sliding layers.
func planWindows(m *model.Model, p *ggufPlan) error {
	a := p.arch
	n, any := 0, false
	for _, s := range p.sliding {
		if s {
			n++
			any = true
		}
	}
	if a.swaPeriod == 0 {
		if any {
			p.notes = append(p.notes, fmt.Sprintf("llama.cpp's %s has no sliding window: it attends over the whole context, so it computes this model only for sequences of up to %d tokens (the window is kept in %s for llmq)", a.name, p.window, a.key(kvSlidingWindow)))
		}
		return nil
	}
	if !any && a.swaNeedsWindow {
		return nil // no sliding_window: no layer slides
	}
	// The period p of set_swa_pattern(p): layer l slides when l mod p < p−1
	// (p = 1: none; p > layers: all).
	for per := 1; per <= len(p.sliding)+1; per++ {
		ok := true
		for l, s := range p.sliding {
			if s != (l%per < per-1) {
				ok = false
				break
			}
		}
		if ok {
			p.period = per
			if !any {
				p.window = a.swaDefault
			}
			return nil
		}
	}
	return fmt.Errorf("GGUF export (%s): the sliding layers %v do not repeat as llama.cpp's pattern does (every p-th layer global, the last of each period)", a.name, p.sliding)
}

// linearWeights returns a layer's FP32 weight [out×in].
func linearWeights(l nn.Linear) ([]float32, error) {
	switch v := l.(type) {
	case *nn.Dense:
		return v.W, nil
	case *model.LazyDense:
		d, err := v.Materialize()
		if err != nil {
			return nil, err
		}
		return d.W, nil
	case *quant.FastLinear:
		return v.Quant().Weight().Dequantize(), nil
	case *quant.QuantLinear:
		return v.Weight().Dequantize(), nil
	case *methods.Int8Linear:
		return dequantized(v), nil
	}
	return nil, fmt.Errorf("a %T layer cannot be exported to GGUF (FP and weight-quantized layers can)", l)
}

// linearBias returns a layer's bias (nil when it has none) without
// dequantizing its weight.
func linearBias(l nn.Linear) ([]float32, error) {
	switch v := l.(type) {
	case *nn.Dense:
		return v.B, nil
	case *model.LazyDense:
		d, err := v.Materialize()
		if err != nil {
			return nil, err
		}
		return d.B, nil
	case *quant.FastLinear:
		return v.Quant().Bias(), nil
	case *quant.QuantLinear:
		return v.Bias(), nil
	case *methods.Int8Linear:
		return v.Bias(), nil
	}
	return nil, fmt.Errorf("a %T layer cannot be exported to GGUF (FP and weight-quantized layers can)", l)
}

// ggufTensors lists m's tensors under llama.cpp's names, in its order.
func ggufTensors(m *model.Model, p *ggufPlan) ([]ggufTensor, []string, error) {
	var notes []string
	H := uint64(m.Hidden)
	fixed := func(v []float32) func() ([]float32, error) {
		return func() ([]float32, error) { return v, nil }
	}
	embed := fixed(m.Embed)
	if m.EmbedFromHead() { // the table is a quantized head's weight
		head := m.Head
		embed = func() ([]float32, error) { return linearWeights(head) }
	}
	ts := []ggufTensor{{name: ggufTokenEmbdTensor, dims: []uint64{H, uint64(m.Vocab)}, values: embed}}
	if f := p.rope.factors; f != nil {
		ts = append(ts, ggufTensor{name: ggufRopeFreqsTensor, dims: []uint64{uint64(len(f))}, values: fixed(f)})
	}
	actQuant := false
	for l, b := range m.Blocks {
		parts := map[string]model.Part{}
		for _, pt := range b.Parts() {
			parts[pt.Role] = pt
		}
		prefix := fmt.Sprintf("blk.%d.", l)
		for _, gp := range p.arch.parts {
			if !partIn(gp, b) {
				continue
			}
			name := prefix + gp.name
			if pt := parts[gp.roles[0]]; pt.Norm != nil {
				w, _ := nn.NormParams(*pt.Norm)
				ts = append(ts, ggufTensor{name: name + ".weight", dims: []uint64{uint64(len(w))}, values: fixed(w)})
				continue
			}
			// The linears stored in the tensor, in row order.
			var lins []nn.Linear
			var heads []int // > 0: rows to permute into ggml's RoPE layout
			for _, role := range gp.roles {
				if gp.experts {
					for e := range b.MoE.Experts {
						lins = append(lins, *parts[model.ExpertRole(e, role)].Linear)
						heads = append(heads, 0)
					}
					continue
				}
				lins = append(lins, *parts[role].Linear)
				h := 0
				if p.permute && role == "q" {
					h = m.Heads
				} else if p.permute && role == "k" {
					h = m.KVHeads
				}
				heads = append(heads, h)
			}
			in, out := uint64(lins[0].In()), uint64(0)
			for _, lin := range lins {
				if uint64(lin.In()) != in || (gp.experts && uint64(lin.Out()) != uint64(lins[0].Out())) {
					return nil, nil, fmt.Errorf("%s: its parts have different shapes", name)
				}
				if ql, ok := lin.(*quant.QuantLinear); ok && ql.ActSpec() != nil {
					actQuant = true
				}
				if !gp.experts {
					out += uint64(lin.Out())
				}
			}
			dims := []uint64{in, out}
			if gp.experts {
				dims = []uint64{in, uint64(lins[0].Out()), uint64(len(lins))}
			}
			ts = append(ts, ggufTensor{name: name + ".weight", dims: dims, keepF32: gp.roles[0] == "router", values: func() ([]float32, error) {
				var all []float32
				for i, lin := range lins {
					w, err := linearWeights(lin)
					if err != nil {
						return nil, err
					}
					if heads[i] > 0 {
						w = permuteQK(w, heads[i], int(in), true)
					}
					if len(lins) == 1 {
						return w, nil
					}
					all = append(all, w...)
				}
				return all, nil
			}})
			// Biases: one per linear, concatenated like the rows.
			var bias []float32
			nb := 0
			for i, lin := range lins {
				bv, err := linearBias(lin)
				if err != nil {
					return nil, nil, fmt.Errorf("%s: %w", name, err)
				}
				if bv == nil {
					bv = make([]float32, lin.Out())
				} else {
					nb++
					if heads[i] > 0 {
						bv = permuteQK(bv, heads[i], 1, true)
					}
				}
				bias = append(bias, bv...)
			}
			if nb > 0 {
				if gp.experts {
					return nil, nil, fmt.Errorf("%s: llama.cpp's experts have no biases", name)
				}
				ts = append(ts, ggufTensor{name: name + ".bias", dims: []uint64{out}, values: fixed(bias)})
			}
		}
	}
	normW, _ := nn.NormParams(m.Norm)
	ts = append(ts, ggufTensor{name: ggufOutputNormTensor, dims: []uint64{H}, values: fixed(normW)})
	// A head tied to the embedding is left out: llama.cpp then uses
	// token_embd for the output, as convert_hf_to_gguf.py arranges.
	if !m.HeadTied() {
		head := m.Head
		ts = append(ts, ggufTensor{name: ggufOutputTensor, dims: []uint64{H, uint64(m.Vocab)}, values: func() ([]float32, error) {
			return linearWeights(head)
		}})
	}
	if actQuant {
		notes = append(notes, "activation quantization is not carried by GGUF: llama.cpp quantizes activations its own way")
	}
	return ts, notes, nil
}

// ggufMetadata sets the metadata llama.cpp's loaders read for the
// architecture (load_hparams and the architecture's load_arch_hparams).
func ggufMetadata(w *gguf.Writer, m *model.Model, p *ggufPlan, tok *tokenizer.SentencePiece, opt GGUFExport, rep *GGUFReport) error {
	a := p.arch
	u32 := func(k string, v int) { w.Set(a.key(k), gguf.Uint32(uint32(v))) }
	f32 := func(k string, v float32) { w.Set(a.key(k), gguf.Float32(v)) }
	name := opt.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(opt.Path), filepath.Ext(opt.Path))
	}
	ft, _ := gguf.FileType(opt.Type)
	w.Set("general.architecture", gguf.String(a.name))
	w.Set("general.name", gguf.String(name))
	w.Set("general.file_type", gguf.Uint32(ft))
	u32(kvVocabSize, m.Vocab) // no_vocab files take their token count from here
	u32(kvContextLength, m.MaxPos)
	u32(kvEmbeddingLength, m.Hidden)
	u32(kvBlockCount, m.Layers)
	u32(kvFeedForwardLength, p.ff)
	u32(kvHeadCount, m.Heads)
	u32(kvHeadCountKV, m.KVHeads)
	u32(kvKeyLength, m.HeadDim)
	u32(kvValueLength, m.HeadDim)
	u32(kvRopeDims, p.rope.rotDim)
	f32(kvRMSEps, p.eps)
	f32(kvRopeFreqBase, float32(p.rope.theta))
	if p.swaRope != nil {
		f32(kvRopeFreqBaseSWA, float32(p.swaRope.theta))
	}
	if p.moe {
		u32(kvExpertCount, p.experts)
		u32(kvExpertUsedCount, p.topK)
		if a.moe == moeExpertFFLength {
			u32(kvExpertFFLength, p.expertFF)
		}
	}
	switch {
	case p.period > 0:
		if p.window > 0 {
			u32(kvSlidingWindow, p.window)
		}
		u32(kvSlidingPattern, p.period)
	case p.window > 0:
		// Read by llmq only (llama.cpp: phi3 reads it and turns it off).
		u32(kvSlidingWindow, p.window)
		all := true
		for _, s := range p.sliding {
			all = all && s
		}
		if !all {
			w.Set(a.key(kvSlidingPattern), gguf.MustArray(append([]bool(nil), p.sliding...)))
		}
	}
	if p.attnCap > 0 {
		f32(kvAttnSoftcap, p.attnCap)
	}
	if p.finalCap > 0 {
		f32(kvFinalSoftcap, p.finalCap)
	}
	if p.embedScale != 0 {
		f32(kvEmbeddingScale, p.embedScale)
	}
	if m.Rope != nil && m.Rope.RoundFreq != nil {
		rep.Notes = append(rep.Notes, "RoPE frequencies are rounded to the checkpoint dtype here (as transformers does); llama.cpp computes them in FP32")
	}
	if tok == nil {
		rep.Notes = append(rep.Notes, "no SentencePiece tokenizer.model: the file has no vocabulary (tokenizer.ggml.model = no_vocab)")
	}
	return setGGUFVocab(w, tok, m.Vocab)
}

// setGGUFVocab sets the tokenizer.ggml.* metadata of a SentencePiece
// vocabulary for a model of vocab embeddings, as convert_hf_to_gguf.py
// writes it for Llama (tokenizer.ggml.model "llama"); nil: "no_vocab".
func setGGUFVocab(w *gguf.Writer, tok *tokenizer.SentencePiece, vocab int) error {
	u32 := func(k string, v int) { w.Set(k, gguf.Uint32(uint32(v))) }
	if tok == nil {
		w.Set("tokenizer.ggml.model", gguf.String("no_vocab"))
		return nil
	}
	v := tok.Vocab()
	if len(v.Pieces) > vocab {
		return fmt.Errorf("the tokenizer has %d pieces but the model only %d embeddings", len(v.Pieces), vocab)
	}
	types := make([]int32, 0, vocab)
	for _, t := range v.Types {
		types = append(types, int32(t)) // SentencePiece's piece types are GGUF's token types
	}
	// Embedding rows beyond the tokenizer get placeholder pieces, as
	// convert_hf_to_gguf.py pads them ("[PAD<id>]", unused, score -1000).
	for id := len(v.Pieces); id < vocab; id++ {
		v.Pieces = append(v.Pieces, fmt.Sprintf("[PAD%d]", id))
		v.Scores = append(v.Scores, -1000)
		types = append(types, int32(tokenizer.PieceUnused))
	}
	w.Set("tokenizer.ggml.model", gguf.String("llama"))
	w.Set("tokenizer.ggml.tokens", gguf.MustArray(v.Pieces))
	w.Set("tokenizer.ggml.scores", gguf.MustArray(v.Scores))
	w.Set("tokenizer.ggml.token_type", gguf.MustArray(types))
	if v.BOS >= 0 {
		u32("tokenizer.ggml.bos_token_id", v.BOS)
	}
	if v.EOS >= 0 {
		u32("tokenizer.ggml.eos_token_id", v.EOS)
	}
	u32("tokenizer.ggml.unknown_token_id", tok.UNK())
	w.Set("tokenizer.ggml.add_bos_token", gguf.Bool(v.BOS >= 0))
	w.Set("tokenizer.ggml.add_eos_token", gguf.Bool(false))
	w.Set("tokenizer.ggml.add_space_prefix", gguf.Bool(v.AddDummyPrefix))
	w.Set("tokenizer.ggml.remove_extra_whitespaces", gguf.Bool(v.RemoveExtraWhitespaces))
	return nil
}

// RoundLikeGGUF replaces m's weights in place by what they become in a GGUF
// file of type typ written by ExportGGUF and read back — the same tensors,
// the same per-tensor types, the same block rounding — without writing a
// file. It is how llmq evaluates "the same quantization in-process" next to
// an exported file. Only FP32 (nn.Dense) layers are supported.
func RoundLikeGGUF(m *model.Model, typ gguf.Type) error {
	if _, err := planGGUF(m); err != nil {
		return err
	}
	round := func(what string, w []float32, rows, cols int) error {
		t := ggufTensorType(typ, []uint64{uint64(cols), uint64(rows)})
		if t == gguf.F32 {
			return nil
		}
		r, err := gguf.Round(t, w)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		copy(w, r) // in place: a tied head shares the embedding's memory
		return nil
	}
	if m.Embed == nil {
		return fmt.Errorf("the embedding is a quantized head's weight: round the FP model")
	}
	if err := round("token_embd", m.Embed, m.Vocab, m.Hidden); err != nil {
		return err
	}
	layers := map[string]nn.Linear{}
	for i, b := range m.Blocks {
		for _, nl := range b.Linears() {
			if nl.Role != "router" { // the router stays F32
				layers[m.LinearName(i, nl.Role)] = *nl.Linear
			}
		}
	}
	if !m.HeadShared() {
		layers["output"] = m.Head
	}
	for name, l := range layers {
		d, ok := l.(*nn.Dense)
		if !ok {
			return fmt.Errorf("%s: a %T layer; RoundLikeGGUF needs FP32 layers", name, l)
		}
		if err := round(name, d.W, d.Out(), d.In()); err != nil {
			return err
		}
	}
	return nil
}

// IsGGUF reports whether path names a GGUF file (by extension or magic).
func IsGGUF(path string) bool {
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return false
	}
	return strings.EqualFold(filepath.Ext(path), ".gguf") || gguf.IsGGUF(path)
}
