package modelio

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"llmq/checkpoint"
	"llmq/eval"
	"llmq/gguf"
	"llmq/internal/fixtures"
	"llmq/internal/shared"
	"llmq/model"
	"llmq/nn"
	"llmq/quant"
	"llmq/tokenizer"
)

// TestPermuteQKLayout spells out convert_hf_to_gguf.py's permute on small
// cases: per head of 4 rows, Hugging Face rows (0, 1, 2, 3) — pairs (0, 2)
// and (1, 3) — become ggml rows (0, 2, 1, 3), adjacent pairs.
func TestPermuteQKLayout(t *testing.T) {
	hf := []float32{0, 1, 2, 3, 4, 5, 6, 7}
	got := permuteQK(hf, 2, 1, true)
	if want := []float32{0, 2, 1, 3, 4, 6, 5, 7}; !slices.Equal(got, want) {
		t.Errorf("2 heads of 4: %v, want %v", got, want)
	}
	// Two columns: whole rows move.
	got = permuteQK([]float32{0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5}, 1, 2, true)
	if want := []float32{0, 0, 3, 3, 1, 1, 4, 4, 2, 2, 5, 5}; !slices.Equal(got, want) {
		t.Errorf("1 head of 6, 2 columns: %v, want %v", got, want)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	w := make([]float32, 4*16*8)
	for i := range w {
		w[i] = rng.Float32()
	}
	if back := permuteQK(permuteQK(w, 4, 8, true), 4, 8, false); !slices.Equal(back, w) {
		t.Error("permuting back does not restore the weights")
	}
}

// TestPermuteQKRoPE checks the permutation against its purpose: rotate-half
// RoPE applied to q = W·h equals adjacent-pair RoPE applied to the permuted
// W's output, permuted.
func TestPermuteQKRoPE(t *testing.T) {
	const heads, hd, in = 3, 8, 5
	rng := rand.New(rand.NewPCG(5, 6))
	w := make([]float32, heads*hd*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	h := []float32{0.3, -1, 2, 0.5, -0.25}
	mul := func(w []float32) []float32 {
		y := make([]float32, heads*hd)
		nn.NewDense(w, nil, heads*hd, in).Forward(y, h, 1)
		return y
	}
	for _, pos := range []int{0, 1, 7, 300} {
		qHF := mul(w)
		nn.NewRope(hd, hd, 10000, false, 512, nil).Apply(qHF, 1, heads, pos)
		qG := mul(permuteQK(w, heads, in, true))
		nn.NewRope(hd, hd, 10000, true, 512, nil).Apply(qG, 1, heads, pos)
		want := permuteQK(qHF, heads, 1, true)
		for i := range want {
			if math.Abs(float64(qG[i]-want[i])) > 1e-5 {
				t.Fatalf("pos %d: ggml-layout q[%d] = %v, want %v", pos, i, qG[i], want[i])
			}
		}
	}
}

func tinyLlama(t *testing.T) (*model.Model, string) {
	dir := shared.Path(t, "models", "tiny-llama")
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m, dir
}

// referenceIDs reads the token ids of a tiny model's reference.safetensors.
func referenceIDs(t *testing.T, dir string) [][]int {
	return fixtures.ReadTransformers(t, dir).IDs
}

func logits(t *testing.T, m *model.Model, seqs [][]int) []float32 {
	var all []float32
	for _, s := range seqs {
		l, err := m.Forward(m.NewState(len(s)), s, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, l...)
	}
	return all
}

// maxRelDiff is max |a−b| over max |b|.
func maxRelDiff(a, b []float32) float64 {
	var d, ref float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		ref = math.Max(ref, math.Abs(float64(b[i])))
	}
	return d / ref
}

// TestGGUFRoundTrip exports tiny-llama and imports it back: F32 gives the
// same logits bit for bit; each other type gives exactly the logits of the
// same rounding applied in-process (RoundLikeGGUF), with an error from FP32
// that grows as the format narrows. tiny-llama's planted outlier channels
// (norm weights ×25) amplify weight error: llmq's own int8 g32 RTN of the
// block linears alone moves its logits by 8 % of their range, so the bound
// for Q8_0 (which also rounds the embedding and head) is loose.
func TestGGUFRoundTrip(t *testing.T) {
	fp, dir := tinyLlama(t)
	seqs := referenceIDs(t, dir)
	want := logits(t, fp, seqs)
	tests := []struct {
		typ    gguf.Type
		maxRel float64 // max |Δlogit| / max |logit| vs FP32
	}{{gguf.F32, 0}, {gguf.F16, 0.01}, {gguf.Q8_0, 0.2}, {gguf.Q4_0, math.Inf(1)}}
	prev := -1.0
	for _, tc := range tests {
		path := filepath.Join(t.TempDir(), "tiny.gguf")
		if _, err := ExportGGUF(fp, nil, GGUFExport{Path: path, Type: tc.typ}); err != nil {
			t.Fatal(err)
		}
		m, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		got := logits(t, m, seqs)
		inproc, _ := model.Load(dir)
		if err := RoundLikeGGUF(inproc, tc.typ); err != nil {
			t.Fatal(err)
		}
		if same := logits(t, inproc, seqs); !slices.Equal(got, same) {
			t.Errorf("%v: imported logits differ from the in-process rounding (max rel %.3g)", tc.typ, maxRelDiff(got, same))
		}
		r := maxRelDiff(got, want)
		t.Logf("%v: max rel logit difference from FP32 %.3g", tc.typ, r)
		if r > tc.maxRel || r <= prev {
			t.Errorf("%v: logits differ from FP32 by %.3g (max rel); want ≤ %g and more than the wider format's %.3g", tc.typ, r, tc.maxRel, prev)
		}
		prev = r
	}
}

// TestGGUFExportLayout checks what llama.cpp reads: metadata keys with
// their types and values, tensor names, ggml dims and types.
func TestGGUFExportLayout(t *testing.T) {
	m, _ := tinyLlama(t)
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	rep, err := ExportGGUF(m, nil, GGUFExport{Path: path, Type: gguf.Q8_0, Name: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tensors[gguf.Q8_0] != 20 || rep.Tensors[gguf.F16] != 3 || rep.Tensors[gguf.F32] != 7 {
		t.Errorf("tensor types %v, want 20 Q8_0 (6 linears × 3 blocks, embedding, output), 3 F16 (ffn_down: 344 columns), 7 F32 norms", rep.Tensors)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// tiny-llama: hidden 128, 3 layers, 8 heads / 4 KV heads of 16, FFN 344,
	// 512 positions and tokens, rms_norm_eps 1e-5, rope_theta 10000.
	wantKV := map[string]gguf.Value{
		"general.architecture":                   gguf.String("llama"),
		"general.name":                           gguf.String("tiny"),
		"general.file_type":                      gguf.Uint32(7),
		"general.quantization_version":           gguf.Uint32(2),
		"llama.context_length":                   gguf.Uint32(512),
		"llama.embedding_length":                 gguf.Uint32(128),
		"llama.block_count":                      gguf.Uint32(3),
		"llama.feed_forward_length":              gguf.Uint32(344),
		"llama.rope.dimension_count":             gguf.Uint32(16),
		"llama.attention.head_count":             gguf.Uint32(8),
		"llama.attention.head_count_kv":          gguf.Uint32(4),
		"llama.attention.layer_norm_rms_epsilon": gguf.Float32(1e-5),
		"llama.rope.freq_base":                   gguf.Float32(10000),
		"tokenizer.ggml.model":                   gguf.String("no_vocab"),
	}
	for k, want := range wantKV {
		got, ok := f.Get(k)
		if !ok || got.Type != want.Type || got.Any() != want.Any() {
			t.Errorf("%s = %v (%v), want %v (%v)", k, got.Any(), got.Type, want.Any(), want.Type)
		}
	}
	wantT := []struct {
		name string
		typ  gguf.Type
		dims []uint64
	}{
		{"token_embd.weight", gguf.Q8_0, []uint64{128, 512}},
		{"blk.0.attn_norm.weight", gguf.F32, []uint64{128}},
		{"blk.0.attn_q.weight", gguf.Q8_0, []uint64{128, 128}},
		{"blk.0.attn_k.weight", gguf.Q8_0, []uint64{128, 64}},
		{"blk.0.attn_v.weight", gguf.Q8_0, []uint64{128, 64}},
		{"blk.0.attn_output.weight", gguf.Q8_0, []uint64{128, 128}},
		{"blk.2.ffn_norm.weight", gguf.F32, []uint64{128}},
		{"blk.2.ffn_gate.weight", gguf.Q8_0, []uint64{128, 344}},
		{"blk.2.ffn_up.weight", gguf.Q8_0, []uint64{128, 344}},
		{"blk.2.ffn_down.weight", gguf.F16, []uint64{344, 128}},
		{"output_norm.weight", gguf.F32, []uint64{128}},
		{"output.weight", gguf.Q8_0, []uint64{128, 512}},
	}
	for _, w := range wantT {
		got, ok := f.Tensor(w.name)
		if !ok || got.Type != w.typ || !slices.Equal(got.Dims, w.dims) {
			t.Errorf("%s: %v %v (present %v), want %v %v", w.name, got.Type, got.Dims, ok, w.typ, w.dims)
		}
	}
	if len(f.Tensors) != 2+3*9+1 {
		t.Errorf("%d tensors, want 30", len(f.Tensors))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v, want 0644", st.Mode().Perm())
	}
}

// TestGGUFImportLlamaCppLayout builds a file the way llama.cpp's converter
// lays it out — independently of ExportGGUF: names and keys spelled here,
// q/k rows permuted with the converter's reshape/swapaxes written as index
// arithmetic — and checks that importing it reproduces the logits HF
// transformers computed for tiny-llama.
func TestGGUFImportLlamaCppLayout(t *testing.T) {
	dir := shared.Path(t, "models", "tiny-llama")
	st, err := checkpoint.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const H, heads, kvHeads, hd = 128, 8, 4, 16
	// permute(w, n_head) = w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2).reshape(w.shape)
	converterPermute := func(w []float32, nHead, cols int) []float32 {
		rows := len(w) / cols
		half := rows / nHead / 2
		out := make([]float32, 0, len(w))
		for h := 0; h < nHead; h++ { // output index order: [h][i][two]
			for i := 0; i < half; i++ {
				for two := 0; two < 2; two++ {
					src := ((h*2+two)*half + i) * cols // input index [h][two][i]
					out = append(out, w[src:src+cols]...)
				}
			}
		}
		return out
	}
	w := &gguf.Writer{}
	for k, v := range map[string]gguf.Value{
		"general.architecture": gguf.String("llama"), "llama.context_length": gguf.Uint32(512),
		"llama.embedding_length": gguf.Uint32(H), "llama.block_count": gguf.Uint32(3),
		"llama.feed_forward_length": gguf.Uint32(344), "llama.rope.dimension_count": gguf.Uint32(hd),
		"llama.attention.head_count": gguf.Uint32(heads), "llama.attention.head_count_kv": gguf.Uint32(kvHeads),
		"llama.attention.layer_norm_rms_epsilon": gguf.Float32(1e-5), "llama.rope.freq_base": gguf.Float32(10000),
		"general.file_type": gguf.Uint32(0),
	} {
		w.Set(k, v)
	}
	add := func(gname, hfname string, permuteHeads int) {
		v, info, err := st.Float32(hfname)
		if err != nil {
			t.Fatal(err)
		}
		dims := []uint64{uint64(info.Shape[len(info.Shape)-1])}
		if len(info.Shape) == 2 {
			dims = append(dims, uint64(info.Shape[0]))
		}
		if permuteHeads > 0 {
			v = converterPermute(v, permuteHeads, info.Shape[1])
		}
		w.AddTensor(gguf.WriterTensor{Name: gname, Type: gguf.F32, Dims: dims, Data: func() ([]byte, error) { return gguf.Encode(gguf.F32, v) }})
	}
	add("token_embd.weight", "model.embed_tokens.weight", 0)
	for l := 0; l < 3; l++ {
		p, q := "blk."+string(rune('0'+l))+".", "model.layers."+string(rune('0'+l))+"."
		add(p+"attn_norm.weight", q+"input_layernorm.weight", 0)
		add(p+"attn_q.weight", q+"self_attn.q_proj.weight", heads)
		add(p+"attn_k.weight", q+"self_attn.k_proj.weight", kvHeads)
		add(p+"attn_v.weight", q+"self_attn.v_proj.weight", 0)
		add(p+"attn_output.weight", q+"self_attn.o_proj.weight", 0)
		add(p+"ffn_norm.weight", q+"post_attention_layernorm.weight", 0)
		add(p+"ffn_gate.weight", q+"mlp.gate_proj.weight", 0)
		add(p+"ffn_up.weight", q+"mlp.up_proj.weight", 0)
		add(p+"ffn_down.weight", q+"mlp.down_proj.weight", 0)
	}
	add("output_norm.weight", "model.norm.weight", 0)
	add("output.weight", "lm_head.weight", 0)
	path := filepath.Join(t.TempDir(), "converter.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ref := fixtures.ReadTransformers(t, dir)
	got := logits(t, m, ref.IDs)
	wantLogits := ref.Logits
	if r := maxRelDiff(got, wantLogits); r > 1e-4 {
		t.Errorf("logits differ from transformers' by %.3g (max rel), want ≤ 1e-4", r)
	}
}

// TestGGUFTokenizer: the Llama-2 vocabulary written as tokenizer.ggml.*
// metadata comes back as the same tokenizer.
func TestGGUFTokenizer(t *testing.T) {
	sp, err := tokenizer.LoadSentencePiece(shared.Path(t, "tokenizers", "llama2", "tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	w := &gguf.Writer{}
	if err := setGGUFVocab(w, sp, 32003); err != nil { // 3 padding pieces
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vocab.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := GGUFTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.VocabSize() != 32003 || got.Piece(32002) != "[PAD32002]" || got.BOS() != 1 || got.EOS() != 2 {
		t.Errorf("vocabulary of %d, last piece %q, BOS %d EOS %d", got.VocabSize(), got.Piece(32002), got.BOS(), got.EOS())
	}
	text := "The GGUF file carries its vocabulary.\n  Two  spaces, ünïcödé and 🦙 bytes."
	if a, b := sp.Encode(text), got.Encode(text); !slices.Equal(a, b) {
		t.Errorf("encodings differ:\n%v\n%v", a, b)
	}
}

// TestGGUFImportRejects: files llmq cannot run are refused with one line
// naming the file and the reason.
func TestGGUFImportRejects(t *testing.T) {
	m, _ := tinyLlama(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.gguf")
	if _, err := ExportGGUF(m, nil, GGUFExport{Path: good, Type: gguf.F16}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// rewrite copies good.gguf with the pairs of set added or replaced and
	// the pair or tensor ("tensor:NAME") drop left out.
	rewrite := func(name string, set map[string]gguf.Value, drop string) string {
		w := &gguf.Writer{}
		for _, kv := range f.KV {
			if kv.Key != drop {
				w.Set(kv.Key, kv.Value)
			}
		}
		for k, v := range set {
			w.Set(k, v)
		}
		for _, ti := range f.Tensors {
			if "tensor:"+ti.Name == drop {
				continue
			}
			raw, _, err := f.Raw(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			w.AddTensor(gguf.WriterTensor{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: func() ([]byte, error) { return raw, nil }})
		}
		p := filepath.Join(dir, name)
		if err := w.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	one := func(k string, v gguf.Value) map[string]gguf.Value { return map[string]gguf.Value{k: v} }
	notGGUF := filepath.Join(dir, "x.gguf")
	if err := os.WriteFile(notGGUF, []byte("GGML and more bytes here...."), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"architecture", rewrite("arch.gguf", one("general.architecture", gguf.String("gpt2")), ""), `general.architecture is "gpt2"`},
		{"missing key", rewrite("nokey.gguf", nil, "llama.block_count"), "llama.block_count is missing"},
		{"key type", rewrite("keytype.gguf", one("llama.block_count", gguf.String("3")), ""), "llama.block_count must be a non-negative integer"},
		{"rope scaling", rewrite("yarn.gguf", one("llama.rope.scaling.type", gguf.String("yarn")), ""), `RoPE scaling "yarn"`},
		{"partial rotary", rewrite("rot.gguf", one("llama.rope.dimension_count", gguf.Uint32(8)), ""), "partial rotary"},
		{"missing tensor", rewrite("notensor.gguf", nil, "tensor:blk.1.ffn_up.weight"), "missing tensor blk.1.ffn_up.weight"},
		{"not gguf", notGGUF, "not a GGUF file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Base(tc.path)) || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %v, want one line naming %s and containing %q", err, filepath.Base(tc.path), tc.want)
			}
		})
	}
	if _, err := GGUFTokenizer(good); err == nil || !strings.Contains(err.Error(), "no vocabulary") {
		t.Errorf("tokenizer of a no_vocab file: err = %v", err)
	}
}

// TestGGUFWikiPerplexity is the acceptance measurement (LLMQ_LONG=1):
// wiki-llama-25m exported as Q8_0 and Q4_0, re-imported, scored on
// WikiText-2 (first 20 windows of 512) against the same rounding applied
// in-process. The imported model computes RoPE in FP32 as llama.cpp does,
// while the Hugging Face folder (bf16) rounds RoPE frequencies to bf16 as
// transformers does; the comparison is made both ways.
func TestGGUFWikiPerplexity(t *testing.T) {
	if os.Getenv("LLMQ_LONG") == "" {
		t.Skip("set LLMQ_LONG=1 to run the wiki-llama-25m perplexity comparison")
	}
	dir := shared.Path(t, "models", "wiki-llama-25m")
	text, err := os.ReadFile(shared.Path(t, "data", "wikitext-2", "wiki.test.tokens"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadSentencePiece(filepath.Join(dir, "tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	ids := append([]int{1}, tok.Encode(string(text))...)
	const seqlen, limit = 512, 20
	ppl := func(m *model.Model) float64 {
		r, err := eval.Perplexity(m, ids, seqlen, limit, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r.Value()
	}
	fp, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FP32 (HF RoPE): ppl %.4f", ppl(fp))
	for _, typ := range []gguf.Type{gguf.F32, gguf.Q8_0, gguf.Q4_0} {
		path := filepath.Join(t.TempDir(), "wiki.gguf")
		if _, err := ExportGGUF(fp, tok, GGUFExport{Path: path, Type: typ}); err != nil {
			t.Fatal(err)
		}
		imported, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		gt, err := GGUFTokenizer(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(append([]int{1}, gt.Encode(string(text))...), ids) {
			t.Fatalf("%v: the file's tokenizer encodes WikiText-2 differently", typ)
		}
		pg := ppl(imported)
		inproc, _ := model.Load(dir)
		if err := RoundLikeGGUF(inproc, typ); err != nil {
			t.Fatal(err)
		}
		pHF := ppl(inproc)
		inproc.Rope = nn.NewRope(inproc.HeadDim, inproc.HeadDim, inproc.Rope.Theta, false, inproc.MaxPos, nil)
		pFP32Rope := ppl(inproc)
		t.Logf("%v: GGUF re-imported ppl %.4f; in-process %.4f with HF RoPE (%+.4f%%), %.4f with FP32 RoPE (%+.4f%%)",
			typ, pg, pHF, 100*(pg-pHF)/pHF, pFP32Rope, 100*(pg-pFP32Rope)/pFP32Rope)
		if math.Abs(pg-pHF)/pHF > 0.001 {
			t.Errorf("%v: GGUF ppl %.4f is not within 0.1%% of in-process %.4f", typ, pg, pHF)
		}
		if pg != pFP32Rope {
			t.Errorf("%v: with the same RoPE the GGUF model should score exactly the in-process rounding: %.6f vs %.6f", typ, pg, pFP32Rope)
		}
	}
}

// TestGGUFExportQuantized: a model whose linears are llmq-quantized layers
// exports their dequantized weights; as F32 the imported model computes what
// the quantized one did.
func TestGGUFExportQuantized(t *testing.T) {
	m, dir := tinyLlama(t)
	spec := quant.MustParseSpec("int4-asym-g8")
	for _, b := range m.Blocks {
		for _, nl := range b.Linears() {
			d := (*nl.Linear).(*nn.Dense)
			q, err := quant.QuantizeLinear(d.W, d.B, d.Out(), d.In(), spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			*nl.Linear = q
		}
	}
	seqs := referenceIDs(t, dir)
	want := logits(t, m, seqs)
	path := filepath.Join(t.TempDir(), "q.gguf")
	if _, err := ExportGGUF(m, nil, GGUFExport{Path: path, Type: gguf.F32}); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if r := maxRelDiff(logits(t, back, seqs), want); r > 1e-5 {
		t.Errorf("imported logits differ from the quantized model's by %.3g (max rel)", r)
	}
}
