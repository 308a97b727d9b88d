package gguf

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Expected bytes below are spelled out by hand from the spec (ggml
// docs/gguf.md): little-endian fields, uint64-length strings, tensor infos
// with ne[0] first and offsets relative to the aligned data section, every
// tensor padded to the alignment.

// tinyFile: one uint32 pair and one F32 tensor, default alignment 32.
var tinyFile = cat(
	[]byte("GGUF"),       // magic 47 47 55 46
	le32(3),              // version
	le64(1),              // tensor_count
	le64(1),              // metadata_kv_count
	le64(1), []byte("k"), // key "k"                       offset 24
	le32(4),              // value type uint32
	le32(7),              // value 7
	le64(1), []byte("t"), // tensor name "t"               offset 41
	le32(1),                        // n_dims
	le64(2),                        // ne[0] = 2
	le32(0),                        // GGML_TYPE_F32
	le64(0),                        // offset 0 in the data section
	zeros(22),                      // tensor infos end at 74: pad to 96
	[]byte{0x00, 0x00, 0x80, 0x3f}, // 1.0f
	[]byte{0x00, 0x00, 0x00, 0xc0}, // -2.0f
	zeros(24),                      // data ends at 104: pad to 128
)

// richFile: a string, an int32 array, alignment 8, a Q8_0 [32×1] tensor and
// an F16 [3] tensor after it.
var richFile = cat(
	[]byte("GGUF"), le32(3), le64(2), le64(3),
	le64(1), []byte("a"), le32(8), le64(2), []byte("xy"), // "a" = string "xy"       24..47
	le64(1), []byte("b"), le32(9), le32(5), le64(2), // "b" = array of 2 int32         47..72
	le32(1), []byte{0xff, 0xff, 0xff, 0xff}, //          [1, -1]                          ..80
	le64(17), []byte("general.alignment"), le32(4), le32(8), // alignment 8           ..113
	le64(1), []byte("w"), le32(2), le64(32), le64(1), le32(8), le64(0), // w: Q8_0 [32,1] ..154
	le64(1), []byte("n"), le32(1), le64(3), le32(1), le64(40), // n: F16 [3] at 40: 34 bytes of w padded to 40  ..187
	zeros(5), // pad 187 → 192
	// w: one Q8_0 block of x = [127, -127, 0.5, -0.5, 1.5, 2.5, -2.5, 0 …]:
	// amax 127 → d = 1 (fp16 0x3c00), q = roundf(x), halves away from zero.
	[]byte{0x00, 0x3c, 0x7f, 0x81, 0x01, 0xff, 0x02, 0x03, 0xfd}, zeros(25),
	zeros(6), // 34 → 40
	[]byte{0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38}, // n: fp16 1, -2, 0.5
	zeros(2), // 46 → 48
)

func richValues() []float32 {
	x := make([]float32, 32)
	copy(x, []float32{127, -127, 0.5, -0.5, 1.5, 2.5, -2.5})
	return x
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
func zeros(n int) []byte         { return make([]byte, n) }
func le32(x uint32) []byte       { return []byte{byte(x), byte(x >> 8), byte(x >> 16), byte(x >> 24)} }
func le64(x uint64) []byte       { return append(le32(uint32(x)), le32(uint32(x>>32))...) }

func encodeOrFail(t *testing.T, typ Type, x []float32) func() ([]byte, error) {
	return func() ([]byte, error) { return Encode(typ, x) }
}

func TestWriterGolden(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T) *Writer
		want  []byte
	}{
		{"tiny", func(t *testing.T) *Writer {
			w := &Writer{}
			w.Set("k", Uint32(7))
			w.AddTensor(WriterTensor{Name: "t", Type: F32, Dims: []uint64{2}, Data: encodeOrFail(t, F32, []float32{1, -2})})
			return w
		}, tinyFile},
		{"rich", func(t *testing.T) *Writer {
			w := &Writer{}
			w.Set("a", String("xy"))
			w.Set("b", MustArray([]int32{1, -1}))
			w.Set("general.alignment", Uint32(8))
			w.AddTensor(WriterTensor{Name: "w", Type: Q8_0, Dims: []uint64{32, 1}, Data: encodeOrFail(t, Q8_0, richValues())})
			w.AddTensor(WriterTensor{Name: "n", Type: F16, Dims: []uint64{3}, Data: encodeOrFail(t, F16, []float32{1, -2, 0.5})})
			return w
		}, richFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := tc.build(t).WriteTo(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(buf.Len()) {
				t.Errorf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
			}
			if !bytes.Equal(buf.Bytes(), tc.want) {
				t.Fatalf("bytes differ from the hand-derived golden:\ngot  % x\nwant % x", buf.Bytes(), tc.want)
			}
		})
	}
}

