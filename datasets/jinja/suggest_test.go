package jinja

import "testing"

// An unknown filter or test says, on its line, which known name a
// misspelt one was meant to be, and suggests nothing for a name that is
// no near miss.
func TestUnknownFilterSuggestsTheClosest(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"a\n{{ 'x' | trimm }}", "line 2: no filter named 'trimm'; did you mean 'trim'?"},
		{"{{ 'x' | Upper }}", "line 1: no filter named 'Upper'; did you mean 'upper'?"},
		{"{{ [1] | lenght }}", "line 1: no filter named 'lenght'; did you mean 'length'?"},
		{"{{ [1] | map('tojsn') | list }}", "line 1: map: no filter named 'tojsn'; did you mean 'tojson'?"},
		{"{{ 'x' | nosuchfilter }}", "line 1: no filter named 'nosuchfilter'"},
		{"{{ 'x' | q }}", "line 1: no filter named 'q'"},
		{"\n\n{% if x is defind %}{% endif %}", "line 3: no test named 'defind'; did you mean 'defined'?"},
		{"{{ [1] | select('od') | list }}", "line 1: select: no test named 'od'; did you mean 'odd'?"},
		{"{% if x is frobnicated %}{% endif %}", "line 1: no test named 'frobnicated'"},
	} {
		tmpl, err := Parse(c.src)
		if err != nil {
			t.Fatalf("%q: %v", c.src, err)
		}
		_, err = tmpl.Render(map[string]any{"x": 1}, Options{})
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: %v, want %q", c.src, err, c.want)
		}
	}
}
