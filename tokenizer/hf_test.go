package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSplitQwen(t *testing.T) {
	cases := []struct {
		split func(string, []string) []string
		in    string
		want  []string
	}{
		{splitQwen2, "12345 x1", []string{"1", "2", "3", "4", "5", " x", "1"}},
		{splitQwen2, "I'M 'ſx", []string{"I", "'M", " '", "ſx"}},
		{splitLlama3, "'ſx", []string{"'ſ", "x"}}, // ſ folds to s
		{splitGPT2, "'ſx", []string{"'", "ſx"}},   // GPT-2's contractions are case-sensitive
		// Devanagari: the virama (Mn) and the vowel sign (Mc) are not
		// letters for Qwen2, they are for the \p{M} variant.
		{splitQwen2, "नमस्ते", []string{"नमस", "्त", "े"}},
		{splitQwen35, "नमस्ते", []string{"नमस्ते"}},
		{splitQwen35, " e\u0301!\u0301", []string{" e\u0301", "!\u0301"}},
		{splitQwen35, "!!\u0301", []string{"!!", "\u0301"}},
		{splitQwen2, "!!\u0301", []string{"!!\u0301"}},
	}
	for _, c := range cases {
		if got := c.split(c.in, nil); !slices.Equal(got, c.want) {
			t.Errorf("split(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func pieces(ps []piece) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.s)
	}
	return out
}

// TestSplitBehaviors follows NormalizedString::split on "a--b-" split at
// "-".
func TestSplitBehaviors(t *testing.T) {
	want := map[splitBehavior][]string{
		behaviorRemoved:            {"a", "b"},
		behaviorIsolated:           {"a", "-", "-", "b", "-"},
		behaviorMergedWithPrevious: {"a-", "-", "b-"},
		behaviorMergedWithNext:     {"a", "-", "-b", "-"},
		behaviorContiguous:         {"a", "--", "b", "-"},
	}
	for b, w := range want {
		sp := &preSplit{literal: "-", behavior: b}
		if got := pieces(sp.split(piece{"a--b-", true}, nil)); !slices.Equal(got, w) {
			t.Errorf("behavior %d: %q, want %q", b, got, w)
		}
	}
	inv := &preSplit{literal: "-", behavior: behaviorRemoved, invert: true}
	if got := pieces(inv.split(piece{"a--b-", true}, nil)); !slices.Equal(got, []string{"-", "-", "-"}) {
		t.Errorf("inverted: %q", got)
	}
	d := &preDigits{individual: false}
	if got := pieces(d.split(piece{"ab123c4", false}, nil)); !slices.Equal(got, []string{"ab", "123", "c", "4"}) {
		t.Errorf("digits: %q", got)
	}
}

func TestMetaspace(t *testing.T) {
	cases := []struct {
		m     preMetaspace
		first bool
		want  []string
	}{
		{preMetaspace{"▁", prependAlways, true}, false, []string{"▁hi", "▁", "▁you"}},
		{preMetaspace{"▁", prependFirst, true}, false, []string{"hi", "▁", "▁you"}},
		{preMetaspace{"▁", prependFirst, false}, true, []string{"▁hi▁▁you"}},
		{preMetaspace{"▁", prependNever, false}, true, []string{"hi▁▁you"}},
	}
	for _, c := range cases {
		if got := pieces(c.m.split(piece{"hi  you", c.first}, nil)); !slices.Equal(got, c.want) {
			t.Errorf("%+v first=%v: %q, want %q", c.m, c.first, got, c.want)
		}
	}
	dec := decMetaspace{'▁', prependAlways}
	if got := dec.decodeChain([]string{"▁▁a", "▁b"}); !slices.Equal(got, []string{"a", " b"}) {
		t.Errorf("decoder: %q", got)
	}
}

func TestDecoders(t *testing.T) {
	bf := decByteFallback{}
	if got := bf.decodeChain([]string{"<0xE2>", "<0x96>", "<0x81>", "x", "<0xE2>", "<0x0a>"}); !slices.Equal(got, []string{"▁", "x", "\uFFFD", "\uFFFD"}) {
		t.Errorf("ByteFallback: %q", got)
	}
	st := decStrip{' ', 1, 1}
	if got := st.decodeChain([]string{"  a  ", "b"}); !slices.Equal(got, []string{" a ", "b"}) {
		t.Errorf("Strip: %q", got)
	}
}

// spDoc is a SentencePiece-style tokenizer.json: <unk> <s> </s>, the 256
// byte tokens, then extra.
func spDoc(extra []string, merges [][2]string) map[string]any {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := range 256 {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	for i, e := range extra {
		vocab[e] = 259 + i
	}
	if merges == nil {
		merges = [][2]string{}
	}
	return map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<unk>", "special": true, "normalized": false},
			map[string]any{"id": 1, "content": "<s>", "special": true, "normalized": false},
			map[string]any{"id": 2, "content": "</s>", "special": true, "normalized": false},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"post_processor": map[string]any{
			"type":           "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}},
		},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": merges, "unk_token": "<unk>",
			"byte_fallback": true, "fuse_unk": true},
	}
}

func parseDoc(t *testing.T, doc map[string]any, cfg map[string]any) (*HuggingFace, error) {
	t.Helper()
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var c []byte
	if cfg != nil {
		if c, err = json.Marshal(cfg); err != nil {
			t.Fatal(err)
		}
	}
	return parseHuggingFace(data, c)
}

func mustDoc(t *testing.T, doc map[string]any, cfg map[string]any) *HuggingFace {
	t.Helper()
	tok, err := parseDoc(t, doc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestSentencePieceStyle checks byte fallback, unk fusing, the legacy
// normalizer around added tokens and the decoder on a hand-made vocabulary.
func TestSentencePieceStyle(t *testing.T) {
	doc := spDoc([]string{"▁", "h", "i", "▁h", "▁hi"}, [][2]string{{"▁", "h"}, {"▁h", "i"}})
	tok := mustDoc(t, doc, nil)
	// 259 ▁  260 h  261 i  262 ▁h  263 ▁hi; "é" is bytes C3 A9.
	cases := []struct {
		text string
		want []int
	}{
		{"hi", []int{263}},
		{"hi hi", []int{263, 263}},
		{"hé", []int{262, 3 + 0xC3, 3 + 0xA9}},
		{"hi<s>hi", []int{263, 1, 263}}, // the Prepend normalizer runs on each segment
		{"", nil},
	}
	for _, c := range cases {
		if got := tok.Encode(c.text); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
		if got := tok.Decode(tok.Encode(c.text)); !strings.Contains(c.text, "<s>") && got != c.text {
			t.Errorf("Decode(Encode(%q)) = %q", c.text, got)
		}
	}
	if got := tok.Decode([]int{1, 263, 3 + 0xC3}); got != "hi\uFFFD" {
		t.Errorf("Decode = %q", got)
	}
	if got := tok.EncodeWithSpecialTokens("hi"); !slices.Equal(got, []int{1, 263}) || !tok.AddsBOS() || tok.AddsEOS() {
		t.Errorf("EncodeWithSpecialTokens = %v, AddsBOS %v", got, tok.AddsBOS())
	}

	// Without byte fallback unknown characters become one fused <unk>.
	doc["model"].(map[string]any)["byte_fallback"] = false
	tok = mustDoc(t, doc, nil)
	if got := tok.Encode("hé€i"); !slices.Equal(got, []int{262, 0, 261}) {
		t.Errorf("fused unk: %v", got)
	}
	doc["model"].(map[string]any)["fuse_unk"] = false
	tok = mustDoc(t, doc, nil)
	if got := tok.Encode("hé€i"); !slices.Equal(got, []int{262, 0, 0, 261}) {
		t.Errorf("unfused unk: %v", got)
	}
}

func TestAddedTokenFlags(t *testing.T) {
	added := []map[string]any{
		{"id": 300, "content": "<l>", "special": true, "lstrip": true, "normalized": false},
		{"id": 301, "content": "<r>", "special": true, "rstrip": true, "normalized": false},
		{"id": 302, "content": "ab", "special": false, "single_word": true, "normalized": false},
		{"id": 303, "content": "<x>", "special": false, "normalized": false},
		{"id": 304, "content": "<x>y", "special": false, "normalized": false},
	}
	tok := hfSpec{added: added}.load(t)
	cases := []struct {
		text string
		want []int
	}{
		{"a  <l>b", []int{'a', 300, 'b'}},
		{"a<r>  \n b", []int{'a', 301, 'b'}},
		{"ab cab ab.", []int{302, ' ', 'c', 'a', 'b', ' ', 302, '.'}},
		{"<x>y <x>z", []int{304, ' ', 303, 'z'}}, // longest match
	}
	for _, c := range cases {
		if got := tok.Encode(c.text); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
	// split_special_tokens: special tokens in the text are text.
	data := hfSpec{added: added}.json(t)
	tok, err := parseHuggingFace(data, []byte(`{"split_special_tokens": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("<r><x>"); !slices.Equal(got, []int{'<', 'r', '>', 303}) {
		t.Errorf("split_special_tokens: %v", got)
	}
}

func TestTokenizerConfig(t *testing.T) {
	doc := spDoc(nil, nil)
	cases := []struct {
		cfg                string
		bos, eos           int
		addsBOS, addsEOS   bool
		withSpecialPrefix  []int
		withSpecialSuffix  []int
		commentForFailures string
	}{
		{`{"bos_token": null, "eos_token": {"content": "</s>", "__type": "AddedToken"}}`, -1, 2, false, false, []int{1}, nil, "bos null"},
		{`{"tokenizer_class": "PreTrainedTokenizerFast"}`, -1, -1, false, false, []int{1}, nil, "generic class, no names"},
		{`{"tokenizer_class": "LlamaTokenizer"}`, 1, 2, true, false, []int{1}, nil, "class defaults"},
		// The generic class keeps tokenizer.json's template...
		{`{"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": false, "add_eos_token": true}`, 1, 2, true, false, []int{1}, nil, "generic flags"},
		// ... a model-specific class follows the flags.
		{`{"tokenizer_class": "LlamaTokenizer", "add_bos_token": false, "add_eos_token": true}`, 1, 2, false, true, nil, []int{2}, "class flags"},
	}
	for _, c := range cases {
		data, _ := json.Marshal(doc)
		tok, err := parseHuggingFace(data, []byte(c.cfg))
		if err != nil {
			t.Fatal(err)
		}
		got := tok.EncodeWithSpecialTokens("")
		want := slices.Concat(c.withSpecialPrefix, c.withSpecialSuffix)
		if tok.BOS() != c.bos || tok.EOS() != c.eos || tok.AddsBOS() != c.addsBOS || tok.AddsEOS() != c.addsEOS || !slices.Equal(got, want) {
			t.Errorf("%s: BOS %d EOS %d adds %v %v special %v; want %d %d %v %v %v", c.commentForFailures,
				tok.BOS(), tok.EOS(), tok.AddsBOS(), tok.AddsEOS(), got, c.bos, c.eos, c.addsBOS, c.addsEOS, want)
		}
	}

	// Without a post-processor the flags apply for any class.
	delete(doc, "post_processor")
	tok := mustDoc(t, doc, map[string]any{"bos_token": "<s>", "add_bos_token": true})
	if got := tok.EncodeWithSpecialTokens("hi"); len(got) == 0 || got[0] != 1 {
		t.Errorf("add_bos_token without post-processor: %v", got)
	}

	// add_prefix_space=false of a model-specific class removes the
	// legacy dummy prefix and its Strip.
	doc = spDoc([]string{"▁", "h", "i", "▁h", "▁hi"}, [][2]string{{"▁", "h"}, {"▁h", "i"}})
	tok = mustDoc(t, doc, map[string]any{"tokenizer_class": "LlamaTokenizer", "add_prefix_space": false})
	if got := tok.Encode("hi hi"); !slices.Equal(got, []int{260, 261, 263}) || tok.Decode(got) != "hi hi" {
		t.Errorf("add_prefix_space false: %v %q", got, tok.Decode(got))
	}
	tok = mustDoc(t, doc, map[string]any{"add_prefix_space": false}) // generic: ignored
	if got := tok.Encode("hi hi"); !slices.Equal(got, []int{263, 263}) {
		t.Errorf("generic add_prefix_space false: %v", got)
	}
}

func TestHFErrors(t *testing.T) {
	withModel := func(k string, v any) map[string]any {
		d := spDoc(nil, nil)
		d["model"].(map[string]any)[k] = v
		return d
	}
	with := func(k string, v any) map[string]any {
		d := spDoc(nil, nil)
		d[k] = v
		return d
	}
	cases := []struct {
		name string
		doc  map[string]any
		want string
	}{
		{"unigram", withModel("type", "Unigram"), `model type "Unigram" is not supported`},
		{"dropout", withModel("dropout", 0.1), "dropout"},
		{"prefix", withModel("continuing_subword_prefix", "##"), "continuing_subword_prefix"},
		{"unk", withModel("unk_token", "<nope>"), `unk_token "<nope>"`},
		{"lowercase", with("normalizer", map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "Lowercase"}}}),
			`normalizer.normalizers[0] type "Lowercase" is not supported`},
		{"regex replace", with("normalizer", map[string]any{"type": "Replace", "pattern": map[string]any{"Regex": " +"}, "content": " "}),
			`normalizer (Replace) with regex pattern " +" is not supported`},
		{"regex split", with("pre_tokenizer", map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\w+`}, "behavior": "Isolated"}}}),
			`pre_tokenizer.pretokenizers[0] (Split): regex "\\w+" is not supported`},
		{"byte level first", with("pre_tokenizer", map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "ByteLevel"}, map[string]any{"type": "Digits"}}}), "ByteLevel followed by"},
		{"wordpiece decoder", with("decoder", map[string]any{"type": "WordPiece"}), `decoder type "WordPiece" is not supported`},
		{"post", with("post_processor", map[string]any{"type": "Frobnicate"}), `post_processor type "Frobnicate" is not supported`},
		{"template id", with("post_processor", map[string]any{"type": "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>"}}, map[string]any{"Sequence": map[string]any{"id": "A"}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"ids": []int{99999}}}}), "adds id 99999"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, _ := json.Marshal(c.doc)
			path := writeTemp(t, "tokenizer.json", data)
			_, err := LoadHuggingFace(path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s and containing %q", err, path, c.want)
			}
		})
	}
	// A broken tokenizer_config.json is named as such.
	dir := t.TempDir()
	data, _ := json.Marshal(spDoc(nil, nil))
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"add_bos_token": "yes"}`), 0o644)
	if _, err := LoadHuggingFace(filepath.Join(dir, "tokenizer.json")); err == nil ||
		!strings.Contains(err.Error(), "tokenizer_config.json") || !strings.Contains(err.Error(), "add_bos_token") {
		t.Errorf("bad tokenizer_config.json: %v", err)
	}
}

func TestLoad(t *testing.T) {
	data, _ := json.Marshal(spDoc([]string{"▁", "h", "i", "▁h", "▁hi"}, [][2]string{{"▁", "h"}, {"▁h", "i"}}))
	odd := writeTemp(t, "vocab-file", data) // recognized by content
	tok, err := Load(odd)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("hi"); !slices.Equal(got, []int{263}) {
		t.Errorf("Load(json) encodes %v", got)
	}
	if tok, err := Load(writeTemp(t, "x.json", []byte("junk"))); err == nil || tok != nil {
		t.Errorf("Load(junk .json) = %v, %v", tok, err)
	}
	if tok, err := Load(filepath.Join(t.TempDir(), "missing")); err == nil || tok != nil {
		t.Errorf("Load(missing) = %v, %v", tok, err)
	}
	if tok, err := Load(filepath.Dir(odd)); err == nil || tok != nil {
		t.Errorf("Load(dir without tokenizer) = %v, %v", tok, err)
	}
	for _, name := range []string{"tokenizer.model", "tokenizer.bin"} {
		tok, err := Load(sharedFile(t, "tokenizers/llama2/"+name))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := tok.(*SentencePiece); !ok || tok.VocabSize() != 32000 {
			t.Errorf("Load(%s) = %T", name, tok)
		}
	}
	raw, err := os.ReadFile(sharedFile(t, "tokenizers/llama2/tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := Load(writeTemp(t, "spm", raw)); err != nil || tok.VocabSize() != 32000 {
		t.Errorf("Load(SentencePiece without extension) = %v", err)
	}
}

// FromDir falls back to tokenizer.json when tokenizer.model is unusable.
func TestFromDirFallback(t *testing.T) {
	dir := t.TempDir()
	data, _ := json.Marshal(spDoc(nil, nil))
	os.WriteFile(filepath.Join(dir, "tokenizer.model"), []byte("not a model"), 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644)
	tok, err := FromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tok.(*HuggingFace); !ok {
		t.Errorf("FromDir = %T", tok)
	}
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte("{}"), 0o644)
	if tok, err := FromDir(dir); err == nil || tok != nil ||
		!strings.Contains(err.Error(), "tokenizer.model") || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("FromDir(both broken) = %v, %v", tok, err)
	}
}
