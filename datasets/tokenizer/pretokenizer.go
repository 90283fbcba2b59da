package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// preTokenizer cuts one normalized section into the pieces ("words") that
// BPE encodes independently. atStart tells whether s begins the input text
// (Metaspace's prepend_scheme "first" needs it). Pieces are passed to emit
// in order and are usually substrings of s, so no copying happens.
type preTokenizer interface {
	preTokenize(s string, atStart bool, emit func(piece string, atStart bool))
}

type preTokenizerSeq []preTokenizer

func (q preTokenizerSeq) preTokenize(s string, atStart bool, emit func(string, bool)) {
	q.run(0, s, atStart, emit)
}

func (q preTokenizerSeq) run(k int, s string, atStart bool, emit func(string, bool)) {
	if k == len(q) {
		emit(s, atStart)
		return
	}
	q[k].preTokenize(s, atStart, func(p string, st bool) { q.run(k+1, p, st, emit) })
}

// splitBehavior is what Split does with the matched delimiters.
type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

var splitBehaviors = map[string]splitBehavior{
	"Removed": splitRemoved, "Isolated": splitIsolated,
	"MergedWithPrevious": splitMergedWithPrevious, "MergedWithNext": splitMergedWithNext,
	"Contiguous": splitContiguous,
}

type splitPreTokenizer struct {
	pat      pattern
	behavior splitBehavior
	invert   bool
	// scan selects the hand-written scanner for a known pattern.
	scan scanKind
}

func (p *splitPreTokenizer) preTokenize(s string, atStart bool, emit func(string, bool)) {
	if p.scan != scanNone {
		first := atStart
		scanPieces(s, p.scan, func(piece string) {
			emit(piece, first)
			first = false
		})
		return
	}
	splitByMatches(s, p.pat.findAll(s), p.behavior, p.invert, atStart, emit)
}

// splitByMatches applies a Split behavior to the match ranges ms of s.
func splitByMatches(s string, ms [][2]int, behavior splitBehavior, invert bool, atStart bool, emit func(string, bool)) {
	// Lay the text out as alternating spans, each marked as match or not.
	type span struct {
		a, b  int
		match bool
	}
	spans := make([]span, 0, 2*len(ms)+1)
	last := 0
	for _, m := range ms {
		if m[0] > last {
			spans = append(spans, span{last, m[0], invert})
		}
		spans = append(spans, span{m[0], m[1], !invert})
		last = m[1]
	}
	if last < len(s) {
		spans = append(spans, span{last, len(s), invert})
	}
	var pieces [][2]int
	for i := 0; i < len(spans); i++ {
		sp := spans[i]
		switch {
		case !sp.match:
			pieces = append(pieces, [2]int{sp.a, sp.b})
		case behavior == splitRemoved:
		case behavior == splitIsolated:
			pieces = append(pieces, [2]int{sp.a, sp.b})
		case behavior == splitMergedWithPrevious:
			// Only onto text: a delimiter after a delimiter stands alone.
			if n := len(pieces); n > 0 && i > 0 && !spans[i-1].match {
				pieces[n-1][1] = sp.b
			} else {
				pieces = append(pieces, [2]int{sp.a, sp.b})
			}
		case behavior == splitMergedWithNext:
			if i+1 < len(spans) && !spans[i+1].match {
				spans[i+1].a = sp.a
			} else {
				pieces = append(pieces, [2]int{sp.a, sp.b})
			}
		case behavior == splitContiguous:
			if n := len(pieces); n > 0 && i > 0 && spans[i-1].match && pieces[n-1][1] == sp.a {
				pieces[n-1][1] = sp.b
			} else {
				pieces = append(pieces, [2]int{sp.a, sp.b})
			}
		}
	}
	for _, p := range pieces {
		if p[1] > p[0] {
			emit(s[p[0]:p[1]], atStart && p[0] == 0)
		}
	}
}

// byteLevelPreTokenizer is the ByteLevel pre-tokenizer. The byte-to-
// character mapping itself is folded into the vocabulary (see
// bytelevel.go), so all that is left here is the optional prefix space and
// the optional GPT-2 split.
type byteLevelPreTokenizer struct {
	addPrefixSpace bool
	split          *splitPreTokenizer // nil when use_regex is false
}

func (p *byteLevelPreTokenizer) preTokenize(s string, atStart bool, emit func(string, bool)) {
	if p.addPrefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	if p.split == nil {
		emit(s, atStart)
		return
	}
	p.split.preTokenize(s, atStart, emit)
}

