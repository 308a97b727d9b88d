package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// bpeModel is the "model" of a tokenizer.json of type BPE: a vocabulary,
// ranked merges and the options that decide what happens to characters the
// vocabulary lacks. It follows tokenizers' BPE::merge_word and
// Word::merge_all (models/bpe), which is what every Hugging Face BPE
// checkpoint is tokenized with.
type bpeModel struct {
	vocab map[string]int

	// merges maps a pair of token ids to its rank and merged id.
	merges map[uint64]bpeMerge

	// byteIDs[b] is the id of byte b's byte-level spelling (GPT-2's
	// alphabet), or -1: a byte-level pre-token's symbols without a string
	// lookup per byte.
	byteIDs [256]int
	// fallbackIDs[b] is the id of "<0xNN>", or -1.
	fallbackIDs [256]int

	unkID        int // -1: no unk_token, unknown characters are dropped
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
}

type bpeMerge struct {
	rank int32
	id   int32
}

func pairKey(l, r int) uint64 { return uint64(uint32(l))<<32 | uint64(uint32(r)) }

// hfModel is the part of tokenizer.json's "model" that we read.
type hfModel struct {
	Type                    string          `json:"type"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	Dropout                 *float64        `json:"dropout"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
}

// newBPEModel validates a tokenizer.json model section. Options that would
// make the ids differ from the reference in ways this package does not
// implement (dropout, which is random; WordPiece-style prefixes/suffixes;
// the Unigram, WordPiece and WordLevel models) are errors.
func newBPEModel(m *hfModel) (*bpeModel, error) {
	switch m.Type {
	case "BPE":
	case "":
		return nil, errors.New("model has no type")
	default:
		return nil, fmt.Errorf("model type %q is not supported (only BPE)", m.Type)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return nil, fmt.Errorf("BPE model with dropout %g is not supported (it samples its merges)", *m.Dropout)
	}
	if p := m.ContinuingSubwordPrefix; p != nil && *p != "" {
		return nil, fmt.Errorf("BPE model continuing_subword_prefix %q is not supported", *p)
	}
	if s := m.EndOfWordSuffix; s != nil && *s != "" {
		return nil, fmt.Errorf("BPE model end_of_word_suffix %q is not supported", *s)
	}
	var vocab map[string]int
	if err := json.Unmarshal(m.Vocab, &vocab); err != nil || vocab == nil {
		return nil, fmt.Errorf("BPE model vocab is not an object of token ids: %v", err)
	}
	b := &bpeModel{
		vocab:        vocab,
		unkID:        -1,
		fuseUnk:      m.FuseUnk,
		byteFallback: m.ByteFallback,
		ignoreMerges: m.IgnoreMerges,
	}
	for tok, id := range vocab {
		if id < 0 || id > 1<<24 {
			return nil, fmt.Errorf("BPE model token %q has invalid id %d", tok, id)
		}
	}
	for i := range 256 {
		b.byteIDs[i], b.fallbackIDs[i] = -1, -1
		if id, ok := vocab[string(byteToRune[i])]; ok {
			b.byteIDs[i] = id
		}
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", i)]; ok {
			b.fallbackIDs[i] = id
		}
	}
	if u := m.UnkToken; u != nil {
		id, ok := vocab[*u]
		if !ok {
			return nil, fmt.Errorf("BPE model unk_token %q is not in the vocabulary", *u)
		}
		b.unkID = id
	}
	if err := b.setMerges(m.Merges); err != nil {
		return nil, err
	}
	return b, nil
}

// setMerges reads the merge list, either as "left right" strings (the
// classic format, where lines starting with "#version" are comments) or as
// [left, right] pairs (tokenizers >= 0.20). A merge's rank is its position;
// like tokenizers, a repeated pair keeps the last rank.
func (b *bpeModel) setMerges(raw json.RawMessage) error {
	var pairs [][2]string
	var asStrings []string
	if len(raw) == 0 || string(raw) == "null" {
		return errors.New("BPE model has no merges")
	}
	if err := json.Unmarshal(raw, &asStrings); err == nil {
		pairs = make([][2]string, 0, len(asStrings))
		for i, m := range asStrings {
			if strings.HasPrefix(m, "#version") {
				continue
			}
			l, r, ok := strings.Cut(m, " ")
			if !ok || l == "" || r == "" || strings.Contains(r, " ") {
				return fmt.Errorf("BPE merge %d %q is not of the form \"left right\"", i, m)
			}
			pairs = append(pairs, [2]string{l, r})
		}
	} else if err := json.Unmarshal(raw, &pairs); err != nil {
		return fmt.Errorf("BPE model merges: %w", err)
	}
	b.merges = make(map[uint64]bpeMerge, len(pairs))
	for i, p := range pairs {
		l, okL := b.vocab[p[0]]
		r, okR := b.vocab[p[1]]
		m, okM := b.vocab[p[0]+p[1]]
		if !okL || !okR || !okM {
			return fmt.Errorf("BPE merge %d (%q %q) uses a token missing from the vocabulary", i, p[0], p[1])
		}
		b.merges[pairKey(l, r)] = bpeMerge{rank: int32(i), id: int32(m)}
	}
	return nil
}

