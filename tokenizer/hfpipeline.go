package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// The components of a tokenizer.json pipeline that llmq implements, each
// following its namesake in the tokenizers library. Parsing is strict: a
// component type or option that is not implemented is an error naming it,
// never silently skipped, since skipping one would change the ids.

// hfComponent is the common shape of normalizers, pre-tokenizers, decoders
// and post-processors: a "type" and type-specific fields.
type hfComponent struct {
	Type string `json:"type"`

	// Sequence
	Normalizers   []json.RawMessage `json:"normalizers"`
	Pretokenizers []json.RawMessage `json:"pretokenizers"`
	Decoders      []json.RawMessage `json:"decoders"`
	Processors    []json.RawMessage `json:"processors"`

	// Prepend
	Prepend *string `json:"prepend"`
	// Replace, Split
	Pattern *struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	} `json:"pattern"`
	Content json.RawMessage `json:"content"` // Replace: string; Strip decoder: char
	// Split
	Behavior string `json:"behavior"`
	Invert   bool   `json:"invert"`
	// ByteLevel
	AddPrefixSpace *bool `json:"add_prefix_space"`
	UseRegex       *bool `json:"use_regex"`
	// Metaspace
	Replacement   string  `json:"replacement"`
	PrependScheme *string `json:"prepend_scheme"`
	Split         *bool   `json:"split"`
	// Digits
	IndividualDigits bool `json:"individual_digits"`
	// Strip (normalizer)
	StripLeft  bool `json:"strip_left"`
	StripRight bool `json:"strip_right"`
	// Strip (decoder)
	Start int `json:"start"`
	Stop  int `json:"stop"`
	// TemplateProcessing
	Single        []map[string]templatePiece `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int `json:"ids"`
	} `json:"special_tokens"`
	// RobertaProcessing, BertProcessing: [token, id]
	Sep []json.RawMessage `json:"sep"`
	Cls []json.RawMessage `json:"cls"`
}

type templatePiece struct {
	ID string `json:"id"`
}

// isNull reports whether a component is absent (missing or JSON null).
func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

func parseComponent(raw json.RawMessage, where string) (*hfComponent, error) {
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s %s: %w", where, abbreviate(string(raw)), err)
	}
	if c.Type == "" {
		return nil, fmt.Errorf("%s %s has no type", where, abbreviate(string(raw)))
	}
	return &c, nil
}

// abbreviate shortens raw JSON for an error message.
func abbreviate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// literal returns a Replace/Split pattern that is a plain string. Regex
// patterns are only supported by Split for the known pre-tokenizer regexes.
func (c *hfComponent) literal(where string) (string, error) {
	switch {
	case c.Pattern == nil:
		return "", fmt.Errorf("%s (%s) has no pattern", where, c.Type)
	case c.Pattern.String != nil:
		if *c.Pattern.String == "" {
			return "", fmt.Errorf("%s (%s) has an empty pattern", where, c.Type)
		}
		return *c.Pattern.String, nil
	case c.Pattern.Regex != nil:
		return "", fmt.Errorf("%s (%s) with regex pattern %q is not supported", where, c.Type, *c.Pattern.Regex)
	}
	return "", fmt.Errorf("%s (%s) has no pattern", where, c.Type)
}

func (c *hfComponent) contentString(where string) (string, error) {
	var s string
	if err := json.Unmarshal(c.Content, &s); err != nil {
		return "", fmt.Errorf("%s (%s): content is not a string", where, c.Type)
	}
	return s, nil
}

// ---- normalizers -----------------------------------------------------------

// A normalizer rewrites a segment of text before pre-tokenization (and the
// content of added tokens marked "normalized", so that they match the
// normalized text).
type normalizer interface {
	normalize(s string) string
}

type normSequence []normalizer

func (n normSequence) normalize(s string) string {
	for _, x := range n {
		s = x.normalize(s)
	}
	return s
}

// normUnicode is NFC, NFD, NFKC or NFKD (Qwen2 uses NFC).
type normUnicode struct{ form norm.Form }

func (n normUnicode) normalize(s string) string { return n.form.String(s) }

// normPrepend puts its string in front of a non-empty segment: Llama-2's
// converted tokenizer.json prepends "▁" this way, to every segment between
// added tokens.
type normPrepend struct{ prefix string }

func (n normPrepend) normalize(s string) string {
	if s == "" {
		return s
	}
	return n.prefix + s
}

// normReplace replaces every occurrence of a literal, leftmost first.
type normReplace struct{ old, new string }

func (n normReplace) normalize(s string) string { return strings.ReplaceAll(s, n.old, n.new) }

// normStrip removes leading and/or trailing white space.
type normStrip struct{ left, right bool }

func (n normStrip) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, isSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, isSpace)
	}
	return s
}

func parseNormalizer(raw json.RawMessage, where string) (normalizer, error) {
	c, err := parseComponent(raw, where)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var seq normSequence
		for i, r := range c.Normalizers {
			n, err := parseNormalizer(r, fmt.Sprintf("%s.normalizers[%d]", where, i))
			if err != nil {
				return nil, err
			}
			seq = append(seq, n)
		}
		return seq, nil
	case "NFC":
		return normUnicode{norm.NFC}, nil
	case "NFD":
		return normUnicode{norm.NFD}, nil
	case "NFKC":
		return normUnicode{norm.NFKC}, nil
	case "NFKD":
		return normUnicode{norm.NFKD}, nil
	case "Prepend":
		if c.Prepend == nil {
			return nil, fmt.Errorf("%s (Prepend) has no prepend string", where)
		}
		return normPrepend{*c.Prepend}, nil
	case "Replace":
		old, err := c.literal(where)
		if err != nil {
			return nil, err
		}
		s, err := c.contentString(where)
		if err != nil {
			return nil, err
		}
		return normReplace{old, s}, nil
	case "Strip":
		return normStrip{c.StripLeft, c.StripRight}, nil
	}
	return nil, fmt.Errorf("%s type %q is not supported", where, c.Type)
}

// ---- pre-tokenizers ------------------------------------------------------

// piece is a pre-token. first is set for the piece that starts at offset 0
// of the original text, which Metaspace's prepend_scheme "first" looks at.
type piece struct {
	s     string
	first bool
}

type preTokenizer interface {
	// split appends the pieces p splits into (never empty ones) to out.
	split(p piece, out []piece) []piece
}

type preSequence []preTokenizer

func (q preSequence) split(p piece, out []piece) []piece {
	cur := []piece{p}
	var next []piece
	for _, t := range q {
		next = next[:0]
		for _, c := range cur {
			next = t.split(c, next)
		}
		cur, next = next, cur
	}
	return append(out, cur...)
}

// preByteLevel is the ByteLevel pre-tokenizer without its byte-to-unicode
// mapping, which the BPE model applies (see bpeModel.encodeWord); it must
// therefore be the last pre-tokenizer.
type preByteLevel struct {
	addPrefixSpace bool
	useRegex       bool
}

func (b *preByteLevel) split(p piece, out []piece) []piece {
	s := p.s
	if b.addPrefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	if !b.useRegex {
		return appendPiece(out, s, p.first)
	}
	return appendSplits(out, p.first, splitGPT2(s, nil))
}

func appendPiece(out []piece, s string, first bool) []piece {
	if s == "" {
		return out
	}
	return append(out, piece{s, first})
}

func appendSplits(out []piece, first bool, parts []string) []piece {
	for i, s := range parts {
		out = appendPiece(out, s, first && i == 0)
	}
	return out
}

// splitBehavior is what a Split does with the matches of its pattern.
type splitBehavior int

const (
	behaviorRemoved splitBehavior = iota
	behaviorIsolated
	behaviorMergedWithPrevious
	behaviorMergedWithNext
	behaviorContiguous
)

var behaviors = map[string]splitBehavior{
	"Removed":            behaviorRemoved,
	"Isolated":           behaviorIsolated,
	"MergedWithPrevious": behaviorMergedWithPrevious,
	"MergedWithNext":     behaviorMergedWithNext,
	"Contiguous":         behaviorContiguous,
}

// matchSpan is a part of a string: a pattern match or the text between two.
type matchSpan struct {
	start, end int
	match      bool
}

// applyBehavior turns the matches of a pattern, which cover s in order, into
// pieces as NormalizedString::split does.
func applyBehavior(s string, first bool, ms []matchSpan, b splitBehavior, out []piece) []piece {
	var acc []matchSpan
	switch b {
	case behaviorIsolated:
		acc = ms
	case behaviorRemoved:
		for _, m := range ms {
			if !m.match {
				acc = append(acc, m)
			}
		}
	case behaviorContiguous:
		prev := false
		for _, m := range ms {
			if m.match == prev && len(acc) > 0 {
				acc[len(acc)-1].end = m.end
			} else {
				acc = append(acc, m)
			}
			prev = m.match
		}
	case behaviorMergedWithPrevious:
		prev := false
		for _, m := range ms {
			if m.match && !prev && len(acc) > 0 {
				acc[len(acc)-1].end = m.end
			} else {
				acc = append(acc, m)
			}
			prev = m.match
		}
	case behaviorMergedWithNext:
		prev := false
		for i := len(ms) - 1; i >= 0; i-- {
			m := ms[i]
			if m.match && !prev && len(acc) > 0 {
				acc[len(acc)-1].start = m.start
			} else {
				acc = append(acc, m)
			}
			prev = m.match
		}
		slices.Reverse(acc)
	}
	for _, m := range acc {
		out = appendPiece(out, s[m.start:m.end], first && m.start == 0)
	}
	return out
}

// preSplit is the Split pre-tokenizer, on a literal or on one of the known
// regexes (whose matches cover the whole text).
type preSplit struct {
	literal  string
	regex    func(s string, out []string) []string
	behavior splitBehavior
	invert   bool
}

func (sp *preSplit) split(p piece, out []piece) []piece {
	var ms []matchSpan
	if sp.regex != nil {
		at := 0
		for _, part := range sp.regex(p.s, nil) {
			ms = append(ms, matchSpan{at, at + len(part), true})
			at += len(part)
		}
	} else {
		ms = literalMatches(p.s, sp.literal)
	}
	if sp.invert {
		for i := range ms {
			ms[i].match = !ms[i].match
		}
	}
	return applyBehavior(p.s, p.first, ms, sp.behavior, out)
}

// literalMatches finds the non-overlapping occurrences of lit in s, leftmost
// first, with the text between them.
func literalMatches(s, lit string) []matchSpan {
	var ms []matchSpan
	prev := 0
	for i := 0; ; {
		j := strings.Index(s[i:], lit)
		if j < 0 {
			break
		}
		j += i
		if prev < j {
			ms = append(ms, matchSpan{prev, j, false})
		}
		ms = append(ms, matchSpan{j, j + len(lit), true})
		prev = j + len(lit)
		i = prev
	}
	if prev < len(s) {
		ms = append(ms, matchSpan{prev, len(s), false})
	}
	return ms
}

// charMatches makes every character satisfying f a match of its own.
func charMatches(s string, f func(rune) bool) []matchSpan {
	var ms []matchSpan
	prev := 0
	for i, r := range s {
		if f(r) {
			if prev < i {
				ms = append(ms, matchSpan{prev, i, false})
			}
			w := utf8.RuneLen(r)
			if r == utf8.RuneError {
				_, w = utf8.DecodeRuneInString(s[i:])
			}
			ms = append(ms, matchSpan{i, i + w, true})
			prev = i + w
		}
	}
	if prev < len(s) {
		ms = append(ms, matchSpan{prev, len(s), false})
	}
	return ms
}

// prependScheme is Metaspace's rule for the leading replacement character.
type prependScheme int

const (
	prependAlways prependScheme = iota
	prependFirst                // only at the very start of the text
	prependNever
)

// preMetaspace replaces spaces by the replacement character (▁), prepends
// one by its scheme and, with split, cuts before each one.
type preMetaspace struct {
	rep    string
	scheme prependScheme
	cut    bool
}

func (m *preMetaspace) split(p piece, out []piece) []piece {
	s := strings.ReplaceAll(p.s, " ", m.rep)
	if !strings.HasPrefix(s, m.rep) && (m.scheme == prependAlways || m.scheme == prependFirst && p.first) {
		s = m.rep + s
	}
	if !m.cut {
		return appendPiece(out, s, p.first)
	}
	rep, _ := utf8.DecodeRuneInString(m.rep)
	return applyBehavior(s, p.first, charMatches(s, func(r rune) bool { return r == rep }), behaviorMergedWithNext, out)
}

// preDigits splits digits (Unicode N, as Rust's char::is_numeric) from the
// rest, one per piece with individual_digits.
type preDigits struct{ individual bool }

func (d *preDigits) split(p piece, out []piece) []piece {
	b := behaviorContiguous
	if d.individual {
		b = behaviorIsolated
	}
	return applyBehavior(p.s, p.first, charMatches(p.s, isNumber), b, out)
}

func parseMetaspace(c *hfComponent, where string) (rep string, scheme prependScheme, split bool, err error) {
	if utf8.RuneCountInString(c.Replacement) != 1 {
		return "", 0, false, fmt.Errorf("%s (Metaspace): replacement %q is not one character", where, c.Replacement)
	}
	scheme = prependAlways
	switch {
	case c.PrependScheme != nil:
		switch *c.PrependScheme {
		case "always":
		case "first":
			scheme = prependFirst
		case "never":
			scheme = prependNever
		default:
			return "", 0, false, fmt.Errorf("%s (Metaspace): prepend_scheme %q is not supported", where, *c.PrependScheme)
		}
	case c.AddPrefixSpace != nil && !*c.AddPrefixSpace:
		// Files written before prepend_scheme existed.
		scheme = prependNever
	}
	return c.Replacement, scheme, c.Split == nil || *c.Split, nil
}

func parsePreTokenizer(raw json.RawMessage, where string) (preTokenizer, error) {
	c, err := parseComponent(raw, where)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var seq preSequence
		for i, r := range c.Pretokenizers {
			p, err := parsePreTokenizer(r, fmt.Sprintf("%s.pretokenizers[%d]", where, i))
			if err != nil {
				return nil, err
			}
			seq = append(seq, p)
		}
		return seq, nil
	case "ByteLevel":
		// tokenizers' defaults: add_prefix_space true, use_regex true.
		return &preByteLevel{
			addPrefixSpace: c.AddPrefixSpace == nil || *c.AddPrefixSpace,
			useRegex:       c.UseRegex == nil || *c.UseRegex,
		}, nil
	case "Split":
		b, ok := behaviors[c.Behavior]
		if !ok {
			return nil, fmt.Errorf("%s (Split): behavior %q is not supported", where, c.Behavior)
		}
		sp := &preSplit{behavior: b, invert: c.Invert}
		if c.Pattern != nil && c.Pattern.Regex != nil {
			f, ok := knownSplits[*c.Pattern.Regex]
			if !ok {
				return nil, fmt.Errorf("%s (Split): regex %q is not supported (known: the GPT-2, Llama-3, Qwen2 and Qwen3.5 patterns)", where, *c.Pattern.Regex)
			}
			sp.regex = f
			return sp, nil
		}
		if sp.literal, err = c.literal(where); err != nil {
			return nil, err
		}
		return sp, nil
	case "Metaspace":
		rep, scheme, split, err := parseMetaspace(c, where)
		if err != nil {
			return nil, err
		}
		return &preMetaspace{rep: rep, scheme: scheme, cut: split}, nil
	case "Digits":
		return &preDigits{c.IndividualDigits}, nil
	}
	return nil, fmt.Errorf("%s type %q is not supported", where, c.Type)
}

// flattenPre lists the pre-tokenizers of nested Sequences in order.
func flattenPre(p preTokenizer, out []preTokenizer) []preTokenizer {
	if seq, ok := p.(preSequence); ok {
		for _, q := range seq {
			out = flattenPre(q, out)
		}
		return out
	}
	return append(out, p)
}

// ---- decoders ----------------------------------------------------------------

// A decoder maps the token strings of ids to text, as tokenizers'
// Decoder::decode_chain: each may merge tokens; the results are joined.
type decoder interface {
	decodeChain(tokens []string) []string
}

type decSequence []decoder

func (d decSequence) decodeChain(tokens []string) []string {
	for _, x := range d {
		tokens = x.decodeChain(tokens)
	}
	return tokens
}

// decByteLevel maps the byte alphabet back to bytes. A token with a
// character outside the alphabet (an added token such as "\n\n") is kept as
// it is. Unlike tokenizers, which replaces invalid UTF-8 by U+FFFD, the
// bytes are returned as they are, so that Decode(Encode(s)) == s for any s
// (the two agree whenever the result is valid UTF-8).
type decByteLevel struct{}

func (decByteLevel) decodeChain(tokens []string) []string {
	var b strings.Builder
	for _, tok := range tokens {
		if !inByteAlphabet(tok) {
			b.WriteString(tok)
			continue
		}
		for _, r := range tok {
			b.WriteByte(runeToByte[r])
		}
	}
	return []string{b.String()}
}

func inByteAlphabet(tok string) bool {
	for _, r := range tok {
		if _, ok := runeToByte[r]; !ok {
			return false
		}
	}
	return true
}

type decReplace struct{ old, new string }

func (d decReplace) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = strings.ReplaceAll(t, d.old, d.new)
	}
	return out
}

// decByteFallback turns runs of "<0xNN>" tokens into the text their bytes
// spell, or one U+FFFD per byte if they are not valid UTF-8.
type decByteFallback struct{}

func (decByteFallback) decodeChain(tokens []string) []string {
	var out []string
	var bytes []byte
	flush := func() {
		if len(bytes) == 0 {
			return
		}
		if utf8.Valid(bytes) {
			out = append(out, string(bytes))
		} else {
			for range bytes {
				out = append(out, replacementChar)
			}
		}
		bytes = bytes[:0]
	}
	for _, t := range tokens {
		if b, ok := parseFallbackToken(t); ok {
			bytes = append(bytes, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// parseFallbackToken recognizes "<0xNN>" (hex digits of either case, as
// tokenizers' ByteFallback decoder reads them).
func parseFallbackToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(t[3:5]) {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | (c - '0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

type decFuse struct{}

func (decFuse) decodeChain(tokens []string) []string { return []string{strings.Join(tokens, "")} }

// decStrip removes up to start leading and stop trailing copies of a
// character from each token (Llama-2 drops the space its "▁" prefix became).
type decStrip struct {
	char        rune
	start, stop int
}

func (d decStrip) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		rs := []rune(t)
		lo := 0
		for lo < d.start && lo < len(rs) && rs[lo] == d.char {
			lo++
		}
		hi := len(rs)
		for n := 0; n < d.stop && hi > lo && rs[hi-1] == d.char; n++ {
			hi--
		}
		out[i] = string(rs[lo:hi])
	}
	return out
}

// decMetaspace turns the replacement character back into spaces, except in
// the first token when a prefix was prepended: there every one is dropped
// (tokenizers' behaviour, not only the prepended one).
type decMetaspace struct {
	rep    rune
	scheme prependScheme
}

func (d decMetaspace) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		drop := i == 0 && d.scheme != prependNever
		out[i] = strings.Map(func(r rune) rune {
			switch {
			case r != d.rep:
				return r
			case drop:
				return -1
			}
			return ' '
		}, t)
	}
	return out
}

func parseDecoder(raw json.RawMessage, where string) (decoder, error) {
	c, err := parseComponent(raw, where)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var seq decSequence
		for i, r := range c.Decoders {
			d, err := parseDecoder(r, fmt.Sprintf("%s.decoders[%d]", where, i))
			if err != nil {
				return nil, err
			}
			seq = append(seq, d)
		}
		return seq, nil
	case "ByteLevel":
		return decByteLevel{}, nil
	case "Replace":
		old, err := c.literal(where)
		if err != nil {
			return nil, err
		}
		s, err := c.contentString(where)
		if err != nil {
			return nil, err
		}
		return decReplace{old, s}, nil
	case "ByteFallback":
		return decByteFallback{}, nil
	case "Fuse":
		return decFuse{}, nil
	case "Strip":
		s, err := c.contentString(where)
		if err != nil || utf8.RuneCountInString(s) != 1 {
			return nil, fmt.Errorf("%s (Strip): content is not one character", where)
		}
		r, _ := utf8.DecodeRuneInString(s)
		if c.Start < 0 || c.Stop < 0 {
			return nil, fmt.Errorf("%s (Strip): negative start or stop", where)
		}
		return decStrip{r, c.Start, c.Stop}, nil
	case "Metaspace":
		rep, scheme, _, err := parseMetaspace(c, where)
		if err != nil {
			return nil, err
		}
		r, _ := utf8.DecodeRuneInString(rep)
		return decMetaspace{r, scheme}, nil
	}
	return nil, fmt.Errorf("%s type %q is not supported", where, c.Type)
}

// ---- post-processors ---------------------------------------------------------

// parsePostProcessor returns the ids a post-processor puts before and after
// a single sequence (what tokenizers' encode adds with add_special_tokens).
func parsePostProcessor(raw json.RawMessage, where string) (prefix, suffix []int, err error) {
	c, err := parseComponent(raw, where)
	if err != nil {
		return nil, nil, err
	}
	switch c.Type {
	case "Sequence":
		// Each processor wraps what the previous ones produced.
		for i, r := range c.Processors {
			p, s, err := parsePostProcessor(r, fmt.Sprintf("%s.processors[%d]", where, i))
			if err != nil {
				return nil, nil, err
			}
			prefix = append(slices.Clone(p), prefix...)
			suffix = append(suffix, s...)
		}
		return prefix, suffix, nil
	case "ByteLevel":
		return nil, nil, nil // offsets only
	case "TemplateProcessing":
		seen := false
		for i, item := range c.Single {
			if len(item) != 1 {
				return nil, nil, fmt.Errorf("%s (TemplateProcessing): single[%d] is not one piece", where, i)
			}
			for kind, p := range item {
				switch kind {
				case "Sequence":
					if p.ID != "A" || seen {
						return nil, nil, fmt.Errorf("%s (TemplateProcessing): single template with sequence %q is not supported", where, p.ID)
					}
					seen = true
				case "SpecialToken":
					st, ok := c.SpecialTokens[p.ID]
					if !ok {
						return nil, nil, fmt.Errorf("%s (TemplateProcessing): special token %q is not defined", where, p.ID)
					}
					if seen {
						suffix = append(suffix, st.IDs...)
					} else {
						prefix = append(prefix, st.IDs...)
					}
				default:
					return nil, nil, fmt.Errorf("%s (TemplateProcessing): piece %q is not supported", where, kind)
				}
			}
		}
		if !seen {
			return nil, nil, fmt.Errorf("%s (TemplateProcessing): single template has no $A", where)
		}
		return prefix, suffix, nil
	case "BertProcessing", "RobertaProcessing":
		cls, err := processorToken(c.Cls)
		if err != nil {
			return nil, nil, fmt.Errorf("%s (%s): cls: %w", where, c.Type, err)
		}
		sep, err := processorToken(c.Sep)
		if err != nil {
			return nil, nil, fmt.Errorf("%s (%s): sep: %w", where, c.Type, err)
		}
		return []int{cls}, []int{sep}, nil
	}
	return nil, nil, fmt.Errorf("%s type %q is not supported", where, c.Type)
}

// processorToken reads BertProcessing's ["[CLS]", 101] form.
func processorToken(raw []json.RawMessage) (int, error) {
	var id int
	if len(raw) != 2 || json.Unmarshal(raw[1], &id) != nil {
		return 0, errors.New("not a [token, id] pair")
	}
	return id, nil
}
