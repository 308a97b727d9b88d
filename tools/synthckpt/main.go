// Command synthckpt writes a synthetic Hugging Face checkpoint: the
// config.json of a named published model and random weights with exactly
// its tensor names, shapes and dtype, sharded as transformers shards them
// (model-0000N-of-0000M.safetensors of at most 5 GB and
// model.safetensors.index.json). Memory and speed work at real sizes needs
// real shapes, and downloading an 8B model is neither possible everywhere
// nor needed when the values do not matter; a random model of the same
// shapes costs only disk.
//
// The weights are streamed to disk as they are generated (the generator
// holds a few MiB, whatever the model's size) and are deterministic: the
// same --seed gives the same bytes on any machine and any core count. Linear
// weights and embeddings are N(0, 0.02²) (transformers' initializer_range);
// norm weights are 1. Nothing it writes belongs in the repository.
//
// Usage (from the repository root):
//
//	go run ./tools/synthckpt --config llama-3.1-8b --out /tmp/llama-3.1-8b
//	go run ./tools/synthckpt --config mixtral-8x7b --layers 2 --dtype bf16 --out /tmp/mixtral-2l
//	go run ./tools/synthckpt --list
//
// --layers keeps fewer decoder layers (a Mixtral-8x7B of 32 layers is
// 93 GB); --hidden, --intermediate, --vocab, --heads, --kv-heads,
// --head-dim and --experts shrink the other shapes, for tests that need the
// family's names and layout but not its size.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"llmq/checkpoint"
	"llmq/tensor"
)

// arch is the shape of a model and the config.json fields that go with it.
type arch struct {
	ModelType, Architecture string
	description             string
	Hidden, Intermediate    int
	Layers, Heads, KVHeads  int
	HeadDim, Vocab          int
	Experts, TopK           int  // mixture of experts (Mixtral); 0: dense
	Tied                    bool // lm_head is the embedding (no lm_head.weight)
	QKNorm                  bool // per-head q_norm / k_norm (Qwen3)
	Fused                   bool // qkv_proj and gate_up_proj (Phi-3)
	extra                   map[string]any
	layerFields             []string // config fields besides num_hidden_layers that count layers
}

// num spells a JSON number as the published config does ("8.0", not 8):
// transformers' strict config classes refuse an integer for a float field.
func num(s string) json.Number { return json.Number(s) }

// configs are the published models synthckpt imitates.
var configs = map[string]func() arch{
	"llama-3.1-8b": func() arch {
		return arch{
			ModelType: "llama", Architecture: "LlamaForCausalLM", description: "Meta Llama 3.1 8B",
			Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 128256,
			extra: merge(llamaExtra(), map[string]any{
				"rope_parameters": llama3Rope("8.0"), "tie_word_embeddings": false, "head_dim": 128,
			}),
		}
	},
	"llama-3.2-1b": func() arch {
		return arch{
			ModelType: "llama", Architecture: "LlamaForCausalLM", description: "Meta Llama 3.2 1B",
			Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8, HeadDim: 64, Vocab: 128256, Tied: true,
			extra: merge(llamaExtra(), map[string]any{
				"rope_parameters": llama3Rope("32.0"), "tie_word_embeddings": true, "head_dim": 64,
			}),
		}
	},
	"llama-3.2-3b": func() arch {
		return arch{
			ModelType: "llama", Architecture: "LlamaForCausalLM", description: "Meta Llama 3.2 3B",
			Hidden: 3072, Intermediate: 8192, Layers: 28, Heads: 24, KVHeads: 8, HeadDim: 128, Vocab: 128256, Tied: true,
			extra: merge(llamaExtra(), map[string]any{
				"rope_parameters": llama3Rope("32.0"), "tie_word_embeddings": true, "head_dim": 128,
			}),
		}
	},
	"qwen3-8b": func() arch {
		return arch{
			ModelType: "qwen3", Architecture: "Qwen3ForCausalLM", description: "Qwen3 8B",
			Hidden: 4096, Intermediate: 12288, Layers: 36, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 151936, QKNorm: true,
			layerFields: []string{"max_window_layers"},
			extra: map[string]any{
				"attention_bias": false, "attention_dropout": num("0.0"), "bos_token_id": 151643, "eos_token_id": 151645,
				"hidden_act": "silu", "initializer_range": num("0.02"), "max_position_embeddings": 40960,
				"max_window_layers": 36, "rms_norm_eps": num("1e-06"), "sliding_window": nil, "use_sliding_window": false,
				"rope_parameters":     map[string]any{"rope_theta": num("1000000.0"), "rope_type": "default"},
				"tie_word_embeddings": false, "use_cache": true, "head_dim": 128,
			},
		}
	},
	"mixtral-8x7b": func() arch {
		return arch{
			ModelType: "mixtral", Architecture: "MixtralForCausalLM", description: "Mistral Mixtral 8x7B v0.1",
			Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 32000, Experts: 8, TopK: 2,
			extra: map[string]any{
				"attention_dropout": num("0.0"), "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
				"initializer_range": num("0.02"), "max_position_embeddings": 32768, "rms_norm_eps": num("1e-05"),
				"rope_parameters":      map[string]any{"rope_theta": num("1000000.0"), "rope_type": "default"},
				"router_aux_loss_coef": num("0.02"), "router_jitter_noise": num("0.0"), "output_router_logits": false,
				"sliding_window": nil, "tie_word_embeddings": false, "use_cache": true, "head_dim": nil,
			},
		}
	},
	"phi-3-mini-4k": func() arch {
		return arch{
			ModelType: "phi3", Architecture: "Phi3ForCausalLM", description: "Microsoft Phi-3-mini-4k-instruct",
			Hidden: 3072, Intermediate: 8192, Layers: 32, Heads: 32, KVHeads: 32, HeadDim: 96, Vocab: 32064, Fused: true,
			extra: map[string]any{
				"attention_bias": false, "attention_dropout": num("0.0"), "bos_token_id": 1, "eos_token_id": 32000,
				"pad_token_id": 32000, "embd_pdrop": num("0.0"), "resid_pdrop": num("0.0"), "hidden_act": "silu",
				"initializer_range": num("0.02"), "max_position_embeddings": 4096, "original_max_position_embeddings": 4096,
				"rms_norm_eps": num("1e-05"), "rope_parameters": map[string]any{"rope_theta": num("10000.0"), "rope_type": "default"},
				"sliding_window": 2047, "tie_word_embeddings": false, "use_cache": true,
			},
		}
	},
}

