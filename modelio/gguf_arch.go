package modelio

// The GGUF name table: for each llama.cpp architecture llmq exports and
// imports, the metadata it reads and the tensor that holds each block part.
// Everything here is spelled as llama.cpp spells it — src/llama-arch.cpp
// (LLM_KV_NAMES, LLM_TENSOR_NAMES), the per-architecture load_arch_hparams
// and load_arch_tensors of src/models/*.cpp, and convert_hf_to_gguf.py's
// model classes — so that a file written from this table loads in
// llama.cpp, and a file llama.cpp's converter wrote imports here. A family
// joins GGUF by adding its entry to ggufArchs; only a computation no field
// below describes yet needs a new field, checked in planGGUF (gguf.go) and
// read back in readGGUFHyper (gguf_import.go).

import (
	"fmt"
	"math"
)

// Metadata keys after the "<arch>." prefix (LLM_KV_NAMES).
const (
	kvVocabSize          = "vocab_size"
	kvContextLength      = "context_length"
	kvEmbeddingLength    = "embedding_length"
	kvBlockCount         = "block_count"
	kvFeedForwardLength  = "feed_forward_length"
	kvExpertFFLength     = "expert_feed_forward_length"
	kvExpertCount        = "expert_count"
	kvExpertUsedCount    = "expert_used_count"
	kvHeadCount          = "attention.head_count"
	kvHeadCountKV        = "attention.head_count_kv"
	kvKeyLength          = "attention.key_length"
	kvValueLength        = "attention.value_length"
	kvRMSEps             = "attention.layer_norm_rms_epsilon"
	kvSlidingWindow      = "attention.sliding_window"
	kvSlidingPattern     = "attention.sliding_window_pattern"
	kvAttnSoftcap        = "attn_logit_softcapping"
	kvFinalSoftcap       = "final_logit_softcapping"
	kvRopeDims           = "rope.dimension_count"
	kvRopeFreqBase       = "rope.freq_base"
	kvRopeFreqBaseSWA    = "rope.freq_base_swa"
	kvRopeScalingType    = "rope.scaling.type"
	kvRopeScalingFactor  = "rope.scaling.factor"
	kvEmbeddingScale     = "embedding_scale"
	ggufRopeFreqsTensor  = "rope_freqs.weight" // LLM_TENSOR_ROPE_FREQS: per-pair frequency divisors
	ggufTokenEmbdTensor  = "token_embd.weight"
	ggufOutputNormTensor = "output_norm.weight"
	ggufOutputTensor     = "output.weight"
)

// ggufPart is one tensor of a block, "blk.N.<name>.weight" (and
// ".bias"), holding one or more block roles (model.Block.Parts).
type ggufPart struct {
	name string
	// roles stored in the tensor; with more than one, their rows follow
	// one another in this order (Phi-3's attn_qkv = q, k, v; its ffn_up =
	// gate, up, split by ggml's SwiGLU into silu(first half) ⊙ second half).
	roles []string
	// experts: the tensor stacks role of every expert ("gate" means
	// experts.0.gate, experts.1.gate, …) as a 3-D [in, out, experts]
	// tensor, as convert_hf_to_gguf.py stacks Mixtral's w1/w2/w3.
	experts bool
	bias    bool      // llama.cpp reads an optional <name>.bias
	where   partWhere // which blocks have the part
}

type partWhere int

const (
	inEvery partWhere = iota // every block
	inDense                  // blocks with a dense MLP
	inMoE                    // blocks with a mixture of experts
)

