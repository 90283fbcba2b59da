package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// scannerCases is the corpus plus strings aimed at the pattern's corners:
// the whitespace characters on which regex engines disagree, numbers of
// every script, apostrophes before non-contractions, and line breaks
// inside runs of spaces.
func scannerCases(t testing.TB) []string {
	cases := readCorpus(t)
	cases = append(cases,
		"a\u0085b", "a\u0085\u0085 b", "x\ufeffy", " \ufeff", "\u2028\u2029", "a \u3000 b", "\v\f", " \v\n",
		"'S 'T 'RE 'Ve 'mM 'LL 'D 'x '1 ' '", "''s", "'ſ 'K 'İ", " 'll", " 's", "'", "a'", "'ll'll",
		"  \n  \n  x", " \r\n \r\n", "\n \n", "\t \t\n\t", "x \n", "x  \n\n  y", "  ", "\n", " x", "  x",
		"12345\u0661\u0662\u0663\u00b2\u2167", "a1b22c333d4444", "!!!\n\n", " ???\r\n\r\nx", "\u00a0word", "\u00a0\u00a0word",
	)
	// Random strings over an alphabet of one character of each class.
	alphabet := []rune{'a', 'Z', 'é', '中', '1', '٣', '²', ' ', ' ', '\t', '\n', '\r', '\u00a0', '\u3000', '\u0085', '\'', 's', 'l', '.', '!', '-', '🙂', '\u0301', '_', 'ſ', 'K', 'İ', 'T', 'e', 'r'}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		n := 1 + rng.IntN(24)
		var sb strings.Builder
		for k := 0; k < n; k++ {
			sb.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		cases = append(cases, sb.String())
	}
	return cases
}

func scanAll(s string, kind scanKind) []string {
	var out []string
	scanPieces(s, kind, func(p string) { out = append(out, p) })
	return out
}

func regexpAll(t testing.TB, src, s string) []string {
	t.Helper()
	p, err := compilePattern(src, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	last := 0
	for _, m := range p.findAll(s) {
		if m[0] != last {
			t.Fatalf("regexp2 left a gap in %q at %d", s, last)
		}
		out = append(out, s[m[0]:m[1]])
		last = m[1]
	}
	return out
}

// TestScannerMatchesRegexp proves the hand-written scanner equal to
// regexp2 running the real patterns, on the corpus and on random strings.
func TestScannerMatchesRegexp(t *testing.T) {
	for _, pc := range []struct {
		name string
		src  string
		kind scanKind
	}{{"cl100k", patternCl100k, scanCl100k}, {"qwen2", patternQwen2, scanQwen2}, {"gpt2", patternGPT2, scanGPT2}} {
		t.Run(pc.name, func(t *testing.T) {
			bad := 0
			for _, s := range scannerCases(t) {
				got, want := scanAll(s, pc.kind), regexpAll(t, pc.src, s)
				if strings.Join(got, "\x00") != strings.Join(want, "\x00") || len(got) != len(want) {
					bad++
					if bad <= 10 {
						t.Errorf("%q:\nscanner %q\nregexp2 %q", s, got, want)
					}
				}
			}
		})
	}
}

// TestScannerIsUsed: loading the reference files picks the scanner, so the
// speed measured is the speed users get.
func TestScannerIsUsed(t *testing.T) {
	for name, kind := range map[string]scanKind{"llama3": scanCl100k, "qwen3": scanQwen2} {
		tok := referenceTokenizer(t, name)
		seq, ok := tok.pre.(preTokenizerSeq)
		if !ok || len(seq) == 0 {
			t.Fatalf("%s: pre-tokenizer %T, want a sequence", name, tok.pre)
		}
		split, ok := seq[0].(*splitPreTokenizer)
		if !ok || split.scan != kind {
			t.Fatalf("%s: first pre-tokenizer %#v, want scanner %d", name, seq[0], kind)
		}
	}
}
