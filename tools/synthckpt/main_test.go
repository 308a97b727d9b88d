package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"llmq/checkpoint"
	"llmq/model"
)

// The plans have the parameter counts of the published checkpoints (their
// index.json total_size / 2 in bf16), so every tensor name and shape
// family-wide is accounted for.
func TestPublishedParameterCounts(t *testing.T) {
	want := map[string]int64{
		"llama-3.1-8b":  8_030_261_248,
		"llama-3.2-1b":  1_235_814_400,
		"llama-3.2-3b":  3_212_749_824,
		"qwen3-8b":      8_190_735_360,
		"mixtral-8x7b":  46_702_792_704,
		"phi-3-mini-4k": 3_821_079_552,
	}
	for _, name := range configNames() {
		a := configs[name]()
		var n int64
		for _, ts := range a.tensors(checkpoint.BF16) {
			n += ts.Bytes() / 2
		}
		if n != want[name] {
			t.Errorf("%s: %d parameters, the published model has %d", name, n, want[name])
		}
	}
}

// tiny shrinks a config to a few KiB, keeping its names and layout.
func tiny(config string) options {
	o := options{config: config, layers: 2, dtype: "bf16", hidden: 64, intermediate: 96, vocab: 128, heads: 4, kvHeads: 2, headDim: 16, shardBytes: 40_000}
	if config == "mixtral-8x7b" {
		o.experts = 4
	}
	return o
}

// A tiny-shaped variant of every config is sharded as transformers shards,
// loads with model.Load as its family with the shapes asked for, and is the
// same bytes for the same seed (different ones for another seed).
func TestGenerateLoads(t *testing.T) {
	for _, name := range configNames() {
		t.Run(name, func(t *testing.T) {
			o := tiny(name)
			dir := filepath.Join(t.TempDir(), "m")
			if err := generate(dir, o, io.Discard); err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := o.resolve()
			if m.Arch != a.ModelType || len(m.Blocks) != 2 || m.Hidden != 64 || m.Vocab != 128 || m.Heads != 4 || m.KVHeads != 2 || m.HeadDim != 16 {
				t.Errorf("loaded %s: %+v", m.Arch, m.Hyper)
			}
			if a.Experts == 0 && (m.Blocks[0].Down.Out() != 64 || m.Blocks[0].Down.In() != 96) {
				t.Errorf("down_proj %d×%d", m.Blocks[0].Down.Out(), m.Blocks[0].Down.In())
			}
			if a.Experts > 0 && len(m.Blocks[0].MoE.Experts) != 4 {
				t.Errorf("%d experts", len(m.Blocks[0].MoE.Experts))
			}
			if m.HeadTied() != a.Tied {
				t.Errorf("tied head %v, config says %v", m.HeadTied(), a.Tied)
			}
			st, err := checkpoint.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if len(st.Shards()) < 2 {
				t.Errorf("%d shards at a 40 kB shard size", len(st.Shards()))
			}
			var planned []string
			for _, ts := range a.tensors(checkpoint.BF16) {
				planned = append(planned, ts.Name)
			}
			sort.Strings(planned)
			if got := st.Names(); len(got) != len(planned) {
				t.Errorf("%d tensors in the folder, %d planned", len(got), len(planned))
			}
			w, _, err := st.Float32("model.layers.1.input_layernorm.weight")
			if err != nil || w[0] != 1 {
				t.Errorf("norm weight %v, %v", w[:1], err)
			}
			// Determinism.
			again := filepath.Join(t.TempDir(), "m")
			if err := generate(again, o, io.Discard); err != nil {
				t.Fatal(err)
			}
			o.seed = 1
			other := filepath.Join(t.TempDir(), "m")
			if err := generate(other, o, io.Discard); err != nil {
				t.Fatal(err)
			}
			shard := filepath.Base(st.Shards()[0].Path)
			a1, _ := os.ReadFile(filepath.Join(dir, shard))
			a2, _ := os.ReadFile(filepath.Join(again, shard))
			a3, _ := os.ReadFile(filepath.Join(other, shard))
			if len(a1) == 0 || !bytes.Equal(a1, a2) || bytes.Equal(a1, a3) {
				t.Errorf("same seed: equal %v; another seed: equal %v", bytes.Equal(a1, a2), bytes.Equal(a1, a3))
			}
		})
	}
}

// Chunks are seeded by their index, so a tensor's bytes do not depend on
// the number of workers drawing them.
func TestWorkersDoNotChangeBytes(t *testing.T) {
	ts := planned{checkpoint.PlannedTensor{Name: "x", DType: checkpoint.BF16, Shape: []int{3, chunkElems/2 + 7}}, normal}
	var one, four bytes.Buffer
	if err := writeTensor(&one, ts, 5, 1); err != nil {
		t.Fatal(err)
	}
	if err := writeTensor(&four, ts, 5, 4); err != nil {
		t.Fatal(err)
	}
	if int64(one.Len()) != ts.Bytes() || !bytes.Equal(one.Bytes(), four.Bytes()) {
		t.Errorf("1 worker: %d bytes, 4 workers: %d bytes, equal %v", one.Len(), four.Len(), bytes.Equal(one.Bytes(), four.Bytes()))
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"5GB": 5e9, "100": 100, "2MiB": 2 << 20, "1.5 kB": 1500} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("%q: %d, %v", in, got, err)
		}
	}
	if _, err := parseBytes("-1GB"); err == nil {
		t.Error("negative size accepted")
	}
}
