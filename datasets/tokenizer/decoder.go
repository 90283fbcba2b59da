package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// decoder turns token strings back into text. Like the Rust library, each
// step maps a list of strings to a list of strings and the result is
// concatenated at the end; some steps (Strip, Metaspace) care about token
// boundaries, which is why this is not just string replacement.
type decoder interface {
	decodeChain(tokens []string) []string
}

type decoderSeq []decoder

func (q decoderSeq) decodeChain(tokens []string) []string {
	for _, d := range q {
		tokens = d.decodeChain(tokens)
	}
	return tokens
}

// byteLevelDecoder maps stand-in characters back to bytes. A token with a
// character outside the table (an added token such as "<|eot_id|>" is made
// of ASCII stand-ins, but a CJK added token is not) is taken as UTF-8.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) []string {
	var buf []byte
	for _, t := range tokens {
		if b, ok := byteLevelToBytes(t); ok {
			buf = append(buf, b...)
		} else {
			buf = append(buf, t...)
		}
	}
	return []string{strings.ToValidUTF8(string(buf), "\uFFFD")}
}

// byteFallbackDecoder turns runs of "<0xNN>" tokens into the text they
// spell, or one U+FFFD per byte when the run is not valid UTF-8.
type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decodeChain(tokens []string) []string {
	out := make([]string, 0, len(tokens))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range tokens {
		if b, ok := parseByteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// parseByteToken reads "<0xNN>".
func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexVal(t[3])
	lo, ok2 := hexVal(t[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) []string {
	return []string{strings.Join(tokens, "")}
}

// stripDecoder removes up to start leading and stop trailing copies of
// content from each token.
type stripDecoder struct {
	content     string
	start, stop int
}

func (d stripDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		for k := 0; k < d.start && strings.HasPrefix(t, d.content); k++ {
			t = t[len(d.content):]
		}
		for k := 0; k < d.stop && strings.HasSuffix(t, d.content); k++ {
			t = t[:len(t)-len(d.content)]
		}
		out[i] = t
	}
	return out
}

type replaceDecoder struct{ r replacer }

func (d replaceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = d.r.replace(t)
	}
	return out
}

// metaspaceDecoder turns "▁" back into spaces. In the first token the
// Rust library drops every "▁" rather than turning it into a space (meant
// for the one the pre-tokenizer prepended); we do the same, since that is
// what transformers returns.
type metaspaceDecoder struct {
	replacement string
	prepend     bool
}

func (d metaspaceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		if i == 0 && d.prepend {
			out[i] = strings.ReplaceAll(t, d.replacement, "")
		} else {
			out[i] = strings.ReplaceAll(t, d.replacement, " ")
		}
	}
	return out
}

func parseDecoder(raw json.RawMessage, path string, fault *regexFault) (decoder, error) {
	obj, typ, err := component(raw, path)
	if err != nil || obj == nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		seq, err := sequence(obj, "decoders", path, fault, parseDecoder)
		if err != nil {
			return nil, err
		}
		return decoderSeq(seq), nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var d stripDecoder
		if err := field(obj, "content", &d.content, path); err != nil {
			return nil, err
		}
		if err := optField(obj, "start", &d.start, path); err != nil {
			return nil, err
		}
		if err := optField(obj, "stop", &d.stop, path); err != nil {
			return nil, err
		}
		return d, nil
	case "Replace":
		r, err := parseReplacer(obj, path, fault)
		if err != nil {
			return nil, err
		}
		return replaceDecoder{r}, nil
	case "Metaspace":
		d := metaspaceDecoder{replacement: "▁", prepend: true}
		if err := optField(obj, "replacement", &d.replacement, path); err != nil {
			return nil, err
		}
		if raw, ok := obj["add_prefix_space"]; ok && string(raw) == "false" {
			d.prepend = false
		}
		var scheme string
		if err := optField(obj, "prepend_scheme", &scheme, path); err != nil {
			return nil, err
		}
		if scheme == "never" {
			d.prepend = false
		}
		return d, nil
	}
	return nil, fmt.Errorf("%s.type: decoder %q is not supported", path, typ)
}