func llamaExtra() map[string]any {
	return map[string]any{
		"attention_bias": false, "attention_dropout": num("0.0"), "bos_token_id": 128000, "eos_token_id": 128001,
		"hidden_act": "silu", "initializer_range": num("0.02"), "max_position_embeddings": 131072, "mlp_bias": false,
		"pretraining_tp": 1, "rms_norm_eps": num("1e-05"), "use_cache": true,
	}
}

// llama3Rope is Llama 3.1/3.2's rope_parameters (transformers 5 spelling).
func llama3Rope(factor string) map[string]any {
	return map[string]any{
		"rope_type": "llama3", "rope_theta": num("500000.0"), "factor": num(factor),
		"low_freq_factor": num("1.0"), "high_freq_factor": num("4.0"), "original_max_position_embeddings": 8192,
	}
}

func merge(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// dtypes maps --dtype to the safetensors dtype and config.json's spelling.
var dtypes = map[string]struct {
	st  checkpoint.DType
	cfg string
}{
	"bf16": {checkpoint.BF16, "bfloat16"},
	"f16":  {checkpoint.F16, "float16"},
	"f32":  {checkpoint.F32, "float32"},
}

// config returns config.json's object.
func (a *arch) config(dtype string) map[string]any {
	c := map[string]any{}
	for k, v := range a.extra {
		c[k] = v
	}
	c["architectures"] = []string{a.Architecture}
	c["model_type"] = a.ModelType
	c["hidden_size"] = a.Hidden
	c["intermediate_size"] = a.Intermediate
	c["num_hidden_layers"] = a.Layers
	c["num_attention_heads"] = a.Heads
	c["num_key_value_heads"] = a.KVHeads
	c["vocab_size"] = a.Vocab
	c["dtype"] = dtype
	c["transformers_version"] = "5.17.0"
	if _, ok := c["head_dim"]; ok && c["head_dim"] != nil {
		c["head_dim"] = a.HeadDim
	} else if a.HeadDim != a.Hidden/a.Heads {
		c["head_dim"] = a.HeadDim
	}
	for _, f := range a.layerFields {
		c[f] = a.Layers
	}
	if a.Experts > 0 {
		c["num_local_experts"] = a.Experts
		c["num_experts_per_tok"] = a.TopK
	}
	return c
}

// tensorKind says how a tensor's values are drawn.
type tensorKind int

const (
	normal tensorKind = iota // N(0, 0.02²)
	ones                     // norm weights
)

type planned struct {
	checkpoint.PlannedTensor
	kind tensorKind
}

// tensors lists the checkpoint's tensors in the order transformers'
// state_dict holds them (module order), with their shapes.
func (a *arch) tensors(dt checkpoint.DType) []planned {
	var out []planned
	add := func(name string, kind tensorKind, shape ...int) {
		out = append(out, planned{checkpoint.PlannedTensor{Name: name, DType: dt, Shape: shape}, kind})
	}
	H, F, D := a.Hidden, a.Intermediate, a.HeadDim
	qw, kw := a.Heads*D, a.KVHeads*D
	add("model.embed_tokens.weight", normal, a.Vocab, H)
	for l := 0; l < a.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		if a.Fused {
			add(p+"self_attn.qkv_proj.weight", normal, qw+2*kw, H)
		} else {
			add(p+"self_attn.q_proj.weight", normal, qw, H)
			add(p+"self_attn.k_proj.weight", normal, kw, H)
			add(p+"self_attn.v_proj.weight", normal, kw, H)
		}
		add(p+"self_attn.o_proj.weight", normal, H, qw)
		if a.QKNorm {
			add(p+"self_attn.q_norm.weight", ones, D)
			add(p+"self_attn.k_norm.weight", ones, D)
		}
		switch {
		case a.Experts > 0:
			add(p+"block_sparse_moe.gate.weight", normal, a.Experts, H)
			for e := 0; e < a.Experts; e++ {
				x := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", p, e)
				add(x+"w1.weight", normal, F, H)
				add(x+"w2.weight", normal, H, F)
				add(x+"w3.weight", normal, F, H)
			}
		case a.Fused:
			add(p+"mlp.gate_up_proj.weight", normal, 2*F, H)
			add(p+"mlp.down_proj.weight", normal, H, F)
		default:
			add(p+"mlp.gate_proj.weight", normal, F, H)
			add(p+"mlp.up_proj.weight", normal, F, H)
			add(p+"mlp.down_proj.weight", normal, H, F)
		}
		add(p+"input_layernorm.weight", ones, H)
		add(p+"post_attention_layernorm.weight", ones, H)
	}
	add("model.norm.weight", ones, H)
	if !a.Tied {
		add("lm_head.weight", normal, a.Vocab, H)
	}
	return out
}

