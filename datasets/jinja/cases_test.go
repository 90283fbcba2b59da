package jinja

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The snippets of tools/templates/jinja_cases.py, rendered by jinja2: the
// same text, or an error where jinja2 failed.
func TestInterpreterMatchesJinja2Snippets(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "templates", "jinja-cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Variables json.RawMessage `json:"variables"`
		Cases     []struct {
			Template string  `json:"template"`
			Text     *string `json:"text"`
			Error    *string `json:"error"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	vars, err := FromJSON(file.Variables)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	vd := vars.(*Dict)
	for i, k := range vd.keys {
		m[k.(string)] = vd.vals[i]
	}
	now := func() time.Time { return time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC) }
	for _, c := range file.Cases {
		tmpl, err := Parse(c.Template)
		if err != nil {
			if c.Error == nil {
				t.Errorf("%q: %v", c.Template, err)
			}
			continue
		}
		res, err := tmpl.Render(m, Options{Now: now})
		switch {
		case c.Error != nil:
			if err == nil {
				t.Errorf("%q: jinja2 failed (%s), got %q", c.Template, *c.Error, res.Text)
			}
		case err != nil:
			t.Errorf("%q: %v", c.Template, err)
		case res.Text != *c.Text:
			t.Errorf("%q:\n got %q\nwant %q", c.Template, res.Text, *c.Text)
		}
	}
	if len(file.Cases) < 50 {
		t.Fatalf("only %d cases", len(file.Cases))
	}
}
