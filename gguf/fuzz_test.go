package gguf

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the reader. It must never panic or
// allocate beyond the input's size; every error must name the file; and a
// file it accepts must survive a rewrite: writing its metadata and decoded
// tensors back out and reading that gives the same pairs and tensors.
func FuzzRead(f *testing.F) {
	for _, seed := range [][]byte{tinyFile, richFile, deepArrays(3), richFile[:100], richFile[:192], patch(179, 8, 32), patch(109, 4, 16)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Read(bytes.NewReader(data), int64(len(data)), "fuzz.gguf")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.gguf: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		w := &Writer{}
		for _, kv := range g.KV {
			w.Set(kv.Key, kv.Value)
		}
		for _, ti := range g.Tensors {
			raw, _, err := g.Raw(ti.Name)
			if err != nil {
				t.Fatalf("accepted file, then Raw(%q) failed: %v", ti.Name, err)
			}
			if _, _, err := g.Float32(ti.Name); err != nil {
				t.Fatalf("accepted file, then Float32(%q) failed: %v", ti.Name, err)
			}
			w.AddTensor(WriterTensor{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: func() ([]byte, error) { return raw, nil }})
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatalf("rewriting an accepted file failed: %v", err)
		}
		h, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "rewrite.gguf")
		if err != nil {
			t.Fatalf("rewritten file rejected: %v", err)
		}
		if len(h.KV) != len(g.KV) || len(h.Tensors) != len(g.Tensors) {
			t.Fatalf("rewrite changed counts: %d/%d pairs, %d/%d tensors", len(h.KV), len(g.KV), len(h.Tensors), len(g.Tensors))
		}
		for i := range g.KV {
			if h.KV[i].Key != g.KV[i].Key || !h.KV[i].Value.equal(g.KV[i].Value) {
				t.Fatalf("rewrite changed pair %q", g.KV[i].Key)
			}
		}
		for _, ti := range g.Tensors {
			a, _, _ := g.Raw(ti.Name)
			b, _, err := h.Raw(ti.Name)
			if err != nil || !bytes.Equal(a, b) {
				t.Fatalf("rewrite changed tensor %q (%v)", ti.Name, err)
			}
		}
	})
}
