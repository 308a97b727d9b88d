package tokenizer

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is one of tokenizer.json's added_tokens: a string matched in
// the text before the model runs and mapped to its id directly.
type addedToken struct {
	id      int
	content string // what is matched: the normalized content for normalized tokens
	special bool
	// singleWord: only where no word character touches either side.
	// lstrip/rstrip: the token also takes the white space to its left/right.
	singleWord, lstrip, rstrip bool
}

// addedMatcher finds added tokens the way tokenizers' AddedVocabulary does
// with its leftmost-longest Aho-Corasick automaton: the match starting
// first wins, and among those the longest.
type addedMatcher struct {
	byFirst   [256][]*addedToken // by first byte, longest first
	byContent map[string]int
}

func newAddedMatcher(toks []*addedToken) addedMatcher {
	m := addedMatcher{byContent: make(map[string]int, len(toks))}
	for _, t := range toks {
		// A repeated content keeps the last token, like tokenizers' map.
		if _, dup := m.byContent[t.content]; dup {
			for b := range m.byFirst {
				m.byFirst[b] = slices.DeleteFunc(m.byFirst[b], func(o *addedToken) bool { return o.content == t.content })
			}
		}
		m.byContent[t.content] = t.id
		m.byFirst[t.content[0]] = append(m.byFirst[t.content[0]], t)
	}
	for b := range m.byFirst {
		slices.SortStableFunc(m.byFirst[b], func(x, y *addedToken) int { return len(y.content) - len(x.content) })
	}
	return m
}

// next returns the leftmost-longest match at or after from, or nil.
func (m *addedMatcher) next(s string, from int) (int, *addedToken) {
	for i := from; i < len(s); i++ {
		for _, t := range m.byFirst[s[i]] {
			if strings.HasPrefix(s[i:], t.content) {
				return i, t
			}
		}
	}
	return -1, nil
}

// segment is a part of a text: an added token (id >= 0) or text to encode.
type segment struct {
	start, end int
	id         int
}

// split cuts s into text and added tokens as AddedVocabulary::find_matches
// does. A match rejected by single_word (or a special token when
// skipSpecial) is passed over whole: the search resumes after it, as the
// automaton's iterator does. lstrip never reaches back into the previous
// token, rstrip may run into the next match, which then starts where the
// stripped space ends.
func (m *addedMatcher) split(s string, skipSpecial bool, out []segment) []segment {
	if len(m.byContent) == 0 {
		return append(out, segment{0, len(s), -1})
	}
	done := 0 // end of the last token
	for pos := 0; ; {
		i, t := m.next(s, pos)
		if t == nil {
			break
		}
		start, stop := i, i+len(t.content)
		pos = stop
		if skipSpecial && t.special {
			continue
		}
		if t.singleWord {
			startOK := start == 0 || !endsWithWordChar(s[:start])
			stopOK := stop == len(s) || !startsWithWordChar(s[stop:])
			if !startOK || !stopOK {
				continue
			}
		}
		if t.lstrip {
			start = max(len(strings.TrimRightFunc(s[:start], unicode.IsSpace)), done)
		}
		if t.rstrip {
			stop = len(s) - len(strings.TrimLeftFunc(s[stop:], unicode.IsSpace))
		}
		start = max(start, done)
		if done < start {
			out = append(out, segment{done, start, -1})
		}
		out = append(out, segment{start, stop, t.id})
		done = stop
	}
	if done < len(s) {
		out = append(out, segment{done, len(s), -1})
	}
	return out
}

// isWordChar is \w of Rust's regex crate, which tokenizers uses for
// single_word: Alphabetic, marks, decimal digits, connector punctuation and
// the joiners.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.Is(unicode.Pc, r) || r == 0x200C || r == 0x200D
}

func endsWithWordChar(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return s != "" && isWordChar(r)
}

func startsWithWordChar(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && isWordChar(r)
}
