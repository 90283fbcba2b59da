package tokenizer

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A minimal JSON reader for the two big parts of tokenizer.json, the
// vocabulary ({"token": id, ...}) and the merges (["a b", ...] or
// [["a", "b"], ...]). encoding/json spends most of a 33 MB Gemma load on
// reflection for these; reading them directly makes Load about twice as
// fast. Everything else in the file still goes through encoding/json.
type jsonReader struct {
	b    []byte
	i    int
	path string // for messages
}

func (r *jsonReader) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: at byte %d: %s", r.path, r.i, fmt.Sprintf(format, args...))
}

func (r *jsonReader) skipSpace() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (r *jsonReader) peek() byte {
	r.skipSpace()
	if r.i >= len(r.b) {
		return 0
	}
	return r.b[r.i]
}

func (r *jsonReader) expect(c byte) error {
	if r.peek() != c {
		if r.i >= len(r.b) {
			return r.errorf("want %q, got end of input", c)
		}
		return r.errorf("want %q, got %q", c, r.b[r.i])
	}
	r.i++
	return nil
}

// str reads a JSON string.
func (r *jsonReader) str() (string, error) {
	if err := r.expect('"'); err != nil {
		return "", err
	}
	start := r.i
	// Fast path: no escapes.
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c == '"' {
			s := string(r.b[start:r.i])
			r.i++
			return s, nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		r.i++
	}
	buf := append([]byte(nil), r.b[start:r.i]...)
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			return string(buf), nil
		case c < 0x20:
			return "", r.errorf("control character in string")
		case c != '\\':
			buf = append(buf, c)
			r.i++
			continue
		}
		if r.i+1 >= len(r.b) {
			break
		}
		esc := r.b[r.i+1]
		r.i += 2
		switch esc {
		case '"', '\\', '/':
			buf = append(buf, esc)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r1, ok := r.hex4()
			if !ok {
				return "", r.errorf("bad \\u escape")
			}
			if utf16.IsSurrogate(r1) {
				// A pair is two escapes; a lone half becomes U+FFFD, as
				// encoding/json does.
				if r.i+1 < len(r.b) && r.b[r.i] == '\\' && r.b[r.i+1] == 'u' {
					save := r.i
					r.i += 2
					r2, ok := r.hex4()
					if dec := utf16.DecodeRune(r1, r2); ok && dec != utf8.RuneError {
						buf = utf8.AppendRune(buf, dec)
						continue
					}
					r.i = save
				}
				r1 = utf8.RuneError
			}
			buf = utf8.AppendRune(buf, r1)
		default:
			return "", r.errorf("bad escape \\%c", esc)
		}
	}
	return "", r.errorf("unterminated string")
}

