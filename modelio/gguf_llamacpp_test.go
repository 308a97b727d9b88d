package modelio

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"llmq/gguf"
	"llmq/model"
)

// TestGGUFLlamaCppOracle runs llama.cpp itself on llmq's F32 exports and
// compares its logits with llmq's, when LLMQ_LLAMACPP names the
// llamacpp_logits program that scripts/llamacpp-oracle.sh builds against
// libllama (skipped otherwise: llama.cpp is not part of the project).
//
// The bars are on max |Δlogit| / max |logit| over both reference
// sequences (48 tokens), measured values with headroom. At F32 llama.cpp's
// arithmetic differs from llmq's in summation order only (~1e-6; 1.5e-5 on
// tiny-llama, whose planted ×25 outlier channels amplify it), except for
// Gemma, where ggml's GELU reads a float16 table (2–3e-4; llama.cpp's
// unrounded √n_embd multiplier accounts for little of it, as the log
// shows). At Q8_0 llama.cpp also rounds the activations to Q8_0 blocks
// for its dot products, where llmq reimporting the file multiplies them in
// FP32: 1–3 % (15–19 % with the outliers). Mistral is compared on its
// first 16 positions only: llama.cpp's llama architecture has no sliding
// window, so beyond the window it computes another function (the
// full-length difference is logged).
func TestGGUFLlamaCppOracle(t *testing.T) {
	bin := os.Getenv("LLMQ_LLAMACPP")
	if bin == "" {
		t.Skip("set LLMQ_LLAMACPP to the llamacpp_logits program (scripts/llamacpp-oracle.sh builds it)")
	}
	tests := []struct {
		dir           string
		maxRel, q8Rel float64
		prefix        int // compare only the first positions (0: all)
		comment       string
	}{
		{"tiny-llama", 3e-5, 0.25, 0, "planted ×25 outlier channels"},
		{"tiny-llama3", 1e-5, 0.03, 0, ""},
		{"tiny-mistral", 1e-5, 0.04, 16, "no sliding window in llama.cpp's llama"},
		{"tiny-qwen2", 1e-5, 0.2, 0, "planted ×25 outlier channels"},
		{"tiny-qwen3", 1e-5, 0.03, 0, ""},
		{"tiny-gemma2", 5e-4, 0.015, 0, "ggml's float16 GELU table"},
		{"tiny-gemma3", 5e-4, 0.02, 0, "ggml's float16 GELU table"},
		{"tiny-phi3", 1e-5, 0.03, 0, ""},
		{"tiny-mixtral", 1e-5, 0.03, 0, ""},
		{"tiny-qwen3moe", 1e-5, 0.02, 0, ""},
	}
	// run returns llama.cpp's logits for seqs [len × vocab] from the file.
	run := func(t *testing.T, path string, seqs [][]int, vocab int) []float32 {
		var all []float32
		for i, s := range seqs {
			out := filepath.Join(t.TempDir(), strconv.Itoa(i)+".f32")
			args := []string{path, out}
			for _, id := range s {
				args = append(args, strconv.Itoa(id))
			}
			if msg, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
				t.Fatalf("llama.cpp: %v\n%s", err, msg)
			}
			raw, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) != 4*len(s)*vocab {
				t.Fatalf("llama.cpp wrote %d bytes, want %d", len(raw), 4*len(s)*vocab)
			}
			for j := 0; j < len(raw); j += 4 {
				all = append(all, math.Float32frombits(binary.LittleEndian.Uint32(raw[j:])))
			}
		}
		return all
	}
	// prefix keeps the first n positions of each sequence's logits.
	prefix := func(l []float32, seqs [][]int, n, vocab int) []float32 {
		var out []float32
		off := 0
		for _, s := range seqs {
			out = append(out, l[off:off+min(n, len(s))*vocab]...)
			off += len(s) * vocab
		}
		return out
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			fp, dir := loadFixture(t, tc.dir)
			seqs := referenceIDs(t, dir)
			V := fp.Vocab
			want := logits(t, fp, seqs)
			for _, typ := range []gguf.Type{gguf.F32, gguf.Q8_0} {
				path := filepath.Join(t.TempDir(), tc.dir+".gguf")
				if _, err := ExportGGUF(fp, nil, GGUFExport{Path: path, Type: typ}); err != nil {
					t.Fatal(err)
				}
				got := run(t, path, seqs, V)
				ref := want
				if typ != gguf.F32 { // llmq with the file's weights (what reimporting it computes)
					m, err := model.Load(dir)
					if err != nil {
						t.Fatal(err)
					}
					if err := RoundLikeGGUF(m, typ); err != nil {
						t.Fatal(err)
					}
					ref = logits(t, m, seqs)
				}
				n := len(seqs[0])
				if tc.prefix > 0 {
					n = tc.prefix
				}
				r := maxRelDiff(prefix(got, seqs, n, V), prefix(ref, seqs, n, V))
				_, kl := logitError(ref, got, V)
				t.Logf("%v: llama.cpp vs llmq on the same file: max rel logit difference %.3g over %d positions (all: %.3g, mean KL %.3g) %s",
					typ, r, n, maxRelDiff(got, ref), kl, tc.comment)
				if typ == gguf.F32 && fp.EmbedScale != 0 {
					// How much of the difference is the multiplier alone.
					m, err := model.Load(dir)
					if err != nil {
						t.Fatal(err)
					}
					m.EmbedScale = float32(math.Sqrt(float64(m.Hidden)))
					t.Logf("F32: with llama.cpp's multiplier %g in llmq: %.3g", m.EmbedScale, maxRelDiff(got, logits(t, m, seqs)))
				}
				bar := tc.maxRel
				if typ != gguf.F32 {
					bar = tc.q8Rel
				}
				if r > bar || math.IsNaN(r) {
					t.Errorf("%v: llama.cpp's logits differ from llmq's by %.3g (max rel), want ≤ %g", typ, r, bar)
				}
			}
		})
	}
}
