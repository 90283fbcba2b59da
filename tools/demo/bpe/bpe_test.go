package main

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"whet/datasets"
	"whet/datasets/tokenizer"
)

// testCorpus is a little English with the things a byte-level tokenizer
// must get right: repeated words (so merges happen), numbers, punctuation
// runs, newlines, indentation and a few multi-byte characters.
func testCorpus(t *testing.T) string {
	t.Helper()
	persona, err := os.ReadFile("../../../presets/demo/mentor.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	extra := "The cat sat on the mat. The cat's hat was flat!\n\n" +
		"In 1811, 2,000 pounds -- or \u00a320,000? -- was a fortune.\n" +
		"    indented line\tand a tab\r\nCaf\u00e9 na\u00efve co\u00f6perate \u65e5\u672c\n"
	return string(persona) + strings.Repeat(extra, 3)
}

// bruteForce is the textbook algorithm: recount every pair of every word
// before each merge. The incremental trainer must learn the same merges.
func bruteForce(counts map[string]int64, firstID, vocabSize int, minCount int64) []Merge {
	type w struct {
		ids   []int32
		count int64
	}
	var words []w
	for s, c := range counts {
		ids := make([]int32, len(s))
		for i := 0; i < len(s); i++ {
			ids[i] = int32(firstID) + int32(s[i])
		}
		words = append(words, w{ids, c})
	}
	var merges []Merge
	for len(merges) < vocabSize-firstID-256 {
		pc := map[pair]int64{}
		for _, x := range words {
			for j := 0; j+1 < len(x.ids); j++ {
				pc[mkPair(x.ids[j], x.ids[j+1])] += x.count
			}
		}
		var best pair
		var bestCount int64
		for p, c := range pc {
			if c > bestCount || (c == bestCount && p < best) {
				best, bestCount = p, c
			}
		}
		if bestCount < minCount || bestCount == 0 {
			break
		}
		a, b := best.ids()
		id := int32(firstID + 256 + len(merges))
		for i := range words {
			ids := words[i].ids
			var out []int32
			for j := 0; j < len(ids); j++ {
				if j+1 < len(ids) && ids[j] == a && ids[j+1] == b {
					out = append(out, id)
					j++
				} else {
					out = append(out, ids[j])
				}
			}
			words[i].ids = out
		}
		merges = append(merges, Merge{a, b, id})
	}
	return merges
}

func TestIncrementalTrainingEqualsBruteForce(t *testing.T) {
	counts, err := countWords(testCorpus(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := train(counts, len(specials), 700, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := bruteForce(counts, len(specials), 700, 2)
	if len(want) < 200 {
		t.Fatalf("brute force learned only %d merges; the corpus is too small to test anything", len(want))
	}
	if !reflect.DeepEqual(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("merge %d: incremental %+v, brute force %+v (%d and %d merges in all)", i, got[i], want[i], len(got), len(want))
			}
		}
		t.Fatalf("incremental learned %d merges, brute force %d", len(got), len(want))
	}
}

func TestSplitMatchesWholeText(t *testing.T) {
	// Cutting the corpus into chunks at newlines must find the same
	// pre-tokens as one pass over the whole text would.
	text := testCorpus(t)
	one, err := countWords(text, 1)
	if err != nil {
		t.Fatal(err)
	}
	many, err := countWords(text, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(one, many) {
		t.Fatalf("1 worker found %d distinct pre-tokens, 7 workers %d", len(one), len(many))
	}
	var n int64
	for w, c := range one {
		n += int64(len(w)) * c
	}
	if n != int64(len(text)) {
		t.Fatalf("pre-tokens cover %d bytes of a %d-byte text", n, len(text))
	}
}

// trainTo trains on the test corpus and writes the files into a temporary
// directory, returning it and the word counts.
func trainTo(t *testing.T, vocab int) (string, map[string]int64, vocabulary) {
	t.Helper()
	counts, err := countWords(testCorpus(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	merges, err := train(counts, len(specials), vocab, 2)
	if err != nil {
		t.Fatal(err)
	}
	v := vocabulary{specials: specials, merges: merges}
	dir := t.TempDir()
	if err := writeFiles(dir, v, "<|im_end|>", "<|endoftext|>", 128); err != nil {
		t.Fatal(err)
	}
	return dir, counts, v
}

// TestWhetEncodesAsTrained loads the written files with whet's tokenizer
// and checks that every training word encodes to exactly the tokens the
// trainer ended with, that text decodes back, and that the special
// tokens, the EOS list and the chat template come through.
func TestWhetEncodesAsTrained(t *testing.T) {
	dir, counts, v := trainTo(t, 700)
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.VocabSize(), len(specials)+256+len(v.merges); got != want {
		t.Errorf("whet sees %d tokens, the trainer made %d", got, want)
	}

	// Replay the merges on each word, in order, as training did.
	tokens := v.tokenBytes()
	words := make([]string, 0, len(counts))
	for w := range counts {
		words = append(words, w)
	}
	sort.Strings(words)
	for _, w := range words {
		ids := make([]int, len(w))
		for i := 0; i < len(w); i++ {
			ids[i] = len(specials) + int(w[i])
		}
		for _, m := range v.merges {
			var out []int
			for j := 0; j < len(ids); j++ {
				if j+1 < len(ids) && ids[j] == int(m.Left) && ids[j+1] == int(m.Right) {
					out = append(out, int(m.Result))
					j++
				} else {
					out = append(out, ids[j])
				}
			}
			ids = out
		}
		if got := tok.Encode(w, false); !reflect.DeepEqual(got, ids) {
			t.Errorf("word %q: whet encodes %v, training made %v", w, got, ids)
		}
		var joined []byte
		for _, id := range ids {
			joined = append(joined, tokens[id]...)
		}
		if string(joined) != w {
			t.Errorf("word %q: tokens spell %q", w, joined)
		}
	}

	text := testCorpus(t)
	if got := tok.Decode(tok.Encode(text, true), false); got != text {
		t.Errorf("decode(encode(corpus)) differs from the corpus")
	}
	if got := len(tok.Encode(text, false)); got >= len(text)/2 {
		t.Errorf("%d tokens for %d bytes: merges are not being used", got, len(text))
	}

	chat := "<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n"
	ids := tok.Encode(chat, true)
	if ids[0] != 1 || !containsID(ids, 2) {
		t.Errorf("chat turn encodes as %v: want <|im_start|> (1) first and <|im_end|> (2) inside", ids)
	}
	if got := tok.Decode(ids, true); strings.Contains(got, "<|") || !strings.Contains(got, "Why is the sky blue?") {
		t.Errorf("decode skipping specials gives %q", got)
	}
	if got := tok.EOSIDs(); !reflect.DeepEqual(got, []int{2, 0}) {
		t.Errorf("EOS ids %v, want [2 0] (<|im_end|>, <|endoftext|>)", got)
	}
	if _, ok := tok.BOS(); ok {
		t.Errorf("the demo tokenizer has no BOS, whet found one")
	}
	want, err := os.ReadFile("../../../datasets/templates/chatml.jinja")
	if err != nil {
		t.Fatal(err)
	}
	if tok.ChatTemplate() != string(want) {
		t.Errorf("chat template differs from datasets/templates/chatml.jinja:\n%s", tok.ChatTemplate())
	}
	if name, ok := datasets.DetectTemplate(tok.ChatTemplate()); !ok || name != "chatml" {
		t.Errorf("whet detects the template as %q (%v), want chatml", name, ok)
	}
}

func containsID(ids []int, id int) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func TestRunRejectsBadArguments(t *testing.T) {
	corpus := filepath.Join(t.TempDir(), "c.txt")
	if err := os.WriteFile(corpus, []byte("hello hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-out", t.TempDir()}, "-corpus FILE and -out DIR are required"},
		{[]string{"-corpus", corpus, "-out", t.TempDir(), "-vocab", "100"}, "smaller than the 3 special tokens and 256 bytes"},
		{[]string{"-corpus", filepath.Join(t.TempDir(), "missing.txt"), "-out", t.TempDir()}, "missing.txt"},
	} {
		err := run(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}
