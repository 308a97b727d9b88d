package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestByteToUnicode(t *testing.T) {
	// GPT-2's table: printable bytes are themselves; the others are
	// numbered from U+0100 in byte order: 0x00-0x20 -> U+0100-U+0120,
	// 0x7F-0xA0 -> U+0121-U+0142, 0xAD -> U+0143.
	cases := []struct {
		b    byte
		want rune
	}{
		{'A', 'A'}, {'!', '!'}, {'~', '~'}, {0xA1, 0xA1}, {0xFF, 0xFF},
		{0x00, 0x100}, {'\n', 'Ċ'}, {' ', 'Ġ'}, {0x7F, 0x121}, {0xA0, 0x142}, {0xAD, 'Ń'},
	}
	for _, c := range cases {
		if got := byteToRune[c.b]; got != c.want {
			t.Errorf("byteToRune[%#x] = %U, want %U", c.b, got, c.want)
		}
	}
	seen := map[rune]bool{}
	for b := range 256 {
		r := byteToRune[b]
		if seen[r] || runeToByte[r] != byte(b) {
			t.Fatalf("byte %#x: table is not a bijection", b)
		}
		seen[r] = true
	}
}

func TestSplitGPT2(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"I'm don't they're", []string{"I", "'m", " don", "'t", " they", "'re"}},
		{"'S", []string{"'", "S"}}, // contractions are case-sensitive
		{"  two spaces", []string{" ", " two", " spaces"}},
		{"a\n\nb", []string{"a", "\n", "\n", "b"}},
		{"trailing  ", []string{"trailing", "  "}},
		{"x 123 ab1", []string{"x", " 123", " ab", "1"}},
		{"hi!!! ?", []string{"hi", "!!!", " ?"}},
		{" 's", []string{" '", "s"}},
		{"日本語 text", []string{"日本語", " text"}},
		{"\t\tx", []string{"\t", "\t", "x"}},
		{"", nil},
	}
	for _, c := range cases {
		if got := splitGPT2(c.in, nil); !slices.Equal(got, c.want) {
			t.Errorf("splitGPT2(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSplitLlama3(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"I'M DON'T", []string{"I", "'M", " DON", "'T"}}, // case-insensitive
		{"12345", []string{"123", "45"}},
		{"hello\n\n  world", []string{"hello", "\n\n", " ", " world"}},
		{"\tfoo", []string{"\tfoo"}},
		{"'hello", []string{"'hello"}},
		{"foo.\n\nbar", []string{"foo", ".\n\n", "bar"}},
		{"  \n", []string{"  \n"}},
		{"a  ", []string{"a", "  "}},
		{" 123", []string{" ", "123"}},
		{" !?x", []string{" !?", "x"}},
	}
	for _, c := range cases {
		if got := splitLlama3(c.in, nil); !slices.Equal(got, c.want) {
			t.Errorf("splitLlama3(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// hfSpec describes a hand-made tokenizer.json. The vocabulary always starts
// with the 256 single-byte tokens in byte order (so the id of a byte is its
// value), followed by extra tokens numbered from 256.
type hfSpec struct {
	extra        []string
	merges       []string
	added        []map[string]any
	preTokenizer any // nil: GPT-2 ByteLevel
	normalizer   any
	ignoreMerges bool
	modelType    string
}

func (s hfSpec) json(t *testing.T) []byte {
	t.Helper()
	vocab := map[string]int{}
	for b := range 256 {
		vocab[string(byteToRune[b])] = b
	}
	for i, tok := range s.extra {
		vocab[tok] = 256 + i
	}
	pre := s.preTokenizer
	if pre == nil {
		pre = map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	}
	mt := s.modelType
	if mt == "" {
		mt = "BPE"
	}
	merges := s.merges
	if merges == nil {
		merges = []string{}
	}
	doc := map[string]any{
		"version":       "1.0",
		"added_tokens":  s.added,
		"normalizer":    s.normalizer,
		"pre_tokenizer": pre,
		"model": map[string]any{
			"type": mt, "vocab": vocab, "merges": merges, "unk_token": nil,
			"ignore_merges": s.ignoreMerges,
		},
		"decoder": map[string]any{"type": "ByteLevel"},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s hfSpec) load(t *testing.T) *ByteLevelBPE {
	t.Helper()
	tok, err := parseHuggingFace(s.json(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestByteLevelEncode checks BPE on hand-made vocabularies. Ids below 256
// are bytes; every expectation is worked out by hand from the rules
// (lowest merge rank first, leftmost on ties).
func TestByteLevelEncode(t *testing.T) {
	the := hfSpec{
		extra:  []string{"he", "Ġt", "Ġthe", "the"},
		merges: []string{"h e", "Ġ t", "Ġt he", "t he"},
	}
	llama3 := map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Pattern}, "behavior": "Isolated", "invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
	}}
	cases := []struct {
		name string
		spec hfSpec
		text string
		want []int
	}{
		// "the": h+e (rank 0), then t+he (rank 3). " the": h+e, Ġ+t,
		// then Ġt+he (rank 2); the stale t+he candidate is skipped.
		{"chained merges", the, "the the", []int{259, 258}},
		{"lower rank first (bc)", hfSpec{extra: []string{"bc", "ab"}, merges: []string{"b c", "a b"}}, "abc", []int{'a', 256}},
		{"lower rank first (ab)", hfSpec{extra: []string{"bc", "ab"}, merges: []string{"a b", "b c"}}, "abc", []int{257, 'c'}},
		{"tie goes left", hfSpec{extra: []string{"aa"}, merges: []string{"a a"}}, "aaa", []int{256, 'a'}},
		// A whole pre-token found in the vocabulary wins only with
		// ignore_merges (Llama-3); otherwise the merges decide.
		{"ignore_merges", hfSpec{extra: []string{"ab", "abc"}, merges: []string{"a b"}, ignoreMerges: true}, "abc", []int{257}},
		{"merges only", hfSpec{extra: []string{"ab", "abc"}, merges: []string{"a b"}}, "abc", []int{256, 'c'}},
		{"utf-8 bytes", hfSpec{}, "é\n", []int{0xC3, 0xA9, '\n'}},
		{"added tokens", hfSpec{added: []map[string]any{
			{"id": 300, "content": "<|endoftext|>", "special": true},
			{"id": 301, "content": "<|end", "special": true}}},
			"hi<|endoftext|><|end", []int{'h', 'i', 300, 301}},
		{"add_prefix_space", hfSpec{preTokenizer: map[string]any{"type": "ByteLevel", "add_prefix_space": true}}, "hi", []int{' ', 'h', 'i'}},
		{"llama3 split", hfSpec{preTokenizer: llama3, extra: []string{"12", "123"}, merges: []string{"1 2", "12 3"}},
			"12345", []int{257, '4', '5'}},
		{"empty", hfSpec{}, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.spec.load(t)
			if got := tok.Encode(c.text); !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
			}
		})
	}
}

func TestByteLevelDecode(t *testing.T) {
	tok := hfSpec{
		extra:  []string{"Ġthe"},
		merges: []string{},
		added: []map[string]any{
			{"id": 300, "content": "<|endoftext|>", "special": true},
			{"id": 301, "content": "<tag>", "special": false},
			{"id": 302, "content": "\n\n", "special": false},
		},
	}.load(t)
	cases := []struct {
		ids  []int
		want string
	}{
		{[]int{'h', 256, 300}, "h the"}, // special tokens vanish
		{[]int{301, 302}, "<tag>\n\n"},  // other added tokens stay verbatim
		{[]int{0xC3, 0xA9}, "é"},
		{[]int{0xC3}, "\xc3"}, // raw bytes are kept, not replaced
		{[]int{-1, 303, 'a'}, "a"},
	}
	for _, c := range cases {
		if got := tok.Decode(c.ids); got != c.want {
			t.Errorf("Decode(%v) = %q, want %q", c.ids, got, c.want)
		}
	}
}

func TestByteLevelRoundTrip(t *testing.T) {
	for _, spec := range []hfSpec{
		{extra: []string{"he", "Ġt", "Ġthe", "the"}, merges: []string{"h e", "Ġ t", "Ġt he", "t he"}},
		{preTokenizer: map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Pattern}, "behavior": "Isolated"},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
		}}},
	} {
		tok := spec.load(t)
		for _, s := range append(slices.Clone(roundTripTexts), "invalid \xff\xfe utf-8", "the the  the\n") {
			if got := tok.Decode(tok.Encode(s)); got != s {
				t.Errorf("Decode(Encode(%q)) = %q", s, got)
			}
		}
	}
}