// chunkElems is the unit of generation: chunk c of a tensor is drawn from
// its own generator, seeded by (seed, tensor name, c), so the bytes do not
// depend on how many goroutines draw them.
const chunkElems = 1 << 20

// std is the standard deviation of the normal tensors (initializer_range).
const std = 0.02

func tensorSeed(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64() ^ seed*0x9E3779B97F4A7C15
}

// fillChunk draws chunk c of tensor t into b (len = elements × size).
func fillChunk(b []byte, t planned, seed uint64, c int) {
	n := len(b) / t.DType.Size()
	var rng *rand.Rand
	if t.kind == normal {
		rng = rand.New(rand.NewPCG(tensorSeed(seed, t.Name), uint64(c)))
	}
	for i := 0; i < n; i++ {
		v := float32(1)
		if rng != nil {
			v = float32(rng.NormFloat64() * std)
		}
		switch t.DType {
		case checkpoint.BF16:
			binary.LittleEndian.PutUint16(b[2*i:], tensor.F32ToBF16(v))
		case checkpoint.F16:
			binary.LittleEndian.PutUint16(b[2*i:], tensor.F32ToF16(v))
		default:
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
	}
}

// writeTensor streams tensor t to w, chunks drawn by workers goroutines
// and written in order.
func writeTensor(w io.Writer, t planned, seed uint64, workers int) error {
	elems := t.Bytes() / int64(t.DType.Size())
	n := int((elems + chunkElems - 1) / chunkElems)
	size := t.DType.Size()
	outs := make([]chan []byte, n)
	for i := range outs {
		outs[i] = make(chan []byte, 1)
	}
	slots := make(chan struct{}, 2*workers) // chunks in flight
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		for c := 0; c < n; c++ {
			select {
			case slots <- struct{}{}:
			case <-quit:
				return
			}
			go func(c int) {
				m := min(int64(chunkElems), elems-int64(c)*chunkElems)
				b := make([]byte, int(m)*size)
				fillChunk(b, t, seed, c)
				outs[c] <- b
			}(c)
		}
	}()
	for c := 0; c < n; c++ {
		b := <-outs[c]
		_, err := w.Write(b)
		<-slots
		if err != nil {
			return err
		}
	}
	return nil
}

// options are the generator's settings.
type options struct {
	config     string
	layers     int
	dtype      string
	seed       uint64
	shardBytes int64
	// shape overrides (0: the config's)
	hidden, intermediate, vocab, heads, kvHeads, headDim, experts int
}

