package modelio

// GGUF import: a file of any architecture of the name table (gguf_arch.go)
// becomes the Hugging Face config.json its metadata describes and a tensor
// store serving its tensors under the family's checkpoint names, which the
// family's own binder then reads — so an imported model is built by the
// same code as one loaded from a Hugging Face folder. The metadata is read
// with llama.cpp's defaults (load_hparams): what llama.cpp would compute
// from a file is what llmq computes, except where the file carries, under
// a key llama.cpp leaves unread, the exact value of the model it was
// exported from (see gguf.go).

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"llmq/checkpoint"
	"llmq/gguf"
	"llmq/model"
	"llmq/nn"
	"llmq/tokenizer"
)

// ggufHyper are the hyper-parameters read from a GGUF file's metadata.
type ggufHyper struct {
	arch                                                            *ggufArch
	vocab, hidden, layers, ff, heads, kvHeads, headDim, rotDim, ctx int
	experts, topK, expertFF                                         int
	eps, theta, thetaSWA                                            float64
	ropeFactors                                                     []float64 // rope_freqs: divisors of the frequencies (nil: none)
	window                                                          int
	sliding                                                         []bool
	attnCap, finalCap, embedScale                                   float64
	tied                                                            bool
	bos, eos                                                        int
}

// modelType is the family the file imports as.
func (h *ggufHyper) modelType() string {
	if h.experts > 0 {
		return h.arch.moeModelType
	}
	return h.arch.modelType
}

