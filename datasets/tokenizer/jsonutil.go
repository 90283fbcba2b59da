package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

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
	source  string      // the regex source, to recognise patterns we scan by hand
	field   string      // where tokenizer.json holds it, for errors
	fault   *regexFault // where a match that gives up is recorded
}

func parsePattern(obj map[string]json.RawMessage, path string, fault *regexFault) (pattern, error) {
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
		pat, err := compilePattern(*p.Regex, path+".pattern.Regex", fault)
		if err != nil {
			return pattern{}, fmt.Errorf("%s.pattern.Regex: %v", path, err)
		}
		return pat, nil
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
		// A match timeout (or regexp2's backtracking stack limit): the
		// text cannot be split as the tokenizer says, so nothing it
		// encodes from now on can be trusted.
		p.fault.record(&PatternError{Field: p.field, Pattern: p.source, Text: s, Err: err})
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

func parseReplacer(obj map[string]json.RawMessage, path string, fault *regexFault) (replacer, error) {
	p, err := parsePattern(obj, path, fault)
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

// compilePattern compiles a tokenizer.json regex with a match timeout:
// regexp2 backtracks, so a pattern such as (a+)+$ can take exponential
// time on a text it almost matches, and the timeout turns that hang into
// an error naming the pattern.
func compilePattern(src, field string, fault *regexFault) (pattern, error) {
	re, err := regexp2.Compile(src, regexp2.None)
	if err != nil {
		return pattern{}, err
	}
	re.MatchTimeout = regexMatchTimeout
	return pattern{re: re, source: src, field: field, fault: fault}, nil
}

// regexMatchTimeout bounds one search for the next match of a
// tokenizer.json regex. Real pre-tokenizer patterns take microseconds per
// match; a variable so that a test can show a pathological pattern fail fast.
var regexMatchTimeout = 2 * time.Second

// PatternError is a tokenizer.json regex that gave up on a text (a match
// timeout from catastrophic backtracking): the text cannot be split the way
// the tokenizer says.
type PatternError struct {
	Field   string // where tokenizer.json holds the pattern
	Pattern string
	Text    string // the text being matched
	Err     error
}

func (e *PatternError) Error() string {
	text := e.Text
	if len(text) > 60 {
		text = strings.ToValidUTF8(text[:60], "") + "…"
	}
	reason := fmt.Sprintf("gave up after %v (catastrophic backtracking?)", regexMatchTimeout)
	if errors.Is(e.Err, regexp2.ErrBacktrackingStackLimit) {
		reason = e.Err.Error()
	}
	return fmt.Sprintf("tokenizer.json %s: regex %q %s on the text %q; simplify the pattern (nested repetition such as (a+)+ backtracks exponentially)", e.Field, e.Pattern, reason, text)
}

func (e *PatternError) Unwrap() error { return e.Err }

// regexFault keeps the first PatternError of a tokenizer; it is shared by
// all its patterns and safe for concurrent use.
type regexFault struct{ first atomic.Pointer[PatternError] }

func (f *regexFault) record(e *PatternError) {
	if f != nil {
		f.first.CompareAndSwap(nil, e)
	}
}

// err returns the first PatternError, or nil (also for a nil fault).
func (f *regexFault) err() error {
	if f == nil {
		return nil
	}
	if e := f.first.Load(); e != nil {
		return e
	}
	return nil
}

// sequence parses the list obj[key] of a "Sequence" component at path,
// each item with parse (item paths path.key[i], for messages); items that
// parse to nil (null) are left out.
func sequence[T comparable](obj map[string]json.RawMessage, key, path string, fault *regexFault,
	parse func(json.RawMessage, string, *regexFault) (T, error)) ([]T, error) {
	var items []json.RawMessage
	if err := field(obj, key, &items, path); err != nil {
		return nil, err
	}
	var none T
	var seq []T
	for i, it := range items {
		c, err := parse(it, fmt.Sprintf("%s.%s[%d]", path, key, i), fault)
		if err != nil {
			return nil, err
		}
		if c != none {
			seq = append(seq, c)
		}
	}
	return seq, nil
}
