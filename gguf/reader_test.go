package gguf

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// patch returns a copy of richFile with little-endian value v written over
// the width bytes at off (field offsets are listed in richFile's comments).
func patch(off, width int, v uint64) []byte {
	b := append([]byte(nil), richFile...)
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], v)
	copy(b[off:off+width], buf[:width])
	return b
}

func patchBytes(off int, s string) []byte {
	b := append([]byte(nil), richFile...)
	copy(b[off:], s)
	return b
}

// deepArrays is a file whose one value nests arrays depth levels deep.
func deepArrays(depth int) []byte {
	b := cat([]byte("GGUF"), le32(3), le64(0), le64(1), le64(1), []byte("x"), le32(9))
	for i := 0; i < depth; i++ {
		b = append(b, cat(le32(9), le64(1))...)
	}
	return append(b, cat(le32(4), le64(0))...)
}

// TestReaderRejects corrupts richFile field by field (offsets: magic 0,
// version 4, tensor count 8, pair count 16, "a"'s type 33 and string
// length 37, "b"'s key 55 and array count 64, alignment type 105 and value
// 109, w's dims 126/134, n's name length 154, name 162, n_dims 163, type 175
// and offset 179) and checks that each is refused with a message naming the
// file and the problem.
func TestReaderRejects(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a GGUF file"},
		{"bad magic", patchBytes(0, "GGML"), "not a GGUF file"},
		{"truncated header", richFile[:20], "shorter than the 24-byte"},
		{"version 1", patch(4, 4, 1), "version 1 is not supported"},
		{"version 4", patch(4, 4, 4), "version 4 is not supported"},
		{"tensor count beyond file", patch(8, 8, 1e12), "more than the"},
		{"pair count beyond file", patch(16, 8, 1<<63), "more than the"},
		{"unknown value type", patch(33, 4, 13), "unknown value type 13"},
		{"string past end", patch(37, 8, 1e9), "runs past the end"},
		{"duplicate key", patchBytes(55, "a"), `"a" appears twice`},
		{"array count beyond file", patch(64, 8, 1<<40), "cannot fit"},
		{"invalid bool", patch(105, 4, 7), "bool value 8"},
		{"alignment type", patch(105, 4, 5), "must be a uint32"},
		{"alignment not power of two", patch(109, 4, 12), "not a power of two"},
		{"row not whole blocks", patch(126, 8, 33), "multiple of 32"},
		{"dims overflow", func() []byte { b := patch(126, 8, 1<<62); copy(b[134:], le64(1<<62)); return b }(), "overflow"},
		{"tensor too large", patch(134, 8, 1e6), "needs more bytes"},
		{"zero dimension", patch(134, 8, 0), "dimension 1 is zero"},
		{"name too long", patch(154, 8, 100), "exceeds the limit of 63"},
		{"duplicate tensor", patchBytes(162, "w"), `"w" appears twice`},
		{"too many dims", patch(163, 4, 5), "5 dimensions"},
		{"unknown tensor type", patch(175, 4, 77), "unknown ggml type 77"},
		{"unsupported tensor type", patch(175, 4, 12), "type Q4_K, which llmq does not read"},
		{"misaligned offset", patch(179, 8, 44), "not a multiple of the alignment 8"},
		{"offset out of range", patch(179, 8, 4096), "run past the end"},
		{"overlapping tensors", patch(179, 8, 32), "overlap"},
		{"truncated data", richFile[:230], "run past the end"},
		{"arrays nested too deep", deepArrays(9), "nested deeper than 8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.data), int64(len(tc.data)), "rich.gguf")
			if err == nil {
				t.Fatalf("accepted corrupt input, want an error containing %q", tc.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "rich.gguf: ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("err = %q, want one line naming rich.gguf and containing %q", msg, tc.want)
			}
		})
	}
	// Nesting up to the limit is fine.
	if d := deepArrays(7); true {
		if _, err := Read(bytes.NewReader(d), int64(len(d)), "deep.gguf"); err != nil {
			t.Errorf("7 nested arrays: %v", err)
		}
	}
}

// TestReaderAcceptsVersion2: v2 files (uint64 counts, little-endian) have
// v3's layout.
func TestReaderAcceptsVersion2(t *testing.T) {
	b := patch(4, 4, 2)
	if _, err := Read(bytes.NewReader(b), int64(len(b)), "v2.gguf"); err != nil {
		t.Fatal(err)
	}
}
