package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// isSpace is the regex class \s as the Rust tokenizers library (Oniguruma)
// and regexp2 both read it: the Unicode White_Space property. JavaScript's
// \s also takes U+FEFF, one of the few places a JS reference can differ.
func isSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// ASCII classes for the scanner's fast path.
const (
	clsOther = iota // punctuation, symbols, controls
	clsLetter
	clsNumber
	clsSpace
	clsNewline // \r and \n: spaces that the patterns single out
)

var asciiClass [128]uint8

func init() {
	for c := 0; c < 128; c++ {
		r := rune(c)
		switch {
		case c == '\r' || c == '\n':
			asciiClass[c] = clsNewline
		case isSpace(r):
			asciiClass[c] = clsSpace
		case unicode.IsLetter(r):
			asciiClass[c] = clsLetter
		case unicode.IsNumber(r):
			asciiClass[c] = clsNumber
		default:
			asciiClass[c] = clsOther
		}
	}
}

// classAt decodes the rune at s[i:] and returns its class and width.
func classAt(s string, i int) (uint8, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	switch {
	case unicode.IsLetter(r):
		return clsLetter, w
	case unicode.IsNumber(r):
		return clsNumber, w
	case isSpace(r):
		return clsSpace, w
	}
	return clsOther, w
}
