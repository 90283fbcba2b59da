package tokenizer

import "strings"

// A hand-written matcher for the two split patterns that nearly every
// byte-level model ships, because regexp2 (the only Go engine with the
// lookahead they need) runs them at a few hundred thousand tokens a second.
//
// The GPT-4 (cl100k) pattern, used by Llama 3:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// and Qwen 2's, the same with \p{N} taken one digit at a time. Every
// character is a letter, a number, a space or "other", and some alternative
// matches at every position, so the matches tile the text and Split
// "Isolated" yields exactly the matches. TestScannerMatchesRegexp proves
// the scanner equal to regexp2 on the corpus.
const (
	patternCl100k = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patternQwen2  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// GPT-2's pattern, which the ByteLevel pre-tokenizer applies when its
// use_regex is set (GPT-2, SmolLM, Phi-2 and others), has the same
// structure with fewer special cases; scanGPT2 handles it.
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
const patternGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// scanKind selects one of the patterns above.
type scanKind int

const (
	scanNone   scanKind = iota // not a known pattern: use regexp2
	scanCl100k                 // digits in threes
	scanQwen2                  // digits one by one
	scanGPT2
)

// scanPieces calls emit with each match of the pattern in s, in order.
func scanPieces(s string, kind scanKind, emit func(string)) {
	for i := 0; i < len(s); {
		var end int
		switch kind {
		case scanCl100k:
			end = scanOne(s, i, 3)
		case scanQwen2:
			end = scanOne(s, i, 1)
		default:
			end = scanGPT2One(s, i)
		}
		emit(s[i:end])
		i = end
	}
}

// scanOne returns the end of the match that starts at s[i], trying the
// alternatives in the pattern's order as a backtracking engine would.
func scanOne(s string, i, maxDigits int) int {
	c, w := classAt(s, i)

	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if s[i] == '\'' {
		if n := contraction(s[i+1:]); n > 0 {
			return i + 1 + n
		}
	}

	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c == clsLetter {
		return skipClass(s, i+w, clsLetter, -1)
	}
	if (c == clsOther || c == clsSpace) && i+w < len(s) {
		if c2, w2 := classAt(s, i+w); c2 == clsLetter {
			return skipClass(s, i+w+w2, clsLetter, -1)
		}
	}

	// \p{N}{1,3}
	if c == clsNumber {
		return skipClass(s, i+w, clsNumber, maxDigits-1)
	}

	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	start := -1
	if c == clsOther {
		start = i + w
	} else if s[i] == ' ' && i+1 < len(s) {
		if c2, w2 := classAt(s, i+1); c2 == clsOther {
			start = i + 1 + w2
		}
	}
	if start >= 0 {
		j := skipClass(s, start, clsOther, -1)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}

	// Only whitespace is left: c is clsSpace or clsNewline.
	j, lastNewline, lastStart := i, -1, i
	for j < len(s) {
		c2, w2 := classAt(s, j)
		if c2 == clsNewline {
			lastNewline = j
		} else if c2 != clsSpace {
			break
		}
		lastStart = j
		j += w2
	}
	// \s*[\r\n]+ : the greedy \s* backs off to the last line break.
	if lastNewline >= 0 {
		return lastNewline + 1
	}
	// \s+(?!\S) : the whole run at the end of text, else all of it but the
	// last space, which then joins the next word.
	if j == len(s) || lastStart == i {
		return j // at end, or \s+ with a run of one
	}
	return lastStart
}

// skipClass advances over runes of class cls from j, at most max of them
// (max < 0: no limit), and returns the new position.
func skipClass(s string, j int, cls uint8, max int) int {
	for n := 0; j < len(s) && n != max; n++ {
		c, w := classAt(s, j)
		if c != cls {
			break
		}
		j += w
	}
	return j
}

// contraction returns the length of the contraction suffix that begins s
// ("s", "t", "re", "ve", "m", "ll", "d", any case), or 0. Unicode case
// folding also maps the long s "ſ" to "s", and both regexp2 and Oniguruma
// (the Rust library's engine) fold it; JavaScript's port of the pattern
// does not.
func contraction(s string) int {
	if len(s) == 0 {
		return 0
	}
	if strings.HasPrefix(s, "ſ") {
		return len("ſ")
	}
	lower := func(b byte) byte { return b | 0x20 }
	switch lower(s[0]) {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if len(s) > 1 && lower(s[1]) == 'e' {
			return 2
		}
	case 'l':
		if len(s) > 1 && lower(s[1]) == 'l' {
			return 2
		}
	}
	return 0
}

// scanGPT2One is scanOne for GPT-2's pattern.
func scanGPT2One(s string, i int) int {
	c, w := classAt(s, i)

	// 's|'t|'re|'ve|'m|'ll|'d, lower case only.
	if s[i] == '\'' && i+1 < len(s) {
		switch t := s[i+1:]; {
		case t[0] == 's' || t[0] == 't' || t[0] == 'm' || t[0] == 'd':
			return i + 2
		case strings.HasPrefix(t, "re") || strings.HasPrefix(t, "ve") || strings.HasPrefix(t, "ll"):
			return i + 3
		}
	}

	// ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
	cls, start := c, i+w
	if s[i] == ' ' && i+1 < len(s) {
		if c2, w2 := classAt(s, i+1); c2 == clsLetter || c2 == clsNumber || c2 == clsOther {
			cls, start = c2, i+1+w2
		}
	}
	if cls == clsLetter || cls == clsNumber || cls == clsOther {
		return skipClass(s, start, cls, -1)
	}

	// \s+(?!\S) then \s+; line breaks are plain spaces here.
	j, lastStart := i, i
	for j < len(s) {
		c2, w2 := classAt(s, j)
		if c2 != clsSpace && c2 != clsNewline {
			break
		}
		lastStart = j
		j += w2
	}
	if j == len(s) || lastStart == i {
		return j
	}
	return lastStart
}