// ggufArch is one llama.cpp architecture.
type ggufArch struct {
	name string // general.architecture, and the prefix of its metadata keys
	// families are the model_type values (model.Model.Arch) exported as
	// this architecture; modelType (moeModelType for a file with experts)
	// is the one a file of it imports as.
	families                []string
	modelType, moeModelType string
	// hfClass (hfMoEClass) is the config's "architectures" entry on import.
	hfClass, hfMoEClass string
	parts               []ggufPart

	// normRope: ggml's rope mode 0 (LLAMA_ROPE_TYPE_NORM) rotates adjacent
	// feature pairs, so q/k rows are permuted from Hugging Face's rotate-half
	// layout (only the llama architecture; the others use NEOX, which is
	// rotate-half itself).
	normRope bool
	// partialRotary: rope.dimension_count may be less than the head size
	// (the llama, qwen3 and qwen3moe graphs assert it is not).
	partialRotary bool
	// ropeFreqs: a rope_freqs tensor of per-pair divisors is read (Llama
	// 3's frequency scaling, written by LlamaModel.generate_extra_tensors).
	ropeFreqs bool
	// squareAttn: attn_output is created {n_embd, n_embd}, so heads ×
	// head size must equal the hidden size.
	squareAttn bool
	// swaPeriod is the default of attention.sliding_window_pattern, the
	// period p of llama.cpp's set_swa_pattern (layer l slides when
	// l mod p < p−1); 0 when the architecture has no sliding window in
	// llama.cpp (it then attends over the whole context).
	swaPeriod int
	// swaNeedsWindow: without attention.sliding_window no layer slides
	// (gemma3); otherwise the window defaults to swaDefault.
	swaNeedsWindow bool
	swaDefault     int
	// swaRopeBase: rope.freq_base_swa sets the sliding layers' own base,
	// swaRopeBaseDefault when the file has none (0: rope.freq_base).
	swaRopeBase        bool
	swaRopeBaseDefault float64
	// attnCap, finalCap: attn_logit_softcapping, final_logit_softcapping.
	attnCap, finalCap bool
	// gemma: embeddings multiplied by √n_embd, RMSNorm weights stored as
	// 1 + w (the converter adds the 1 that Gemma's norm adds at run time),
	// a GELU (tanh) gated MLP, and queries scaled by 1/√key_length — or by
	// 1/√(n_embd/n_head) for the 27B model, which llama.cpp recognises by
	// its layer count, gemma27BLayers.
	gemma          bool
	gemma27BLayers int
	// tiedOnly: the output is token_embd whatever the file holds (gemma2).
	tiedOnly bool
	// moe: how a mixture of experts is laid out, if the architecture has
	// one. Both graphs renormalise the top-k router weights.
	moe moeLayout
}

type moeLayout int

const (
	moeNone moeLayout = iota
	// moeFFLength: experts are feed_forward_length wide and every block has
	// them once expert_count > 0 (llama, for Mixtral).
	moeFFLength
	// moeExpertFFLength: experts are expert_feed_forward_length wide and
	// every block has them (qwen3moe).
	moeExpertFFLength
)

// Block parts shared by several architectures.
var (
	ggufAttnNorm = ggufPart{name: "attn_norm", roles: []string{"norm1"}}
	ggufFFNNorm  = ggufPart{name: "ffn_norm", roles: []string{"norm2"}}
	ggufQNorm    = ggufPart{name: "attn_q_norm", roles: []string{"q_norm"}}
	ggufKNorm    = ggufPart{name: "attn_k_norm", roles: []string{"k_norm"}}
	ggufOutput   = ggufPart{name: "attn_output", roles: []string{"o"}}
	ggufGate     = ggufPart{name: "ffn_gate", roles: []string{"gate"}, where: inDense}
	ggufUp       = ggufPart{name: "ffn_up", roles: []string{"up"}, where: inDense}
	ggufDown     = ggufPart{name: "ffn_down", roles: []string{"down"}, where: inDense}
	ggufRouter   = ggufPart{name: "ffn_gate_inp", roles: []string{"router"}, where: inMoE}
	ggufExperts  = []ggufPart{
		{name: "ffn_gate_exps", roles: []string{"gate"}, experts: true, where: inMoE},
		{name: "ffn_up_exps", roles: []string{"up"}, experts: true, where: inMoE},
		{name: "ffn_down_exps", roles: []string{"down"}, experts: true, where: inMoE},
	}
)

func qkvParts(bias bool) []ggufPart {
	return []ggufPart{
		{name: "attn_q", roles: []string{"q"}, bias: bias},
		{name: "attn_k", roles: []string{"k"}, bias: bias},
		{name: "attn_v", roles: []string{"v"}, bias: bias},
	}
}

func withBias(p ggufPart) ggufPart { p.bias = true; return p }

func cat(groups ...[]ggufPart) []ggufPart {
	var s []ggufPart
	for _, g := range groups {
		s = append(s, g...)
	}
	return s
}

