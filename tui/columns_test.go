package tui

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseColumns(t *testing.T) {
	for in, want := range map[string]map[string]string{
		"":                     nil,
		" , ":                  nil,
		"instruction=question": {"instruction": "question"},
		"instruction = question, output: answer ": {"instruction": "question", "output": "answer"},
		"text=body,": {"text": "body"},
	} {
		got, err := parseColumns(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseColumns(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"instruction question": `"instruction question" is not name=column`,
		"instruction=":         `"instruction=" needs a name on both sides of "="`,
		"=question":            `needs a name on both sides`,
		"output=a, output=b":   "output is mapped twice",
	} {
		if _, err := parseColumns(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("parseColumns(%q) error = %v, want one saying %s", in, err, msg)
		}
	}
}

// FuzzParseColumns: whatever is typed, parsing never panics, and a mapping
// it accepts reads back the same from how the page writes it.
func FuzzParseColumns(f *testing.F) {
	for _, s := range []string{"", "instruction=question, output: answer", "a=b,c=d", "x", "=,=", "a==b", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseColumns(s)
		if err != nil {
			return
		}
		again, err := parseColumns(formatColumns(m))
		if err != nil {
			t.Fatalf("parseColumns(formatColumns(%v)): %v", m, err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip of %q: %v became %v", s, m, again)
		}
	})
}
