package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json's added_tokens: tokens matched
// in the text before normalization and pre-tokenization, so that e.g.
// "<|eot_id|>" becomes one id instead of being cut into pieces.
type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// matcher finds added tokens leftmost-longest, as the Rust library's
// Aho-Corasick automaton does, with a byte trie whose edges live in one map.
type matcher struct {
	tokens []addedToken
	first  [256]bool
	edges  map[uint64]int32 // node<<8 | byte -> child node
	term   []int32          // node -> index into tokens, or -1
}

func newMatcher(tokens []addedToken) *matcher {
	m := &matcher{tokens: tokens, edges: map[uint64]int32{}, term: []int32{-1}}
	for i, t := range tokens {
		if t.Content == "" {
			continue
		}
		m.first[t.Content[0]] = true
		node := int32(0)
		for k := 0; k < len(t.Content); k++ {
			key := uint64(node)<<8 | uint64(t.Content[k])
			child, ok := m.edges[key]
			if !ok {
				child = int32(len(m.term))
				m.term = append(m.term, -1)
				m.edges[key] = child
			}
			node = child
		}
		if m.term[node] < 0 {
			m.term[node] = int32(i)
		}
	}
	return m
}

// longestAt returns the index and length of the longest token that starts
// at s[i], or -1.
func (m *matcher) longestAt(s string, i int) (int, int) {
	if !m.first[s[i]] {
		return -1, 0
	}
	best, bestLen := -1, 0
	node := int32(0)
	for k := i; k < len(s); k++ {
		child, ok := m.edges[uint64(node)<<8|uint64(s[k])]
		if !ok {
			break
		}
		node = child
		if t := m.term[node]; t >= 0 {
			best, bestLen = int(t), k+1-i
		}
	}
	return best, bestLen
}

// segment is a run of text, or an added token when token >= 0.
type segment struct {
	text  string
	start int // byte offset in the original text, for "at start" decisions
	token int // index into matcher.tokens, or -1
}

// split cuts s (which begins at offset base of the input) into text and
// added-token segments. Whitespace taken by lstrip/rstrip belongs to the
// token and is dropped from the neighbouring text.
func (m *matcher) split(s string, base int, out []segment) []segment {
	if m == nil || len(m.tokens) == 0 {
		return append(out, segment{s, base, -1})
	}
	textStart := 0
	for i := 0; i < len(s); {
		t, n := m.longestAt(s, i)
		if t < 0 {
			i++
			continue
		}
		tok := m.tokens[t]
		if tok.SingleWord && !(wordBoundaryBefore(s, i) && wordBoundaryAfter(s, i+n)) {
			i += n // the automaton has consumed these bytes either way
			continue
		}
		a, b := i, i+n
		if tok.LStrip {
			for a > textStart {
				r, w := utf8.DecodeLastRuneInString(s[textStart:a])
				if !unicode.IsSpace(r) {
					break
				}
				a -= w
			}
		}
		if tok.RStrip {
			for b < len(s) {
				r, w := utf8.DecodeRuneInString(s[b:])
				if !unicode.IsSpace(r) {
					break
				}
				b += w
			}
		}
		if a > textStart {
			out = append(out, segment{s[textStart:a], base + textStart, -1})
		}
		out = append(out, segment{s[a:b], base + a, t})
		textStart, i = b, b
	}
	if textStart < len(s) {
		out = append(out, segment{s[textStart:], base + textStart, -1})
	}
	return out
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) }

func wordBoundaryBefore(s string, i int) bool {
	if i == 0 {
		return true
	}
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return !isWordRune(r)
}

func wordBoundaryAfter(s string, i int) bool {
	if i >= len(s) {
		return true
	}
	r, _ := utf8.DecodeRuneInString(s[i:])
	return !isWordRune(r)
}
