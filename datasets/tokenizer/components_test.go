package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
)

func pieces(p preTokenizer, s string) []string {
	var out []string
	p.preTokenize(s, true, func(piece string, _ bool) { out = append(out, piece) })
	return out
}

// TestSplitBehaviors uses the example of the Hugging Face docs for
// SplitDelimiterBehavior: "the-final--countdown" split on "-".
func TestSplitBehaviors(t *testing.T) {
	want := map[string][]string{
		"Removed":            {"the", "final", "countdown"},
		"Isolated":           {"the", "-", "final", "-", "-", "countdown"},
		"MergedWithPrevious": {"the-", "final-", "-", "countdown"},
		"MergedWithNext":     {"the", "-final", "-", "-countdown"},
		"Contiguous":         {"the", "-", "final", "--", "countdown"},
	}
	for behavior, w := range want {
		for _, pat := range []string{`{"String": "-"}`, `{"Regex": "-"}`} {
			raw := `{"type": "Split", "pattern": ` + pat + `, "behavior": "` + behavior + `", "invert": false}`
			p, err := parsePreTokenizer(json.RawMessage(raw), "pre_tokenizer", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := pieces(p, "the-final--countdown"); !slices.Equal(got, w) {
				t.Errorf("%s %s: got %q, want %q", behavior, pat, got, w)
			}
		}
	}
	// invert keeps the matches as the pieces: a word splitter.
	p, err := parsePreTokenizer(json.RawMessage(`{"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Removed", "invert": true}`), "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := pieces(p, "hi, you  there"); !slices.Equal(got, []string{"hi", "you", "there"}) {
		t.Errorf("inverted split: %q", got)
	}
}

func TestMetaspaceAndDigits(t *testing.T) {
	p, err := parsePreTokenizer(json.RawMessage(`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}`), "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := pieces(p, "Hey friend"); !slices.Equal(got, []string{"▁Hey", "▁friend"}) {
		t.Errorf("Metaspace: %q", got)
	}
	first, err := parsePreTokenizer(json.RawMessage(`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}`), "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	var notStart []string
	first.preTokenize("a b", false, func(s string, _ bool) { notStart = append(notStart, s) })
	if !slices.Equal(notStart, []string{"a▁b"}) || !slices.Equal(pieces(first, "a b"), []string{"▁a▁b"}) {
		t.Errorf("Metaspace first: at start %q, later %q", pieces(first, "a b"), notStart)
	}
	d, err := parsePreTokenizer(json.RawMessage(`{"type": "Digits", "individual_digits": true}`), "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := pieces(d, "Call 123 please"); !slices.Equal(got, []string{"Call ", "1", "2", "3", " please"}) {
		t.Errorf("Digits individual: %q", got)
	}
	d, _ = parsePreTokenizer(json.RawMessage(`{"type": "Digits", "individual_digits": false}`), "p", nil)
	if got := pieces(d, "Call 123 please"); !slices.Equal(got, []string{"Call ", "123", " please"}) {
		t.Errorf("Digits runs: %q", got)
	}
}

func TestDecoders(t *testing.T) {
	cases := []struct {
		raw    string
		tokens []string
		want   string
	}{
		{`{"type": "ByteFallback"}`, []string{"<0xE6>", "<0x97>", "<0xA5>", "x"}, "日x"},
		{`{"type": "ByteFallback"}`, []string{"<0xE6>", "<0x97>", "y"}, "\uFFFD\uFFFDy"}, // one per byte, as the Rust library
		{`{"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}`, []string{"▁Hello", "▁▁world"}, "Hello  world"},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}`, []string{"▁Hey", "▁friend"}, "Hey friend"},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"}`, []string{"▁▁Hey", "▁▁friend"}, "Hey  friend"}, // all of the first token's, as in Rust
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never"}`, []string{"▁Hey", "▁friend"}, " Hey friend"},
		{`{"type": "ByteLevel"}`, []string{"Hello", "Ġworld", "Ċ", "<|eot_id|>"}, "Hello world\n<|eot_id|>"},
		{`{"type": "ByteLevel"}`, []string{"æĹ"}, "\uFFFD"}, // two of three bytes of 日
	}
	for _, c := range cases {
		d, err := parseDecoder(json.RawMessage(c.raw), "decoder", nil)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, s := range d.decodeChain(c.tokens) {
			got += s
		}
		if got != c.want {
			t.Errorf("%s on %q: got %q, want %q", c.raw, c.tokens, got, c.want)
		}
	}
}