// readGGUFHyper reads and checks an architecture's metadata.
func readGGUFHyper(f *gguf.File) (*ggufHyper, error) {
	name, _ := getString(f, "general.architecture")
	a, ok := ggufArchNamed(name)
	if !ok {
		return nil, fmt.Errorf("%s: general.architecture is %q; llmq imports %s", f.Path, name, strings.Join(ggufArchNames(), ", "))
	}
	h := &ggufHyper{arch: a, bos: -1, eos: -1}
	for _, k := range []struct {
		dst      *int
		key      string
		required bool
	}{
		{&h.hidden, kvEmbeddingLength, true},
		{&h.layers, kvBlockCount, true},
		{&h.ff, kvFeedForwardLength, true},
		{&h.heads, kvHeadCount, true},
		{&h.kvHeads, kvHeadCountKV, false},
		{&h.ctx, kvContextLength, false},
		{&h.experts, kvExpertCount, false},
		{&h.topK, kvExpertUsedCount, false},
		{&h.expertFF, kvExpertFFLength, false},
		{&h.window, kvSlidingWindow, false},
	} {
		v, ok, err := getUint(f, a.key(k.key))
		switch {
		case err != nil:
			return nil, err
		case !ok && k.required:
			return nil, fmt.Errorf("%s: metadata %s is missing", f.Path, a.key(k.key))
		}
		*k.dst = v
	}
	if h.heads == 0 || h.hidden%h.heads != 0 {
		return nil, fmt.Errorf("%s: embedding length %d is not a multiple of %d heads", f.Path, h.hidden, h.heads)
	}
	if h.kvHeads == 0 {
		h.kvHeads = h.heads
	}
	if h.ctx == 0 {
		h.ctx = 2048
	}
	h.headDim = h.hidden / h.heads
	if v, ok, err := getUint(f, a.key(kvKeyLength)); err != nil {
		return nil, err
	} else if ok {
		h.headDim = v
	}
	if v, ok, err := getUint(f, a.key(kvValueLength)); err != nil {
		return nil, err
	} else if ok && v != h.headDim {
		return nil, fmt.Errorf("%s: key length %d and value length %d differ (not supported)", f.Path, h.headDim, v)
	}
	h.rotDim = h.headDim
	if v, ok, err := getUint(f, a.key(kvRopeDims)); err != nil {
		return nil, err
	} else if ok {
		h.rotDim = v
	}
	if h.rotDim != h.headDim && !a.partialRotary {
		return nil, fmt.Errorf("%s: rope dimension count %d differs from the head size %d (partial rotary is not supported by llama.cpp's %s)", f.Path, h.rotDim, h.headDim, a.name)
	}
	if h.rotDim < 2 || h.rotDim%2 != 0 || h.rotDim > h.headDim {
		return nil, fmt.Errorf("%s: rope dimension count %d must be even, ≥ 2 and at most the head size %d", f.Path, h.rotDim, h.headDim)
	}
	if t, ok := getString(f, a.key(kvRopeScalingType)); ok && t != "none" {
		if fac, _, _ := getFloat(f, a.key(kvRopeScalingFactor)); !(t == "linear" && (fac == 0 || fac == 1)) {
			return nil, fmt.Errorf("%s: RoPE scaling %q is not supported", f.Path, t)
		}
	}
	switch {
	case h.experts > 0 && a.moe == moeNone:
		return nil, fmt.Errorf("%s: llama.cpp's %s has no mixture of experts, yet the file has %d experts", f.Path, a.name, h.experts)
	case h.experts > 0 && (h.topK < 1 || h.topK > h.experts):
		return nil, fmt.Errorf("%s: %s is %d for %d experts", f.Path, a.key(kvExpertUsedCount), h.topK, h.experts)
	case h.experts > 0 && a.moe == moeFFLength:
		h.expertFF = h.ff
	case h.experts > 0 && h.expertFF == 0:
		h.expertFF = h.ff / h.topK // llama.cpp's fallback
	case h.experts == 0 && a.moe == moeExpertFFLength:
		return nil, fmt.Errorf("%s: llama.cpp's %s needs %s", f.Path, a.name, a.key(kvExpertCount))
	}
	var err error
	if h.eps, ok, err = getFloat(f, a.key(kvRMSEps)); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%s: metadata %s is missing", f.Path, a.key(kvRMSEps))
	}
	if h.theta, ok, err = getFloat(f, a.key(kvRopeFreqBase)); err != nil {
		return nil, err
	} else if !ok {
		h.theta = 10000 // llama.cpp's default
	}
	h.thetaSWA = h.theta
	if a.swaRopeBaseDefault != 0 {
		h.thetaSWA = a.swaRopeBaseDefault
	}
	if a.swaRopeBase {
		if v, ok, err := getFloat(f, a.key(kvRopeFreqBaseSWA)); err != nil {
			return nil, err
		} else if ok {
			h.thetaSWA = v
		}
	}
	if t, ok := f.Tensor(ggufRopeFreqsTensor); ok && a.ropeFreqs {
		if len(t.Dims) != 1 || t.Dims[0] != uint64(h.rotDim/2) {
			return nil, fmt.Errorf("%s: tensor %s has dims %v, want [%d]", f.Path, t.Name, t.Dims, h.rotDim/2)
		}
		v, _, err := f.Float32(t.Name)
		if err != nil {
			return nil, err
		}
		for _, x := range v {
			if !(x > 0) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%s: tensor %s holds %v; the divisors must be positive", f.Path, t.Name, x)
			}
			h.ropeFactors = append(h.ropeFactors, float64(x))
		}
	}
	if err := readGGUFWindows(f, h); err != nil {
		return nil, err
	}
	if a.attnCap {
		h.attnCap = 50 // llama.cpp's default
		if v, ok, err := getFloat(f, a.key(kvAttnSoftcap)); err != nil {
			return nil, err
		} else if ok {
			h.attnCap = v
		}
	}
	if a.finalCap {
		if h.finalCap, _, err = getFloat(f, a.key(kvFinalSoftcap)); err != nil {
			return nil, err
		}
	}
	if a.gemma {
		if h.embedScale, _, err = getFloat(f, a.key(kvEmbeddingScale)); err != nil {
			return nil, err
		}
	}
	emb, found := f.Tensor(ggufTokenEmbdTensor)
	if !found || len(emb.Dims) != 2 || emb.Dims[0] != uint64(h.hidden) {
		return nil, fmt.Errorf("%s: %s must be a [%d, vocab] tensor", f.Path, ggufTokenEmbdTensor, h.hidden)
	}
	h.vocab = int(emb.Dims[1])
	_, hasOutput := f.Tensor(ggufOutputTensor)
	h.tied = !hasOutput || a.tiedOnly
	if model, _ := getString(f, "tokenizer.ggml.model"); model == "llama" {
		h.bos, h.eos = 1, 2 // llama.cpp's defaults for SentencePiece vocabularies
	}
	for _, s := range []struct {
		dst *int
		key string
	}{{&h.bos, "tokenizer.ggml.bos_token_id"}, {&h.eos, "tokenizer.ggml.eos_token_id"}} {
		if v, ok, err := getUint(f, s.key); err != nil {
			return nil, err
		} else if ok {
			*s.dst = v
		}
	}
	return h, nil
}

