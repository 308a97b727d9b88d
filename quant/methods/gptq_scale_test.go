package methods

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"llmq/calib"
	"llmq/checkpoint"
	"llmq/model"
	"llmq/quant"
)

// scaleTensors is a checkpoint.Tensors of a one-block Llama with random
// weights: linears N(0, 1/in) so activations stay O(1) through the block,
// norms 1. Nothing is stored: every tensor is drawn when it is read.
type scaleTensors struct {
	shapes map[string][]int
}

func newScaleTensors(hidden, inter, heads, kvHeads, headDim, vocab int) *scaleTensors {
	s := map[string][]int{
		"model.embed_tokens.weight": {vocab, hidden},
		"model.norm.weight":         {hidden},
		"lm_head.weight":            {vocab, hidden},
	}
	p := "model.layers.0."
	s[p+"input_layernorm.weight"] = []int{hidden}
	s[p+"post_attention_layernorm.weight"] = []int{hidden}
	s[p+"self_attn.q_proj.weight"] = []int{heads * headDim, hidden}
	s[p+"self_attn.k_proj.weight"] = []int{kvHeads * headDim, hidden}
	s[p+"self_attn.v_proj.weight"] = []int{kvHeads * headDim, hidden}
	s[p+"self_attn.o_proj.weight"] = []int{hidden, heads * headDim}
	s[p+"mlp.gate_proj.weight"] = []int{inter, hidden}
	s[p+"mlp.up_proj.weight"] = []int{inter, hidden}
	s[p+"mlp.down_proj.weight"] = []int{hidden, inter}
	return &scaleTensors{shapes: s}
}

func (r *scaleTensors) Names() []string {
	var n []string
	for k := range r.shapes {
		n = append(n, k)
	}
	return n
}

func (r *scaleTensors) Info(name string) (checkpoint.TensorInfo, bool) {
	sh, ok := r.shapes[name]
	if !ok {
		return checkpoint.TensorInfo{}, false
	}
	n := 1
	for _, d := range sh {
		n *= d
	}
	return checkpoint.TensorInfo{Name: name, DType: checkpoint.F32, Shape: sh, End: int64(4 * n)}, true
}