// TestAddedTokenFlags builds a character-level tokenizer with added tokens
// that use lstrip/rstrip, single_word and normalized.
func TestAddedTokenFlags(t *testing.T) {
	vocab := map[string]int{}
	for i, c := range " abcxyw[]<>" {
		vocab[string(c)] = i
	}
	tj := map[string]any{
		"normalizer":    map[string]any{"type": "Lowercase"},
		"pre_tokenizer": nil, "post_processor": nil, "decoder": map[string]any{"type": "Fuse"},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": []any{}},
		"added_tokens": []any{
			map[string]any{"id": 100, "content": "<mask>", "lstrip": true, "rstrip": true, "special": true},
			map[string]any{"id": 101, "content": "[W]", "single_word": true},
			map[string]any{"id": 102, "content": "ab", "normalized": true},
		},
	}
	data, err := json.Marshal(tj)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := parse(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := func(s string) int { return vocab[s] }
	cases := []struct {
		text string
		want []int
	}{
		{"x <mask> y", []int{id("x"), 100, id("y")}},                          // spaces absorbed on both sides
		{"x  <mask>y", []int{id("x"), 100, id("y")}},                          // all of a run
		{"x[W] [W]", []int{id("x"), id("["), id("w"), id("]"), id(" "), 101}}, // first is inside a word
		{"[W]", []int{101}},
		{"cAB", []int{id("c"), 102}},            // matched after lowercasing
		{"c<mask>AB", []int{id("c"), 100, 102}}, // raw match first, then normalized
	}
	for _, c := range cases {
		if got := tok.Encode(c.text, false); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
	if !tok.IsSpecial(100) || tok.IsSpecial(101) {
		t.Errorf("IsSpecial(100)=%v IsSpecial(101)=%v", tok.IsSpecial(100), tok.IsSpecial(101))
	}
}

// TestMergeHeapEqualsScan: the heap merge used for long words gives what
// the simple scan gives, on random words over letters of the tiny
// tokenizer's merges.
func TestMergeHeapEqualsScan(t *testing.T) {
	tok := tinyTokenizer(t)
	m := tok.model
	rng := rand.New(rand.NewPCG(3, 4))
	letters := "  etainsrlo\t\n/"
	for i := 0; i < 500; i++ {
		n := 2 + rng.IntN(60)
		b := make([]byte, n)
		for k := range b {
			b[k] = letters[rng.IntN(len(letters))]
		}
		s := m.initialSymbols(string(b), nil)
		scan := m.merge(symbols{append([]int(nil), s.out...), 0})
		heapIDs := append([]int(nil), s.out...)
		heapIDs = heapIDs[:m.mergeHeap(heapIDs)]
		if !slices.Equal(scan, heapIDs) {
			t.Fatalf("%q: scan %v, heap %v", b, scan, heapIDs)
		}
	}
}

// TestByteLevelTable: the 256 stand-ins are distinct, round-trip, and
// agree with the well-known spellings ("Ġ" space, "Ċ" newline, "ĉ" tab).
func TestByteLevelTable(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	s := bytesToByteLevel(all)
	back, ok := byteLevelToBytes(s)
	if !ok || string(back) != string(all) || len(runeToByte) != 256 {
		t.Fatalf("table does not round-trip (%d entries)", len(runeToByte))
	}
	for b, want := range map[byte]string{' ': "Ġ", '\n': "Ċ", '\t': "ĉ", 'a': "a", 0xFF: "ÿ"} {
		if got := bytesToByteLevel([]byte{b}); got != want {
			t.Errorf("byte %#x -> %q, want %q", b, got, want)
		}
	}
	if _, ok := byteLevelToBytes("x中"); ok {
		t.Error("a character outside the table was accepted")
	}
}
