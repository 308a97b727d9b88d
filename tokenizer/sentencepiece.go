package tokenizer

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

// spaceSymbol is U+2581 LOWER ONE EIGHTH BLOCK, which SentencePiece uses in
// pieces in place of the ASCII space so that whitespace is an ordinary,
// visible character of the vocabulary.
const spaceSymbol = "\u2581"

// replacementChar is what SentencePiece substitutes for each byte of
// malformed UTF-8, both when normalizing input and when decoding byte pieces.
const replacementChar = "\uFFFD"

// SentencePiece is a SentencePiece BPE tokenizer (the Llama / Llama-2 /
// Mistral family). It reproduces the reference C++ implementation's
// normalization (dummy prefix, whitespace escaping, optional extra-whitespace
// removal), its score-driven BPE merge order, its byte fallback and its
// decoding rules, so that Encode yields the same ids as
// sentencepiece.SentencePieceProcessor.encode on the same string.
//
// A SentencePiece is immutable after loading and safe for concurrent use.
type SentencePiece struct {
	pieces []string
	scores []float32
	types  []PieceType

	// mergeable holds the pieces a BPE merge may produce (Normal,
	// UserDefined, Unused), reserved the others (Unknown, Control, Byte).
	// The split mirrors sentencepiece's pieces_/reserved_id_map_: a merge
	// never yields "<s>" or "<0x41>" even if the text spells them out.
	mergeable map[string]int32
	reserved  map[string]int32

	maxPieceLen int // longest mergeable piece in bytes; longer pairs cannot merge

	// userDefined pieces are matched greedily (longest first) before BPE and
	// never merged further, as sentencepiece's PrefixMatcher does.
	userDefined    map[string]struct{}
	maxUserDefined int

	byteIDs [256]int32 // id of "<0xNN>", or -1

	unkID, bosID, eosID int
	byteFallback        bool
	hasUnused           bool
	splitWords          bool // see canSplitWords
	unkSurface          string

	addDummyPrefix         bool
	removeExtraWhitespaces bool
	escapeWhitespaces      bool
}

var _ Tokenizer = (*SentencePiece)(nil)

