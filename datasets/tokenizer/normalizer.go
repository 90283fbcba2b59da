package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites the text of one section (the text between added
// tokens) before pre-tokenization, as the "normalizer" of tokenizer.json.
type normalizer interface {
	normalize(s string) string
}

type normalizerSeq []normalizer

func (q normalizerSeq) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

type unicodeNormalizer struct{ form norm.Form }

func (u unicodeNormalizer) normalize(s string) string { return u.form.String(s) }

type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) string { return strings.ToLower(s) }

type stripNormalizer struct{ left, right bool }

func (n stripNormalizer) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, isSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, isSpace)
	}
	return s
}

// prependNormalizer adds its text in front of every non-empty section
// (SentencePiece's dummy prefix "▁" in Llama 2).
type prependNormalizer struct{ prefix string }

func (n prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return n.prefix + s
}

type replaceNormalizer struct{ r replacer }

func (n replaceNormalizer) normalize(s string) string { return n.r.replace(s) }

// parseNormalizer builds the normalizer described at path (for messages)
// from raw JSON; null gives nil.
func parseNormalizer(raw json.RawMessage, path string, fault *regexFault) (normalizer, error) {
	obj, typ, err := component(raw, path)
	if err != nil || obj == nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		seq, err := sequence(obj, "normalizers", path, fault, parseNormalizer)
		if err != nil {
			return nil, err
		}
		return normalizerSeq(seq), nil
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "Strip":
		var n stripNormalizer
		if err := optField(obj, "strip_left", &n.left, path); err != nil {
			return nil, err
		}
		if err := optField(obj, "strip_right", &n.right, path); err != nil {
			return nil, err
		}
		return n, nil
	case "Prepend":
		var n prependNormalizer
		if err := field(obj, "prepend", &n.prefix, path); err != nil {
			return nil, err
		}
		return n, nil
	case "Replace":
		r, err := parseReplacer(obj, path, fault)
		if err != nil {
			return nil, err
		}
		return replaceNormalizer{r}, nil
	}
	return nil, fmt.Errorf("%s.type: normalizer %q is not supported", path, typ)
}