// ggufArchs is the table.
var ggufArchs = []*ggufArch{
	{
		// Llama 1–3, Mistral and Mixtral (convert_hf_to_gguf.py's
		// LlamaModel), and llama2.c checkpoints.
		name: "llama", families: []string{"llama", "mistral", "llama2c", "mixtral"},
		modelType: "llama", moeModelType: "mixtral", hfClass: "LlamaForCausalLM", hfMoEClass: "MixtralForCausalLM",
		parts: cat([]ggufPart{ggufAttnNorm}, qkvParts(true), []ggufPart{withBias(ggufOutput), ggufFFNNorm,
			withBias(ggufGate), withBias(ggufUp), withBias(ggufDown), ggufRouter}, ggufExperts),
		normRope: true, ropeFreqs: true, moe: moeFFLength,
	},
	{
		name: "qwen2", families: []string{"qwen2"}, modelType: "qwen2", hfClass: "Qwen2ForCausalLM",
		parts:      cat([]ggufPart{ggufAttnNorm}, qkvParts(true), []ggufPart{ggufOutput, ggufFFNNorm, ggufGate, ggufUp, ggufDown}),
		squareAttn: true,
	},
	{
		name: "qwen3", families: []string{"qwen3"}, modelType: "qwen3", hfClass: "Qwen3ForCausalLM",
		parts: cat([]ggufPart{ggufAttnNorm}, qkvParts(false), []ggufPart{ggufQNorm, ggufKNorm, ggufOutput, ggufFFNNorm, ggufGate, ggufUp, ggufDown}),
	},
	{
		name: "qwen3moe", families: []string{"qwen3_moe"}, modelType: "qwen3_moe", moeModelType: "qwen3_moe",
		hfClass: "Qwen3MoeForCausalLM", hfMoEClass: "Qwen3MoeForCausalLM",
		parts: cat([]ggufPart{ggufAttnNorm}, qkvParts(false), []ggufPart{ggufQNorm, ggufKNorm, ggufOutput, ggufFFNNorm, ggufRouter}, ggufExperts),
		moe:   moeExpertFFLength,
	},
	{
		name: "gemma2", families: []string{"gemma2"}, modelType: "gemma2", hfClass: "Gemma2ForCausalLM",
		parts: cat([]ggufPart{ggufAttnNorm}, qkvParts(false), []ggufPart{ggufOutput,
			{name: "post_attention_norm", roles: []string{"post_attn_norm"}}, ggufFFNNorm, ggufGate, ggufUp, ggufDown,
			{name: "post_ffw_norm", roles: []string{"post_mlp_norm"}}}),
		partialRotary: true, swaPeriod: 2, swaDefault: 4096, swaRopeBase: true,
		attnCap: true, finalCap: true, gemma: true, gemma27BLayers: 46, tiedOnly: true,
	},
	{
		name: "gemma3", families: []string{"gemma3_text"}, modelType: "gemma3_text", hfClass: "Gemma3ForCausalLM",
		parts: cat([]ggufPart{ggufAttnNorm}, qkvParts(false), []ggufPart{ggufQNorm, ggufKNorm, ggufOutput,
			{name: "post_attention_norm", roles: []string{"post_attn_norm"}}, ggufFFNNorm, ggufGate, ggufUp, ggufDown,
			{name: "post_ffw_norm", roles: []string{"post_mlp_norm"}}}),
		partialRotary: true, swaPeriod: 6, swaNeedsWindow: true, swaRopeBase: true, swaRopeBaseDefault: 10000,
		finalCap: true, gemma: true, gemma27BLayers: 62,
	},
	{
		// Phi-3: llama.cpp reads attention.sliding_window but disables it
		// (src/models/phi3.cpp), so swaPeriod is 0.
		name: "phi3", families: []string{"phi3"}, modelType: "phi3", hfClass: "Phi3ForCausalLM",
		parts: []ggufPart{ggufAttnNorm, {name: "attn_qkv", roles: []string{"q", "k", "v"}}, ggufOutput, ggufFFNNorm,
			{name: "ffn_up", roles: []string{"gate", "up"}, where: inDense}, ggufDown},
		partialRotary: true, squareAttn: true,
	},
}

// ggufArchFor returns the architecture a model of family (model_type)
// arch is exported as.
func ggufArchFor(arch string) (*ggufArch, error) {
	for _, a := range ggufArchs {
		for _, f := range a.families {
			if f == arch {
				return a, nil
			}
		}
	}
	return nil, fmt.Errorf("GGUF export supports %s; this model is %s", ggufFamilyList(), arch)
}

// ggufArchNamed returns the table entry of a general.architecture value.
func ggufArchNamed(name string) (*ggufArch, bool) {
	for _, a := range ggufArchs {
		if a.name == name {
			return a, true
		}
	}
	return nil, false
}

func ggufFamilyList() string {
	s := ""
	for i, a := range ggufArchs {
		if i > 0 {
			s += ", "
		}
		s += a.name + " ("
		for j, f := range a.families {
			if j > 0 {
				s += ", "
			}
			s += f
		}
		s += ")"
	}
	return s
}

func ggufArchNames() []string {
	var s []string
	for _, a := range ggufArchs {
		s = append(s, a.name)
	}
	return s
}

// key is the full metadata key of a suffix for this architecture.
func (a *ggufArch) key(suffix string) string { return a.name + "." + suffix }

// attnScale is the query scale llama.cpp applies for this architecture.
func (a *ggufArch) attnScale(hidden, heads, headDim, layers int) float64 {
	if a.gemma && layers == a.gemma27BLayers {
		return 1 / math.Sqrt(float64(hidden/heads))
	}
	return 1 / math.Sqrt(float64(headDim))
}
