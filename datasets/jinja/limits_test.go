package jinja

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Hostile templates end with an error naming the limit, quickly, instead
// of hanging, overflowing the stack or exhausting memory.
func TestHostileTemplatesStopAtLimits(t *testing.T) {
	cases := map[string]string{
		"recursive macro":  `{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}`,
		"huge range":       `{% for i in range(100000000000) %}x{% endfor %}`,
		"nested loops":     `{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}`,
		"string repeat":    `{{ "x" * 10000000000 }}`,
		"list repeat":      `{{ [1] * 10000000000 }}`,
		"output flood":     `{% for a in range(100000) %}{% for b in range(100) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}`,
		"doubling concat":  `{% set ns = namespace(s="x") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}`,
		"doubling replace": `{% set ns = namespace(s="xx") %}{% for i in range(64) %}{% set ns.s = ns.s.replace("x", "xx") %}{% endfor %}`,
		"big join":         `{% set ns = namespace(l=["xxxxxxxx"]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | join(",") }}`,
		"power":            `{{ 2 ** 100000 }}`,
	}
	for name, src := range cases {
		tmpl, err := Parse(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		start := time.Now()
		_, err = tmpl.Render(nil, Options{})
		if !errors.Is(err, ErrLimit) && !strings.Contains(err.Error(), ErrLimit.Error()) {
			t.Errorf("%s: want a limit error, got %v", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v to stop", name, d)
		}
	}
}

func TestDeepNestingIsASyntaxError(t *testing.T) {
	for _, src := range []string{
		"{{ " + strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000) + " }}",
		"{{ " + strings.Repeat("not ", 5000) + "x }}",
		"{{ " + strings.Repeat("-", 5000) + "1 }}",
		"{{ " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + " }}",
		strings.Repeat("{% if x %}", 5000) + strings.Repeat("{% endif %}", 5000),
	} {
		_, err := Parse(src)
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(se.Msg, "nest") {
			t.Errorf("want a nesting error, got %v", err)
		}
	}
}

func TestNoFileAccess(t *testing.T) {
	for _, src := range []string{`{% include "x.jinja" %}`, `{% import "x" as y %}`, `{% extends "base" %}`, `{% from "x" import y %}`} {
		_, err := Parse(src)
		if err == nil || !strings.Contains(err.Error(), "not available") {
			t.Errorf("%s: want refusal, got %v", src, err)
		}
	}
	// Values have no Python internals to climb through: such attributes are
	// undefined, and reading through them is an error, as in jinja2's sandbox.
	for _, src := range []string{`{{ messages.__class__ }}`, `{{ range.__globals__ }}`, `{{ ''.__class__.__mro__ }}`, `{{ cycler.__init__.__globals__.os }}`} {
		tmpl, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		res, err := tmpl.Render(map[string]any{"messages": []any{}}, Options{})
		if res.Text != "" || err != nil && !strings.Contains(err.Error(), "undefined") && !strings.Contains(err.Error(), "is unsafe") {
			t.Errorf("%s: got %q, %v", src, res.Text, err)
		}
	}
}

func TestSandboxRefusesMutation(t *testing.T) {
	for _, src := range []string{`{% set x = [1] %}{{ x.append(2) }}`, `{% set d = {} %}{{ d.update({'a': 1}) }}`} {
		tmpl, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tmpl.Render(nil, Options{}); err == nil || !strings.Contains(err.Error(), "sandbox") {
			t.Errorf("%s: want a sandbox error, got %v", src, err)
		}
	}
}

func TestErrorsNameTheLine(t *testing.T) {
	_, err := Parse("line one\n{% if x %}\n{{ 1 + }}\n{% endif %}")
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 3 {
		t.Fatalf("want a syntax error on line 3, got %v", err)
	}
	tmpl, err := Parse("a\nb\n{{ raise_exception('roles must alternate') }}")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmpl.Render(nil, Options{})
	var re *RaisedError
	if !errors.As(err, &re) || re.Message != "roles must alternate" || re.Line != 3 {
		t.Fatalf("got %#v", err)
	}
	_, err = Parse("{% for x in y %}no end")
	if err == nil || !strings.Contains(err.Error(), "endfor") {
		t.Fatalf("got %v", err)
	}
}

// A tag that ends a block, out of place, says which end was expected (or
// that no such block is open) on its line, not "unknown tag": the usual
// slip is an inner block left open.
func TestMisplacedEndTagSaysWhatIsOpen(t *testing.T) {
	for _, c := range []struct {
		src  string
		line int
		want string
	}{
		{"{% for m in messages %}\n{{ m.content }}\n{% if m.role %}\n{% endfor %}", 4, "{% endfor %} where {% endif %} was expected"},
		{"a\n{% endif %}", 2, "{% endif %} with no {% if %} open"},
		{"{% if x %}\n{% endfor %}{% endif %}", 2, "{% endfor %} where {% endif %} was expected"},
		{"{% for x in y %}{% elif z %}{% endfor %}", 1, "{% elif %} where {% endfor %} was expected"},
	} {
		_, err := Parse(c.src)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != c.line || !strings.Contains(se.Msg, c.want) {
			t.Errorf("Parse(%q): %v, want line %d: %s", c.src, err, c.line, c.want)
		}
	}
}

// Values with no text of their own print as jinja2 prints them, and a
// namespace that holds itself prints with Python's [...] and {...}: these
// recursed between str() and repr() until the stack ran out, which kills
// the whole process (FuzzJinjaChatTemplate found {{ m.content.lower }}). A
// function printed without its call is an error naming the line, since
// jinja2 prints its memory address; comparing two functions is false, not
// a panic (jinja2 says True for one global compared with itself, which Go's
// functions cannot tell).
func TestPrintingFunctionsAndCyclesEnds(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"{% macro f() %}{% endmacro %}{{ f }}", "<Macro 'f'>"},
		{"{% for x in 'ab' %}{{ loop }}{% endfor %}", "<LoopContext 1/2><LoopContext 2/2>"},
		{"{% set ns = namespace() %}{% set ns.x = ns %}{{ ns }}", "<Namespace {'x': <Namespace {...}>}>"},
		{"{% set ns = namespace() %}{% set l = [ns, {'k': ns}] %}{% set ns.x = l %}{{ l }}",
			"[<Namespace {'x': [...]}>, {'k': <Namespace {'x': [...]}>}]"},
		{"{{ [1, [2, (3,)], {'a': none}] }}", "[1, [2, (3,)], {'a': None}]"},
		{"{{ 'x' ~ range }}|{{ range|string }}", "x<built-in function>|<built-in function>"},
		{"{{ range == range }} {{ range in [1, range] }} {{ {range: 1}|length }}", "False False 1"},
	} {
		tmpl, err := Parse(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		res, err := tmpl.Render(nil, Options{})
		if err != nil || res.Text != c.want {
			t.Errorf("%s: %q, %v; want %q", c.src, res.Text, err, c.want)
		}
	}
	for _, c := range []struct{ src, want string }{
		{"a\n{{ messages[0].content.strip }}", "line 2: prints the method .strip instead of calling it (write .strip())"},
		{"{{ range }}", "line 1: prints range instead of calling it (write range())"},
		{"\n\n{{ [range][0] }}", "line 3: prints a function or method instead of calling it"},
	} {
		tmpl, err := Parse(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		_, err = tmpl.Render(map[string]any{"messages": []any{map[string]any{"content": " x "}}}, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: %v, want %s…", c.src, err, c.want)
		}
	}
}

// Using a missing element or attribute fails with jinja2's words for it
// (python3's jinja2 3.1 gave each message below). It said "'value' is
// undefined" for messages[0] of an empty conversation and "'startswith'
// is undefined" for Qwen 3's template given a content list.
func TestUndefinedErrorsSayWhatJinja2Says(t *testing.T) {
	for _, c := range []struct {
		src  string
		vars map[string]any
		want string
	}{
		{"{{ m[0].x }}", map[string]any{"m": []any{}}, "list object has no element 0"},
		{"{{ m.startswith('a') }}", map[string]any{"m": []any{}}, "'list object' has no attribute 'startswith'"},
		{"{{ d['x'].y }}", map[string]any{"d": map[string]any{}}, "'dict object' has no attribute 'x'"},
		{"{{ d.x.y }}", map[string]any{"d": map[string]any{}}, "'dict object' has no attribute 'x'"},
		{"{{ s[9].y }}", map[string]any{"s": "ab"}, "str object has no element 9"},
		{"{{ s.nope() }}", map[string]any{"s": "ab"}, "'str object' has no attribute 'nope'"},
		{"{{ m[0]() }}", map[string]any{"m": []any{}}, "list object has no element 0"},
		{"{{ m[-5].y }}", map[string]any{"m": []any{1}}, "list object has no element -5"},
		{"{{ nope.y }}", nil, "'nope' is undefined"},
		{"{{ n.y.z }}", map[string]any{"n": 3}, "'int object' has no attribute 'y'"},
		{"{{ ''.__class__.__mro__ }}", nil, "access to attribute '__class__' of 'str' object is unsafe"},
	} {
		tmpl, err := Parse(c.src)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tmpl.Render(c.vars, Options{})
		if err == nil || err.Error() != "line 1: "+c.want {
			t.Errorf("%s: %v, want line 1: %s", c.src, err, c.want)
		}
	}
}
