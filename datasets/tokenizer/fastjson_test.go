package tokenizer

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestReadVocabMatchesEncodingJSON: the fast reader decodes strings
// exactly as encoding/json does, escapes and surrogate pairs included.
func TestReadVocabMatchesEncodingJSON(t *testing.T) {
	src := `{"a": 0, "\n\t\\\"\/": 1, "\u0120the": 2, "\ud83d\ude00": 3, "\ud83d": 4, "é▁": 5, "\u0000": 6, "x\u00e9\r": 7}`
	got, err := readVocab([]byte(src), "model.vocab")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]int
	if err := json.Unmarshal([]byte(src), &want); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("readVocab = %v, encoding/json = %v", got, want)
	}
	merges := `[["a", "\u0120b"], ["\n", "\n"]]`
	pairs, err := readMerges([]byte(merges), "model.merges")
	if err != nil {
		t.Fatal(err)
	}
	if want := [][2]string{{"a", "Ġb"}, {"\n", "\n"}}; !slices.Equal(pairs, want) {
		t.Fatalf("readMerges = %q, want %q", pairs, want)
	}
	pairs, err = readMerges([]byte(`["a b", "Ġ t"]`), "model.merges")
	if err != nil || !slices.Equal(pairs, [][2]string{{"a", "b"}, {"Ġ", "t"}}) {
		t.Fatalf("readMerges of strings = %q, %v", pairs, err)
	}
}

func TestFastJSONErrors(t *testing.T) {
	cases := []struct {
		src, want string
		vocab     bool
	}{
		{`{"a": -1}`, `model.vocab["a"]`, true},
		{`{"a": 1,}`, "model.vocab", true},
		{`{"a": 1`, "model.vocab", true},
		{`{"a\q": 1}`, "bad escape", true},
		{`{"a": 1} x`, "after the value", true},
		{`[["a", "b"], ["c"]]`, "model.merges[1]", false},
		{`["a b", 5]`, "model.merges[1]", false},
		{`["ab"]`, "model.merges[0]", false},
		{`[["a", "b"]`, "model.merges", false},
	}
	for _, c := range cases {
		var err error
		if c.vocab {
			_, err = readVocab([]byte(c.src), "model.vocab")
		} else {
			_, err = readMerges([]byte(c.src), "model.merges")
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.src, err, c.want)
		}
	}
}
