package datasets

import (
	"slices"
	"strings"
	"testing"
)

// spanTokens returns the decoded text of the in-span tokens, run by run.
func spanTokens(tok *fakeTok, ids []int, in []bool) []string {
	var runs []string
	var cur []int
	for i := range ids {
		if in[i] {
			cur = append(cur, ids[i])
			continue
		}
		if cur != nil {
			runs = append(runs, tok.Decode(cur, false))
			cur = nil
		}
	}
	if cur != nil {
		runs = append(runs, tok.Decode(cur, false))
	}
	return runs
}

func TestEncodeSpansExactWhenPiecesAgree(t *testing.T) {
	tok := llamaTok("")
	msgs := []Message{
		{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello there."},
		{Role: "user", Content: "Bye"}, {Role: "assistant", Content: "See you."},
	}
	r, err := RenderWith("llama-3.1", msgs, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids, in, exact := EncodeSpans(tok, r.Text, r.Assistant, false)
	if !exact {
		t.Fatal("llama-3 headers end in \\n\\n, which the pieces keep apart: want the exact path")
	}
	// The ids are the whole-text encoding...
	if got := tok.Encode(r.Text, false); !slices.Equal(ids, got) {
		t.Fatal("EncodeSpans ids differ from encoding the whole text")
	}
	// ...and the piecewise encoding agrees with it token for token.
	pieces, _ := encodePieces(tok, r.Text, r.Assistant, false)
	if !slices.Equal(pieces, ids) {
		t.Fatal("piecewise ids differ from whole-text ids")
	}
	got := spanTokens(tok, ids, in)
	want := []string{"Hello there.<|eot_id|>", "See you.<|eot_id|>"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("trained runs %q, want %q", got, want)
	}
}

func TestEncodeSpansFallsBackWhenAMergeCrossesAnEdge(t *testing.T) {
	tok := chatmlTok("")
	msgs := []Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Paris is big."}}
	r, err := RenderWith("chatml", msgs, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The fake glues the header's "\n" to "Paris", as a merge can.
	pieces, _ := encodePieces(tok, r.Text, r.Assistant, false)
	whole := tok.Encode(r.Text, false)
	if slices.Equal(pieces, whole) {
		t.Fatal("test premise: piecewise encoding should differ here")
	}
	ids, in, exact := EncodeSpans(tok, r.Text, r.Assistant, false)
	if exact {
		t.Error("want the prefix-encoding path")
	}
	if !slices.Equal(ids, whole) {
		t.Fatal("ids must be the whole-text encoding")
	}
	// The straddling token "\nParis" counts as trained; the header and the
	// newline after <|im_end|> do not.
	got := spanTokens(tok, ids, in)
	if len(got) != 1 || got[0] != "\nParis is big.<|im_end|>" {
		t.Errorf("trained runs %q", got)
	}
}

func TestEncodeSpansWithAddedBOS(t *testing.T) {
	tok := llamaTok("")
	tok.bos = "<|begin_of_text|>"
	text := "### Instruction:\nHi\n\n### Response:\nYo</s>\n\n"
	start := strings.Index(text, "Yo")
	spans := []Span{{start, start + len("Yo</s>")}}
	// The header and "Yo</s>" glue into one piece ("\nYo</s>"): the prefix path.
	ids, in, exact := EncodeSpans(tok, text, spans, true)
	if ids[0] != tok.vocab["<|begin_of_text|>"] {
		t.Fatal("BOS not added")
	}
	got := spanTokens(tok, ids, in)
	if exact || len(got) != 1 || got[0] != "\nYo</s>" || in[0] {
		t.Errorf("exact=%v trained runs %q", exact, got)
	}
	// Cut mid-piece so the prefix-encoding path runs with a BOS.
	mid := []Span{{start + 1, start + len("Yo</s>")}}
	_, in, exact = EncodeSpans(tok, text, mid, true)
	if exact {
		t.Error("a cut inside a piece should take the prefix-encoding path")
	}
	got = spanTokens(tok, ids, in)
	if len(got) != 1 || got[0] != "\nYo</s>" {
		t.Errorf("prefix-encoding path with BOS: %q", got)
	}
}

func TestTrainOnAllLabelsEverything(t *testing.T) {
	s := toSequence([]int{5, 6, 7}, []bool{false, true, false}, TrainOnAll, Location{})
	if s.NumTrainable() != 3 {
		t.Errorf("train_on all: %v", s.Labels)
	}
	s = toSequence([]int{5, 6, 7}, []bool{false, true, false}, TrainOnResponses, Location{})
	if s.Labels[0] != IgnoreIndex || s.Labels[1] != 6 || s.Labels[2] != IgnoreIndex {
		t.Errorf("responses: %v", s.Labels)
	}
	if _, err := ParseTrainOn("prompts"); err == nil {
		t.Error("ParseTrainOn accepted nonsense")
	}
}

func TestAnnotate(t *testing.T) {
	tok := llamaTok("")
	r, err := RenderWith("llama-3.0", []Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Yo"}}, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids, in, _ := EncodeSpans(tok, r.Text, r.Assistant, false)
	got := Annotate(tok, toSequence(ids, in, TrainOnResponses, Location{}), "«", "»")
	want := "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n«Yo<|eot_id|>»"
	if got != want {
		t.Errorf("Annotate = %q, want %q", got, want)
	}
}
