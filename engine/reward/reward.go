// Package reward holds GRPO's reward functions: built-in checks that need
// no code (the answer column matched exactly or as a number, a regular
// expression, a length penalty, valid JSON) and external scorers (a
// command, or an HTTP endpoint) that read prompts and completions as JSON
// lines and answer with one reward per line. A reward is a float64; NaN
// means "no reward for this completion" (TRL's None), which GRPO leaves
// out of its means.
package reward

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// Input is one completion to score, as external scorers read it (one JSON
// object per line).
type Input struct {
	Prompt     string `json:"prompt"`
	Completion string `json:"completion"`
	// Answer is the row's answer column ("" when the data has none).
	Answer string `json:"answer,omitempty"`
	// Tokens is the completion's length in tokens.
	Tokens int `json:"completion_tokens"`
	// Truncated says the completion hit max_completion_length.
	Truncated bool `json:"truncated,omitempty"`
	// Row holds the dataset row's columns, for scorers that need more.
	Row map[string]any `json:"row,omitempty"`
}

// Func scores a batch of completions.
type Func interface {
	// Name is the function's name in the metrics (rewards/NAME/mean).
	Name() string
	// Score returns one reward per input (NaN: none).
	Score(ctx context.Context, in []Input) ([]float64, error)
}

// Types are the reward function types a run config may name.
var Types = []string{"exact_answer", "numeric_answer", "regex", "length", "json", "command", "http"}

// DefaultWeight is a function's weight when the config gives none (TRL:
// reward_weights None weighs every function 1).
const DefaultWeight = 1.0

// DefaultTimeout bounds one call of an external scorer (command or HTTP)
// when the config gives no timeout_s.
const DefaultTimeout = 60 * time.Second

// Spec is one reward function in a run config (grpo.rewards).
type Spec struct {
	// The function: exact_answer | numeric_answer | regex | length | json |
	// command | http.
	Type string `yaml:"type"`
	// The name shown in the metrics (rewards/NAME/mean). Empty: the type.
	Name string `yaml:"name,omitempty"`
	// The reward's weight in the sum (empty: 1).
	Weight *float64 `yaml:"weight,omitempty"`
	// regex: the pattern a completion must match (Go syntax, RE2) to get 1.
	// exact_answer, numeric_answer: a pattern whose first group picks the
	// answer out of the completion (its last match); empty: the whole
	// completion (exact_answer) or its last number (numeric_answer).
	Pattern string `yaml:"pattern,omitempty"`
	// exact_answer: compare ignoring case.
	IgnoreCase bool `yaml:"ignore_case,omitempty"`
	// length: completions up to this many tokens get 0, longer ones
	// -(tokens-target)/target.
	TargetLength int `yaml:"target_length,omitempty"`
	// command: the program and its arguments (no shell).
	Command []string `yaml:"command,omitempty"`
	// http: the endpoint that receives the JSON lines by POST.
	URL string `yaml:"url,omitempty"`
	// command, http: seconds one call may take (empty: 60).
	TimeoutS float64 `yaml:"timeout_s,omitempty"`
}

// W is the spec's weight.
func (s Spec) W() float64 {
	if s.Weight == nil {
		return DefaultWeight
	}
	return *s.Weight
}

func (s Spec) timeout() time.Duration {
	if s.TimeoutS <= 0 {
		return DefaultTimeout
	}
	return time.Duration(s.TimeoutS * float64(time.Second))
}

// Validate checks a spec; field is its place in the config
// (grpo.rewards[0]) for the message.
func (s Spec) Validate(field string) error {
	_, err := s.build(field, s.Type)
	return err
}

// Build turns the specs into functions with distinct names (a repeated
// name gets _2, _3…), and returns their weights.
func Build(specs []Spec) ([]Func, []float64, error) {
	if len(specs) == 0 {
		return nil, nil, fmt.Errorf("grpo.rewards: no reward function (want at least one of %s)", strings.Join(Types, ", "))
	}
	seen := map[string]int{}
	var fns []Func
	var ws []float64
	for i, s := range specs {
		field := fmt.Sprintf("grpo.rewards[%d]", i)
		name := s.Name
		if name == "" {
			name = s.Type
		}
		seen[name]++
		if seen[name] > 1 {
			name = fmt.Sprintf("%s_%d", name, seen[name])
		}
		f, err := s.build(field, name)
		if err != nil {
			return nil, nil, err
		}
		w := s.W()
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, nil, fmt.Errorf("%s.weight: must be a finite number, got %v", field, w)
		}
		fns = append(fns, f)
		ws = append(ws, w)
	}
	return fns, ws, nil
}

func (s Spec) build(field, name string) (Func, error) {
	switch s.Type {
	case "exact_answer", "numeric_answer":
		re, err := compile(field, s.Pattern, true)
		if err != nil {
			return nil, err
		}
		return answerMatch{name: name, re: re, numeric: s.Type == "numeric_answer", fold: s.IgnoreCase}, nil
	case "regex":
		if s.Pattern == "" {
			return nil, fmt.Errorf("%s.pattern: regex needs a pattern", field)
		}
		re, err := compile(field, s.Pattern, false)
		if err != nil {
			return nil, err
		}
		return regexMatch{name: name, re: re}, nil
	case "length":
		if s.TargetLength <= 0 {
			return nil, fmt.Errorf("%s.target_length: length needs a positive number of tokens, got %d", field, s.TargetLength)
		}
		return lengthPenalty{name: name, target: s.TargetLength}, nil
	case "json":
		return validJSON{name: name}, nil
	case "command":
		if len(s.Command) == 0 || s.Command[0] == "" {
			return nil, fmt.Errorf("%s.command: command needs a program, e.g. [python3, score.py]", field)
		}
		if s.TimeoutS < 0 {
			return nil, fmt.Errorf("%s.timeout_s: must not be negative", field)
		}
		return &Command{name: name, Argv: s.Command, Timeout: s.timeout()}, nil
	case "http":
		if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
			return nil, fmt.Errorf("%s.url: http needs an http:// or https:// address, got %q", field, s.URL)
		}
		if s.TimeoutS < 0 {
			return nil, fmt.Errorf("%s.timeout_s: must not be negative", field)
		}
		return &HTTP{name: name, URL: s.URL, Timeout: s.timeout()}, nil
	case "":
		return nil, fmt.Errorf("%s.type: missing (want one of %s)", field, strings.Join(Types, ", "))
	}
	return nil, fmt.Errorf("%s.type: unknown %q (want one of %s)", field, s.Type, strings.Join(Types, ", "))
}

// CloneSpecs copies specs deeply (weights and command lists included), so
// a preset's list is never shared with a run built from it.
func CloneSpecs(specs []Spec) []Spec {
	if specs == nil {
		return nil
	}
	out := make([]Spec, len(specs))
	for i, s := range specs {
		if s.Weight != nil {
			w := *s.Weight
			s.Weight = &w
		}
		s.Command = append([]string(nil), s.Command...)
		out[i] = s
	}
	return out
}
