package tokenizer

import (
	"path/filepath"
	"strings"
	"testing"
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