func TestByteLevelMergeFormats(t *testing.T) {
	// tokenizers >= 0.20 writes merges as pairs.
	spec := hfSpec{extra: []string{"ab"}}
	var doc map[string]any
	if err := json.Unmarshal(spec.json(t), &doc); err != nil {
		t.Fatal(err)
	}
	doc["model"].(map[string]any)["merges"] = [][]string{{"a", "b"}}
	data, _ := json.Marshal(doc)
	tok, err := parseHuggingFace(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("ab"); !slices.Equal(got, []int{256}) {
		t.Errorf("got %v", got)
	}
}

func TestByteLevelErrors(t *testing.T) {
	cases := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"not json", []byte("{"), "not a tokenizer.json"},
		{"wordpiece", hfSpec{modelType: "WordPiece"}.json(t), "only BPE"},
		{"normalizer", hfSpec{normalizer: map[string]any{"type": "Lowercase"}}.json(t), `normalizer type "Lowercase" is not supported`},
		{"unknown regex", hfSpec{preTokenizer: map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\w+`}, "behavior": "Isolated"},
			map[string]any{"type": "ByteLevel", "use_regex": false},
		}}}.json(t), "regex"},
		{"whitespace", hfSpec{preTokenizer: map[string]any{"type": "Whitespace"}}.json(t), `pre_tokenizer type "Whitespace" is not supported`},
		{"merge out of vocab", hfSpec{merges: []string{"a b"}}.json(t), "missing from the vocabulary"},
		{"malformed merge", hfSpec{merges: []string{"ab"}}.json(t), "left right"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadHuggingFace(writeTemp(t, "tokenizer.json", c.data))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func TestByteLevelSpecialIDs(t *testing.T) {
	spec := hfSpec{added: []map[string]any{
		{"id": 300, "content": "<|endoftext|>", "special": true},
		{"id": 301, "content": "<|im_start|>", "special": true},
	}}
	tok := spec.load(t)
	if tok.BOS() != 300 || tok.EOS() != 300 || tok.VocabSize() != 302 {
		t.Errorf("BOS %d EOS %d vocab %d", tok.BOS(), tok.EOS(), tok.VocabSize())
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), spec.json(t), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `{"bos_token": {"content": "<|im_start|>"}, "eos_token": "<|endoftext|>"}`
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadHuggingFace(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != 301 || tok.EOS() != 300 {
		t.Errorf("with tokenizer_config.json: BOS %d EOS %d, want 301 300", tok.BOS(), tok.EOS())
	}
}

func TestFromDir(t *testing.T) {
	model := sharedFile(t, "tokenizers/llama2/tokenizer.model")

	spDir := t.TempDir()
	if err := os.Symlink(model, filepath.Join(spDir, "tokenizer.model")); err != nil {
		t.Skip("symlinks unavailable:", err)
	}
	// tokenizer.json is present too, and unusable: tokenizer.model wins.
	if err := os.WriteFile(filepath.Join(spDir, "tokenizer.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := FromDir(spDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tok.(*SentencePiece); !ok || tok.VocabSize() != 32000 {
		t.Errorf("FromDir(sentencepiece dir) = %T with %d ids", tok, tok.VocabSize())
	}

	jsonDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(jsonDir, "tokenizer.json"), hfSpec{}.json(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if tok, err := FromDir(jsonDir); err != nil {
		t.Error(err)
	} else if _, ok := tok.(*ByteLevelBPE); !ok {
		t.Errorf("FromDir(json dir) = %T", tok)
	}

	empty := t.TempDir()
	if tok, err := FromDir(empty); err == nil || tok != nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("FromDir(empty) = %v, %v; want a nil Tokenizer and an error naming the dir", tok, err)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "tokenizer.model"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if tok, err := FromDir(bad); err == nil || tok != nil {
		t.Errorf("FromDir(corrupt) = %v, %v; want a nil Tokenizer and an error", tok, err)
	}

	if _, err := FromDir(filepath.Join(sharedRoot(), "models", "wiki-llama-25m")); err != nil {
		t.Errorf("FromDir(wiki-llama-25m): %v", err)
	}
}

// FuzzByteLevel checks that the regex pre-tokenizers partition their input into
// non-empty pieces and that a byte-level tokenizer round-trips any string.
func FuzzByteLevel(f *testing.F) {
	for _, s := range roundTripTexts {
		f.Add(s)
	}
	f.Add("I'M don't 12345 \xff\xfe\r\n\r\n  x")
	var tok *ByteLevelBPE
	f.Fuzz(func(t *testing.T, s string) {
		if tok == nil {
			tok = hfSpec{extra: []string{"he", "Ġt", "Ġthe", "the"}, merges: []string{"h e", "Ġ t", "Ġt he", "t he"}}.load(t)
		}
		for name, split := range map[string]func(string, []string) []string{"gpt2": splitGPT2, "llama3": splitLlama3, "qwen2": splitQwen2, "qwen35": splitQwen35} {
			parts := split(s, nil)
			if strings.Join(parts, "") != s || slices.Contains(parts, "") {
				t.Fatalf("%s split of %q = %q", name, s, parts)
			}
		}
		if got := tok.Decode(tok.Encode(s)); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
	})
}
