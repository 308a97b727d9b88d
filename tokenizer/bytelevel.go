package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ByteLevelBPE is a GPT-2 style byte-level BPE tokenizer loaded from a
// Hugging Face tokenizer.json (GPT-2, Llama-3 and relatives).
//
// Encoding follows the Hugging Face pipeline: added tokens are cut out of
// the text first and map to their ids directly; the rest is split into
// pre-tokens by the model's regex (implemented by hand, because Go's regexp
// lacks the (?!\S) lookahead these patterns use); each pre-token's UTF-8
// bytes are spelled with the printable byte-to-unicode alphabet and merged
// by BPE, lowest merge rank first.
//
// A ByteLevelBPE is immutable after loading and safe for concurrent use.
type ByteLevelBPE struct {
	vocab   map[string]int
	tokens  []string // id -> token (byte-level alphabet; added tokens verbatim)
	special []bool   // id -> special added token (dropped by Decode)

	// merges maps a pair of token ids to its rank and merged id.
	merges       map[uint64]bpeMerge
	byteIDs      [256]int // id of each single-byte token, or -1
	ignoreMerges bool     // Llama-3: a pre-token found whole in the vocab is kept whole
	unkID        int      // -1: unknown bytes are dropped, as Hugging Face does without unk_token

	split          func(s string, out []string) []string
	addPrefixSpace bool

	added    map[string]int // added-token content -> id
	addedMax int            // longest added token in bytes
	addedBy  [256]bool      // first bytes of added tokens, for a fast scan

	bosID, eosID int
}

var _ Tokenizer = (*ByteLevelBPE)(nil)

type bpeMerge struct {
	rank int32
	id   int32
}

// byteToRune is GPT-2's bytes_to_unicode table: printable Latin-1 bytes map
// to themselves, the other 68 (controls, space, DEL, NBSP, soft hyphen) to
// U+0100.. in byte order, so every byte has a visible, non-whitespace
// spelling and a BPE vocabulary can be stored as ordinary strings.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = next
			next++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

// byteLevel spells the bytes of s in the byte-to-unicode alphabet.
func byteLevel(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteToRune[s[i]])
	}
	return b.String()
}

// Known pre-tokenizer regexes, matched verbatim against tokenizer.json.
const (
	gpt2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// The subset of tokenizer.json that we read.
type hfTokenizer struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        struct {
		Type                    string          `json:"type"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
		UnkToken                *string         `json:"unk_token"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	} `json:"model"`
}

type hfPreTokenizer struct {
	Type           string           `json:"type"`
	AddPrefixSpace bool             `json:"add_prefix_space"`
	UseRegex       *bool            `json:"use_regex"`
	Pretokenizers  []hfPreTokenizer `json:"pretokenizers"`
	Pattern        struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior string `json:"behavior"`
	Invert   bool   `json:"invert"`
}

