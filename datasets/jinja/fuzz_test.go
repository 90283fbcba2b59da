package jinja

import (
	"strings"
	"testing"
)

// FuzzRender feeds random templates and conversations to the interpreter:
// it must return text or an error, never panic or run past its limits.
func FuzzRender(f *testing.F) {
	seeds := []string{
		`{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] | trim + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}`,
		`{%- set ns = namespace(x=0) -%}{%- for m in messages[::-1] if m.role == 'user' %}{% set ns.x = loop.index0 %}{% endfor %}{{ ns.x }}`,
		`{% macro f(a, b=2) %}{{ a ~ b }}{% endmacro %}{{ f(1) }}{{ f(b=3, a=4) }}`,
		`{{ tools | tojson(indent=4) }}{{ "a,b".split(",") | join("|") }}{{ x is defined }}{{ 3 // 2 }}{{ -7 % 3 }}`,
		`{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}`,
		`{{ strftime_now("%-d %b %Y") }}{% generation %}{{ messages[-1].content[1:3] }}{% endgeneration %}`,
		`{% raw %}{{ not evaluated }}{% endraw %}{# comment #}{{ [1, 2.5, 'x', none, true] }}{{ {'a': [1]} }}`,
	}
	for _, s := range seeds {
		f.Add(s, `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " yo "}], "tools": [{"a": 1}]}`)
	}
	lim := Limits{MaxSteps: 20000, MaxOutput: 1 << 16, MaxDepth: 20, MaxItems: 5000}
	f.Fuzz(func(t *testing.T, src, vars string) {
		tmpl, err := Parse(src)
		if err != nil {
			return
		}
		v, err := FromJSON([]byte(vars))
		d, ok := v.(*Dict)
		if err != nil || !ok {
			d = NewDict()
		}
		m := map[string]any{}
		for i, k := range d.keys {
			if s, ok := k.(string); ok {
				m[s] = d.vals[i]
			}
		}
		res, err := tmpl.Render(m, Options{Limits: lim})
		if err == nil && len(res.Text) > lim.MaxOutput {
			t.Fatalf("output %d bytes over the limit", len(res.Text))
		}
		for _, g := range res.Generation {
			if g.Start < 0 || g.End > len(res.Text) || g.Start > g.End {
				t.Fatalf("bad generation span %v of %d", g, len(res.Text))
			}
		}
		_ = strings.TrimSpace
	})
}
