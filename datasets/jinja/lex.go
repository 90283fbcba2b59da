// Package jinja renders Hugging Face chat templates: the subset of Jinja2
// that tokenizer_config.json templates use, with the environment
// transformers' apply_chat_template sets up (trim_blocks, lstrip_blocks,
// loop controls, raise_exception, strftime_now, tojson without ASCII
// escaping), so that the text equals jinja2's byte for byte.
//
// It is sandboxed by construction: a template can reach only the values it
// is given, nothing that touches files, the network or processes exists in
// it, and every render runs under Limits (steps, output size, call depth,
// sequence sizes), so a hostile template ends with an error instead of
// hanging or exhausting memory.
package jinja

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// segKind is what a piece of template source is.
type segKind int

const (
	segText    segKind = iota
	segVar             // {{ ... }}
	segBlock           // {% ... %}
	segComment         // {# ... #}
)

// segment is one piece of the source after whitespace control: literal
// text, or the inside of a tag.
type segment struct {
	kind segKind
	text string // literal text, or the tag's inner source
	line int    // 1-based line where it starts
}

// rawTag is a tag as scanned, before whitespace control is applied.
type rawTag struct {
	kind        segKind
	inner       string
	line        int
	leftSign    byte // '-', '+' or 0 after the opener
	rightSign   byte // '-', '+' or 0 before the closer
	lineStarted bool // the text before it begins at a line start
}

// SyntaxError is a template that cannot be parsed, with the line it is on.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// lex splits src into segments, applying Jinja2's whitespace control the way
// transformers configures it: "-" strips all whitespace on its side,
// lstrip_blocks removes the spaces and tabs before a block or comment tag
// that starts a line, trim_blocks removes the first newline after one, and
// "+" turns either off for that tag.
func lex(src string) ([]segment, error) {
	var segs []segment
	line := 1
	pos := 0
	// lineStart: the text about to be scanned begins at a line start (the
	// template's start, or right after a consumed newline), which is what
	// Jinja2's lexer calls line_starting.
	lineStart := true
	pendingStrip := false // the previous tag ended with "-": strip leading whitespace
	for pos < len(src) {
		open := nextOpener(src, pos)
		text := src[pos:]
		if open >= 0 {
			text = src[pos:open]
		}
		if pendingStrip {
			text = strings.TrimLeftFunc(text, isPySpace)
			pendingStrip = false
		}
		if open < 0 {
			if text != "" {
				segs = append(segs, segment{kind: segText, text: text, line: line})
			}
			break
		}
		tag, end, err := scanTag(src, open, line+strings.Count(src[pos:open], "\n"))
		if err != nil {
			return nil, err
		}
		// Whitespace control on the text before the tag.
		switch {
		case tag.leftSign == '-':
			text = strings.TrimRightFunc(text, isPySpace)
		case tag.leftSign != '+' && tag.kind != segVar:
			l := strings.LastIndexByte(text, '\n') + 1
			if l > 0 || lineStart {
				rest := text[l:]
				if rest != "" && strings.TrimLeftFunc(rest, isPySpace) == "" {
					text = text[:l]
				}
			}
		}
		if text != "" {
			segs = append(segs, segment{kind: segText, text: text, line: line})
		}
		// afterTag moves past a tag ending at end and applies the whitespace
		// control on its right: "-" strips what follows, trim_blocks eats one
		// "\n" after a block or comment tag.
		afterTag := func(t rawTag, end int) {
			line += strings.Count(src[pos:end], "\n")
			pos = end
			lineStart = false
			switch {
			case t.rightSign == '-':
				pendingStrip = true
			case t.rightSign != '+' && t.kind != segVar:
				if pos < len(src) && src[pos] == '\n' {
					pos++
					line++
					lineStart = true
				}
			}
		}
		afterTag(tag, end)
		if tag.kind == segComment {
			continue
		}
		if tag.kind == segBlock && isRawStart(tag.inner) {
			// {% raw %}...{% endraw %}: the text between is literal.
			body, after, endTag, err := scanRaw(src, pos, tag.line)
			if err != nil {
				return nil, err
			}
			if endTag.leftSign == '-' {
				body = strings.TrimRightFunc(body, isPySpace)
			}
			if pendingStrip {
				body = strings.TrimLeftFunc(body, isPySpace)
				pendingStrip = false
			}
			if body != "" {
				segs = append(segs, segment{kind: segText, text: body, line: line})
			}
			afterTag(endTag, after)
			continue
		}
		segs = append(segs, segment{kind: tag.kind, text: tag.inner, line: tag.line})
	}
	return segs, nil
}