// LoadByteLevelBPE reads a Hugging Face tokenizer.json whose model is
// byte-level BPE. BOS/EOS come from a tokenizer_config.json next to it if
// there is one, else from well-known token names. Configurations this
// package cannot reproduce exactly (a normalizer, an unknown pre-tokenizer
// regex, word-piece style prefixes/suffixes) are rejected with an error.
func LoadByteLevelBPE(path string) (*ByteLevelBPE, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := parseByteLevelBPE(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg, err := os.ReadFile(filepath.Join(filepath.Dir(path), "tokenizer_config.json")); err == nil {
		t.applyConfig(cfg)
	}
	return t, nil
}

func parseByteLevelBPE(data []byte) (*ByteLevelBPE, error) {
	var hf hfTokenizer
	if err := json.Unmarshal(data, &hf); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %w", err)
	}
	if hf.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer.json model type %q is not supported (only BPE)", hf.Model.Type)
	}
	if n := strings.TrimSpace(string(hf.Normalizer)); n != "" && n != "null" {
		return nil, fmt.Errorf("tokenizer.json normalizer %s is not supported", abbreviate(n))
	}
	if p := hf.Model.ContinuingSubwordPrefix; p != nil && *p != "" {
		return nil, errors.New("tokenizer.json continuing_subword_prefix is not supported")
	}
	if s := hf.Model.EndOfWordSuffix; s != nil && *s != "" {
		return nil, errors.New("tokenizer.json end_of_word_suffix is not supported")
	}
	t := &ByteLevelBPE{
		vocab:        hf.Model.Vocab,
		ignoreMerges: hf.Model.IgnoreMerges,
		unkID:        -1,
		bosID:        -1,
		eosID:        -1,
	}
	if err := t.setPreTokenizer(hf.PreTokenizer); err != nil {
		return nil, err
	}

	// Ids: the vocabulary plus added tokens, which may lie beyond it.
	n := 0
	for tok, id := range hf.Model.Vocab {
		if id < 0 || id > 1<<24 {
			return nil, fmt.Errorf("token %q has invalid id %d", tok, id)
		}
		n = max(n, id+1)
	}
	for _, a := range hf.AddedTokens {
		if a.ID < 0 || a.ID > 1<<24 {
			return nil, fmt.Errorf("added token %q has invalid id %d", a.Content, a.ID)
		}
		n = max(n, a.ID+1)
	}
	if n == 0 {
		return nil, errors.New("tokenizer.json has an empty vocabulary")
	}
	t.tokens = make([]string, n)
	t.special = make([]bool, n)
	for tok, id := range hf.Model.Vocab {
		if t.tokens[id] != "" {
			return nil, fmt.Errorf("id %d is used by both %q and %q", id, t.tokens[id], tok)
		}
		t.tokens[id] = tok
	}
	for _, a := range hf.AddedTokens {
		if a.Content == "" {
			return nil, fmt.Errorf("added token %d is empty", a.ID)
		}
		if t.added == nil {
			t.added = make(map[string]int)
		}
		t.added[a.Content] = a.ID
		t.addedMax = max(t.addedMax, len(a.Content))
		t.addedBy[a.Content[0]] = true
		t.tokens[a.ID] = a.Content
		t.special[a.ID] = a.Special
	}
	for b := range t.byteIDs {
		t.byteIDs[b] = -1
		if id, ok := t.vocab[string(byteToRune[b])]; ok {
			t.byteIDs[b] = id
		}
	}
	if u := hf.Model.UnkToken; u != nil {
		id, ok := t.vocab[*u]
		if !ok {
			return nil, fmt.Errorf("unk_token %q is not in the vocabulary", *u)
		}
		t.unkID = id
	}
	if err := t.setMerges(hf.Model.Merges); err != nil {
		return nil, err
	}
	t.guessSpecial()
	return t, nil
}

// abbreviate shortens raw JSON for an error message.
func abbreviate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// setPreTokenizer accepts the two layouts byte-level models use: a bare
// ByteLevel pre-tokenizer with its built-in GPT-2 regex, or a Sequence of a
// Split on a known regex followed by ByteLevel without regex (Llama-3).
func (t *ByteLevelBPE) setPreTokenizer(raw json.RawMessage) error {
	var p hfPreTokenizer
	if err := json.Unmarshal(raw, &p); err != nil || p.Type == "" {
		return fmt.Errorf("tokenizer.json pre_tokenizer %s is not byte-level", abbreviate(string(raw)))
	}
	switch p.Type {
	case "ByteLevel":
		if p.UseRegex != nil && !*p.UseRegex {
			return errors.New("tokenizer.json ByteLevel pre_tokenizer without regex is not supported")
		}
		t.split, t.addPrefixSpace = splitGPT2, p.AddPrefixSpace
		return nil
	case "Sequence":
		if len(p.Pretokenizers) == 2 {
			s, b := p.Pretokenizers[0], p.Pretokenizers[1]
			if s.Type == "Split" && s.Pattern.Regex != nil && s.Behavior == "Isolated" && !s.Invert &&
				b.Type == "ByteLevel" && b.UseRegex != nil && !*b.UseRegex {
				t.addPrefixSpace = b.AddPrefixSpace
				switch *s.Pattern.Regex {
				case gpt2Pattern:
					t.split = splitGPT2
					return nil
				case llama3Pattern:
					t.split = splitLlama3
					return nil
				}
				return fmt.Errorf("tokenizer.json pre-tokenizer regex %q is not supported", *s.Pattern.Regex)
			}
		}
	}
	return fmt.Errorf("tokenizer.json pre_tokenizer %s is not supported (need ByteLevel)", abbreviate(string(raw)))
}