// LoadSentencePiece reads a SentencePiece tokenizer.model (a serialized
// ModelProto). Only BPE models with identity normalization (no precompiled
// character map) are supported, which covers Llama, Llama-2 and Mistral;
// anything else is rejected with an error rather than tokenized differently
// from the reference.
func LoadSentencePiece(path string) (*SentencePiece, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := parseSentencePiece(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// parseSentencePiece builds a tokenizer from the bytes of a ModelProto.
func parseSentencePiece(data []byte) (*SentencePiece, error) {
	if len(data) == 0 {
		return nil, errors.New("empty SentencePiece model")
	}
	m, err := parseModelProto(data)
	if err != nil {
		return nil, fmt.Errorf("not a valid SentencePiece model: %w", err)
	}
	return newSentencePiece(m)
}

// newSentencePiece validates a decoded model and builds the lookup tables.
func newSentencePiece(m *modelProto) (*SentencePiece, error) {
	if len(m.pieces) == 0 {
		return nil, errors.New("SentencePiece model has no pieces")
	}
	if len(m.pieces) > math.MaxInt32 {
		return nil, errors.New("SentencePiece model has too many pieces")
	}
	switch m.modelType {
	case modelBPE:
	case modelUnigram:
		return nil, errors.New("SentencePiece model is a Unigram model; only BPE models are supported")
	case modelWord, modelChar:
		return nil, fmt.Errorf("SentencePiece model type %d (word/char) is not supported; only BPE", m.modelType)
	default:
		return nil, fmt.Errorf("unknown SentencePiece model type %d", m.modelType)
	}
	if len(m.precompiledCharsmap) > 0 {
		return nil, fmt.Errorf("SentencePiece normalizer %q uses a precompiled character map, which is not supported (only identity normalization)", m.normalizerName)
	}
	if m.treatWhitespaceAsSuffix {
		return nil, errors.New("SentencePiece models with treat_whitespace_as_suffix are not supported")
	}

	t := &SentencePiece{
		pieces:                 m.pieces,
		scores:                 m.scores,
		types:                  m.types,
		mergeable:              make(map[string]int32, len(m.pieces)),
		reserved:               make(map[string]int32),
		unkID:                  -1,
		bosID:                  -1,
		eosID:                  -1,
		byteFallback:           m.byteFallback,
		unkSurface:             m.unkSurface,
		addDummyPrefix:         m.addDummyPrefix,
		removeExtraWhitespaces: m.removeExtraWhitespaces,
		escapeWhitespaces:      m.escapeWhitespaces,
	}
	for i := range t.byteIDs {
		t.byteIDs[i] = -1
	}
	for i, p := range m.pieces {
		typ := m.types[i]
		if _, dup := t.mergeable[p]; dup {
			return nil, fmt.Errorf("piece %d %q is defined twice", i, p)
		}
		if _, dup := t.reserved[p]; dup {
			return nil, fmt.Errorf("piece %d %q is defined twice", i, p)
		}
		switch typ {
		case PieceNormal, PieceUserDefined, PieceUnused:
			t.mergeable[p] = int32(i)
			t.maxPieceLen = max(t.maxPieceLen, len(p))
		default:
			t.reserved[p] = int32(i)
		}
		switch typ {
		case PieceUserDefined:
			if t.userDefined == nil {
				t.userDefined = make(map[string]struct{})
			}
			t.userDefined[p] = struct{}{}
			t.maxUserDefined = max(t.maxUserDefined, len(p))
		case PieceUnused:
			t.hasUnused = true
		case PieceUnknown:
			if t.unkID >= 0 {
				return nil, fmt.Errorf("unknown piece defined twice (ids %d and %d)", t.unkID, i)
			}
			t.unkID = i
		case PieceByte:
			b, ok := parseBytePiece(p)
			if !ok {
				return nil, fmt.Errorf("piece %d %q has type BYTE but is not of the form <0xNN>", i, p)
			}
			t.byteIDs[b] = int32(i)
		}
	}
	if t.unkID < 0 {
		return nil, errors.New("SentencePiece model defines no unknown piece")
	}
	if t.byteFallback {
		for b, id := range t.byteIDs {
			if id < 0 {
				return nil, fmt.Errorf("byte_fallback is enabled but byte piece <0x%02X> is missing", b)
			}
		}
	}
	// Word splitting is only an optimization; it is off when Unused pieces
	// exist because sentencepiece resegments them using the last split seen
	// anywhere in the text, which a per-word cache cannot reproduce.
	t.splitWords = !t.hasUnused && canSplitWords(t.pieces, t.types, t.space())
	// Like sentencepiece's bos_id()/eos_id(): the id of the configured
	// piece if it is a control symbol, else -1.
	if id, ok := t.reserved[m.bosPiece]; ok && t.types[id] == PieceControl {
		t.bosID = int(id)
	}
	if id, ok := t.reserved[m.eosPiece]; ok && t.types[id] == PieceControl {
		t.eosID = int(id)
	}
	return t, nil
}

// parseBytePiece recognizes the byte-fallback piece spelling "<0xNN>" (two
// upper-case hex digits, as sentencepiece writes them).
func parseBytePiece(p string) (byte, bool) {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(p[3])
	lo, ok2 := hexDigit(p[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// VocabSize is the number of pieces (ids are 0..VocabSize()-1).
func (t *SentencePiece) VocabSize() int { return len(t.pieces) }

// BOS is the id of the beginning-of-sequence control piece, or -1.
func (t *SentencePiece) BOS() int { return t.bosID }

// EOS is the id of the end-of-sequence control piece, or -1.
func (t *SentencePiece) EOS() int { return t.eosID }

// UNK is the id of the unknown piece.
func (t *SentencePiece) UNK() int { return t.unkID }

// Piece returns the vocabulary string of id as stored in the model (with
// "▁" for spaces and "<0xNN>" for byte pieces), or "" if id is out of range.
func (t *SentencePiece) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// Score returns the merge score of id (0 if out of range).
func (t *SentencePiece) Score(id int) float32 {
	if id < 0 || id >= len(t.scores) {
		return 0
	}
	return t.scores[id]
}

// Type returns the piece type of id (0 if out of range).
func (t *SentencePiece) Type(id int) PieceType {
	if id < 0 || id >= len(t.types) {
		return 0
	}
	return t.types[id]
}

// pieceToID mirrors ModelInterface::PieceToId: reserved pieces first, then
// mergeable ones, else the unknown id.
func (t *SentencePiece) pieceToID(p string) int {
	if id, ok := t.reserved[p]; ok {
		return int(id)
	}
	if id, ok := t.mergeable[p]; ok {
		return int(id)
	}
	return t.unkID
}

// matchUserDefined returns the length of the longest user-defined piece that
// prefixes s, or 0.
func (t *SentencePiece) matchUserDefined(s string) int {
	for n := min(t.maxUserDefined, len(s)); n > 0; n-- {
		if _, ok := t.userDefined[s[:n]]; ok {
			return n
		}
	}
	return 0
}

// normalizePrefix returns the normalized form of the first character of s
// and how many bytes of s it consumed. With identity normalization that is
// the character itself, a whole user-defined symbol, or U+FFFD for one byte
// of malformed UTF-8 (sentencepiece's Normalizer::NormalizePrefix).
func (t *SentencePiece) normalizePrefix(s string) (string, int) {
	if t.userDefined != nil {
		if n := t.matchUserDefined(s); n > 0 {
			return s[:n], n
		}
	}
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n == 1 {
		return replacementChar, 1
	}
	return s[:n], n
}

// normalize applies the model's NormalizerSpec the way sentencepiece's
// Normalizer::Normalize does: optionally drop leading, trailing and repeated
// spaces; prepend the dummy-prefix space (so "world" and "hello world" share
// the piece "▁world"); and replace every ASCII space (only 0x20 — tabs and
// newlines stay as they are and usually end up as byte pieces) by "▁".
func (t *SentencePiece) normalize(text string) string {
	if t.userDefined == nil && !t.removeExtraWhitespaces {
		return t.normalizeIdentity(text)
	}
	return t.normalizeGeneral(text)
}

// normalizeIdentity is normalize for the common case (Llama) of no
// user-defined symbols and no whitespace removal: a single pass that only
// escapes spaces and replaces malformed UTF-8.
func (t *SentencePiece) normalizeIdentity(text string) string {
	if text == "" {
		return ""
	}
	space := t.space()
	buf := make([]byte, 0, len(text)+len(text)/2+len(space))
	if t.addDummyPrefix {
		buf = append(buf, space...)
	}
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			if c == ' ' {
				buf = append(buf, space...)
			} else {
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && n == 1 {
			buf = append(buf, replacementChar...)
		} else {
			buf = append(buf, text[i:i+n]...)
		}
		i += n
	}
	return string(buf)
}

// normalizeGeneral is a direct transcription of sentencepiece's
// Normalizer::Normalize for identity normalization.
func (t *SentencePiece) normalizeGeneral(text string) string {
	if t.removeExtraWhitespaces {
		for text != "" {
			p, n := t.normalizePrefix(text)
			if p != " " {
				break
			}
			text = text[n:]
		}
	}
	if text == "" {
		return ""
	}
	var b strings.Builder
	b.Grow(len(text) + len(text)/2 + len(spaceSymbol))
	space := " "
	if t.escapeWhitespaces {
		space = spaceSymbol
	}
	if t.addDummyPrefix {
		b.WriteString(space)
	}
	isPrevSpace := t.removeExtraWhitespaces
	for text != "" {
		p, n := t.normalizePrefix(text)
		for isPrevSpace && strings.HasPrefix(p, " ") {
			p = p[1:]
		}
		if p != "" {
			for i := 0; i < len(p); i++ {
				if p[i] == ' ' {
					b.WriteString(space)
				} else {
					b.WriteByte(p[i])
				}
			}
			isPrevSpace = p[len(p)-1] == ' '
		}
		text = text[n:]
		if !t.removeExtraWhitespaces {
			isPrevSpace = false
		}
	}
	out := b.String()
	if t.removeExtraWhitespaces {
		for strings.HasSuffix(out, space) {
			out = out[:len(out)-len(space)]
		}
	}
	return out
}

// Encode tokenizes text into ids, without BOS/EOS, exactly as
// sentencepiece's EncodeAsIds: normalize, BPE-merge, then map pieces to ids,
// spelling unknown pieces as UTF-8 byte pieces when the model has byte
// fallback (Llama-2 does) or collapsing runs of them into one unknown id
// when it does not.
//
// sentencepiece encodes the whole normalized text as one symbol sequence
// (it does not pre-split on whitespace or newlines), and so does this
// method semantically. As an optimization, when the vocabulary proves that
// no piece can span the boundary before a word's leading "▁" (see
// splitWords), the text is cut at those boundaries and each distinct word
// is merged once; this yields exactly the same merges because the merge
// order restricted to one word is the global order restricted to it. Either
// way the cost is O(n log n) in the length of the text.
func (t *SentencePiece) Encode(text string) []int {
	norm := t.normalize(text)
	if norm == "" {
		return nil
	}
	e := encoder{t: t, out: make([]int, 0, len(norm)/3+1)}
	if t.splitWords {
		e.cache = make(map[string][]int32)
	}
	// Symbol positions are int32 to halve the working memory; a text of
	// 1 GiB or more (far beyond any practical use) is encoded in chunks cut
	// before a "▁", which can only differ from the reference if a piece
	// spans the cut.
	const chunk = 1 << 30
	for len(norm) > chunk {
		cut := strings.LastIndex(norm[:chunk], t.space())
		if cut <= 0 {
			cut = chunk
			for !utf8.RuneStart(norm[cut]) {
				cut--
			}
		}
		e.encode(norm[:cut])
		norm = norm[cut:]
	}
	e.encode(norm)
	return e.out
}

// space is the normalized spelling of a space.
func (t *SentencePiece) space() string {
	if t.escapeWhitespaces {
		return spaceSymbol
	}
	return " "
}

// canSplitWords reports whether cutting normalized text before every space
// symbol that follows a non-space character is guaranteed not to change the
// BPE result: true when no mergeable piece contains such an "x▁" boundary,
// since every BPE symbol is a vocabulary piece (or a single character) and a
// symbol spanning a cut would contain one. Llama's vocabulary passes: its
// pieces have "▁" only at the front ("▁the") or in pure runs ("▁▁▁▁").
func canSplitWords(pieces []string, types []PieceType, space string) bool {
	for i, p := range pieces {
		switch types[i] {
		case PieceNormal, PieceUserDefined, PieceUnused:
		default:
			continue
		}
		for k := 1; k < len(p); k++ {
			if strings.HasPrefix(p[k:], space) && !strings.HasSuffix(p[:k], space) {
				return false
			}
		}
	}
	return true
}

// encoder holds the state of one Encode call: the output, the buffers
// reused across words, and the per-call cache of already-merged words.
type encoder struct {
	t         *SentencePiece
	out       []int
	isPrevUnk bool // for folding runs of unknown pieces without byte fallback

	syms     []symbol
	agenda   pairHeap
	revMerge map[string][2]string
	cache    map[string][]int32
	raw      []int32
}

// encode appends the ids of a normalized string to e.out.
func (e *encoder) encode(norm string) {
	if !e.t.splitWords {
		e.raw = e.merge(norm, e.raw[:0])
		e.emit(norm, e.raw)
		return
	}
	space := e.t.space()
	start := 0
	for start < len(norm) {
		// The word runs up to the next space symbol that follows a
		// non-space character (runs of spaces stay together, so "▁▁▁"
		// pieces can still form).
		end := start
		for end < len(norm) && strings.HasPrefix(norm[end:], space) {
			end += len(space)
		}
		if end < len(norm) {
			if i := strings.Index(norm[end:], space); i >= 0 {
				end += i
			} else {
				end = len(norm)
			}
		}
		word := norm[start:end]
		raw, ok := e.cache[word]
		if !ok {
			raw = slices.Clone(e.merge(word, e.raw[:0]))
			e.cache[word] = raw
		}
		e.emit(word, raw)
		start = end
	}
}

// merge runs sentencepiece's bpe::Model::Encode on a normalized string and
// appends one entry per resulting piece to raw: its id, or -(byte length)
// for a piece that is unknown to the vocabulary.
//
// The algorithm: split into characters (or whole user-defined symbols),
// push every adjacent pair that forms a vocabulary piece onto a priority
// queue ordered by the piece's score, then repeatedly pop the best pair,
// skip it if either side has changed since it was pushed, merge it, and
// push the two new pairs it forms with its neighbours.
func (e *encoder) merge(norm string, raw []int32) []int32 {
	t := e.t
	syms := e.syms[:0]
	for pos := 0; pos < len(norm); {
		n, freeze := 0, false
		if t.userDefined != nil {
			n = t.matchUserDefined(norm[pos:])
			freeze = n > 0
		}
		if n == 0 {
			_, n = utf8.DecodeRuneInString(norm[pos:])
		}
		idx := int32(len(syms))
		syms = append(syms, symbol{start: int32(pos), end: int32(pos + n), prev: idx - 1, next: idx + 1, freeze: freeze})
		pos += n
	}
	if len(syms) == 0 {
		return raw
	}
	syms[len(syms)-1].next = -1
	e.syms = syms

	agenda := e.agenda[:0]
	maybeAdd := func(left, right int32) {
		if left < 0 || right < 0 || syms[left].freeze || syms[right].freeze {
			return
		}
		start, end := syms[left].start, syms[right].end
		if int(end-start) > t.maxPieceLen {
			return
		}
		piece := norm[start:end]
		id, ok := t.mergeable[piece]
		if !ok {
			return
		}
		agenda.push(symbolPair{left: left, right: right, size: end - start, score: t.scores[id]})
		if t.types[id] == PieceUnused {
			// Remember how Unused pieces were formed so they can be split
			// back into their parts (sentencepiece's "resegment").
			if e.revMerge == nil {
				e.revMerge = make(map[string][2]string)
			}
			e.revMerge[piece] = [2]string{norm[start:syms[left].end], norm[syms[right].start:end]}
		}
	}
	for i := int32(1); i < int32(len(syms)); i++ {
		maybeAdd(i-1, i)
	}

	for len(agenda) > 0 {
		top := agenda.pop()
		l, r := &syms[top.left], &syms[top.right]
		// A pair is stale once either side was merged into something else:
		// merged-away symbols are empty and symbols only ever grow.
		if l.start == l.end || r.start == r.end || (l.end-l.start)+(r.end-r.start) != top.size {
			continue
		}
		l.end = r.end
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = top.left
		}
		r.end = r.start
		maybeAdd(l.prev, top.left)
		maybeAdd(top.left, l.next)
	}
	e.agenda = agenda

	for i := int32(0); i != -1; i = syms[i].next {
		raw = e.appendPiece(raw, norm[syms[i].start:syms[i].end])
	}
	return raw
}

// appendPiece appends the raw entry of one merged piece, first splitting
// Unused pieces back into the parts they were merged from.
func (e *encoder) appendPiece(raw []int32, piece string) []int32 {
	t := e.t
	id := t.pieceToID(piece)
	switch t.types[id] {
	case PieceUnused:
		if parts, ok := e.revMerge[piece]; ok {
			raw = e.appendPiece(raw, parts[0])
			return e.appendPiece(raw, parts[1])
		}
	case PieceUnknown:
		return append(raw, -int32(len(piece)))
	}
	return append(raw, int32(id))
}

// emit turns the raw entries of the normalized string s into ids: known
// pieces as they are, unknown ones as byte pieces (byte fallback) or as one
// unknown id per run, which is what sentencepiece does.
func (e *encoder) emit(s string, raw []int32) {
	t := e.t
	off := 0
	for _, v := range raw {
		if v >= 0 {
			e.out = append(e.out, int(v))
			off += len(t.pieces[v])
			e.isPrevUnk = false
			continue
		}
		n := int(-v)
		switch {
		case t.byteFallback:
			for i := off; i < off+n; i++ {
				e.out = append(e.out, int(t.byteIDs[s[i]]))
			}
		case !e.isPrevUnk:
			e.out = append(e.out, t.unkID)
		}
		off += n
		e.isPrevUnk = true
	}
}

// symbol is a node of the doubly linked list of current BPE symbols; it
// covers norm[start:end] and is empty (start == end) once merged away.
type symbol struct {
	start, end int32
	prev, next int32 // -1 at the ends
	freeze     bool  // user-defined symbol: never merged
}

// symbolPair is a merge candidate: symbols left and right (adjacent when it
// was pushed) would form a vocabulary piece of size bytes with score score.
type symbolPair struct {
	left, right int32
	size        int32
	score       float32
}

// before orders the agenda like sentencepiece's SymbolPairComparator: the
// highest score first and, among equal scores, the leftmost pair. (Two
// entries can tie on both only if one is stale, so the heap's order among
// exact ties cannot change the result.)
func (a *symbolPair) before(b *symbolPair) bool {
	return a.score > b.score || (a.score == b.score && a.left < b.left)
}

// pairHeap is a binary max-heap of merge candidates. It is hand-rolled
// rather than container/heap to avoid interface boxing in the hot loop.
type pairHeap []symbolPair

func (h *pairHeap) push(p symbolPair) {
	*h = append(*h, p)
	s := *h
	i := len(s) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !s[i].before(&s[parent]) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *pairHeap) pop() symbolPair {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		best := l
		if r := l + 1; r < len(s) && s[r].before(&s[l]) {
			best = r
		}
		if !s[best].before(&s[i]) {
			break
		}
		s[i], s[best] = s[best], s[i]
		i = best
	}
	*h = s
	return top
}

// EncodePieces is Encode returning the pieces' strings instead of ids
// (byte-fallback bytes appear as "<0xNN>"), handy for inspecting output.
func (t *SentencePiece) EncodePieces(text string) []string {
	ids := t.Encode(text)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = t.pieces[id]
	}
	return out
}

// Decode turns ids back into text like sentencepiece's DecodeIds: control
// pieces (BOS/EOS) vanish, "▁" becomes a space, the dummy-prefix space of
// the first piece is dropped, runs of byte pieces are reassembled into UTF-8
// (each byte of an invalid sequence becoming U+FFFD), and the unknown piece
// renders as the model's unk_surface (" ⁇ "). Ids outside the vocabulary,
// which sentencepiece rejects with an error, also render as unk_surface.
func (t *SentencePiece) Decode(ids []int) string {
	var (
		text      strings.Builder
		bytesBuf  []byte
		isBosWS   = true // a leading "▁" may still be the dummy prefix
		bosWSSeen bool
	)
	flushBytes := func() {
		for b := bytesBuf; len(b) > 0; {
			r, n := utf8.DecodeRune(b)
			if r == utf8.RuneError && n == 1 {
				text.WriteString(replacementChar)
			} else {
				text.Write(b[:n])
			}
			b = b[n:]
		}
		bytesBuf = bytesBuf[:0]
	}
	for _, id := range ids {
		if id >= 0 && id < len(t.pieces) && t.types[id] == PieceByte {
			b, _ := parseBytePiece(t.pieces[id])
			bytesBuf = append(bytesBuf, b)
			continue
		}
		flushBytes()
		// The dummy prefix can only be the first visible piece.
		if bosWSSeen || text.Len() > 0 {
			isBosWS = false
		}
		bosWSSeen = t.decodePiece(&text, id, isBosWS)
	}
	flushBytes()
	return text.String()
}

// decodePiece is sentencepiece's DecodeSentencePiece for a non-byte id: it
// writes the piece's text to b and reports whether it consumed a leading
// dummy-prefix "▁".
func (t *SentencePiece) decodePiece(b *strings.Builder, id int, isBosWS bool) bool {
	if id < 0 || id >= len(t.pieces) {
		b.WriteString(t.unkSurface)
		return false
	}
	switch t.types[id] {
	case PieceControl:
		return false
	case PieceUnknown:
		b.WriteString(t.unkSurface)
		return false
	}
	piece := t.pieces[id]
	consumed := false
	if isBosWS && (t.addDummyPrefix || t.removeExtraWhitespaces) {
		piece, consumed = strings.CutPrefix(piece, spaceSymbol)
		if t.removeExtraWhitespaces {
			consumed = false
		}
	}
	for {
		i := strings.Index(piece, spaceSymbol)
		if i < 0 {
			b.WriteString(piece)
			return consumed
		}
		b.WriteString(piece[:i])
		b.WriteByte(' ')
		piece = piece[i+len(spaceSymbol):]
	}
}