func TestReaderGolden(t *testing.T) {
	f, err := Read(bytes.NewReader(richFile), int64(len(richFile)), "rich.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || f.Alignment != 8 || f.DataOffset != 192 {
		t.Errorf("version %d alignment %d data offset %d, want 3, 8, 192", f.Version, f.Alignment, f.DataOffset)
	}
	if v, _ := f.Get("a"); !v.equal(String("xy")) {
		t.Errorf("a = %#v", v)
	}
	if v, _ := f.Get("b"); !v.equal(MustArray([]int32{1, -1})) {
		t.Errorf("b = %#v", v)
	}
	wantT := []TensorInfo{
		{Name: "w", Dims: []uint64{32, 1}, Type: Q8_0, Offset: 0, Size: 34},
		{Name: "n", Dims: []uint64{3}, Type: F16, Offset: 40, Size: 6},
	}
	for i, w := range wantT {
		g := f.Tensors[i]
		if g.Name != w.Name || g.Type != w.Type || g.Offset != w.Offset || g.Size != w.Size || len(g.Dims) != len(w.Dims) || g.Dims[0] != w.Dims[0] {
			t.Errorf("tensor %d = %+v, want %+v", i, g, w)
		}
	}
	// Dequantized with d = 1: the codes themselves.
	wv, _, err := f.Float32("w")
	if err != nil {
		t.Fatal(err)
	}
	wantW := []float32{127, -127, 1, -1, 2, 3, -3}
	for i := range wv {
		want := float32(0)
		if i < len(wantW) {
			want = wantW[i]
		}
		if wv[i] != want {
			t.Errorf("w[%d] = %v, want %v", i, wv[i], want)
		}
	}
	nv, _, err := f.Float32("n")
	if err != nil {
		t.Fatal(err)
	}
	if nv[0] != 1 || nv[1] != -2 || nv[2] != 0.5 {
		t.Errorf("n = %v, want [1 -2 0.5]", nv)
	}
}

// TestValueRoundTrip writes every value type, arrays of arrays included,
// and reads them back.
func TestValueRoundTrip(t *testing.T) {
	nested := MustArray([]Value{MustArray([]string{"x", ""}), MustArray([]float64{math.Pi}), MustArray([]bool{})})
	kvs := []KV{
		{"u8", Uint8(200)}, {"i8", Int8(-5)}, {"u16", Uint16(60000)}, {"i16", Int16(-300)},
		{"u32", Uint32(4e9)}, {"i32", Int32(-7)}, {"f32", Float32(-1.5)}, {"bool", Bool(true)},
		{"str", String("héllo")}, {"u64", Uint64(1 << 60)}, {"i64", Int64(-1 << 60)}, {"f64", Float64(math.E)},
		{"au8", MustArray([]uint8{1, 2})}, {"ai8", MustArray([]int8{-1})}, {"au16", MustArray([]uint16{9})},
		{"ai16", MustArray([]int16{-9})}, {"au32", MustArray([]uint32{})}, {"af32", MustArray([]float32{0.25})},
		{"abool", MustArray([]bool{true, false})}, {"au64", MustArray([]uint64{3})}, {"ai64", MustArray([]int64{-3})},
		{"nested", nested},
	}
	w := &Writer{}
	for _, kv := range kvs {
		w.Set(kv.Key, kv.Value)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "values.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.KV) != len(kvs) {
		t.Fatalf("%d pairs read, %d written", len(f.KV), len(kvs))
	}
	for i, kv := range kvs {
		if f.KV[i].Key != kv.Key || !f.KV[i].Value.equal(kv.Value) {
			t.Errorf("pair %d: got %s = %#v, want %#v", i, f.KV[i].Key, f.KV[i].Value, kv.Value)
		}
	}
	if len(buf.Bytes())%DefaultAlignment != 0 {
		t.Errorf("file of %d bytes is not padded to the alignment", buf.Len())
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	w := &Writer{}
	w.Set("k", Uint32(7))
	w.AddTensor(WriterTensor{Name: "t", Type: F32, Dims: []uint64{2}, Data: encodeOrFail(t, F32, []float32{1, -2})})
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, tinyFile) {
		t.Fatalf("written file differs from the golden (err %v)", err)
	}
	// A failing tensor must leave neither the target nor a temporary file.
	bad := &Writer{}
	bad.AddTensor(WriterTensor{Name: "t", Type: F32, Dims: []uint64{2}, Data: func() ([]byte, error) { return []byte{1, 2, 3}, nil }})
	badPath := filepath.Join(dir, "bad.gguf")
	if err := bad.WriteFile(badPath); err == nil || !strings.Contains(err.Error(), "bad.gguf") {
		t.Fatalf("short tensor data: err = %v, want an error naming the file", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only m.gguf", names)
	}
}

func TestWriterRejects(t *testing.T) {
	tests := []struct {
		name string
		w    func() *Writer
		want string
	}{
		{"duplicate tensor", func() *Writer {
			w := &Writer{}
			for range 2 {
				w.AddTensor(WriterTensor{Name: "t", Type: F32, Dims: []uint64{1}, Data: func() ([]byte, error) { return make([]byte, 4), nil }})
			}
			return w
		}, "added twice"},
		{"long name", func() *Writer {
			w := &Writer{}
			w.AddTensor(WriterTensor{Name: strings.Repeat("x", 64), Type: F32, Dims: []uint64{1}})
			return w
		}, "1 to 63 bytes"},
		{"row not whole blocks", func() *Writer {
			w := &Writer{}
			w.AddTensor(WriterTensor{Name: "q", Type: Q4_0, Dims: []uint64{48, 2}})
			return w
		}, "multiple of 32"},
		{"bad alignment", func() *Writer {
			w := &Writer{}
			w.Set("general.alignment", Uint32(12))
			return w
		}, "power of two"},
		{"alignment wrong type", func() *Writer {
			w := &Writer{}
			w.Set("general.alignment", Uint64(32))
			return w
		}, "uint32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.w().WriteTo(&bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
