package checkpoint

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmq/tensor"
)

func f32bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func TestSafetensorsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	f16 := make([]byte, 4)
	binary.LittleEndian.PutUint16(f16, tensor.F32ToF16(1.5))
	binary.LittleEndian.PutUint16(f16[2:], tensor.F32ToF16(-0.25))
	bf16 := make([]byte, 2)
	binary.LittleEndian.PutUint16(bf16, tensor.F32ToBF16(3))
	i64 := make([]byte, 16)
	binary.LittleEndian.PutUint64(i64, uint64(1<<40))
	binary.LittleEndian.PutUint64(i64[8:], uint64(0xffffffffffffffff)) // -1
	in := []WriteTensor{
		{"a.weight", F32, []int{2, 3}, f32bytes(1, 2, 3, 4, 5, 6)},
		{"half", F16, []int{2}, f16},
		{"brain", BF16, []int{1}, bf16},
		{"ids", I64, []int{2}, i64},
		{"bytes", I8, []int{3}, []byte{0xff, 1, 0x80}},
		{"empty", F32, []int{0, 4}, nil},
	}
	if err := WriteSafetensors(path, in, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata lost: %v", f.Metadata)
	}
	if got := len(f.Names()); got != len(in) {
		t.Errorf("%d tensors, want %d", got, len(in))
	}
	cases := []struct {
		name string
		want []float32
	}{
		{"a.weight", []float32{1, 2, 3, 4, 5, 6}},
		{"half", []float32{1.5, -0.25}},
		{"brain", []float32{3}},
		{"bytes", []float32{-1, 1, -128}},
		{"empty", []float32{}},
	}
	for _, c := range cases {
		got, _, err := f.Float32(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s: %v, want %v", c.name, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: %v, want %v", c.name, got, c.want)
				break
			}
		}
	}
	ids, _, err := f.Int64("ids")
	if err != nil || ids[0] != 1<<40 || ids[1] != -1 {
		t.Errorf("ids = %v, %v", ids, err)
	}
	if _, _, err := f.Float32("nope"); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("missing tensor error must name the file: %v", err)
	}
}

// header builds a safetensors file from a header string and a data section.
func header(h string, data []byte) []byte {
	b := make([]byte, 8, 8+len(h)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(h)))
	return append(append(b, h...), data...)
}

func TestSafetensorsCorrupt(t *testing.T) {
	ok := `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "too short"},
		{"short length", []byte{1, 2, 3}, "too short"},
		{"huge header length", []byte{0, 0, 0, 0, 0, 0, 0, 1, '{', '}'}, "exceeds"},
		{"header past end", append([]byte{200, 0, 0, 0, 0, 0, 0, 0}, "{}"...), "past the end"},
		{"invalid json", header(`{"w":`, nil), "invalid JSON"},
		{"not an object", header(`[1,2]`, nil), "must be an object"},
		{"unknown dtype", header(`{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), "unknown dtype"},
		{"shape vs bytes", header(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 12)), "needs 12 bytes"},
		{"truncated data", header(ok, make([]byte, 4)), "truncated"},
		{"negative dim", header(`{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, make([]byte, 8)), "negative"},
		{"reversed offsets", header(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`, make([]byte, 8)), "invalid data_offsets"},
		{"overlap", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), "overlap"},
		{"duplicate", header(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), "duplicate"},
		{"missing field", header(`{"w":{"dtype":"F32","shape":[2]}}`, make([]byte, 8)), "needs dtype, shape and data_offsets"},
		{"bad metadata", header(`{"__metadata__":{"a":1}}`, nil), "__metadata__"},
		{"trailing garbage", header(ok+`xyz`, make([]byte, 8)), "trailing"},
		{"three offsets", header(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}`, make([]byte, 8)), "2 entries"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".safetensors")
			if err := os.WriteFile(path, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := OpenSafetensors(path)
			if err == nil {
				f.Close()
				t.Fatalf("no error, want one containing %q", c.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) || !strings.Contains(msg, path) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming %s and containing %q", msg, path, c.want)
			}
		})
	}
	// The padded header the writer produces is accepted.
	if _, err := ParseHeader(header(ok+"   ", make([]byte, 8)), int64(len(header(ok+"   ", make([]byte, 8))))); err != nil {
		t.Errorf("space padding must be accepted: %v", err)
	}
}

func TestAtomicWriteLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.safetensors")
	err := WriteSafetensors(path, []WriteTensor{{"w", F32, []int{3}, f32bytes(1, 2)}}, nil)
	if err == nil {
		t.Fatal("mismatched shape must fail")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed write left %v behind", entries)
	}
}

// FuzzParseHeader: no input may panic the parser, and whatever it accepts
// must describe byte ranges inside the file.
func FuzzParseHeader(f *testing.F) {
	f.Add(header(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(header(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(header(`{}`, nil))
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data, int64(len(data)))
		if err != nil {
			return
		}
		for _, ti := range h.Tensors {
			if ti.Begin < 0 || ti.End < ti.Begin || h.Offset+ti.End > int64(len(data)) {
				t.Fatalf("accepted out-of-range tensor %+v", ti)
			}
			if int64(ti.NumElements()*ti.DType.Size()) != ti.End-ti.Begin {
				t.Fatalf("accepted inconsistent tensor %+v", ti)
			}
		}
	})
}