// setMerges reads the merge list, either as "left right" strings (the
// classic format) or as [left, right] pairs (tokenizers >= 0.20). A merge's
// rank is its position; like Hugging Face, a repeated pair keeps the last.
func (t *ByteLevelBPE) setMerges(raw json.RawMessage) error {
	var pairs [][2]string
	var asStrings []string
	if err := json.Unmarshal(raw, &asStrings); err == nil {
		pairs = make([][2]string, len(asStrings))
		for i, m := range asStrings {
			l, r, ok := strings.Cut(m, " ")
			if !ok || l == "" || r == "" || strings.Contains(r, " ") {
				return fmt.Errorf("merge %d %q is not of the form \"left right\"", i, m)
			}
			pairs[i] = [2]string{l, r}
		}
	} else if err := json.Unmarshal(raw, &pairs); err != nil {
		return fmt.Errorf("tokenizer.json merges: %w", err)
	}
	t.merges = make(map[uint64]bpeMerge, len(pairs))
	for i, p := range pairs {
		l, okL := t.vocab[p[0]]
		r, okR := t.vocab[p[1]]
		m, okM := t.vocab[p[0]+p[1]]
		if !okL || !okR || !okM {
			return fmt.Errorf("merge %d (%q %q) uses a token missing from the vocabulary", i, p[0], p[1])
		}
		t.merges[pairKey(l, r)] = bpeMerge{rank: int32(i), id: int32(m)}
	}
	return nil
}

func pairKey(l, r int) uint64 { return uint64(uint32(l))<<32 | uint64(uint32(r)) }

// guessSpecial sets BOS/EOS from the conventional token names.
func (t *ByteLevelBPE) guessSpecial() {
	look := func(names ...string) int {
		for _, n := range names {
			if id, ok := t.added[n]; ok {
				return id
			}
			if id, ok := t.vocab[n]; ok {
				return id
			}
		}
		return -1
	}
	t.bosID = look("<|begin_of_text|>", "<s>", "<|endoftext|>")
	t.eosID = look("<|end_of_text|>", "</s>", "<|endoftext|>")
}

// applyConfig takes bos_token/eos_token from tokenizer_config.json, which
// may spell them as a string or as an AddedToken object.
func (t *ByteLevelBPE) applyConfig(data []byte) {
	var cfg map[string]json.RawMessage
	if json.Unmarshal(data, &cfg) != nil {
		return
	}
	name := func(raw json.RawMessage) (string, bool) {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s, s != ""
		}
		var obj struct {
			Content string `json:"content"`
		}
		if json.Unmarshal(raw, &obj) == nil {
			return obj.Content, obj.Content != ""
		}
		return "", false
	}
	for key, dst := range map[string]*int{"bos_token": &t.bosID, "eos_token": &t.eosID} {
		if n, ok := name(cfg[key]); ok {
			if id, ok := t.added[n]; ok {
				*dst = id
			} else if id, ok := t.vocab[n]; ok {
				*dst = id
			}
		}
	}
}

// VocabSize is the number of ids, added tokens included.
func (t *ByteLevelBPE) VocabSize() int { return len(t.tokens) }

// BOS is the beginning-of-sequence id, or -1.
func (t *ByteLevelBPE) BOS() int { return t.bosID }

// EOS is the end-of-sequence id, or -1.
func (t *ByteLevelBPE) EOS() int { return t.eosID }

