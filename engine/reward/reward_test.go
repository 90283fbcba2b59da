package reward

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func score(t *testing.T, s Spec, in []Input) []float64 {
	t.Helper()
	fns, _, err := Build([]Spec{s})
	if err != nil {
		t.Fatal(err)
	}
	out, err := fns[0].Score(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func same(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) {
			return false
		}
	}
	return true
}

func TestBuiltins(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		spec Spec
		in   []Input
		want []float64
	}{
		{Spec{Type: "exact_answer"}, []Input{{Completion: " Paris\n", Answer: "Paris"}, {Completion: "paris", Answer: "Paris"}, {Completion: "x", Answer: ""}}, []float64{1, 0, nan}},
		{Spec{Type: "exact_answer", IgnoreCase: true}, []Input{{Completion: "paris", Answer: "Paris"}}, []float64{1}},
		{Spec{Type: "exact_answer", Pattern: `<answer>(.*?)</answer>`}, []Input{
			{Completion: "<answer>1</answer> then <answer>Lyon</answer>", Answer: "Lyon"},
			{Completion: "Lyon", Answer: "Lyon"}}, []float64{1, 0}},
		{Spec{Type: "numeric_answer"}, []Input{
			{Completion: "3 apples and 4 pears make 7.", Answer: "7"},
			{Completion: "The total is $1,250.00", Answer: "1250"},
			{Completion: "it is 0.5", Answer: ".50"},
			{Completion: "no idea", Answer: "3"},
			{Completion: "-2", Answer: "-2"}}, []float64{1, 1, 1, 0, 1}},
		{Spec{Type: "regex", Pattern: `\?\s*$`}, []Input{{Completion: "why?"}, {Completion: "because."}}, []float64{1, 0}},
		{Spec{Type: "length", TargetLength: 4}, []Input{{Tokens: 3}, {Tokens: 4}, {Tokens: 10}}, []float64{0, 0, -1.5}},
		{Spec{Type: "json"}, []Input{{Completion: `{"a": 1}`}, {Completion: "```json\n[1, 2]\n```"}, {Completion: `{"a": }`}}, []float64{1, 1, 0}},
	}
	for _, c := range cases {
		if got := score(t, c.spec, c.in); !same(got, c.want) {
			t.Errorf("%+v: got %v, want %v", c.spec, got, c.want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, c := range []struct {
		specs []Spec
		want  string
	}{
		{nil, "no reward function"},
		{[]Spec{{Type: "vibes"}}, `grpo.rewards[0].type: unknown "vibes"`},
		{[]Spec{{Type: "regex"}}, "grpo.rewards[0].pattern: regex needs a pattern"},
		{[]Spec{{Type: "regex", Pattern: "("}}, "grpo.rewards[0].pattern:"},
		{[]Spec{{Type: "json"}, {Type: "exact_answer", Pattern: "x"}}, "grpo.rewards[1].pattern: \"x\" has no group"},
		{[]Spec{{Type: "length"}}, "target_length"},
		{[]Spec{{Type: "command"}}, "grpo.rewards[0].command"},
		{[]Spec{{Type: "http", URL: "ftp://x"}}, "grpo.rewards[0].url"},
	} {
		_, _, err := Build(c.specs)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.specs, err, c.want)
		}
	}
	fns, ws, err := Build([]Spec{{Type: "json"}, {Type: "json", Weight: ptr(0.5)}})
	if err != nil || fns[0].Name() != "json" || fns[1].Name() != "json_2" || ws[0] != 1 || ws[1] != 0.5 {
		t.Fatalf("names %v weights %v err %v", fns, ws, err)
	}
}

func ptr(f float64) *float64 { return &f }

func TestParseRewards(t *testing.T) {
	got, err := ParseRewards(strings.NewReader("1\n 0.5 \nnull\n-2e-1\n\n"), 4)
	if err != nil || !same(got, []float64{1, 0.5, math.NaN(), -0.2}) {
		t.Fatalf("%v %v", got, err)
	}
	for _, c := range []struct{ in, want string }{
		{"1\nabc\n", `line 2: "abc" is not a number`},
		{"1\n", "1 rewards for the 2 completions"},
		{"1\n2\n3\n", "line 3: more rewards than the 2"},
		{"1\n\n2\n", "line 3: a reward after a blank line"},
		{"1\ninf\n", `line 2: "inf" is infinite`},
	} {
		_, err := ParseRewards(strings.NewReader(c.in), 2)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.in, err, c.want)
		}
	}
}