func (r *jsonReader) hex4() (rune, bool) {
	if r.i+4 > len(r.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(r.b[r.i:r.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	r.i += 4
	return rune(v), true
}

// integer reads a non-negative JSON integer.
func (r *jsonReader) integer() (int, error) {
	r.skipSpace()
	start := r.i
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		r.i++
	}
	if r.i == start {
		return 0, r.errorf("want a non-negative integer")
	}
	n, err := strconv.Atoi(string(r.b[start:r.i]))
	if err != nil {
		return 0, r.errorf("%v", err)
	}
	return n, nil
}

// readVocab reads {"token": id, ...}.
func readVocab(b []byte, path string) (map[string]int, error) {
	r := &jsonReader{b: b, path: path}
	if err := r.expect('{'); err != nil {
		return nil, err
	}
	vocab := make(map[string]int, len(b)/16)
	if r.peek() == '}' {
		r.i++
		return vocab, r.end()
	}
	for {
		tok, err := r.str()
		if err != nil {
			return nil, err
		}
		if err := r.expect(':'); err != nil {
			return nil, err
		}
		id, err := r.integer()
		if err != nil {
			return nil, fmt.Errorf("%s[%q]: %w", path, tok, err)
		}
		vocab[tok] = id
		switch r.peek() {
		case ',':
			r.i++
		case '}':
			r.i++
			return vocab, r.end()
		default:
			return nil, r.errorf("want ',' or '}'")
		}
	}
}

// readMerges reads ["a b", ...] or [["a", "b"], ...].
func readMerges(b []byte, path string) ([][2]string, error) {
	r := &jsonReader{b: b, path: path}
	if r.peek() == 'n' && string(b[r.i:min(len(b), r.i+4)]) == "null" {
		return nil, nil
	}
	if err := r.expect('['); err != nil {
		return nil, err
	}
	var out [][2]string
	if r.peek() == ']' {
		r.i++
		return out, r.end()
	}
	for k := 0; ; k++ {
		var pair [2]string
		switch r.peek() {
		case '"':
			s, err := r.str()
			if err != nil {
				return nil, err
			}
			a, b, ok := cutSingleSpace(s)
			if !ok {
				return nil, fmt.Errorf("%s[%d]: %q is not two tokens separated by one space", path, k, s)
			}
			pair = [2]string{a, b}
		case '[':
			r.i++
			var err error
			if pair[0], err = r.str(); err != nil {
				return nil, fmt.Errorf("%s[%d][0]: %w", path, k, err)
			}
			if err := r.expect(','); err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", path, k, err)
			}
			if pair[1], err = r.str(); err != nil {
				return nil, fmt.Errorf("%s[%d][1]: %w", path, k, err)
			}
			if err := r.expect(']'); err != nil {
				return nil, fmt.Errorf("%s[%d]: want a pair: %w", path, k, err)
			}
		default:
			return nil, fmt.Errorf("%s[%d]: want a string or a pair of strings", path, k)
		}
		out = append(out, pair)
		switch r.peek() {
		case ',':
			r.i++
		case ']':
			r.i++
			return out, r.end()
		default:
			return nil, r.errorf("want ',' or ']'")
		}
	}
}

// end checks that nothing but space follows.
func (r *jsonReader) end() error {
	if r.peek() != 0 {
		return r.errorf("unexpected data after the value")
	}
	return nil
}

// cutSingleSpace splits "a b" at its only space.
func cutSingleSpace(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			rest := s[i+1:]
			for k := 0; k < len(rest); k++ {
				if rest[k] == ' ' {
					return "", "", false
				}
			}
			return s[:i], rest, true
		}
	}
	return "", "", false
}

// skipValue moves past one JSON value of any kind, checking its syntax
// only as far as needed to find its end.
func (r *jsonReader) skipValue() error {
	switch c := r.peek(); {
	case c == '"':
		_, err := r.str()
		return err
	case c == '{' || c == '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		r.i++
		if r.peek() == close {
			r.i++
			return nil
		}
		for {
			if c == '{' {
				if _, err := r.str(); err != nil {
					return err
				}
				if err := r.expect(':'); err != nil {
					return err
				}
			}
			if err := r.skipValue(); err != nil {
				return err
			}
			switch r.peek() {
			case ',':
				r.i++
			case close:
				r.i++
				return nil
			default:
				return r.errorf("want ',' or %q", close)
			}
		}
	case c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n':
		// Numbers and literals: validated by encoding/json if anything
		// reads them; here we only need their end.
		start := r.i
		for r.i < len(r.b) && !isJSONDelim(r.b[r.i]) {
			r.i++
		}
		if r.i == start {
			return r.errorf("want a value")
		}
		return nil
	case c == 0:
		return r.errorf("want a value, got end of input")
	default:
		return r.errorf("unexpected %q", c)
	}
}

func isJSONDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// objectFields splits a JSON object into its members' raw values, without
// copying them.
func objectFields(b []byte, path string) (map[string][]byte, error) {
	r := &jsonReader{b: b, path: path}
	if err := r.expect('{'); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	if r.peek() == '}' {
		r.i++
		return out, r.end()
	}
	for {
		key, err := r.str()
		if err != nil {
			return nil, err
		}
		if err := r.expect(':'); err != nil {
			return nil, err
		}
		r.skipSpace()
		start := r.i
		if err := r.skipValue(); err != nil {
			return nil, err
		}
		out[key] = b[start:r.i]
		switch r.peek() {
		case ',':
			r.i++
		case '}':
			r.i++
			return out, r.end()
		default:
			return nil, r.errorf("want ',' or '}'")
		}
	}
}