// Token returns the vocabulary string of id ("" if out of range).
func (t *ByteLevelBPE) Token(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Encode tokenizes text without adding BOS/EOS (a post-processor's
// template is not applied). Added tokens spelled out in text are matched
// leftmost-longest and encoded as their own id, as Hugging Face does by
// default; their lstrip/rstrip/single_word options are ignored.
func (t *ByteLevelBPE) Encode(text string) []int {
	var (
		out   []int
		parts []string
		cache = make(map[string][]int)
	)
	encodePlain := func(s string) {
		if s == "" {
			return
		}
		if t.addPrefixSpace && s[0] != ' ' {
			s = " " + s
		}
		parts = t.split(s, parts[:0])
		for _, p := range parts {
			ids, ok := cache[p]
			if !ok {
				ids = t.encodeWord(p)
				cache[p] = ids
			}
			out = append(out, ids...)
		}
	}
	start := 0
	if t.added != nil {
		for i := 0; i < len(text); i++ {
			if !t.addedBy[text[i]] {
				continue
			}
			for n := min(t.addedMax, len(text)-i); n > 0; n-- {
				if id, ok := t.added[text[i:i+n]]; ok {
					encodePlain(text[start:i])
					out = append(out, id)
					start = i + n
					i = start - 1
					break
				}
			}
		}
	}
	encodePlain(text[start:])
	return out
}

// encodeWord runs BPE on one pre-token. Like Hugging Face's Word::merge_all
// it keeps a heap of candidate merges ordered by rank (lowest first), ties
// going to the leftmost, and skips candidates made stale by earlier merges.
func (t *ByteLevelBPE) encodeWord(word string) []int {
	if word == "" {
		return nil
	}
	if t.ignoreMerges {
		if id, ok := t.vocab[byteLevel(word)]; ok {
			return []int{id}
		}
	}
	type sym struct {
		id         int // -1: byte missing from the vocabulary
		prev, next int
	}
	syms := make([]sym, len(word))
	for i := 0; i < len(word); i++ {
		syms[i] = sym{id: t.byteIDs[word[i]], prev: i - 1, next: i + 1}
	}
	syms[len(syms)-1].next = -1

	var agenda pairHeap
	add := func(l, r int) {
		if l < 0 || r < 0 || syms[l].id < 0 || syms[r].id < 0 {
			return
		}
		if m, ok := t.merges[pairKey(syms[l].id, syms[r].id)]; ok {
			// The heap prefers high scores, so use the negated rank; size
			// carries the merged id to detect stale entries.
			agenda.push(symbolPair{left: int32(l), right: int32(r), size: m.id, score: -float32(m.rank)})
		}
	}
	for i := 1; i < len(syms); i++ {
		add(i-1, i)
	}
	for len(agenda) > 0 {
		p := agenda.pop()
		l, r := int(p.left), int(p.right)
		// Stale if l was merged away (id -2), or r is no longer l's
		// neighbour, or either side changed so the pair no longer merges
		// into the recorded token.
		if syms[l].id == -2 || syms[l].next != r || syms[r].id == -2 {
			continue
		}
		if m, ok := t.merges[pairKey(syms[l].id, syms[r].id)]; !ok || m.id != p.size {
			continue
		}
		syms[l].id = int(p.size)
		syms[l].next = syms[r].next
		if syms[r].next >= 0 {
			syms[syms[r].next].prev = l
		}
		syms[r].id = -2
		add(syms[l].prev, l)
		add(l, syms[l].next)
	}
	var out []int
	for i := 0; i >= 0; i = syms[i].next {
		switch {
		case syms[i].id >= 0:
			out = append(out, syms[i].id)
		case t.unkID >= 0:
			out = append(out, t.unkID)
		}
	}
	return out
}

// Decode concatenates the tokens, maps the byte-level alphabet back to
// bytes and drops special added tokens. Invalid UTF-8 (a sequence cut in
// the middle of a character) is returned as is rather than replaced, so
// Decode(Encode(s)) == s for every string s. Out-of-range ids are skipped.
func (t *ByteLevelBPE) Decode(ids []int) string {
	var b strings.Builder
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) || t.special[id] {
			continue
		}
		tok := t.tokens[id]
		if aid, isAdded := t.added[tok]; isAdded && aid == id {
			b.WriteString(tok) // added tokens are stored verbatim
			continue
		}
		// Like Hugging Face's ByteLevel decoder: a token spelled entirely
		// in the byte alphabet becomes its bytes, any other is kept as is.
		if !inByteAlphabet(tok) {
			b.WriteString(tok)
			continue
		}
		for _, r := range tok {
			b.WriteByte(runeToByte[r])
		}
	}
	return b.String()
}

func inByteAlphabet(tok string) bool {
	for _, r := range tok {
		if _, ok := runeToByte[r]; !ok {
			return false
		}
	}
	return true
}