// resolve returns the architecture with the overrides applied.
func (o *options) resolve() (*arch, error) {
	mk, ok := configs[o.config]
	if !ok {
		return nil, fmt.Errorf("unknown --config %q (known: %s)", o.config, strings.Join(configNames(), ", "))
	}
	a := mk()
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	set(&a.Layers, o.layers)
	set(&a.Hidden, o.hidden)
	set(&a.Intermediate, o.intermediate)
	set(&a.Vocab, o.vocab)
	set(&a.Heads, o.heads)
	set(&a.KVHeads, o.kvHeads)
	set(&a.HeadDim, o.headDim)
	if a.Experts > 0 {
		set(&a.Experts, o.experts)
		a.TopK = min(a.TopK, a.Experts)
	} else if o.experts > 0 {
		return nil, fmt.Errorf("--experts: %s is not a mixture of experts", o.config)
	}
	if a.Heads%a.KVHeads != 0 {
		return nil, fmt.Errorf("%d heads are not a multiple of %d key/value heads", a.Heads, a.KVHeads)
	}
	return &a, nil
}

func configNames() []string {
	var s []string
	for k := range configs {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// generate writes the checkpoint folder out (which must not exist).
func generate(out string, o options, log io.Writer) error {
	a, err := o.resolve()
	if err != nil {
		return err
	}
	dt, ok := dtypes[o.dtype]
	if !ok {
		return fmt.Errorf("unknown --dtype %q (bf16, f16, f32)", o.dtype)
	}
	cfg, err := json.MarshalIndent(a.config(dt.cfg), "", "  ")
	if err != nil {
		return err
	}
	ts := a.tensors(dt.st)
	plan := make([]checkpoint.PlannedTensor, len(ts))
	var total int64
	for i, t := range ts {
		plan[i] = t.PlannedTensor
		total += t.Bytes()
	}
	fmt.Fprintf(log, "synthckpt: %s (%s), %d layers, %s: %d tensors, %.2f GB\n", o.config, a.description, a.Layers, o.dtype, len(ts), float64(total)/1e9)
	workers := runtime.GOMAXPROCS(0)
	start := time.Now()
	err = checkpoint.WriteDirAtomic(out, func(dir string) error {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), append(cfg, '\n'), 0o644); err != nil {
			return err
		}
		return checkpoint.WriteShards(dir, plan, map[string]string{"format": "pt"}, o.shardBytes, func(i int, w io.Writer) error {
			return writeTensor(w, ts[i], o.seed, workers)
		})
	})
	if err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(log, "synthckpt: wrote %s in %v (%.0f MB/s)\n", out, el.Round(time.Millisecond), float64(total)/1e6/el.Seconds())
	return nil
}

// parseBytes reads a size: a number of bytes, or with a suffix kB, MB, GB
// (decimal, as transformers' max_shard_size) or KiB, MiB, GiB.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mul := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mul = rest, u.mul
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with kB, MB, GB, KiB, MiB or GiB", s)
	}
	return int64(f * float64(mul)), nil
}

func main() {
	var o options
	var out, shard string
	list := flag.Bool("list", false, "list the configs and their sizes")
	flag.StringVar(&o.config, "config", "", "the model to imitate (see --list)")
	flag.StringVar(&out, "out", "", "folder to write (must not exist)")
	flag.StringVar(&o.dtype, "dtype", "bf16", "weight dtype: bf16, f16 or f32")
	flag.IntVar(&o.layers, "layers", 0, "decoder layers (default: the model's)")
	flag.Uint64Var(&o.seed, "seed", 0, "seed of the random weights")
	flag.StringVar(&shard, "shard-size", "5GB", "largest shard (transformers' max_shard_size)")
	flag.IntVar(&o.hidden, "hidden", 0, "override hidden_size")
	flag.IntVar(&o.intermediate, "intermediate", 0, "override intermediate_size")
	flag.IntVar(&o.vocab, "vocab", 0, "override vocab_size")
	flag.IntVar(&o.heads, "heads", 0, "override num_attention_heads")
	flag.IntVar(&o.kvHeads, "kv-heads", 0, "override num_key_value_heads")
	flag.IntVar(&o.headDim, "head-dim", 0, "override head_dim")
	flag.IntVar(&o.experts, "experts", 0, "override num_local_experts")
	flag.Parse()
	if *list {
		for _, name := range configNames() {
			a := configs[name]()
			var n int64
			for _, t := range a.tensors(checkpoint.BF16) {
				n += t.Bytes()
			}
			fmt.Printf("%-14s %-34s %3d layers  %6.1f GB in bf16\n", name, a.description, a.Layers, float64(n)/1e9)
		}
		return
	}
	if o.config == "" || out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: synthckpt --config NAME --out DIR [--layers N] [--dtype bf16|f16|f32] [--seed S] [--shard-size 5GB]; --list for the configs")
		os.Exit(2)
	}
	var err error
	if o.shardBytes, err = parseBytes(shard); err != nil {
		fmt.Fprintln(os.Stderr, "synthckpt: --shard-size:", err)
		os.Exit(2)
	}
	if err := generate(out, o, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "synthckpt:", err)
		os.Exit(1)
	}
}
