package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dlclark/regexp2/v2"
)

// component decodes one tokenizer.json component (normalizer, pre-tokenizer,
// post-processor or decoder): a JSON object with a "type" field, or null.
func component(raw json.RawMessage, path string) (map[string]json.RawMessage, string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, "", nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, "", fmt.Errorf("%s: want an object: %v", path, err)
	}
	var typ string
	if err := field(obj, "type", &typ, path); err != nil {
		return nil, "", err
	}
	return obj, typ, nil
}

// field decodes obj[name] into dst; a missing field is an error.
func field(obj map[string]json.RawMessage, name string, dst any, path string) error {
	raw, ok := obj[name]
	if !ok {
		return fmt.Errorf("%s.%s: missing", path, name)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%s.%s: %v", path, name, err)
	}
	return nil
}

// optField decodes obj[name] into dst when present and not null.
func optField(obj map[string]json.RawMessage, name string, dst any, path string) error {
	raw, ok := obj[name]
	if !ok || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%s.%s: %v", path, name, err)
	}
	return nil
}

// pattern is the {"String": ...} or {"Regex": ...} object used by Split
// and Replace.
type pattern struct {
	literal string
	re      *regexp2.Regexp
	source  string // the regex source, to recognise patterns we scan by hand
}

func parsePattern(obj map[string]json.RawMessage, path string) (pattern, error) {
	var p struct {
		String *string
		Regex  *string
	}
	if err := field(obj, "pattern", &p, path); err != nil {
		return pattern{}, err
	}
	switch {
	case p.String != nil:
		if *p.String == "" {
			return pattern{}, fmt.Errorf("%s.pattern.String: empty", path)
		}
		return pattern{literal: *p.String}, nil
	case p.Regex != nil:
		re, err := regexp2.Compile(*p.Regex, regexp2.None)
		if err != nil {
			return pattern{}, fmt.Errorf("%s.pattern.Regex: %v", path, err)
		}
		return pattern{re: re, source: *p.Regex}, nil
	}
	return pattern{}, fmt.Errorf("%s.pattern: want String or Regex", path)
}

// findAll returns the byte ranges [start, end) of the non-overlapping,
// non-empty matches of p in s, left to right.
func (p pattern) findAll(s string) [][2]int {
	var out [][2]int
	if p.re == nil {
		for i := 0; i < len(s); {
			j := strings.Index(s[i:], p.literal)
			if j < 0 {
				break
			}
			out = append(out, [2]int{i + j, i + j + len(p.literal)})
			i += j + len(p.literal)
		}
		return out
	}
	idx, err := p.re.FindAllStringIndex(s, -1)
	if err != nil {
		// Only a match timeout can fail, and we set none.
		return out
	}
	for _, m := range idx {
		if m[1] > m[0] {
			out = append(out, [2]int{m[0], m[1]})
		}
	}
	return out
}

// replacer is the Replace normalizer's and decoder's rewrite.
type replacer struct {
	pat     pattern
	content string
}

func parseReplacer(obj map[string]json.RawMessage, path string) (replacer, error) {
	p, err := parsePattern(obj, path)
	if err != nil {
		return replacer{}, err
	}
	var r replacer
	r.pat = p
	if err := field(obj, "content", &r.content, path); err != nil {
		return replacer{}, err
	}
	return r, nil
}

func (r replacer) replace(s string) string {
	if r.pat.re == nil {
		return strings.ReplaceAll(s, r.pat.literal, r.content)
	}
	ms := r.pat.findAll(s)
	if len(ms) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range ms {
		b.WriteString(s[last:m[0]])
		b.WriteString(r.content)
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

func compilePattern(src string) (pattern, error) {
	re, err := regexp2.Compile(src, regexp2.None)
	if err != nil {
		return pattern{}, err
	}
	return pattern{re: re, source: src}, nil
}
