package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets/tokenizer"
)

const tinyTokenizer = "testdata/tokenizer/tiny"

func tokenizeCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runMain(append([]string{"tokenize"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestTokenizeCommand(t *testing.T) {
	tok, err := tokenizer.Load(tinyTokenizer)
	if err != nil {
		t.Fatal(err)
	}
	text := "func main() {\n\tfmt.Println(\"hi\")<|eos|>\n}\n"
	for _, special := range []bool{false, true} {
		args := []string{"--tokenizer", tinyTokenizer}
		if special {
			args = append(args, "--special")
		}
		code, stdout, stderr := tokenizeCLI(t, text, args...)
		if code != 0 {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		if !strings.HasSuffix(stdout, "]\n") || strings.Count(stdout, "\n") != 1 {
			t.Fatalf("want one JSON array on one line, got %q", stdout)
		}
		var ids []int
		if err := json.Unmarshal([]byte(stdout), &ids); err != nil {
			t.Fatalf("output %q: %v", stdout, err)
		}
		want := tok.Encode(text, special)
		if len(ids) != len(want) {
			t.Fatalf("special=%v: got %v, want %v", special, ids, want)
		}
		for i := range ids {
			if ids[i] != want[i] {
				t.Fatalf("special=%v: got %v, want %v", special, ids, want)
			}
		}
		bos, _ := tok.BOS()
		if hasBOS := len(ids) > 0 && ids[0] == bos; hasBOS != special {
			t.Fatalf("special=%v but BOS present=%v in %v", special, hasBOS, ids)
		}
		eos, _ := tok.TokenID("<|eos|>")
		found := false
		for _, id := range ids {
			found = found || id == eos
		}
		if !found {
			t.Fatalf("inline <|eos|> not encoded as its id %d: %v", eos, ids)
		}
	}
}

func TestTokenizeCommandEmptyInput(t *testing.T) {
	code, stdout, stderr := tokenizeCLI(t, "", "--tokenizer", tinyTokenizer)
	if code != 0 || stdout != "[]\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want [] for empty input", code, stdout, stderr)
	}
}

func TestTokenizeCommandErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no tokenizer flag", nil, "--tokenizer DIR is required"},
		{"missing dir", []string{"--tokenizer", "testdata/tokenizer/no-such-dir"}, "no-such-dir/tokenizer.json"},
		{"stray argument", []string{"--tokenizer", tinyTokenizer, "hello"}, "unexpected argument"},
		{"unknown flag", []string{"--tokeniser", tinyTokenizer}, "tokeniser"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := tokenizeCLI(t, "text", c.args...)
			if code == 0 {
				t.Fatalf("exit 0 with stdout %q; want failure", stdout)
			}
			if !strings.Contains(stderr, c.want) {
				t.Fatalf("stderr %q does not mention %q", stderr, c.want)
			}
		})
	}
}

func TestTokenizeCommandHelp(t *testing.T) {
	code, stdout, _ := tokenizeCLI(t, "", "--help")
	if code != 0 || !strings.Contains(stdout, "usage: whet tokenize") {
		t.Fatalf("--help: exit %d, stdout %q", code, stdout)
	}
}

// A tokenizer.json regex that gives up on the input (catastrophic
// backtracking hits the match timeout) is an error naming the pattern,
// never a silently short list of ids.
func TestTokenizeCommandReportsARegexThatGivesUp(t *testing.T) {
	raw, err := os.ReadFile("testdata/tiny-llama/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	var tj map[string]any
	if err := json.Unmarshal(raw, &tj); err != nil {
		t.Fatal(err)
	}
	split := tj["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)
	split["pattern"] = map[string]any{"Regex": `(x+x+)+y`}
	dir := t.TempDir()
	raw, _ = json.Marshal(tj)
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := tokenizeCLI(t, strings.Repeat("x", 64), "--tokenizer", dir)
	if code == 0 || stdout != "" || !strings.Contains(stderr, "(x+x+)+y") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