// Pre-tokenizers. Both implement a regex of alternatives by hand, trying
// them in order at each position exactly as a backtracking engine would.
// \s, \p{L} and \p{N} use Go's Unicode tables.

func isLetter(r rune) bool  { return unicode.IsLetter(r) }
func isNumber(r rune) bool  { return unicode.IsNumber(r) }
func isSpace(r rune) bool   { return unicode.IsSpace(r) }
func isOther(r rune) bool   { return !isSpace(r) && !isLetter(r) && !isNumber(r) }
func isNewline(r rune) bool { return r == '\r' || r == '\n' }

// runeAt decodes the rune at byte offset i (-1 past the end).
func runeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	return utf8.DecodeRuneInString(s[i:])
}

// span returns the end of the run of runes satisfying f starting at i,
// taking at most maxRunes runes (0 = unlimited).
func span(s string, i int, f func(rune) bool, maxRunes int) int {
	for n := 0; i < len(s) && (maxRunes == 0 || n < maxRunes); n++ {
		r, w := utf8.DecodeRuneInString(s[i:])
		if !f(r) {
			break
		}
		i += w
	}
	return i
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d at i (optionally ASCII
// case-insensitive) and returns its end, or i.
func contraction(s string, i int, fold bool) int {
	if s[i] != '\'' || i+1 >= len(s) {
		return i
	}
	lower := func(c byte) byte {
		if fold && 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[i+1]) {
	case 's', 't', 'm', 'd':
		return i + 2
	case 'r', 'v':
		if i+2 < len(s) && lower(s[i+2]) == 'e' {
			return i + 3
		}
	case 'l':
		if i+2 < len(s) && lower(s[i+2]) == 'l' {
			return i + 3
		}
	}
	return i
}

// whitespace implements the shared tail `\s+(?!\S)|\s+` at i, where s[i] is
// whitespace: the run of whitespace, minus its last character when
// something follows and the run is longer than one character (so the last
// space can prefix the next word).
func whitespace(s string, i int) int {
	end := span(s, i, isSpace, 0)
	if end == len(s) {
		return end
	}
	_, w := utf8.DecodeLastRuneInString(s[i:end])
	if end-w > i {
		return end - w
	}
	return end
}

// splitGPT2 splits s by GPT-2's pattern:
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func splitGPT2(s string, out []string) []string {
	for i := 0; i < len(s); {
		end := contraction(s, i, false)
		if end == i {
			r, w := runeAt(s, i)
			for _, class := range [...]func(rune) bool{isLetter, isNumber, isOther} {
				if r == ' ' {
					if e := span(s, i+1, class, 0); e > i+1 {
						end = e
						break
					}
				}
				if class(r) {
					end = span(s, i+w, class, 0)
					break
				}
			}
			if end == i { // only whitespace is left
				end = whitespace(s, i)
			}
		}
		out = append(out, s[i:end])
		i = end
	}
	return out
}

// splitLlama3 splits s by Llama-3's pattern:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func splitLlama3(s string, out []string) []string {
	for i := 0; i < len(s); {
		end := contraction(s, i, true)
		r, w := runeAt(s, i)
		switch {
		case end > i:
		// [^\r\n\p{L}\p{N}]?\p{L}+
		case !isNewline(r) && !isLetter(r) && !isNumber(r) && span(s, i+w, isLetter, 0) > i+w:
			end = span(s, i+w, isLetter, 0)
		case isLetter(r):
			end = span(s, i, isLetter, 0)
		// \p{N}{1,3}
		case isNumber(r):
			end = span(s, i, isNumber, 3)
		// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
		case r == ' ' && span(s, i+1, isOther, 0) > i+1:
			end = span(s, span(s, i+1, isOther, 0), isNewline, 0)
		case isOther(r):
			end = span(s, span(s, i, isOther, 0), isNewline, 0)
		default: // whitespace
			// \s*[\r\n]+ : through the last newline of the whitespace run.
			run := s[i:span(s, i, isSpace, 0)]
			if nl := strings.LastIndexAny(run, "\r\n"); nl >= 0 {
				end = i + nl + 1
			} else {
				end = whitespace(s, i)
			}
		}
		out = append(out, s[i:end])
		i = end
	}
	return out
}