// metaspacePreTokenizer replaces spaces with "▁", optionally prepends one,
// and splits in front of each "▁" (SentencePiece style).
type metaspacePreTokenizer struct {
	replacement string
	prepend     string // "always", "first" or "never"
	split       bool
}

func (p *metaspacePreTokenizer) preTokenize(s string, atStart bool, emit func(string, bool)) {
	s = strings.ReplaceAll(s, " ", p.replacement)
	if (p.prepend == "always" || (p.prepend == "first" && atStart)) && !strings.HasPrefix(s, p.replacement) {
		s = p.replacement + s
	}
	if !p.split {
		emit(s, atStart)
		return
	}
	splitByMatches(s, pattern{literal: p.replacement}.findAll(s), splitMergedWithNext, false, atStart, emit)
}

// digitsPreTokenizer separates digits from the rest, one by one or in runs.
type digitsPreTokenizer struct{ individual bool }

func (p digitsPreTokenizer) preTokenize(s string, atStart bool, emit func(string, bool)) {
	var ms [][2]int
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if unicode.IsNumber(r) {
			ms = append(ms, [2]int{i, i + w})
		}
		i += w
	}
	b := splitContiguous
	if p.individual {
		b = splitIsolated
	}
	splitByMatches(s, ms, b, false, atStart, emit)
}

func parsePreTokenizer(raw json.RawMessage, path string, fault *regexFault) (preTokenizer, error) {
	obj, typ, err := component(raw, path)
	if err != nil || obj == nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		seq, err := sequence(obj, "pretokenizers", path, fault, parsePreTokenizer)
		if err != nil {
			return nil, err
		}
		return preTokenizerSeq(seq), nil
	case "Split":
		p := &splitPreTokenizer{}
		if p.pat, err = parsePattern(obj, path, fault); err != nil {
			return nil, err
		}
		var behavior string
		if err := field(obj, "behavior", &behavior, path); err != nil {
			return nil, err
		}
		b, ok := splitBehaviors[behavior]
		if !ok {
			return nil, fmt.Errorf("%s.behavior: unknown split behavior %q", path, behavior)
		}
		p.behavior = b
		if err := optField(obj, "invert", &p.invert, path); err != nil {
			return nil, err
		}
		if b == splitIsolated && !p.invert {
			p.scan = knownPattern(p.pat.source)
		}
		return p, nil
	case "ByteLevel":
		p := &byteLevelPreTokenizer{}
		if err := optField(obj, "add_prefix_space", &p.addPrefixSpace, path); err != nil {
			return nil, err
		}
		useRegex := true
		if err := optField(obj, "use_regex", &useRegex, path); err != nil {
			return nil, err
		}
		if useRegex {
			pat, err := compilePattern(patternGPT2, path+" (use_regex: the GPT-2 pattern)", fault)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			p.split = &splitPreTokenizer{pat: pat, behavior: splitIsolated, scan: scanGPT2}
		}
		return p, nil
	case "Metaspace":
		p := &metaspacePreTokenizer{replacement: "▁", prepend: "always", split: true}
		if err := optField(obj, "replacement", &p.replacement, path); err != nil {
			return nil, err
		}
		// Older files say add_prefix_space instead of prepend_scheme.
		if raw, ok := obj["add_prefix_space"]; ok && string(raw) == "false" {
			p.prepend = "never"
		}
		if err := optField(obj, "prepend_scheme", &p.prepend, path); err != nil {
			return nil, err
		}
		if p.prepend != "always" && p.prepend != "first" && p.prepend != "never" {
			return nil, fmt.Errorf("%s.prepend_scheme: unknown value %q", path, p.prepend)
		}
		if err := optField(obj, "split", &p.split, path); err != nil {
			return nil, err
		}
		return p, nil
	case "Digits":
		var p digitsPreTokenizer
		if err := optField(obj, "individual_digits", &p.individual, path); err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, fmt.Errorf("%s.type: pre-tokenizer %q is not supported", path, typ)
}

// knownPattern recognises the split patterns the scanner implements.
func knownPattern(src string) scanKind {
	switch src {
	case patternCl100k:
		return scanCl100k
	case patternQwen2:
		return scanQwen2
	case patternGPT2:
		return scanGPT2
	}
	return scanNone
}
