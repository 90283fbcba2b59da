package vision

import (
	"strings"
	"testing"
)

func TestExpandGemma3Images(t *testing.T) {
	tok := Gemma3Tokens{BOI: "<B>", EOI: "<E>", Image: "<I>", SeqLen: 2}
	full := "\n\n<B><I><I><E>\n\n"
	got, err := ExpandGemma3Images("<start_of_turn>user\n<B>What is it?<B>", []int{0, 2}, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := "<start_of_turn>user\n" + full + "What is it?" +
		"Here is the original image " + full + " and here are some crops to help you see better " + full + " " + full
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if _, err := ExpandGemma3Images("<B> <B>", []int{0}, tok); err == nil || !strings.Contains(err.Error(), "2 <B> token(s) but 1 image(s)") {
		t.Errorf("count mismatch: %v", err)
	}
	if d := DefaultGemma3Tokens(); strings.Count(d.fullImage(), d.Image) != 256 {
		t.Error("default sequence is not 256 image tokens")
	}
}