// readGGUFWindows decides which layers slide, as llama.cpp's loader does
// for architectures that have sliding windows, and from llmq's own keys for
// those that do not (see planWindows).
func readGGUFWindows(f *gguf.File, h *ggufHyper) error {
	a := h.arch
	h.sliding = make([]bool, h.layers)
	pat, hasPat := f.Get(a.key(kvSlidingPattern))
	if a.swaPeriod > 0 {
		_, hasWin := f.Get(a.key(kvSlidingWindow))
		if a.swaNeedsWindow && h.window == 0 {
			return nil
		}
		if !hasWin {
			h.window = a.swaDefault
		}
		period := a.swaPeriod
		if hasPat && pat.Type != gguf.TypeArray { // an array is not read as a period
			v, ok := pat.Uint()
			if !ok || v == 0 || v > math.MaxInt32 {
				return fmt.Errorf("%s: metadata %s must be a positive integer", f.Path, a.key(kvSlidingPattern))
			}
			period = int(v)
		}
		for l := range h.sliding {
			h.sliding[l] = l%period < period-1
		}
		return nil
	}
	if h.window == 0 {
		return nil
	}
	if a.name == "phi3" {
		// convert_hf_to_gguf.py writes Phi-3's sliding_window for every
		// layer (Hugging Face applies it to all); llama.cpp turns it off.
		hasPat = false
	}
	if hasPat {
		s, ok := pat.Any().([]bool)
		if !ok || len(s) != h.layers {
			return fmt.Errorf("%s: metadata %s must be %d booleans", f.Path, a.key(kvSlidingPattern), h.layers)
		}
		copy(h.sliding, s)
		return nil
	}
	for l := range h.sliding {
		h.sliding[l] = true
	}
	return nil
}

func getString(f *gguf.File, key string) (string, bool) {
	v, ok := f.Get(key)
	if !ok {
		return "", false
	}
	return v.Str()
}

// getUint reads an integer key of any integer type (writers differ).
func getUint(f *gguf.File, key string) (int, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false, nil
	}
	n, isInt := v.Uint()
	if !isInt || n > 1<<31 {
		return 0, false, fmt.Errorf("%s: metadata %s must be a non-negative integer below 2^31, is a %v", f.Path, key, v.Type)
	}
	return int(n), true, nil
}

func getFloat(f *gguf.File, key string) (float64, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false, nil
	}
	x, isFloat := v.Float()
	if !isFloat || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, false, fmt.Errorf("%s: metadata %s must be a finite float, is a %v", f.Path, key, v.Type)
	}
	return x, true, nil
}

// ggufSource is where a Hugging Face tensor comes from in the file.
type ggufSource struct {
	tensor string
	expert int     // ≥ 0: that expert's slice of a 3-D expert stack
	heads  int     // > 0: q/k rows to put back into rotate-half order (the inverse of permuteQK)
	offset float32 // subtracted: a Gemma norm's stored 1 + w, of which the binder expects w
	shape  []int   // Hugging Face shape
}

// ggufStore serves a GGUF file's tensors to a family binder under the
// family's checkpoint names, dequantized to FP32, like qstore serves a
// quantized folder.
type ggufStore struct {
	f    *gguf.File
	src  map[string]ggufSource // Hugging Face name → source
	list []string
	// stacks holds the expert stacks decoded for the block being bound:
	// the binder asks for expert 0's gate, up and down, then expert 1's,
	// so each of the block's three stacks is decoded once, not per expert.
	stacks map[string][]float32
}