// nextOpener finds the next "{{", "{%" or "{#" at or after pos.
func nextOpener(src string, pos int) int {
	for {
		i := strings.IndexByte(src[pos:], '{')
		if i < 0 || pos+i+1 >= len(src) {
			return -1
		}
		switch src[pos+i+1] {
		case '{', '%', '#':
			return pos + i
		}
		pos += i + 1
	}
}

// scanTag reads the tag starting at open and returns it with the offset just
// after its closer. Strings inside {{ }} and {% %} may contain the closer.
func scanTag(src string, open, line int) (rawTag, int, error) {
	var t rawTag
	t.line = line
	closer := ""
	switch src[open+1] {
	case '{':
		t.kind, closer = segVar, "}}"
	case '%':
		t.kind, closer = segBlock, "%}"
	default:
		t.kind, closer = segComment, "#}"
	}
	i := open + 2
	if i < len(src) && (src[i] == '-' || src[i] == '+') {
		t.leftSign = src[i]
		i++
	}
	if t.kind == segComment {
		j := strings.Index(src[i:], "#}")
		if j < 0 {
			return t, 0, &SyntaxError{line, "comment is not closed with #}"}
		}
		inner := src[i : i+j]
		if strings.HasSuffix(inner, "-") || strings.HasSuffix(inner, "+") {
			t.rightSign = inner[len(inner)-1]
		}
		return t, i + j + 2, nil
	}
	start := i
	var quote byte
	for i < len(src) {
		c := src[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case strings.HasPrefix(src[i:], closer):
			inner := src[start:i]
			if n := len(inner); n > 0 && (inner[n-1] == '-' || inner[n-1] == '+') {
				t.rightSign = inner[n-1]
				inner = inner[:n-1]
			}
			t.inner = inner
			return t, i + 2, nil
		}
		i++
	}
	what := map[segKind]string{segVar: "{{", segBlock: "{%"}[t.kind]
	return t, 0, &SyntaxError{line, what + " tag is not closed with " + closer}
}

func isRawStart(inner string) bool { return strings.TrimSpace(inner) == "raw" }

// scanRaw finds the {% endraw %} that ends a raw block starting at pos.
func scanRaw(src string, pos, line int) (body string, after int, end rawTag, err error) {
	for i := pos; ; {
		j := strings.Index(src[i:], "{%")
		if j < 0 {
			return "", 0, end, &SyntaxError{line, "raw block is not closed with {% endraw %}"}
		}
		t, e, err := scanTag(src, i+j, line)
		if err == nil && strings.TrimSpace(t.inner) == "endraw" {
			return src[pos : i+j], e, t, nil
		}
		i += j + 2
	}
}

// isPySpace is Python's str.isspace() for one character: what Jinja2's
// whitespace control and str.strip() remove.
func isPySpace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0d, r >= 0x1c && r <= 0x20:
		return true
	case r == 0x85, r == 0xa0, r == 0x1680, r >= 0x2000 && r <= 0x200a:
		return true
	case r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000:
		return true
	}
	return false
}

// validUTF8 reports whether a template is text Jinja2 could have read.
func validUTF8(s string) bool { return utf8.ValidString(s) }
