package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func tinyTokenizer(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := Load(filepath.Join(repoRoot(t), "testdata", "tokenizer", "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// FuzzRoundTrip: for any text, the small byte-level tokenizer
// in testdata (Llama 3's split pattern, real merges, added tokens) gives
// decode(encode(x)) == x, the streaming decoder agrees with Decode, and
// the scanner agrees with regexp2.
func FuzzRoundTrip(f *testing.F) {
	tok := tinyTokenizer(f)
	for _, s := range readCorpus(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 1024 {
			// Long inputs add nothing the corpus lacks and make the
			// fuzzer's minimization crawl.
			text = text[:1024]
		}
		// Encode reads invalid UTF-8 as U+FFFD (the Hugging Face API takes
		// only valid strings), so that is what must come back.
		text = strings.ToValidUTF8(text, "\uFFFD")
		for _, special := range []bool{false, true} {
			ids := tok.Encode(text, special)
			got := tok.Decode(ids, false)
			want := text
			if special {
				want = "<|bos|>" + text
			}
			if got != want {
				t.Fatalf("special=%v: %q -> %v -> %q", special, text, ids, got)
			}
			d := tok.NewStreamDecoder(false)
			var sb strings.Builder
			for _, id := range ids {
				sb.WriteString(d.Push(id))
			}
			sb.WriteString(d.Flush())
			if sb.String() != got {
				t.Fatalf("stream %q, Decode %q", sb.String(), got)
			}
		}
		{
			got, want := scanAll(text, scanCl100k), regexpAll(t, patternCl100k, text)
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("%q: scanner %q, regexp2 %q", text, got, want)
			}
		}
	})
}

// FuzzParseTokenizerJSON feeds mutated tokenizer.json files to the parser:
// it must never panic, and a file it accepts must encode and decode a
// text without panicking or hanging (a fuzzed Split regex can backtrack
// catastrophically: the match timeout has to stop it, and Err say so).
func FuzzParseTokenizerJSON(f *testing.F) {
	regexMatchTimeout = 20 * time.Millisecond
	tiny, err := os.ReadFile(filepath.Join(repoRoot(f), "testdata", "tokenizer", "tiny", "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tiny)
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
		"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(x+x+)+y"}, "behavior": "Isolated"}}`))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"▁a": 0, "<0x41>": 1}, "merges": [], "byte_fallback": true},
		"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
		"decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"Regex": "▁+"}, "content": " "}, {"type": "ByteFallback"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parse(data, nil)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		ids := tok.Encode("Hello wörld 123 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ab A", true)
		tok.Decode(ids, false)
		if err := tok.Err(); err != nil && !strings.Contains(err.Error(), "tokenizer.json ") {
			t.Fatalf("Err does not say where: %v", err)
		}
	})
}
