package tui

import (
	"strings"
	"testing"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"
)

// trimTo cuts a styled line at w cells, not at w runes of its escape
// sequences too: the export page's header, styled, was cut to "whet
// export · NAME · lora on /…" well short of 80 columns.
func TestTrimToStyledLine(t *testing.T) {
	st := newStyles(colorprofile.TrueColor)
	line := st.Title.Render("whet") + " " + st.Bold.Render("export") + st.Muted.Render(" · run-20261207-134702 · lora on /tmp/nu/clone/testdata/tiny-gemma3-vision-shapes")
	got := trimTo(line, 80)
	if w := lipgloss.Width(got); w != 80 {
		t.Errorf("width %d, want 80: %q", w, ansi.Strip(got))
	}
	if plain := ansi.Strip(got); !strings.HasPrefix(plain, "whet export · run-20261207-134702 · lora on /tmp/nu/clone/testdata/") || !strings.HasSuffix(plain, "…") {
		t.Errorf("cut to %q", plain)
	}
	if got := trimTo("short", 80); got != "short" {
		t.Errorf("a line that fits changed: %q", got)
	}
	if got := trimTo("abcdef", 4); got != "abc…" {
		t.Errorf("plain cut %q, want abc…", got)
	}
}
