package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

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

// byteLevelString spells the bytes of s in the byte-to-unicode alphabet.
func byteLevelString(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteToRune[s[i]])
	}
	return b.String()
}

// Known pre-tokenizer regexes, matched verbatim against tokenizer.json
// (Go's regexp lacks the (?!\S) lookahead they use, so each is implemented
// by hand below).
const (
	// gpt2Pattern is the ByteLevel pre-tokenizer's built-in regex (GPT-2,
	// RoBERTa, GPT-J, ...), also written out as a Split by some models.
	gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// llama3Pattern is Llama 3's (tiktoken's cl100k_base): case-insensitive
	// contractions, a letter run with one leading non-letter, numbers in
	// groups of up to three digits, punctuation runs carrying their
	// newlines.
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// qwen2Pattern is Qwen2's and Qwen3's: Llama 3's with one digit per
	// pre-token.
	qwen2Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// qwen35Pattern is the variant that keeps combining marks with their
	// letters (Qwen3.5's transformers class).
	qwen35Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// knownSplits maps each supported regex to its hand-written splitter.
var knownSplits = map[string]func(s string, out []string) []string{
	gpt2Pattern:   splitGPT2,
	llama3Pattern: splitLlama3,
	qwen2Pattern:  splitQwen2,
	qwen35Pattern: splitQwen35,
}

// The splitters implement a regex of alternatives by hand, trying them in
// order at each position exactly as a backtracking engine would. \s, \p{L},
// \p{M} and \p{N} use Go's Unicode tables (\s is Unicode White_Space, as in
// Oniguruma, which tokenizers uses).

func isLetter(r rune) bool            { return unicode.IsLetter(r) }
func isLetterOrMark(r rune) bool      { return unicode.IsLetter(r) || unicode.IsMark(r) }
func isNumber(r rune) bool            { return unicode.IsNumber(r) }
func isSpace(r rune) bool             { return unicode.IsSpace(r) }
func isOther(r rune) bool             { return !isSpace(r) && !isLetter(r) && !isNumber(r) }
func isOtherNoMark(r rune) bool       { return isOther(r) && !unicode.IsMark(r) }
func isNewline(r rune) bool           { return r == '\r' || r == '\n' }
func notNewlineLetterNum(r rune) bool { return !isNewline(r) && !isLetter(r) && !isNumber(r) }

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

// contraction matches 's|'t|'re|'ve|'m|'ll|'d at i, with fold
// case-insensitively as Oniguruma's (?i:...) does (ASCII letters, and the
// long s U+017F, whose case folding is s), and returns its end, or i.
func contraction(s string, i int, fold bool) int {
	if s[i] != '\'' || i+1 >= len(s) {
		return i
	}
	if fold && strings.HasPrefix(s[i+1:], "\u017f") {
		return i + 1 + len("\u017f")
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
func splitLlama3(s string, out []string) []string { return splitTiktoken(s, out, 3, isLetter, isOther) }

// splitQwen2 splits s by Qwen2's pattern, Llama-3's with \p{N} in place of
// \p{N}{1,3}.
func splitQwen2(s string, out []string) []string { return splitTiktoken(s, out, 1, isLetter, isOther) }

// splitQwen35 splits s by the pattern that puts \p{M} next to \p{L}:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}|
//	 ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func splitQwen35(s string, out []string) []string {
	return splitTiktoken(s, out, 1, isLetterOrMark, isOtherNoMark)
}

// splitTiktoken implements the family of patterns
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?W+|\p{N}{1,digits}|
//	 ?O+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// where word is the class W and other the class O. Every character is in
// W, \p{N}, O or \s, so some alternative always matches.
func splitTiktoken(s string, out []string, digits int, word, other func(rune) bool) []string {
	for i := 0; i < len(s); {
		end := contraction(s, i, true)
		r, w := runeAt(s, i)
		switch {
		case end > i:
		// [^\r\n\p{L}\p{N}]?W+: with the optional character if W follows
		// it, else without.
		case notNewlineLetterNum(r) && span(s, i+w, word, 0) > i+w:
			end = span(s, i+w, word, 0)
		case word(r):
			end = span(s, i, word, 0)
		case isNumber(r):
			end = span(s, i, isNumber, digits)
		// ' ?O+[\r\n]*'
		case r == ' ' && span(s, i+1, other, 0) > i+1:
			end = span(s, span(s, i+1, other, 0), isNewline, 0)
		case other(r):
			end = span(s, span(s, i, other, 0), isNewline, 0)
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
