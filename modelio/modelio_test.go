package modelio

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/internal/shared"
	"llmq/model"
	"llmq/quant"
	"llmq/quant/methods"
)

func seqs(n, T, vocab int) [][]int {
	out := make([][]int, n)
	for i := range out {
		out[i] = make([]int, T)
		for t := range out[i] {
			out[i][t] = (i*7919 + t*104729 + 17) % vocab
		}
	}
	return out
}

func mustSpec(s string) *quant.Spec { v := quant.MustParseSpec(s); return &v }

// Saving and loading a quantized model gives back exactly the model that
// was quantized in memory, and the same model always gives the same bytes.
func TestSaveLoadRoundTrip(t *testing.T) {
	type recipe func() []methods.Method
	w8a8Static := methods.Scheme{Weights: quant.MustParseSpec("int8-sym-channel"), Acts: mustSpec("int8-sym-tensor"), StaticActs: true}
	w4 := methods.Scheme{Weights: quant.MustParseSpec("int4-asym-channel")}
	w8a8 := methods.Scheme{Weights: quant.MustParseSpec("int8-sym-channel"), Acts: mustSpec("int8-sym-token")}
	all, err := methods.NewSelector([]string{"Linear"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]recipe{
		"smoothquant+w8a8-static": func() []methods.Method {
			return []methods.Method{&methods.SmoothQuant{Alpha: 0.5}, &methods.RTN{Scheme: w8a8Static}}
		},
		"rtn-w4+lorc": func() []methods.Method {
			return []methods.Method{&methods.LoRC{Rank: 4, Bits: 8, Base: &methods.RTN{Scheme: w4}}}
		},
		"llm.int8": func() []methods.Method { return []methods.Method{&methods.LLMInt8{Threshold: 6}} },
		// Attention quantization is saved as a description and reinstalled.
		// (Alone: with quantized linears the kernel path's summation order
		// flips a few of the K/V/P roundings, which the 1e-4 check below
		// would catch as differences.)
		"kv-int8-static+bmm": func() []methods.Method {
			return []methods.Method{&methods.KVCache{Format: "int8", Static: true, BMM: true}}
		},
		"kv-fp8": func() []methods.Method { return []methods.Method{&methods.KVCache{Format: "fp8e4m3"}} },
		// The head too (tiny-opt's is tied to the embedding: stored once).
		"w8a8+head":   func() []methods.Method { return []methods.Method{&methods.RTN{Scheme: w8a8, Select: all}} },
		"rtn-w4+head": func() []methods.Method { return []methods.Method{&methods.RTN{Scheme: w4, Select: all}} },
	}
	for _, arch := range []string{"tiny-llama", "tiny-opt"} {
		for name, stages := range cases {
			t.Run(arch+"/"+name, func(t *testing.T) {
				src := shared.Path(t, "models", arch)
				m, err := model.Load(src)
				if err != nil {
					t.Fatal(err)
				}
				if err := methods.Run(m, seqs(4, 32, m.Vocab), stages(), nil); err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
				if err := Save(m, src, a, name); err != nil {
					t.Fatal(err)
				}
				if err := Save(m, src, b, name); err != nil {
					t.Fatal(err)
				}
				ra, _ := os.ReadFile(filepath.Join(a, "model.safetensors"))
				rb, _ := os.ReadFile(filepath.Join(b, "model.safetensors"))
				if !bytes.Equal(ra, rb) {
					t.Error("two saves of the same model differ")
				}
				back, err := LoadWith(a, Options{Reference: true})
				if err != nil {
					t.Fatal(err)
				}
				fast, err := Load(a) // on the low-bit kernels where they apply
				if err != nil {
					t.Fatal(err)
				}
				probe := seqs(1, 40, m.Vocab)[0]
				want, _ := m.Forward(m.NewState(40), probe, model.Options{})
				got, err := back.Forward(back.NewState(40), probe, model.Options{})
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("logit %d: loaded %v, in memory %v", i, got[i], want[i])
					}
				}
				gotFast, err := fast.Forward(fast.NewState(40), probe, model.Options{})
				if err != nil {
					t.Fatal(err)
				}
				var num, den float64
				for i := range want {
					num = math.Max(num, math.Abs(float64(gotFast[i]-want[i])))
					den = math.Max(den, math.Abs(float64(want[i])))
				}
				// Both paths quantize activations; FP32 summation order can flip
				// an int8 rounding, which then travels through the layers. One
				// step of a per-tensor static grid is 1/127 of the layer's
				// calibrated range (per token: of that token's range), so the
				// static scheme is allowed more.
				tol := 1e-4
				if strings.Contains(name, "static") && !strings.HasPrefix(name, "kv-") {
					tol = 5e-3
				}
				if num/den > tol {
					t.Errorf("kernel path: logits differ from the reference path by %.3g (relative; bar %g)", num/den, tol)
				}
				if strings.HasSuffix(name, "+head") {
					if _, ok := back.Head.(*quant.QuantLinear); !ok {
						t.Errorf("head came back as %T", back.Head)
					}
					if tied := m.Embed == nil; tied != (arch == "tiny-opt") {
						t.Errorf("embedding tied to the quantized head: %v", tied)
					} else if tied && (back.Embed != nil || back.EmbedRows == nil || fast.Embed != nil) {
						t.Error("loaded model does not read its embeddings from the quantized head")
					}
				}
				if strings.Contains(name, "kv-") {
					for i, blk := range back.Blocks {
						if blk.Attn.Quant == nil || *blk.Attn.Quant != *m.Blocks[i].Attn.Quant {
							t.Errorf("block %d attention quantization came back as %+v, was %+v", i, blk.Attn.Quant, m.Blocks[i].Attn.Quant)
						}
					}
				}
				for i, blk := range back.Blocks {
					orig := m.Blocks[i].Linears()
					for j, nl := range blk.Linears() {
						if got, want := fmt.Sprintf("%T", *nl.Linear), fmt.Sprintf("%T", *orig[j].Linear); got != want {
							t.Errorf("block %d %s came back as %s, was %s", i, nl.Role, got, want)
						}
					}
				}
			})
		}
	}
}

func TestSaveErrors(t *testing.T) {
	src := shared.Path(t, "models", "tiny-gpt2")
	m, err := model.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Save(m, src, filepath.Join(dir, "out"), "x"); err == nil || !strings.Contains(err.Error(), "gpt2") {
		t.Errorf("saving gpt2: want a clear unsupported error, got %v", err)
	}
	llama := shared.Path(t, "models", "tiny-llama")
	m, _ = model.Load(llama)
	if err := Save(m, llama, dir, "x"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("saving over an existing folder: got %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed saves left %v", entries)
	}
}

func TestLoadCorrupt(t *testing.T) {
	src := shared.Path(t, "models", "tiny-llama")
	m, _ := model.Load(src)
	if err := methods.Run(m, nil, []methods.Method{&methods.RTN{Scheme: methods.Scheme{Weights: quant.MustParseSpec("int4-sym-channel")}}}, nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "q")
	if err := Save(m, src, dir, "x"); err != nil {
		t.Fatal(err)
	}
	// A config that claims another format version.
	cfg, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	bad := strings.Replace(string(cfg), `"format_version": 1`, `"format_version": 9`, 1)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(bad), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Errorf("want a format version error, got %v", err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	// Truncated weights.
	p := filepath.Join(dir, "model.safetensors")
	st, _ := os.Stat(p)
	os.Truncate(p, st.Size()/2)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("want an error naming model.safetensors, got %v", err)
	}
}