// isNormRole reports whether a block role is a norm ("norm1", "q_norm", …).
func isNormRole(role string) bool { return strings.Contains(role, "norm") }

// roleShape is the [in, out] of a block role's linear (in only: a norm's
// width) for the file's hyper-parameters.
func roleShape(role string, h *ggufHyper) (in, out int) {
	qw, kw := h.heads*h.headDim, h.kvHeads*h.headDim
	switch role {
	case "q_norm", "k_norm":
		return h.headDim, 0
	case "q":
		return h.hidden, qw
	case "k", "v":
		return h.hidden, kw
	case "o":
		return qw, h.hidden
	case "gate", "up":
		if h.experts > 0 {
			return h.hidden, h.expertFF
		}
		return h.hidden, h.ff
	case "down":
		if h.experts > 0 {
			return h.expertFF, h.hidden
		}
		return h.ff, h.hidden
	case "router":
		return h.hidden, h.experts
	}
	return h.hidden, 0 // the other norms
}

func newGGUFStore(f *gguf.File, h *ggufHyper) (*ggufStore, error) {
	s := &ggufStore{f: f, src: map[string]ggufSource{}}
	a, mt := h.arch, h.modelType()
	add := func(hf string, src ggufSource, required bool, dims ...uint64) error {
		t, ok := f.Tensor(src.tensor)
		if !ok {
			if required {
				return fmt.Errorf("%s: missing tensor %s", f.Path, src.tensor)
			}
			return nil
		}
		if !equalDims(t.Dims, dims) {
			return fmt.Errorf("%s: tensor %s has dims %v, want %v", f.Path, src.tensor, t.Dims, dims)
		}
		d := dims
		if src.expert >= 0 {
			d = dims[:2]
		}
		for i := len(d) - 1; i >= 0; i-- { // ggml's dims innermost first: reverse
			src.shape = append(src.shape, int(d[i]))
		}
		s.src[hf] = src
		s.list = append(s.list, hf)
		return nil
	}
	outer, _ := model.TensorNamesOf(mt)
	H, V := uint64(h.hidden), uint64(h.vocab)
	var normOffset float32
	if a.gemma {
		normOffset = 1
	}
	if err := add(outer.Embed, ggufSource{tensor: ggufTokenEmbdTensor, expert: -1}, true, H, V); err != nil {
		return nil, err
	}
	if err := add(outer.Norm+".weight", ggufSource{tensor: ggufOutputNormTensor, expert: -1, offset: normOffset}, true, H); err != nil {
		return nil, err
	}
	if !a.tiedOnly {
		if err := add(outer.Head+".weight", ggufSource{tensor: ggufOutputTensor, expert: -1}, false, H, V); err != nil {
			return nil, err
		}
	}
	moe := h.experts > 0
	for l := 0; l < h.layers; l++ {
		prefix := fmt.Sprintf("model.layers.%d.", l) // the decoder's block names
		for _, gp := range a.parts {
			if (gp.where == inDense && moe) || (gp.where == inMoE && !moe) {
				continue
			}
			g := fmt.Sprintf("blk.%d.%s", l, gp.name)
			if isNormRole(gp.roles[0]) {
				w, _ := roleShape(gp.roles[0], h)
				hf, ok := model.PartNameOf(mt, gp.roles[0])
				if !ok {
					return nil, fmt.Errorf("%s: the %s family has no %s", f.Path, mt, gp.roles[0])
				}
				if err := add(prefix+hf+".weight", ggufSource{tensor: g + ".weight", expert: -1, offset: normOffset}, true, uint64(w)); err != nil {
					return nil, err
				}
				continue
			}
			in, _ := roleShape(gp.roles[0], h)
			out := 0
			for _, r := range gp.roles {
				_, o := roleShape(r, h)
				out += o
			}
			if gp.experts {
				for e := 0; e < h.experts; e++ {
					hf, ok := model.PartNameOf(mt, model.ExpertRole(e, gp.roles[0]))
					if !ok {
						return nil, fmt.Errorf("%s: the %s family has no experts", f.Path, mt)
					}
					if err := add(prefix+hf+".weight", ggufSource{tensor: g + ".weight", expert: e}, true, uint64(in), uint64(out), uint64(h.experts)); err != nil {
						return nil, err
					}
				}
				continue
			}
			hf, err := fusedModule(mt, gp.roles)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Path, err)
			}
			heads := 0
			switch {
			case a.normRope && gp.roles[0] == "q":
				heads = h.heads
			case a.normRope && gp.roles[0] == "k":
				heads = h.kvHeads
			}
			if err := add(prefix+hf+".weight", ggufSource{tensor: g + ".weight", expert: -1, heads: heads}, true, uint64(in), uint64(out)); err != nil {
				return nil, err
			}
			if gp.bias {
				if err := add(prefix+hf+".bias", ggufSource{tensor: g + ".bias", expert: -1, heads: heads}, false, uint64(out)); err != nil {
					return nil, err
				}
			}
		}
	}
	used := map[string]bool{}
	for _, src := range s.src {
		used[src.tensor] = true
	}
	for _, t := range f.Tensors {
		switch {
		case used[t.Name]:
		case t.Name == ggufRopeFreqsTensor && h.ropeFactors != nil: // read as metadata
		case t.Name == ggufOutputTensor && a.tiedOnly:
			// llama.cpp's gemma2 ignores it too: the output is token_embd.
		default:
			return nil, fmt.Errorf("%s: tensor %s is not part of a %s model llmq runs", f.Path, t.Name, a.name)
		}
	}
	return s, nil
}

