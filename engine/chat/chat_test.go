package chat

import (
	"strings"
	"testing"
)

func TestTextStreamStopsAtStopString(t *testing.T) {
	var shown []string
	ts := &textStream{stops: []string{"### Instruction:"}, emit: func(s string) { shown = append(shown, s) }}
	steps := []string{"Hello", "Hello there.", "Hello there.\n###", "Hello there.\n### Instr", "Hello there.\n### Instruction: next"}
	stopped := false
	for _, full := range steps {
		if ts.push(full) {
			stopped = true
			break
		}
	}
	if !stopped {
		t.Fatal("stop string not detected")
	}
	if got := strings.Join(shown, ""); got != "Hello there.\n" || ts.text != "Hello there.\n" {
		t.Fatalf("shown %q, reply %q", got, ts.text)
	}
	// The partial "###" was held back, never shown and taken back.
	for _, s := range shown {
		if strings.Contains(s, "#") {
			t.Fatalf("emitted a piece of the stop string: %q", shown)
		}
	}
}

func TestTextStreamHoldsPartialUTF8(t *testing.T) {
	var shown []string
	ts := &textStream{emit: func(s string) { shown = append(shown, s) }}
	ts.push("caf\uFFFD") // the decoder's view of "café" with the last byte missing
	ts.push("café")
	ts.flush()
	if strings.Join(shown, "") != "café" || strings.ContainsRune(strings.Join(shown, ""), '\uFFFD') {
		t.Fatalf("shown %q", shown)
	}
}
