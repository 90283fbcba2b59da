// Package datasets turns user files into training batches: loaders and
// format detection, chat templates, tokenization, label masking, packing.
package datasets

// IgnoreIndex marks a target the loss skips (PyTorch's ignore_index).
const IgnoreIndex = -100

// Batch is one micro-batch of packed sequences laid end to end.
// Sequence i covers tokens [SeqStarts[i], SeqStarts[i+1]).
//
// Targets are already shifted: Targets[t] is the token the model should
// predict after reading Tokens[t] (the next token of the same sequence), or
// IgnoreIndex where no loss is taken (masked prompt tokens, the last token
// of each sequence, padding).
type Batch struct {
	Tokens    []int32
	Targets   []int32
	Positions []int32 // restart at 0 for each sequence
	SeqStarts []int32 // len = number of sequences + 1; last = len(Tokens)
	// Images are the images of a vision run's sequences, in token order
	// (nil for text): the pixels are made from them as the batch runs,
	// so that a dataset of thousands of X-rays need not sit in memory.
	Images []BatchImage
}

// NumTokens is the number of positions in the batch.
func (b *Batch) NumTokens() int { return len(b.Tokens) }

// NumTargets counts the positions that carry a loss.
func (b *Batch) NumTargets() int {
	n := 0
	for _, t := range b.Targets {
		if t != IgnoreIndex {
			n++
		}
	}
	return n
}
