package tokenizer

import "strings"

// StreamDecoder turns ids into text one at a time during generation. It
// holds text back while the ids so far end inside a UTF-8 character (a
// byte-level token or "<0xNN>" run that splits a character decodes to
// U+FFFD), so every piece it returns is final.
//
// It decodes a short window of recent ids rather than everything so far:
// the window starts at the ids of the previous piece, which gives decoders
// that look at neighbours (Metaspace, Strip) the context they need, and the
// new text is what the window's decode gained. This is the scheme of the
// Rust library's DecodeStream.
type StreamDecoder struct {
	t           *Tokenizer
	skipSpecial bool
	ids         []int  // the window
	prefix      string // Decode(ids) as already returned
	prefixIndex int    // ids[:prefixIndex] were decoded before the last piece
}

// NewStreamDecoder starts a stream; skipSpecial drops special tokens as
// Decode does.
func (t *Tokenizer) NewStreamDecoder(skipSpecial bool) *StreamDecoder {
	return &StreamDecoder{t: t, skipSpecial: skipSpecial}
}

// Push adds one id and returns the text it completes, possibly "".
func (d *StreamDecoder) Push(id int) string {
	d.ids = append(d.ids, id)
	s := d.t.Decode(d.ids, d.skipSpecial)
	if len(s) <= len(d.prefix) || strings.HasSuffix(s, "\uFFFD") {
		return ""
	}
	if !strings.HasPrefix(s, d.prefix) {
		// The window's start changed how earlier text decodes; return
		// only what is new beyond the common part.
		n := commonPrefixLen(s, d.prefix)
		out := s[n:]
		d.restart()
		return out
	}
	out := s[len(d.prefix):]
	newIndex := len(d.ids) - d.prefixIndex
	d.ids = append(d.ids[:0], d.ids[d.prefixIndex:]...)
	d.prefix = d.t.Decode(d.ids, d.skipSpecial)
	d.prefixIndex = newIndex
	return out
}

// Flush returns the text held back (an incomplete character at the end of
// generation decodes to U+FFFD, as in Decode) and resets the stream.
func (d *StreamDecoder) Flush() string {
	s := d.t.Decode(d.ids, d.skipSpecial)
	out := ""
	if len(s) > len(d.prefix) && strings.HasPrefix(s, d.prefix) {
		out = s[len(d.prefix):]
	}
	d.ids, d.prefix, d.prefixIndex = d.ids[:0], "", 0
	return out
}

// restart keeps only the last id as context.
func (d *StreamDecoder) restart() {
	last := d.ids[len(d.ids)-1]
	d.ids = append(d.ids[:0], last)
	d.prefix = d.t.Decode(d.ids, d.skipSpecial)
	d.prefixIndex = 0
}

func commonPrefixLen(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
