package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"llmq/checkpoint"
)

// ---- shared fixtures ----

var (
	llamaOnce sync.Once
	llamaTok  *SentencePiece
	llamaErr  error
)

// llama2 loads the shared Llama-2 tokenizer.model once per test binary.
func llama2(t testing.TB) *SentencePiece {
	t.Helper()
	path := sharedFile(t, "tokenizers/llama2/tokenizer.model")
	llamaOnce.Do(func() { llamaTok, llamaErr = LoadSentencePiece(path) })
	if llamaErr != nil {
		t.Fatal(llamaErr)
	}
	return llamaTok
}

func readShared(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(sharedFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ---- the oracle ----

// TestEncodeWikiTextOracle compares every id of sentencepiece's encoding of
// the whole WikiText-2 test file (one 1.26 MB string, with BOS prepended)
// with ours.
func TestEncodeWikiTextOracle(t *testing.T) {
	sp := llama2(t)
	text := readShared(t, "data/wikitext-2/wiki.test.tokens")
	f, err := checkpoint.OpenSafetensors(sharedFile(t, "data/wikitext-2/wikitext2-test.llama2-ids.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want64, _, err := f.Int64("ids")
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, len(want64))
	for i, v := range want64 {
		want[i] = int(v)
	}

	got := append([]int{sp.BOS()}, sp.Encode(text)...)
	match := 0
	for match < min(len(got), len(want)) && got[match] == want[match] {
		match++
	}
	t.Logf("%d of %d oracle ids match exactly", match, len(want))
	if match == len(want) && len(got) == len(want) {
		return
	}
	ctx := func(ids []int, i int) string {
		lo, hi := max(0, i-8), min(len(ids), i+8)
		var parts []string
		for j := lo; j < hi; j++ {
			mark := ""
			if j == i {
				mark = ">>"
			}
			parts = append(parts, fmt.Sprintf("%s%d:%q", mark, ids[j], sp.Piece(ids[j])))
		}
		return strings.Join(parts, " ")
	}
	t.Fatalf("first mismatch at index %d (got %d ids, want %d)\n got: %s\nwant: %s\ntext: %q",
		match, len(got), len(want), ctx(got, match), ctx(want, match),
		sp.Decode(want[max(1, match-8):min(len(want), match+8)]))
}

// TestModelProperties checks the settings read from the Llama-2 model.
func TestModelProperties(t *testing.T) {
	sp := llama2(t)
	checks := []struct {
		name      string
		got, want any
	}{
		{"VocabSize", sp.VocabSize(), 32000},
		{"BOS", sp.BOS(), 1},
		{"EOS", sp.EOS(), 2},
		{"UNK", sp.UNK(), 0},
		{"byte_fallback", sp.byteFallback, true},
		{"add_dummy_prefix", sp.addDummyPrefix, true},
		{"remove_extra_whitespaces", sp.removeExtraWhitespaces, false},
		{"word splitting enabled", sp.splitWords, true},
		{"Piece(1)", sp.Piece(1), "<s>"},
		{"Piece(3)", sp.Piece(3), "<0x00>"},
		{"Piece(258)", sp.Piece(258), "<0xFF>"},
		{"Type(13)", sp.Type(13), PieceByte},
		{"Piece(-1)", sp.Piece(-1), ""},
		{"Piece(32000)", sp.Piece(32000), ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestEncodeKnownIDs uses encodings of Llama-2's tokenizer that are widely
// published (e.g. "Hello world" -> 15043 3186, and the infamous 29871 "▁"
// in front of a leading newline), plus cases that follow from the rules:
// characters outside the vocabulary become <0xNN> byte pieces (id 3+byte).
func TestEncodeKnownIDs(t *testing.T) {
	sp := llama2(t)
	cases := []struct {
		text string
		want []int
	}{
		{"", nil},
		{"Hello world", []int{15043, 3186}},
		{"\n", []int{29871, 13}},
		{"\t", []int{29871, 12}},
		// U+1F999 is not in the vocabulary: "▁" then its four UTF-8 bytes.
		{"🦙", []int{29871, 3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99}},
	}
	for _, c := range cases {
		if got := sp.Encode(c.text); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
}

// TestWordSplitMatchesWholeText checks that the per-word fast path gives the
// same ids as running BPE over the entire text as one sequence, which is what
// sentencepiece does, on the 1.1 MB WikiText-2 validation file.
func TestWordSplitMatchesWholeText(t *testing.T) {
	sp := llama2(t)
	text := readShared(t, "data/wikitext-2/wiki.valid.tokens")
	whole := *sp
	whole.splitWords = false
	a, b := sp.Encode(text), whole.Encode(text)
	if i := firstDiff(a, b); i >= 0 {
		t.Fatalf("split and whole-text encodings differ at %d (lengths %d, %d)", i, len(a), len(b))
	}
}

func firstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

var roundTripTexts = []string{
	"",
	"a",
	"Hello world",
	" leading space",
	"  two leading spaces",
	" ",
	"   ",
	"trailing space ",
	"multiple   inner    spaces",
	"new\nline",
	"\n\nstarts with newlines\n",
	"tabs\tand\r\nCRLF\r\n",
	"unicode: héllo wörld, naïve café, 日本語のテキスト, Ελληνικά, русский, עברית",
	"emoji 🦙🔥👍🏽 and flags 🇫🇷 and ZWJ 👩‍👩‍👧",
	"rare CJK 𠜎𠜱 and math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
	"control \x00\x01\x7f chars",
	"literal specials <s> </s> <unk> <0x41>",
	" = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . \n",
	strings.Repeat("ab", 1000),
	strings.Repeat(" ", 100) + "x" + strings.Repeat("\n", 50),
}

func TestRoundTrip(t *testing.T) {
	sp := llama2(t)
	for _, s := range roundTripTexts {
		if got := sp.Decode(sp.Encode(s)); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
	}
}

func TestRoundTripWikiText(t *testing.T) {
	sp := llama2(t)
	text := readShared(t, "data/wikitext-2/wiki.test.tokens")
	if got := sp.Decode(sp.Encode(text)); got != text {
		i := 0
		for i < min(len(got), len(text)) && got[i] == text[i] {
			i++
		}
		t.Fatalf("round trip of wiki.test.tokens differs at byte %d: %q vs %q", i,
			got[i:min(len(got), i+40)], text[i:min(len(text), i+40)])
	}
}

// TestInvalidUTF8 checks sentencepiece's normalizer behaviour: each byte of
// malformed UTF-8 is replaced by U+FFFD (so it cannot round-trip).
func TestInvalidUTF8(t *testing.T) {
	sp := llama2(t)
	got := sp.Decode(sp.Encode("a\xffb\xc3"))
	if want := "a\uFFFDb\uFFFD"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestLiteralSpaceSymbol: sentencepiece cannot tell a "▁" in the input from
// an escaped space, so it decodes as a space (another non-round-trip case).
func TestLiteralSpaceSymbol(t *testing.T) {
	sp := llama2(t)
	if a, b := sp.Encode("a▁b"), sp.Encode("a b"); !slices.Equal(a, b) {
		t.Errorf("Encode(a▁b) = %v, Encode(a b) = %v", a, b)
	}
	if got := sp.Decode(sp.Encode("▁x")); got != " x" {
		t.Errorf("got %q", got)
	}
}

// TestDecodeRules checks DecodeIds semantics derived from sentencepiece's
// decoder: control ids vanish, the first "▁" is the dummy prefix, byte
// pieces are reassembled into UTF-8 and invalid bytes become U+FFFD.
func TestDecodeRules(t *testing.T) {
	sp := llama2(t)
	b := func(x int) int { return 3 + x } // id of <0xNN>
	cases := []struct {
		name string
		ids  []int
		want string
	}{
		{"bos/eos vanish", []int{1, 15043, 3186, 2}, "Hello world"},
		{"lone dummy prefix", []int{29871, 13}, "\n"},
		{"space after bytes is kept", []int{13, 29871}, "\n "},
		{"only first prefix stripped", []int{29871, 29871}, " "},
		{"bytes form a character", []int{b(0xE6), b(0x97), b(0xA5)}, "日"},
		{"truncated character", []int{b(0xE6), b(0x97)}, "\uFFFD\uFFFD"},
		{"invalid then ascii", []int{b(0xE6), b(0x41)}, "\uFFFDA"},
		{"unknown piece", []int{0}, " \u2047 "},
		{"out of range", []int{-1, 32000}, " \u2047  \u2047 "},
		{"empty", nil, ""},
	}
	for _, c := range cases {
		if got := sp.Decode(c.ids); got != c.want {
			t.Errorf("%s: Decode(%v) = %q, want %q", c.name, c.ids, got, c.want)
		}
	}
}

// TestLlama2CMatchesModel checks that tokenizer.bin (llama2.c) loads into the
// same vocabulary as tokenizer.model and encodes identically.
func TestLlama2CMatchesModel(t *testing.T) {
	sp := llama2(t)
	bin, err := LoadLlama2C(sharedFile(t, "tokenizers/llama2/tokenizer.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if bin.VocabSize() != sp.VocabSize() || bin.BOS() != sp.BOS() || bin.EOS() != sp.EOS() || bin.UNK() != sp.UNK() {
		t.Fatalf("vocab/BOS/EOS/UNK = %d/%d/%d/%d, want %d/%d/%d/%d", bin.VocabSize(), bin.BOS(), bin.EOS(), bin.UNK(),
			sp.VocabSize(), sp.BOS(), sp.EOS(), sp.UNK())
	}
	for id := range sp.VocabSize() {
		if bin.Piece(id) != sp.Piece(id) || bin.Score(id) != sp.Score(id) || bin.Type(id) != sp.Type(id) {
			t.Fatalf("id %d: bin has %q/%v/%d, model has %q/%v/%d", id,
				bin.Piece(id), bin.Score(id), bin.Type(id), sp.Piece(id), sp.Score(id), sp.Type(id))
		}
	}
	sample := readShared(t, "data/wikitext-2/wiki.test.tokens")[:200_000]
	for _, s := range append(slices.Clone(roundTripTexts), sample) {
		if a, b := bin.Encode(s), sp.Encode(s); !slices.Equal(a, b) {
			t.Errorf("Encode(%.40q): bin and model differ at %d", s, firstDiff(a, b))
		}
	}
}

func TestConcurrentEncode(t *testing.T) {
	sp := llama2(t)
	text := readShared(t, "data/wikitext-2/wiki.test.tokens")[:100_000]
	want := sp.Encode(text)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if got := sp.Encode(text); !slices.Equal(got, want) {
				t.Error("concurrent Encode differs")
			}
		})
	}
	wg.Wait()
}

func BenchmarkEncodeWikiText(b *testing.B) {
	sp := llama2(b)
	text := readShared(b, "data/wikitext-2/wiki.test.tokens")
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		sp.Encode(text)
	}
}

func BenchmarkEncodeWikiTextWholeText(b *testing.B) {
	sp := *llama2(b)
	sp.splitWords = false
	text := readShared(b, "data/wikitext-2/wiki.test.tokens")
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		sp.Encode(text)
	}
}

func BenchmarkDecodeWikiText(b *testing.B) {
	sp := llama2(b)
	text := readShared(b, "data/wikitext-2/wiki.test.tokens")
	ids := sp.Encode(text)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		sp.Decode(ids)
	}
}

// ---- hand-built models ----

// protoBuf writes protobuf wire format, to build test models by hand.
type protoBuf []byte

func (p *protoBuf) varint(v uint64) { *p = binary.AppendUvarint(*p, v) }
func (p *protoBuf) tag(field, wire int) {
	p.varint(uint64(field)<<3 | uint64(wire))
}
func (p *protoBuf) varintField(field int, v uint64) { p.tag(field, wireVarint); p.varint(v) }
func (p *protoBuf) bytesField(field int, b []byte) {
	p.tag(field, wireBytes)
	p.varint(uint64(len(b)))
	*p = append(*p, b...)
}
func (p *protoBuf) floatField(field int, f float32) {
	p.tag(field, wireFixed32)
	*p = binary.LittleEndian.AppendUint32(*p, math.Float32bits(f))
}

type testPiece struct {
	piece string
	score float32
	typ   PieceType
}

// tinySpec describes a hand-made model. Pieces get ids 3.. after the
// standard <unk>=0, <s>=1, </s>=2.
type tinySpec struct {
	pieces       []testPiece
	modelType    int // 0 means BPE
	byteFallback bool
	noDummy      bool // add_dummy_prefix=false
	removeExtra  bool
	charsmap     []byte
}

func (s tinySpec) bytes() []byte {
	var m protoBuf
	all := append([]testPiece{{"<unk>", 0, PieceUnknown}, {"<s>", 0, PieceControl}, {"</s>", 0, PieceControl}}, s.pieces...)
	if s.byteFallback {
		for b := range 256 {
			all = append(all, testPiece{fmt.Sprintf("<0x%02X>", b), 0, PieceByte})
		}
	}
	for _, p := range all {
		var pb protoBuf
		pb.bytesField(1, []byte(p.piece))
		pb.floatField(2, p.score)
		pb.varintField(3, uint64(p.typ))
		m.bytesField(1, pb)
	}
	var tr protoBuf
	mt := s.modelType
	if mt == 0 {
		mt = modelBPE
	}
	tr.varintField(3, uint64(mt))
	tr.bytesField(7, []byte("text")) // an unknown field, to be skipped
	if s.byteFallback {
		tr.varintField(35, 1)
	}
	tr.varintField(43, math.MaxUint64) // pad_id = -1: a 10-byte varint
	m.bytesField(2, tr)
	var n protoBuf
	n.bytesField(1, []byte("identity"))
	if len(s.charsmap) > 0 {
		n.bytesField(2, s.charsmap)
	}
	n.varintField(3, boolU(!s.noDummy))
	n.varintField(4, boolU(s.removeExtra))
	m.bytesField(3, n)
	return m
}

func boolU(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (s tinySpec) load(t *testing.T) *SentencePiece {
	t.Helper()
	sp, err := parseSentencePiece(s.bytes())
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// TestTinyModels checks the BPE rules on hand-made vocabularies; every
// expected segmentation is derived by hand from sentencepiece's algorithm.
func TestTinyModels(t *testing.T) {
	abc := func(ab, bc float32) []testPiece {
		return []testPiece{
			{"▁", -10, PieceNormal}, {"a", -20, PieceNormal}, {"b", -20, PieceNormal}, {"c", -20, PieceNormal},
			{"ab", ab, PieceNormal}, {"bc", bc, PieceNormal},
		}
	}
	cases := []struct {
		name string
		spec tinySpec
		text string
		want []string
	}{
		// "▁abc": "ab" and "bc" compete; the higher score wins and
		// "abc" is not a piece, so the loser never forms.
		{"higher score merges first (bc)", tinySpec{pieces: abc(-2, -1)}, "abc", []string{"▁", "a", "bc"}},
		{"higher score merges first (ab)", tinySpec{pieces: abc(-1, -2)}, "abc", []string{"▁", "ab", "c"}},
		// Equal scores: the leftmost pair goes first.
		{"tie goes left", tinySpec{noDummy: true, pieces: []testPiece{{"a", -1, PieceNormal}, {"aa", -1, PieceNormal}}},
			"aaa", []string{"aa", "a"}},
		// Merges chain: "ab" then "abc".
		{"chained merges", tinySpec{pieces: append(abc(-1, -5), testPiece{"abc", -3, PieceNormal})},
			"abc", []string{"▁", "abc"}},
		// Without byte fallback a run of unknown characters is one <unk>.
		{"unknown run folds", tinySpec{pieces: abc(-1, -2)}, "axyzb c", []string{"▁", "a", "<unk>", "b", "▁", "c"}},
		// With byte fallback each byte of an unknown character is a piece.
		{"byte fallback", tinySpec{byteFallback: true, pieces: abc(-1, -2)}, "aé", []string{"▁", "a", "<0xC3>", "<0xA9>"}},
		// User-defined symbols are matched whole and never merged with
		// their neighbours.
		{"user defined", tinySpec{noDummy: true, pieces: append(abc(-1, -2), testPiece{"<sep>", 0, PieceUserDefined})},
			"ab<sep>c", []string{"ab", "<sep>", "c"}},
		// An Unused piece may be formed as an intermediate step but is
		// split back into the pieces it was merged from.
		{"unused resegmented", tinySpec{noDummy: true, pieces: []testPiece{
			{"a", -10, PieceNormal}, {"b", -10, PieceNormal}, {"c", -10, PieceNormal}, {"ab", -1, PieceUnused}, {"abc", -2, PieceNormal}}},
			"ab c abc", []string{"a", "b", "<unk>", "c", "<unk>", "abc"}},
		// Control and byte pieces are never produced by merging text.
		{"literal control text", tinySpec{noDummy: true, pieces: []testPiece{
			{"<", -1, PieceNormal}, {"s", -1, PieceNormal}, {">", -1, PieceNormal}, {"<s", -2, PieceNormal}}},
			"<s>", []string{"<s", ">"}},
		// Without the dummy prefix and with extra-whitespace removal.
		{"remove extra whitespace", tinySpec{removeExtra: true, pieces: abc(-1, -2)},
			"  a   b  ", []string{"▁", "a", "▁", "b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sp := c.spec.load(t)
			if got := sp.EncodePieces(c.text); !slices.Equal(got, c.want) {
				t.Errorf("EncodePieces(%q) = %q, want %q", c.text, got, c.want)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	cases := []struct {
		spec tinySpec
		in   string
		want string
	}{
		{tinySpec{}, "", ""},
		{tinySpec{}, "a b", "▁a▁b"},
		{tinySpec{}, "  a\tb\n", "▁▁▁a\tb\n"},
		{tinySpec{noDummy: true}, "a b", "a▁b"},
		{tinySpec{removeExtra: true}, "  a   b  ", "▁a▁b"},
		{tinySpec{removeExtra: true}, "   ", ""},
		{tinySpec{}, "\xff", "▁\uFFFD"},
	}
	for _, c := range cases {
		sp := c.spec.load(t)
		if got := sp.normalize(c.in); got != c.want {
			t.Errorf("normalize(%q) with %+v = %q, want %q", c.in, c.spec, got, c.want)
		}
	}
}

// TestNormalizeFastPath checks the single-pass identity normalizer against
// the transcription of sentencepiece's general one.
func TestNormalizeFastPath(t *testing.T) {
	for _, spec := range []tinySpec{{}, {noDummy: true}} {
		sp := spec.load(t)
		for _, s := range append(slices.Clone(roundTripTexts), "a\xffb\xc3", "\xe2\x96", "x\uFFFDy") {
			if a, b := sp.normalizeIdentity(s), sp.normalizeGeneral(s); a != b {
				t.Errorf("normalize(%q): fast %q, general %q", s, a, b)
			}
		}
	}
}

// TestDecodeRemoveExtraWhitespace: with remove_extra_whitespaces every
// leading "▁" is dropped, not only the first.
func TestDecodeRemoveExtraWhitespace(t *testing.T) {
	sp := tinySpec{removeExtra: true, pieces: []testPiece{{"▁", -1, PieceNormal}, {"a", -1, PieceNormal}}}.load(t)
	if got := sp.Decode([]int{3, 3, 4, 3, 4}); got != "a a" {
		t.Errorf("got %q, want %q", got, "a a")
	}
}

// TestRoundTripMixed round-trips random valid UTF-8 built from a mix of
// scripts, whitespace and emoji, a cheap complement to FuzzEncodeRoundTrip.
func TestRoundTripMixed(t *testing.T) {
	sp := llama2(t)
	alphabet := []rune("aZ09 \t\n\r.,'\"éß日本🦙👍🏽\u200d\u0301<>")
	seed := uint32(1)
	for n := range 300 {
		var b strings.Builder
		for range n % 40 {
			seed = seed*1664525 + 1013904223
			b.WriteRune(alphabet[int(seed>>8)%len(alphabet)])
		}
		s := b.String()
		if !utf8.ValidString(s) {
			t.Fatal("bad test string")
		}
		if got := sp.Decode(sp.Encode(s)); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
	}
}