func (r *scaleTensors) Float32(name string) ([]float32, checkpoint.TensorInfo, error) {
	info, ok := r.Info(name)
	if !ok {
		return nil, info, fmt.Errorf("no tensor %s", name)
	}
	x := make([]float32, info.NumElements())
	if len(info.Shape) == 1 {
		for i := range x {
			x[i] = 1
		}
		return x, info, nil
	}
	var seed uint64
	for _, c := range name {
		seed = seed*131 + uint64(c)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	sd := 1 / math.Sqrt(float64(info.Shape[1]))
	for i := range x {
		x[i] = float32(rng.NormFloat64() * sd)
	}
	return x, info, nil
}

func (r *scaleTensors) Close() error { return nil }

// scaleActivations returns n sequences of T hidden states with the structure
// of LLM activations that matters to GPTQ: a low-rank common part shared by
// all channels (which makes H ill-conditioned), per-channel noise and a few
// outlier channels ×10–40.
func scaleActivations(n, T, hidden int) *calib.Activations {
	const latent = 8
	rng := rand.New(rand.NewPCG(8, 8))
	mix := make([]float32, latent*hidden)
	for i := range mix {
		mix[i] = float32(rng.NormFloat64() / math.Sqrt(latent))
	}
	gain := make([]float32, hidden)
	for j := range gain {
		gain[j] = 1
	}
	for k := 0; k < 6; k++ {
		gain[rng.IntN(hidden)] = float32(10 + 30*rng.Float64())
	}
	a := &calib.Activations{T: T, X: make([][]float32, n)}
	f := make([]float32, latent)
	for s := range a.X {
		x := make([]float32, T*hidden)
		for t := 0; t < T; t++ {
			for k := range f {
				f[k] = float32(rng.NormFloat64())
			}
			row := x[t*hidden : (t+1)*hidden]
			for j := range row {
				v := 0.5 * float32(rng.NormFloat64())
				for k, fk := range f {
					v += fk * mix[k*hidden+j]
				}
				row[j] = v * gain[j]
			}
		}
		a.X[s] = x
	}
	return a
}

// TestGPTQ8BBlock runs GPTQ W4A16 (int4 asymmetric g128, MSE observer,
// true-sequential, the gptq-w4a16 recipe) on one decoder block with
// Llama-3.1-8B's shapes (hidden 4096, MLP 14336, 32 query / 8 KV heads of
// 128) and random weights, and reports the time of each phase and the peak
// RSS. It is a measurement, not a check, and takes long: set
// LLMQ_GPTQ8B=N to run it with N calibration sequences (128 is the
// default calibration of the quantize command), LLMQ_GPTQ8B_SEQLEN for
// their length (512). With -cpuprofile the profile covers the whole run.
//
//	LLMQ_GPTQ8B=16 go test ./quant/methods -run GPTQ8BBlock -v -timeout 0
func TestGPTQ8BBlock(t *testing.T) {
	nseq, _ := strconv.Atoi(os.Getenv("LLMQ_GPTQ8B"))
	if nseq <= 0 {
		t.Skip("set LLMQ_GPTQ8B=<calibration sequences> to profile GPTQ on an 8B-shaped block")
	}
	seqlen := 512
	if v, err := strconv.Atoi(os.Getenv("LLMQ_GPTQ8B_SEQLEN")); err == nil && v > 0 {
		seqlen = v
	}
	hidden, inter := 4096, 14336
	if v, err := strconv.Atoi(os.Getenv("LLMQ_GPTQ8B_HIDDEN")); err == nil && v > 0 { // smaller trial runs
		hidden, inter = v, v*7/2
	}
	heads, kv := hidden/128, max(1, hidden/512)
	raw := fmt.Sprintf(`{"model_type": "llama", "hidden_size": %d, "intermediate_size": %d,
		"num_hidden_layers": 1, "num_attention_heads": %d, "num_key_value_heads": %d, "head_dim": 128,
		"vocab_size": 256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000,
		"tie_word_embeddings": false}`, hidden, inter, heads, kv)
	cfg, err := checkpoint.ParseConfig("synthetic/config.json", []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, err := model.LoadFrom(cfg, newScaleTensors(hidden, inter, heads, kv, 128, 256))
	if err != nil {
		t.Fatal(err)
	}
	acts := scaleActivations(nseq, seqlen, hidden)
	t.Logf("block %d/%d, %d×%d calibration tokens; built in %v", hidden, inter, nseq, seqlen, time.Since(start).Round(time.Millisecond))

	gptqProfile = newGPTQPhases()
	defer func() { gptqProfile = nil }()
	g := NewGPTQ(Scheme{Weights: quant.MustParseSpec("int4-asym-g128")}, nil)
	g.MSE = true
	runner := m.NewBlockRunner()
	layer := &Layer{Model: m, Index: 0, Block: m.Blocks[0], Runner: runner, Inputs: acts}
	start = time.Now()
	if err := g.ApplyLayer(layer); err != nil {
		t.Fatal(err)
	}
	apply := time.Since(start)
	start = time.Now()
	calib.Propagate(runner, 0, acts)
	prop := time.Since(start)
	gptqProfile.add("propagate (forward)", prop)

	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	collect := gptqProfile.get("collect (forward+XᵀX)")
	fixed := apply - collect // does not grow with the calibration set
	block := apply + prop
	t.Logf("GOMAXPROCS %d; phases:\n%s", runtime.GOMAXPROCS(0), gptqProfile)
	t.Logf("ApplyLayer %v (of which collect %v, solve %v), propagate %v, block total %v; peak RSS %.2f GiB",
		apply.Round(time.Millisecond), collect.Round(time.Millisecond), fixed.Round(time.Millisecond),
		prop.Round(time.Millisecond), block.Round(time.Millisecond), float64(ru.Maxrss)/(1<<20))
	// The calibration-dependent phases scale with the token count.
	scale := 128 * 512 / float64(nseq*seqlen)
	per := fixed.Seconds() + scale*(collect.Seconds()+prop.Seconds())
	t.Logf("at 128×512 tokens: %.0f s per block, %.2f h for 32 blocks", per, 32*per/3600)
	for role, loss := range g.Loss {
		t.Logf("  loss %-28s %.4g", role, loss)
	}
}
