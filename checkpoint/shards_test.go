package checkpoint

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// rampBytes is the content the tests give tensor i: n bytes i, i+1, …
func rampBytes(i int, n int64) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i + j)
	}
	return b
}

// WriteShards splits as huggingface_hub does, writes every shard with the
// metadata and an index mapping each tensor to its shard, and OpenDir reads
// the folder back tensor for tensor.
func TestWriteShards(t *testing.T) {
	plan := []PlannedTensor{
		{"b.weight", BF16, []int{4, 8}}, // 64 bytes
		{"a.weight", F32, []int{4, 4}},  // 64
		{"c.big", U8, []int{300}},       // larger than a shard: alone
		{"d.norm", BF16, []int{8}},      // 16
		{"e.scalar", F32, nil},          // 4
	}
	if got := SplitShards(plan, 128); len(got) != 3 || len(got[0]) != 2 || len(got[1]) != 1 || len(got[2]) != 2 {
		t.Fatalf("SplitShards: %v", got)
	}
	meta := map[string]string{"format": "pt", "llmq.layers": `{"x":1}`}
	dir := t.TempDir()
	var order []int
	err := WriteShards(dir, plan, meta, 128, func(i int, w io.Writer) error {
		order = append(order, i)
		_, err := w.Write(rampBytes(i, plan[i].Bytes()))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(order, []int{0, 1, 2, 3, 4}) {
		t.Errorf("fill order %v", order)
	}
	raw, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.WeightMap["a.weight"] != "model-00001-of-00003.safetensors" || idx.WeightMap["c.big"] != "model-00002-of-00003.safetensors" ||
		idx.WeightMap["e.scalar"] != "model-00003-of-00003.safetensors" || idx.Metadata["total_size"] != float64(64+64+300+16+4) {
		t.Errorf("index %s", raw)
	}
	st, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if len(st.Shards()) != 3 {
		t.Fatalf("%d shards", len(st.Shards()))
	}
	for _, f := range st.Shards() {
		if !reflect.DeepEqual(f.Metadata, meta) {
			t.Errorf("%s: metadata %v", filepath.Base(f.Path), f.Metadata)
		}
	}
	for i, p := range plan {
		b, info, err := st.Raw(p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info.DType != p.DType || len(info.Shape) != len(p.Shape) || string(b) != string(rampBytes(i, p.Bytes())) {
			t.Errorf("%s: %v %v, %d bytes", p.Name, info.DType, info.Shape, len(b))
		}
	}

	// One shard: model.safetensors, no index, as transformers writes it.
	one := t.TempDir()
	if err := WriteShards(one, plan, meta, 0, func(i int, w io.Writer) error {
		_, err := w.Write(rampBytes(i, plan[i].Bytes()))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(one); len(entries) != 1 || entries[0].Name() != "model.safetensors" {
		t.Errorf("single shard wrote %v", entries)
	}
}

// A fill that writes the wrong number of bytes fails the write and leaves
// no shard behind; so do duplicate names.
func TestWriteShardsErrors(t *testing.T) {
	plan := []PlannedTensor{{"a", F32, []int{2}}, {"b", F32, []int{2}}}
	dir := t.TempDir()
	err := WriteShards(dir, plan, nil, 8, func(i int, w io.Writer) error {
		_, err := w.Write(make([]byte, 8-i)) // b is one byte short
		return err
	})
	if err == nil || !strings.Contains(err.Error(), `tensor "b": 7 bytes written`) {
		t.Errorf("short fill: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 || entries[0].Name() != ShardName(1, 2) {
		t.Errorf("failed write left %v (only the finished first shard may stay, inside the caller's temporary folder)", entries)
	}
	dup := []PlannedTensor{{"a", F32, []int{1}}, {"a", F32, []int{1}}}
	if err := WriteShards(t.TempDir(), dup, nil, 0, func(int, io.Writer) error { return nil }); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate names: %v", err)
	}
}
