package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Compile-time checks that every function satisfies Func.
var (
	_ Func = answerMatch{}
	_ Func = regexMatch{}
	_ Func = lengthPenalty{}
	_ Func = validJSON{}
	_ Func = (*Command)(nil)
	_ Func = (*HTTP)(nil)
)

func compile(field, pattern string, needGroup bool) (*regexp.Regexp, error) {
	if pattern == "" {
		return nil, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s.pattern: %w", field, err)
	}
	if needGroup && re.NumSubexp() < 1 {
		return nil, fmt.Errorf("%s.pattern: %q has no group to pick the answer with, e.g. <answer>(.*?)</answer>", field, pattern)
	}
	return re, nil
}

// answerMatch gives 1 when the completion's answer equals the row's answer
// column: as text (trimmed, optionally ignoring case) or as numbers.
// Rows without an answer get NaN (no reward) rather than 0.
type answerMatch struct {
	name          string
	re            *regexp.Regexp
	numeric, fold bool
}

func (a answerMatch) Name() string { return a.name }

func (a answerMatch) Score(_ context.Context, in []Input) ([]float64, error) {
	out := make([]float64, len(in))
	for i, x := range in {
		if strings.TrimSpace(x.Answer) == "" {
			out[i] = math.NaN()
			continue
		}
		got := x.Completion
		if a.re != nil {
			ms := a.re.FindAllStringSubmatch(got, -1)
			if len(ms) == 0 {
				continue // no answer given: 0
			}
			got = ms[len(ms)-1][1]
		}
		if a.numeric {
			want, ok := parseNumber(x.Answer)
			if !ok {
				return nil, fmt.Errorf("%s: the answer %q of completion %d is not a number", a.name, x.Answer, i)
			}
			if a.re == nil {
				got = lastNumber(got)
			}
			if v, ok := parseNumber(got); ok && sameNumber(v, want) {
				out[i] = 1
			}
			continue
		}
		g, w := strings.TrimSpace(got), strings.TrimSpace(x.Answer)
		if g == w || (a.fold && strings.EqualFold(g, w)) {
			out[i] = 1
		}
	}
	return out, nil
}

var numberRE = regexp.MustCompile(`-?\$?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+`)

// lastNumber is the last number written in s ("" when none).
func lastNumber(s string) string {
	ms := numberRE.FindAllString(s, -1)
	if len(ms) == 0 {
		return ""
	}
	return ms[len(ms)-1]
}

// parseNumber reads a number as people write answers: thousands commas,
// a currency sign, a trailing full stop or percent sign.
func parseNumber(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimRight(s, ".%")
	s = strings.ReplaceAll(s, ",", "")
	s = strings.ReplaceAll(s, "$", "")
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// sameNumber: equal within a relative 1e-6 (answers written 0.5 and .50).
func sameNumber(a, b float64) bool {
	return math.Abs(a-b) <= 1e-6*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// regexMatch gives 1 when the completion matches the pattern anywhere
// (anchor it with ^ and $ to match the whole).
type regexMatch struct {
	name string
	re   *regexp.Regexp
}

func (r regexMatch) Name() string { return r.name }

func (r regexMatch) Score(_ context.Context, in []Input) ([]float64, error) {
	out := make([]float64, len(in))
	for i, x := range in {
		if r.re.MatchString(x.Completion) {
			out[i] = 1
		}
	}
	return out, nil
}

// lengthPenalty is 0 up to target tokens and -(tokens-target)/target beyond.
type lengthPenalty struct {
	name   string
	target int
}

func (l lengthPenalty) Name() string { return l.name }

func (l lengthPenalty) Score(_ context.Context, in []Input) ([]float64, error) {
	out := make([]float64, len(in))
	for i, x := range in {
		if x.Tokens > l.target {
			out[i] = -float64(x.Tokens-l.target) / float64(l.target)
		}
	}
	return out, nil
}

// validJSON gives 1 when the completion (trimmed, or the inside of a
// ```json fence) is one JSON value.
type validJSON struct{ name string }

func (v validJSON) Name() string { return v.name }

func (v validJSON) Score(_ context.Context, in []Input) ([]float64, error) {
	out := make([]float64, len(in))
	for i, x := range in {
		if json.Valid([]byte(unfence(x.Completion))) {
			out[i] = 1
		}
	}
	return out, nil
}

// unfence returns the inside of a Markdown code fence around s, or s
// trimmed.
func unfence(s string) string {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "```") || !strings.HasSuffix(s, "```") || len(s) < 6 {
		return s
	}
	body := s[3 : len(s)-3]
	if nl := strings.IndexByte(body, '\n'); nl >= 0 && !strings.ContainsAny(body[:nl], "{[\"") {
		body = body[nl+1:] // the info string (json)
	}
	return strings.TrimSpace(body)
}