// fusedModule is the checkpoint module holding roles: the module of the
// one role, or for a fused tensor (Phi-3's qkv_proj, gate_up_proj) the
// module the family splits into them — its parts are named "<fused>.<role>".
func fusedModule(modelType string, roles []string) (string, error) {
	first, ok := model.PartNameOf(modelType, roles[0])
	if !ok {
		return "", fmt.Errorf("the %s family has no %s", modelType, roles[0])
	}
	if len(roles) == 1 {
		return first, nil
	}
	fused, found := strings.CutSuffix(first, "."+roles[0])
	for _, r := range roles[1:] {
		n, _ := model.PartNameOf(modelType, r)
		if !found || n != fused+"."+r {
			return "", fmt.Errorf("the %s family does not store %v as one fused module", modelType, roles)
		}
	}
	return fused, nil
}

// equalDims compares a tensor's dims with the expected ones.
func equalDims(got, want []uint64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func (s *ggufStore) Names() []string { return s.list }
func (s *ggufStore) Close() error    { return nil }

func (s *ggufStore) Info(name string) (checkpoint.TensorInfo, bool) {
	src, ok := s.src[name]
	if !ok {
		return checkpoint.TensorInfo{}, false
	}
	n := int64(1)
	for _, d := range src.shape {
		n *= int64(d)
	}
	return checkpoint.TensorInfo{Name: name, DType: checkpoint.F32, Shape: src.shape, End: 4 * n}, true
}

func (s *ggufStore) Float32(name string) ([]float32, checkpoint.TensorInfo, error) {
	info, ok := s.Info(name)
	if !ok {
		return nil, info, fmt.Errorf("%s: no tensor for %s", s.f.Path, name)
	}
	src := s.src[name]
	v, cached := s.stacks[src.tensor]
	if !cached {
		var err error
		if v, _, err = s.f.Float32(src.tensor); err != nil {
			return nil, info, err
		}
		if src.expert >= 0 {
			if len(s.stacks) >= 3 || s.stacks == nil {
				s.stacks = map[string][]float32{} // a new block's
			}
			s.stacks[src.tensor] = v
		}
	}
	if src.expert >= 0 {
		n := int(info.End / 4)
		v = append([]float32(nil), v[src.expert*n:(src.expert+1)*n]...) // a copy: the stack stays as read
	}
	if src.heads > 0 {
		cols := 1
		if len(src.shape) == 2 {
			cols = src.shape[1]
		}
		v = permuteQK(v, src.heads, cols, false)
	}
	if src.offset != 0 {
		for i := range v {
			v[i] -= src.offset
		}
	}
	return v, info, nil
}

// loadGGUF reads a GGUF file into an FP32 model (every tensor dequantized).
func loadGGUF(path string) (*model.Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := readGGUFHyper(f)
	if err != nil {
		return nil, err
	}
	store, err := newGGUFStore(f, h)
	if err != nil {
		return nil, err
	}
	raw, err := ggufConfigJSON(h)
	if err != nil {
		return nil, err
	}
	c, err := checkpoint.ParseConfig(path, raw)
	if err != nil {
		return nil, err
	}
	m, err := model.LoadFrom(c, store)
	if err != nil && h.ropeFactors != nil {
		return nil, fmt.Errorf("%s: tensor %s (RoPE frequency divisors, Llama 3's scaling) is imported as LongRoPE factors, which llmq's rope cannot apply: %w", path, ggufRopeFreqsTensor, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := finishGGUFModel(m, h, store); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// finishGGUFModel sets what the family binder cannot take from a
// config.json and checks that the family built what the file describes.
func finishGGUFModel(m *model.Model, h *ggufHyper, s *ggufStore) error {
	if h.embedScale != 0 {
		m.EmbedScale = float32(h.embedScale)
	}
	if h.arch.gemma {
		// The binder computed 1 + (W − 1); take W itself, bit for bit.
		exact := func(hf string, n nn.Norm) error {
			r, ok := n.(*nn.RMSNorm)
			src, found := s.src[hf]
			if !ok || !found {
				return fmt.Errorf("norm %s: not an RMSNorm read from the file", hf)
			}
			v, _, err := s.f.Float32(src.tensor)
			if err != nil {
				return err
			}
			copy(r.W, v)
			return nil
		}
		outer, _ := model.TensorNamesOf(h.modelType())
		if err := exact(outer.Norm+".weight", m.Norm); err != nil {
			return err
		}
		for l, b := range m.Blocks {
			for _, pt := range b.Norms() {
				if err := exact(m.LinearName(l, pt.Role)+".weight", *pt.Norm); err != nil {
					return err
				}
			}
		}
	}
	ropes := map[*nn.Rope]bool{}
	for l, b := range m.Blocks {
		if b.Rope == nil || ropes[b.Rope] {
			continue
		}
		ropes[b.Rope] = true
		r, err := ggufRopeOf(b.Rope)
		if err != nil {
			return err
		}
		theta := h.theta
		if h.sliding[l] && h.arch.swaRopeBase {
			theta = h.thetaSWA
		}
		ok := r.theta == theta && r.rotDim == h.rotDim && (r.factors == nil) == (h.ropeFactors == nil)
		for i := range r.factors {
			ok = ok && math.Abs(float64(r.factors[i])/h.ropeFactors[i]-1) < 1e-5
		}
		if !ok {
			return fmt.Errorf("llmq's %s family built layer %d's rotary embedding (base %g, %d features, divisors %v) unlike the file's (base %g, %d, %v)", m.Arch, l, r.theta, r.rotDim, r.factors, theta, h.rotDim, h.ropeFactors)
		}
	}
	for l, b := range m.Blocks {
		if w := b.Attn.Window; (w > 0) != h.sliding[l] || (w > 0 && w != h.window) {
			return fmt.Errorf("llmq's %s family cannot run the file's sliding windows (layer %d: window %d, the file %d, sliding %v)", m.Arch, l, w, h.window, h.sliding[l])
		}
	}
	return nil
}

// ggufConfigJSON is the Hugging Face config.json the metadata describes —
// what the family binder reads. RoPE frequencies are computed in FP32 as
// llama.cpp does (dtype float32: no rounding to a storage dtype).
func ggufConfigJSON(h *ggufHyper) ([]byte, error) {
	a := h.arch
	class := a.hfClass
	if h.experts > 0 {
		class = a.hfMoEClass
	}
	cfg := map[string]any{
		"architectures": []string{class}, "model_type": h.modelType(),
		"vocab_size": h.vocab, "hidden_size": h.hidden, "num_hidden_layers": h.layers,
		"num_attention_heads": h.heads, "num_key_value_heads": h.kvHeads, "head_dim": h.headDim,
		"intermediate_size": h.ff, "max_position_embeddings": h.ctx, "rms_norm_eps": h.eps,
		"tie_word_embeddings": h.tied, "hidden_act": "silu", "dtype": "float32",
	}
	rope := func(theta float64) map[string]any {
		r := map[string]any{"rope_type": "default", "rope_theta": theta}
		if h.ropeFactors != nil {
			// llama.cpp divides each frequency by its rope_freqs entry.
			// transformers' LongRoPE does exactly that with equal short and
			// long factors, factor 1 and attention factor 1 (so neither the
			// sequence length nor the cos/sin scale come into it).
			r["rope_type"], r["factor"], r["attention_factor"] = "longrope", 1.0, 1.0
			r["short_factor"], r["long_factor"] = h.ropeFactors, h.ropeFactors
			r["original_max_position_embeddings"] = h.ctx
		}
		if h.rotDim != h.headDim {
			// transformers rotates int(head_dim · factor) features: make
			// sure that is rotDim.
			p := float64(h.rotDim) / float64(h.headDim)
			if int(float64(h.headDim)*p) != h.rotDim {
				p = math.Nextafter(p, 1)
			}
			r["partial_rotary_factor"] = p
		}
		return r
	}
	cfg["rope_parameters"] = rope(h.theta)
	anySliding := false
	types := make([]string, h.layers)
	for l, s := range h.sliding {
		types[l] = "full_attention"
		if s {
			types[l], anySliding = "sliding_attention", true
		}
	}
	if a.swaPeriod > 0 || anySliding {
		cfg["layer_types"] = types
	}
	if anySliding {
		cfg["sliding_window"] = h.window
		if h.thetaSWA != h.theta {
			cfg["rope_parameters"] = map[string]any{"full_attention": rope(h.theta), "sliding_attention": rope(h.thetaSWA)}
		}
	} else {
		cfg["sliding_window"] = nil
	}
	if h.experts > 0 {
		cfg["num_local_experts"], cfg["num_experts_per_tok"] = h.experts, h.topK
		if a.moe == moeExpertFFLength {
			cfg["moe_intermediate_size"], cfg["norm_topk_prob"] = h.expertFF, true
			cfg["decoder_sparse_step"], cfg["mlp_only_layers"] = 1, []int{}
		}
	}
	if a.gemma {
		cfg["hidden_activation"], cfg["hidden_act"] = "gelu_pytorch_tanh", "gelu_pytorch_tanh"
		scalar := h.headDim // llama.cpp's query scale (see ggufArch.attnScale)
		if h.layers == a.gemma27BLayers {
			scalar = h.hidden / h.heads
		}
		cfg["query_pre_attn_scalar"] = scalar
		cfg["final_logit_softcapping"] = nil
		if h.finalCap > 0 {
			cfg["final_logit_softcapping"] = h.finalCap
		}
		cfg["attn_logit_softcapping"] = nil
		if h.attnCap > 0 {
			cfg["attn_logit_softcapping"] = h.attnCap
		}
	}
	if h.bos >= 0 {
		cfg["bos_token_id"] = h.bos
	}
	if h.eos >= 0 {
		cfg["eos_token_id"] = h.eos
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// GGUFSourceFiles returns what a model folder would hold beside the weights
// of the model in a GGUF file: config.json (the Hugging Face config its
// metadata describes) and, when it carries a SentencePiece vocabulary,
// tokenizer.model — keyed by file name. Saving a model loaded from a GGUF
// file as an llmq folder takes these in place of its source folder's files.
// (A Gemma multiplier kept in embedding_scale has no config.json key: such
// a folder multiplies by √hidden_size.)
func GGUFSourceFiles(path string) (map[string][]byte, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	h, err := readGGUFHyper(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	cfg, err := ggufConfigJSON(h)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"config.json": cfg}
	if tok, err := GGUFTokenizer(path); err == nil {
		files["tokenizer.model"] = tok.MarshalModel()
	}
	return files, nil
}

// GGUFTokenizer builds the SentencePiece tokenizer a GGUF file's
// tokenizer.ggml.* metadata describes (tokenizer.ggml.model "llama").
func GGUFTokenizer(path string) (*tokenizer.SentencePiece, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kind, _ := getString(f, "tokenizer.ggml.model")
	switch kind {
	case "llama":
	case "", "no_vocab", "none":
		return nil, fmt.Errorf("%s: the file carries no vocabulary; pass --tokenizer", path)
	default:
		return nil, fmt.Errorf("%s: tokenizer.ggml.model %q is not supported (llmq reads SentencePiece \"llama\" vocabularies); pass --tokenizer", path, kind)
	}
	tv, ok := f.Get("tokenizer.ggml.tokens")
	pieces, isStrings := tv.Any().([]string)
	if !ok || !isStrings {
		return nil, fmt.Errorf("%s: tokenizer.ggml.tokens must be an array of strings", path)
	}
	n := len(pieces)
	v := tokenizer.Vocab{Pieces: pieces, Scores: make([]float32, n), Types: make([]tokenizer.PieceType, n),
		BOS: -1, EOS: -1, AddDummyPrefix: true}
	if sv, ok := f.Get("tokenizer.ggml.scores"); ok {
		s, isF32 := sv.Any().([]float32)
		if !isF32 || len(s) != n {
			return nil, fmt.Errorf("%s: tokenizer.ggml.scores must be %d float32 values", path, n)
		}
		v.Scores = s
	}
	unk := 0
	if u, ok, err := getUint(f, "tokenizer.ggml.unknown_token_id"); err != nil {
		return nil, err
	} else if ok {
		unk = u
	}
	if tt, ok := f.Get("tokenizer.ggml.token_type"); ok {
		if tt.Len() != n {
			return nil, fmt.Errorf("%s: tokenizer.ggml.token_type has %d entries for %d tokens", path, tt.Len(), n)
		}
		for i := range n {
			t, ok := arrayInt(tt, i)
			if !ok {
				return nil, fmt.Errorf("%s: tokenizer.ggml.token_type must be an integer array", path)
			}
			v.Types[i] = tokenizer.PieceType(t)
		}
	} else {
		for i := range v.Types {
			v.Types[i] = tokenizer.PieceNormal
		}
		if unk < n {
			v.Types[unk] = tokenizer.PieceUnknown
		}
	}
	v.BOS, v.EOS = 1, 2 // llama.cpp's defaults for SentencePiece vocabularies
	for _, s := range []struct {
		dst *int
		key string
	}{{&v.BOS, "tokenizer.ggml.bos_token_id"}, {&v.EOS, "tokenizer.ggml.eos_token_id"}} {
		if id, ok, err := getUint(f, s.key); err != nil {
			return nil, err
		} else if ok {
			*s.dst = id
		}
	}
	if b, ok := f.Get("tokenizer.ggml.add_space_prefix"); ok {
		v.AddDummyPrefix, _ = b.Bool()
	}
	if b, ok := f.Get("tokenizer.ggml.remove_extra_whitespaces"); ok {
		v.RemoveExtraWhitespaces, _ = b.Bool()
	}
	t, err := tokenizer.FromVocab(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// arrayInt reads element i of an integer array of any width.
func arrayInt(v gguf.Value, i int) (int64, bool) {
	switch s := v.Any().(type) {
	case []int32:
		return int64(s[i]), true
	case []uint32:
		return int64(s[i]), true
	case []int8:
		return int64(s[i]), true
	case []uint8:
		return int64(s[i]), true
	case []int16:
		return int64(s[i]), true
	case []uint16:
		return int64(s[i]), true
	case []int64:
		return s[i], true
	case []uint64:
		return int64(s[i]), s[i] <= math.MaxInt64
	}
	return 0, false
}
