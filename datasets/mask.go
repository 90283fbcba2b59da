package datasets

import (
	"fmt"
	"slices"
	"strings"
)

// Encoder is the part of a tokenizer the datasets package uses.
// *tokenizer.Tokenizer satisfies it. Prepare calls Encode from several
// goroutines at once.
type Encoder interface {
	Encode(text string, addSpecial bool) []int
	TokenID(token string) (int, bool)
	EOSIDs() []int
}

// Sequence is one tokenized training example.
type Sequence struct {
	Tokens []int32
	// Labels[j] is Tokens[j] where the loss trains the model to produce
	// token j, IgnoreIndex elsewhere (not shifted; Pack shifts).
	Labels []int32
	Source Location
	// Truncated is set when the example was cut to the maximum length.
	Truncated bool
	// Images are the sequence's images in token order (vision runs).
	Images []BatchImage
}

// Len is the number of tokens.
func (s *Sequence) Len() int { return len(s.Tokens) }

// NumTrainable counts the tokens that carry a label.
func (s *Sequence) NumTrainable() int {
	n := 0
	for _, l := range s.Labels {
		if l != IgnoreIndex {
			n++
		}
	}
	return n
}

// EncodeSpans tokenizes text once and marks which tokens fall inside the
// given byte spans. It first encodes the text piece by piece, cut at the
// span edges; when those pieces concatenate to exactly the whole-text ids
// the edges are exact. Otherwise (a merge crossed an edge, or the tokenizer
// treats the start of a piece specially) it locates each edge by encoding
// the text up to it (markByPrefixes), and a token that straddles an edge
// counts as inside the span. The ids returned are always the whole-text
// encoding. exact reports whether the piecewise encoding agreed.
func EncodeSpans(enc Encoder, text string, spans []Span, addSpecial bool) (ids []int, inSpan []bool, exact bool) {
	ids = enc.Encode(text, addSpecial)
	inSpan = make([]bool, len(ids))
	if len(spans) == 0 {
		return ids, inSpan, true
	}
	if pieceIDs, pieceIn := encodePieces(enc, text, spans, addSpecial); slices.Equal(pieceIDs, ids) {
		return ids, pieceIn, true
	}
	markByPrefixes(enc, text, ids, spans, addSpecial, inSpan)
	return ids, inSpan, false
}

// encodePieces encodes text cut at every span edge; special tokens the
// encoder adds go with the first piece only.
func encodePieces(enc Encoder, text string, spans []Span, addSpecial bool) ([]int, []bool) {
	var ids []int
	var in []bool
	pos := 0
	first := true
	emit := func(end int, inside bool) {
		if end <= pos {
			return
		}
		part := enc.Encode(text[pos:end], addSpecial && first)
		first = false
		ids = append(ids, part...)
		for range part {
			in = append(in, inside)
		}
		pos = end
	}
	for _, sp := range spans {
		emit(sp.Start, false)
		emit(sp.End, true)
	}
	emit(len(text), false)
	return ids, in
}

// markByPrefixes locates each span edge b by encoding text[:b]: the
// tokens that encoding shares with the whole-text ids lie wholly before b,
// and the first token after the shared run, if the prefix encoding ended
// differently, straddles b. A straddling token counts as inside the span
// (it carries span bytes). Encoding a prefix treats the start of the text
// and special tokens exactly as the whole encoding does, which cutting the
// text into standalone pieces does not for SentencePiece tokenizers (they
// prepend "▁" to every piece).
func markByPrefixes(enc Encoder, text string, ids []int, spans []Span, addSpecial bool, inSpan []bool) {
	edge := func(b int) (shared int, straddles bool) {
		prefix := enc.Encode(text[:b], addSpecial)
		n := 0
		for n < len(prefix) && n < len(ids) && prefix[n] == ids[n] {
			n++
		}
		return n, n < len(prefix)
	}
	for _, sp := range spans {
		if sp.End <= sp.Start {
			continue
		}
		from, _ := edge(sp.Start)
		to, straddles := edge(sp.End)
		if straddles {
			to++
		}
		for t := from; t < to && t < len(ids); t++ {
			inSpan[t] = true
		}
	}
}

// TrainOn says which tokens carry a loss.
type TrainOn string

const (
	TrainOnResponses TrainOn = "responses" // assistant turns only (chat default)
	TrainOnAll       TrainOn = "all"       // every token
)

// ParseTrainOn checks a train_on value; "" means responses.
func ParseTrainOn(s string) (TrainOn, error) {
	switch TrainOn(s) {
	case "", TrainOnResponses, "assistant", "completions":
		return TrainOnResponses, nil
	case TrainOnAll:
		return TrainOnAll, nil
	}
	return "", fmt.Errorf("unknown %q (want responses or all)", s)
}

// toSequence builds a Sequence from ids and the in-span flags; with
// TrainOnAll every token is labelled.
func toSequence(ids []int, inSpan []bool, on TrainOn, loc Location) Sequence {
	s := Sequence{Tokens: make([]int32, len(ids)), Labels: make([]int32, len(ids)), Source: loc}
	for i, id := range ids {
		s.Tokens[i] = int32(id)
		if on == TrainOnAll || inSpan[i] {
			s.Labels[i] = int32(id)
		} else {
			s.Labels[i] = IgnoreIndex
		}
	}
	return s
}

// truncate cuts s to at most n tokens, keeping the start.
func (s *Sequence) truncate(n int) {
	if n > 0 && len(s.Tokens) > n {
		s.Tokens = s.Tokens[:n]
		s.Labels = s.Labels[:n]
		s.Truncated = true
	}
}

// Decoder turns ids back into text (*tokenizer.Tokenizer satisfies it).
type Decoder interface {
	Decode(ids []int, skipSpecial bool) string
}

// Annotate decodes a sequence with every trained run wrapped in open and
// close (say "«" and "»"), for previews that show users exactly which
// tokens carry a loss.
func Annotate(dec Decoder, s Sequence, open, close string) string {
	var b strings.Builder
	var run []int
	trained := false
	flush := func() {
		if len(run) == 0 {
			return
		}
		text := dec.Decode(run, false)
		if trained {
			text = open + text + close
		}
		b.WriteString(text)
		run = run[:0]
	}
	for i, id := range s.Tokens {
		t := s.Labels[i] != IgnoreIndex
		if t != trained {
			flush()
			trained = t
		}
		run = append(run, int(id))
	}
	flush()
	return b.String()
}
