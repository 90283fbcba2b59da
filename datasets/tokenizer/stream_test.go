package tokenizer

import (
	"strings"
	"testing"
)

// TestStreamDecoderEqualsDecode: pushing the ids one by one and joining the
// pieces gives exactly Decode of all of them, for every corpus string and
// all four tokenizers, with and without special tokens skipped.
func TestStreamDecoderEqualsDecode(t *testing.T) {
	corpus := readCorpus(t)
	for _, name := range referenceNames {
		t.Run(name, func(t *testing.T) {
			tok := referenceTokenizer(t, name)
			bad := 0
			for i, text := range corpus {
				ids := tok.Encode(text, true)
				for _, skip := range []bool{false, true} {
					want := tok.Decode(ids, skip)
					d := tok.NewStreamDecoder(skip)
					var b strings.Builder
					for _, id := range ids {
						piece := d.Push(id)
						if strings.HasSuffix(piece, "\uFFFD") && !strings.Contains(text, "\uFFFD") {
							t.Errorf("corpus line %d: piece %q ends in a partial character", i+1, piece)
						}
						b.WriteString(piece)
					}
					b.WriteString(d.Flush())
					if got := b.String(); got != want {
						bad++
						if bad <= 10 {
							t.Errorf("corpus line %d skip=%v: stream %q, Decode %q", i+1, skip, got, want)
						}
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d mismatches", bad)
			}
		})
	}
}

// TestStreamDecoderHoldsPartialUTF8: a character split over byte tokens
// comes out whole, once its last byte arrives.
func TestStreamDecoderHoldsPartialUTF8(t *testing.T) {
	for _, name := range []string{"llama3", "llama2"} {
		t.Run(name, func(t *testing.T) {
			tok := referenceTokenizer(t, name)
			// A rare CJK character is split into byte tokens by both.
			ids := tok.Encode("𠜎", false)
			if len(ids) < 2 {
				t.Fatalf("want 𠜎 split into byte tokens, got %v", ids)
			}
			d := tok.NewStreamDecoder(false)
			var pieces []string
			for _, id := range ids {
				pieces = append(pieces, d.Push(id))
			}
			pieces = append(pieces, d.Flush())
			joined := strings.Join(pieces, "")
			if joined != "𠜎" {
				t.Fatalf("stream gave %q, want 𠜎", pieces)
			}
			for _, p := range pieces[:len(pieces)-1] {
				if p != "" && p != "𠜎" {
					t.Fatalf("partial piece %q in %q", p, pieces)
				}
			}
			// Cut off mid-character, Flush gives what Decode gives.
			d = tok.NewStreamDecoder(false)
			d.Push(ids[0])
			if got, want := d.Flush(), tok.Decode(ids[:1], false); got != want {
				t.Fatalf("Flush after a partial character = %q, want %q", got, want)
			}
		})
	}
}
