package tui

import (
	"strings"
	"testing"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/colorprofile"

	"whet/engine/hub"
)

// A download note longer than the room left is cut with "…", no line is
// wider than the page, the file bars keep their lines, and a second note
// for the same file replaces the first.
func TestPullViewCutsLongNote(t *testing.T) {
	var s pullState
	s.record(hub.Progress{Phase: hub.PhaseStart, Total: 100, Files: 1})
	s.record(hub.Progress{Phase: hub.PhaseBytes, File: "model.safetensors", FileDone: 10, FileSize: 100, Done: 10, Total: 100, Files: 1})
	s.record(hub.Progress{Phase: hub.PhaseNote, File: "model.safetensors", Note: "old note", Total: 100, Files: 1})
	s.record(hub.Progress{Phase: hub.PhaseNote, File: "model.safetensors", Note: "model.safetensors: " + strings.Repeat("word ", 60) + "downloading it again from the start", Total: 100, Files: 1})
	const w, h = 40, 7
	got := pullView(newStyles(colorprofile.NoTTY), s, w, h)
	lines := strings.Split(got, "\n")
	if len(lines) > h {
		t.Errorf("%d lines, want at most %d:\n%s", len(lines), h, got)
	}
	for _, l := range lines {
		if lipgloss.Width(l) > w {
			t.Errorf("line wider than %d: %q", w, l)
		}
	}
	if strings.Contains(got, "old note") || !strings.Contains(got, "model.safetensors: word") || !strings.Contains(got, "…") || !strings.Contains(lines[len(lines)-1], "10 B / 100 B") {
		t.Errorf("want the latest note cut with … and the file bar last:\n%s", got)
	}
}