// encodeWord appends the ids of one pre-token. With byteLevel the word is
// raw text whose bytes the vocabulary spells in GPT-2's byte alphabet (the
// ByteLevel pre-tokenizer's output, mapped here rather than materialized).
func (b *bpeModel) encodeWord(word string, byteLevel bool, out []int) []int {
	if word == "" {
		return out
	}
	if b.ignoreMerges {
		// Llama-3: a pre-token that is itself a token is kept whole, even
		// where the merges would split it.
		key := word
		if byteLevel {
			key = byteLevelString(word)
		}
		if id, ok := b.vocab[key]; ok {
			return append(out, id)
		}
	}
	return b.mergeAll(b.symbols(word, byteLevel), out)
}

// symbols is merge_word's first half: one symbol per character (per byte
// for byte-level words). A character missing from the vocabulary becomes
// its "<0xNN>" byte tokens with byte_fallback (when all of them exist), else
// unk_token, consecutive unknowns fused into one with fuse_unk; without
// unk_token it is dropped. As in tokenizers, a pending unknown is only
// flushed by the next character found in the vocabulary (or the end), so
// byte-fallback tokens can precede it.
func (b *bpeModel) symbols(word string, byteLevel bool) []int32 {
	syms := make([]int32, 0, len(word))
	pendingUnk := false
	known := func(id int) {
		if pendingUnk {
			syms = append(syms, int32(b.unkID))
			pendingUnk = false
		}
		syms = append(syms, int32(id))
	}
	unknown := func(char string) {
		if b.byteFallback {
			ok := true
			for i := 0; i < len(char); i++ {
				ok = ok && b.fallbackIDs[char[i]] >= 0
			}
			if ok {
				for i := 0; i < len(char); i++ {
					syms = append(syms, int32(b.fallbackIDs[char[i]]))
				}
				return
			}
		}
		if b.unkID < 0 {
			return
		}
		if pendingUnk && !b.fuseUnk {
			syms = append(syms, int32(b.unkID))
		}
		pendingUnk = true
	}
	if byteLevel {
		for i := 0; i < len(word); i++ {
			if id := b.byteIDs[word[i]]; id >= 0 {
				known(id)
			} else {
				unknown(string(byteToRune[word[i]]))
			}
		}
	} else {
		for i := 0; i < len(word); {
			_, w := utf8.DecodeRuneInString(word[i:])
			if id, ok := b.vocab[word[i:i+w]]; ok {
				known(id)
			} else {
				unknown(word[i : i+w])
			}
			i += w
		}
	}
	if pendingUnk {
		syms = append(syms, int32(b.unkID))
	}
	return syms
}

// mergeAll is Word::merge_all without dropout: a heap of candidate merges
// ordered by rank (lowest first), ties going to the leftmost, candidates
// made stale by earlier merges skipped.
func (b *bpeModel) mergeAll(ids []int32, out []int) []int {
	if len(ids) == 0 {
		return out
	}
	type sym struct {
		id         int32 // -2: merged away
		prev, next int32
	}
	syms := make([]sym, len(ids))
	for i, id := range ids {
		syms[i] = sym{id: id, prev: int32(i - 1), next: int32(i + 1)}
	}
	syms[len(syms)-1].next = -1

	var agenda pairHeap
	add := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		if m, ok := b.merges[pairKey(int(syms[l].id), int(syms[r].id))]; ok {
			// The heap prefers high scores, so use the negated rank; size
			// carries the merged id to detect stale entries.
			agenda.push(symbolPair{left: l, right: r, size: m.id, score: -float32(m.rank)})
		}
	}
	for i := 1; i < len(syms); i++ {
		add(int32(i-1), int32(i))
	}
	for len(agenda) > 0 {
		p := agenda.pop()
		l, r := p.left, p.right
		// Stale if l was merged away, or r is no longer l's neighbour, or
		// either side changed so the pair no longer merges into the
		// recorded token.
		if syms[l].id == -2 || syms[l].next != r || syms[r].id == -2 {
			continue
		}
		if m, ok := b.merges[pairKey(int(syms[l].id), int(syms[r].id))]; !ok || m.id != p.size {
			continue
		}
		syms[l].id = p.size
		syms[l].next = syms[r].next
		if syms[r].next >= 0 {
			syms[syms[r].next].prev = l
		}
		syms[r].id = -2
		add(syms[l].prev, l)
		add(l, syms[l].next)
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, int(syms[i].id))
	}
	return out
}
