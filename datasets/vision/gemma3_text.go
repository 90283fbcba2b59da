package vision

import (
	"fmt"
	"strings"
)

// Gemma3Tokens are the strings Gemma3Processor puts around an image: the
// chat template writes one BOI per image; the processor replaces each with
// the full image sequence, SeqLen image tokens that the model overwrites
// with the 256 pooled vision embeddings.
type Gemma3Tokens struct {
	BOI, EOI, Image string
	SeqLen          int // image_seq_length
}

// DefaultGemma3Tokens are the released tokenizer's boi_token, eoi_token,
// image_token and the processor's image_seq_length.
func DefaultGemma3Tokens() Gemma3Tokens {
	return Gemma3Tokens{BOI: "<start_of_image>", EOI: "<end_of_image>", Image: "<image_soft_token>", SeqLen: 256}
}

// fullImage is the processor's full_image_sequence.
func (t Gemma3Tokens) fullImage() string {
	return "\n\n" + t.BOI + strings.Repeat(t.Image, t.SeqLen) + t.EOI + "\n\n"
}

// ExpandGemma3Images replaces the i-th BOI in text with image i's
// sequence, as Gemma3Processor's replace_image_token words it: the full
// image sequence, or, when pan-and-scan made crops (numCrops[i] > 0),
// "Here is the original image … and here are some crops to help you see
// better …" with one sequence per crop. The count of BOIs must equal the
// number of images, as the processor requires.
func ExpandGemma3Images(text string, numCrops []int, t Gemma3Tokens) (string, error) {
	if t.BOI == "" {
		return "", fmt.Errorf("gemma3 image tokens: empty BOI token")
	}
	pieces := strings.Split(text, t.BOI)
	if n := len(pieces) - 1; n != len(numCrops) {
		return "", fmt.Errorf("the text holds %d %s token(s) but %d image(s) were given", n, t.BOI, len(numCrops))
	}
	full := t.fullImage()
	var b strings.Builder
	b.WriteString(pieces[0])
	for i, crops := range numCrops {
		if crops > 0 {
			b.WriteString("Here is the original image " + full + " and here are some crops to help you see better ")
			b.WriteString(strings.TrimSuffix(strings.Repeat(full+" ", crops), " "))
		} else {
			b.WriteString(full)
		}
		b.WriteString(pieces[i+1])
	}
	return b.String(), nil
}
