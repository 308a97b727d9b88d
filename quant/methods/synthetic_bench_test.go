package methods_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"llmq/checkpoint"
	"llmq/model"
	"llmq/quant"
	"llmq/quant/methods"
)

// randomLlama is a checkpoint.Tensors of a one-layer Llama with random
// weights (N(0, 1/in) linears, unit norms) and a 256-token vocabulary, for
// measuring how a decoder layer's cost grows with its width.
type randomLlama struct {
	shapes map[string][]int
	seed   uint64
}

func newRandomLlama(hidden, inter int) *randomLlama {
	s := map[string][]int{
		"model.embed_tokens.weight": {256, hidden},
		"model.norm.weight":         {hidden},
		"lm_head.weight":            {256, hidden},
	}
	p := "model.layers.0."
	s[p+"input_layernorm.weight"] = []int{hidden}
	s[p+"post_attention_layernorm.weight"] = []int{hidden}
	for _, n := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
		s[p+"self_attn."+n+".weight"] = []int{hidden, hidden}
	}
	s[p+"mlp.gate_proj.weight"] = []int{inter, hidden}
	s[p+"mlp.up_proj.weight"] = []int{inter, hidden}
	s[p+"mlp.down_proj.weight"] = []int{hidden, inter}
	return &randomLlama{shapes: s}
}

func (r *randomLlama) Names() []string {
	var n []string
	for k := range r.shapes {
		n = append(n, k)
	}
	return n
}

func (r *randomLlama) Info(name string) (checkpoint.TensorInfo, bool) {
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

func (r *randomLlama) Float32(name string) ([]float32, checkpoint.TensorInfo, error) {
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
	r.seed++
	rng := rand.New(rand.NewPCG(r.seed, 1))
	sd := 1 / float32(info.Shape[1])
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * sd
	}
	return x, info, nil
}

func (r *randomLlama) Close() error { return nil }

func synthConfig(b *testing.B, hidden, inter int) *checkpoint.Config {
	raw := fmt.Sprintf(`{"model_type": "llama", "hidden_size": %d, "intermediate_size": %d,
		"num_hidden_layers": 1, "num_attention_heads": %d, "num_key_value_heads": %d, "head_dim": 128,
		"vocab_size": 256, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000,
		"tie_word_embeddings": false}`, hidden, inter, hidden/128, hidden/128)
	cfg, err := checkpoint.ParseConfig("synthetic/config.json", []byte(raw))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkSyntheticLayer measures one Llama decoder layer of growing width
// (hidden 1024/2048/4096, MLP 8/3·hidden rounded as Llama does, 128-wide
// heads) in FP32, W8A8 (int8 per-channel weights, per-token activations)
// and W4A16 (int4 asymmetric g128): decode tok/s (one token after a
// 128-token context) and prefill tok/s (128 tokens). "weightGB/s" is the
// weight bytes a decode step reads divided by its time: when it stays flat
// as the layer grows, decode is bound by memory bandwidth, not arithmetic.
//
//	go test ./quant/methods -run - -bench SyntheticLayer -benchtime 20x
func BenchmarkSyntheticLayer(b *testing.B) {
	for _, w := range []struct{ hidden, inter int }{{1024, 2816}, {2048, 5632}, {4096, 11008}} {
		for _, format := range []string{"fp32", "w8a8", "w4a16"} {
			b.Run(fmt.Sprintf("h%d/%s", w.hidden, format), func(b *testing.B) {
				m, err := model.LoadFrom(synthConfig(b, w.hidden, w.inter), newRandomLlama(w.hidden, w.inter))
				if err != nil {
					b.Fatal(err)
				}
				var scheme methods.Scheme
				switch format {
				case "w8a8":
					a := quant.MustParseSpec("int8-sym-token")
					scheme = methods.Scheme{Weights: quant.MustParseSpec("int8-sym-channel"), Acts: &a}
				case "w4a16":
					scheme = methods.Scheme{Weights: quant.MustParseSpec("int4-asym-g128")}
				}
				if format != "fp32" {
					if err := methods.Run(m, nil, []methods.Method{&methods.RTN{Scheme: scheme}}, nil); err != nil {
						b.Fatal(err)
					}
					// The low-bit kernels, as a loaded quantized folder runs.
					for _, nl := range m.Blocks[0].Linears() {
						if q, ok := (*nl.Linear).(*quant.QuantLinear); ok {
							if f := quant.Fast(q); f != nil {
								*nl.Linear = f
								q.ReleaseCache()
							}
						}
					}
				}
				var wbytes int64
				for _, nl := range m.Blocks[0].Linears() {
					if bb, ok := (*nl.Linear).(interface{ Bytes() int }); ok {
						wbytes += int64(bb.Bytes())
					}
				}
				ctx := make([]int, 128)
				for i := range ctx {
					ctx[i] = (i*31 + 7) % 256
				}
				st := m.NewState(256)
				var decode, prefill float64
				for b.Loop() {
					st.Reset()
					start := timeNow()
					if _, err := m.Forward(st, ctx, model.Options{LastOnly: true}); err != nil {
						b.Fatal(err)
					}
					mid := timeNow()
					if _, err := m.Forward(st, []int{1}, model.Options{LastOnly: true}); err != nil {
						b.Fatal(err)
					}
					end := timeNow()
					prefill += mid.Sub(start).Seconds()
					decode += end.Sub(mid).Seconds()
				}
				n := float64(b.N)
				b.ReportMetric(128*n/prefill, "prefill_tok/s")
				b.ReportMetric(n/decode, "decode_tok/s")
				b.ReportMetric(float64(wbytes)*n/decode/1e9, "weightGB/s")
				b.ReportMetric(float64(wbytes)/(1<<20), "weightMiB")
			})
		}
	}
}

var timeNow = time.Now