// script writes an executable shell script for the command tests.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "score.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCommand(t *testing.T) {
	in := []Input{{Prompt: "p", Completion: "why?", Answer: "a"}, {Prompt: "p", Completion: "no"}}
	// Reads the JSON lines and answers 1 for completions holding a '?'.
	ok := script(t, `while IFS= read -r line; do case "$line" in *'"completion":"why?"'*) echo 1;; *) echo 0;; esac; done`)
	if got := score(t, Spec{Type: "command", Command: []string{ok}}, in); !same(got, []float64{1, 0}) {
		t.Fatalf("got %v", got)
	}
	for _, c := range []struct {
		body, want string
		timeout    float64
	}{
		{`cat >/dev/null; echo "debug: scoring"; echo 1; echo 0`, `line 1: "debug: scoring" is not a number`, 0},
		{`cat >/dev/null; echo oops >&2; exit 3`, "exit status 3; its stderr: oops", 0},
		{`cat >/dev/null; echo 1`, "1 rewards for the 2 completions", 0},
		{`sleep 5; echo 1; echo 1`, "no answer within 200ms", 0.2},
	} {
		fns, _, err := Build([]Spec{{Type: "command", Command: []string{script(t, c.body)}, TimeoutS: c.timeout}})
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		_, err = fns[0].Score(context.Background(), in)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "reward command") {
			t.Errorf("%s: error %v, want %q", c.body, err, c.want)
		}
		if time.Since(began) > 4*time.Second {
			t.Errorf("%s: the timeout did not end the command", c.body)
		}
	}
	if _, _, err := Build([]Spec{{Type: "command", Command: []string{"/nonexistent/scorer"}}}); err != nil {
		t.Fatal(err)
	}
	fns, _, _ := Build([]Spec{{Type: "command", Command: []string{"/nonexistent/scorer"}}})
	if _, err := fns[0].Score(context.Background(), in); err == nil || !strings.Contains(err.Error(), "/nonexistent/scorer") {
		t.Errorf("missing program: %v", err)
	}
}

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/x-ndjson" {
			http.Error(w, "want ndjson", http.StatusBadRequest)
			return
		}
		body := new(strings.Builder)
		fmt.Fprint(body, "")
		buf := make([]byte, 1<<16)
		n, _ := r.Body.Read(buf)
		lines := strings.Split(strings.TrimSpace(string(buf[:n])), "\n")
		if r.URL.Path == "/bad" {
			http.Error(w, "model not loaded", http.StatusServiceUnavailable)
			return
		}
		for _, l := range lines {
			if strings.Contains(l, "?") {
				fmt.Fprintln(w, 1)
			} else {
				fmt.Fprintln(w, "null")
			}
		}
	}))
	defer srv.Close()
	in := []Input{{Completion: "why?"}, {Completion: "no"}}
	if got := score(t, Spec{Type: "http", URL: srv.URL + "/score"}, in); !same(got, []float64{1, math.NaN()}) {
		t.Fatalf("got %v", got)
	}
	fns, _, _ := Build([]Spec{{Type: "http", URL: srv.URL + "/bad"}})
	if _, err := fns[0].Score(context.Background(), in); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "model not loaded") {
		t.Errorf("status error: %v", err)
	}
}

func FuzzParseRewards(f *testing.F) {
	for _, s := range []string{"1\n2\n", "null\n-0.5\n\n", "1e400\n", "nan\nNone\n", "\n\n1", "abc"} {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = n % 64
		if n < 0 {
			n = -n
		}
		out, err := ParseRewards(strings.NewReader(s), n)
		if err != nil {
			return
		}
		if len(out) != n {
			t.Fatalf("%d rewards for %d", len(out), n)
		}
		for _, v := range out {
			if math.IsInf(v, 0) {
				t.Fatalf("infinite reward accepted from %q", s)
			}
		}
	})
}
