package tui

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"whet/engine/units"
)

// fitBlock cuts or pads s to exactly h lines of at most w cells, so that a
// page can never push the help line off the screen.
func fitBlock(s string, w, h int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > h {
		lines = lines[:h]
	}
	for i, l := range lines {
		if lipgloss.Width(l) > w {
			lines[i] = ansi.Truncate(l, w, "…")
		}
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	return strings.Join(lines, "\n")
}

// listView draws items with a cursor marker, scrolled so the cursor stays
// visible within h lines.
func listView(st Styles, items []string, cursor, w, h int) string {
	return listViewFocus(st, items, cursor, w, h, true)
}

// listViewFocus is listView; without focus the cursor's row keeps the
// list's scroll but has no marker (another part of the page has the keys).
func listViewFocus(st Styles, items []string, cursor, w, h int, focused bool) string {
	if h <= 0 {
		return ""
	}
	// When the list is longer than h, two lines are kept for the "more"
	// markers so that they never cover the cursor's row.
	inner, start := len(items), 0
	if len(items) > h {
		inner = max(h-2, 1)
		if cursor >= inner {
			start = min(cursor-inner+1, len(items)-inner)
		}
	}
	end := min(start+inner, len(items))
	var lines []string
	if start > 0 {
		lines = append(lines, st.Muted.Render(fmt.Sprintf("  ↑ %d more", start)))
	}
	for i := start; i < end; i++ {
		item := ansi.Truncate(items[i], max(w-2, 1), "…")
		if i == cursor && focused {
			lines = append(lines, st.Selected.Render("› "+item))
		} else {
			lines = append(lines, "  "+item)
		}
	}
	if end < len(items) {
		lines = append(lines, st.Muted.Render(fmt.Sprintf("  ↓ %d more", len(items)-end)))
	}
	return strings.Join(lines, "\n")
}

// formatParams prints a parameter count as "494M" or "7.62B", or "?"
// when the catalog does not know it.
func formatParams(n int64) string {
	if n <= 0 {
		return "?"
	}
	return units.Count(n)
}

// wrap breaks text to width (words, keeping existing newlines).
// lipgloss.Wrap keeps the space after a word that fills the line exactly,
// which made that line w+1 cells: a styled block is padded to its widest
// line, so every line of the block was then cut with "…" at the screen's
// edge (a long data error at 80 columns). Such a trailing space goes.
func wrap(s string, w int) string {
	if w <= 0 {
		return s
	}
	lines := strings.Split(lipgloss.Wrap(s, w, " "), "\n")
	for i, l := range lines {
		if lipgloss.Width(l) > w {
			lines[i] = strings.TrimRight(l, " ")
		}
	}
	return strings.Join(lines, "\n")
}

// printable makes text from a model or a file safe to draw: tabs become
// spaces and other control characters (an escape sequence in a generated
// answer would reach the terminal) become U+FFFD. Newlines are kept.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return r
		case r == '\t':
			return ' '
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			return '\uFFFD'
		}
		return r
	}, s)
}

// expandHome turns a leading ~/ into the home folder, as a shell would.
func expandHome(path string) string {
	if path == "~" || strings.HasPrefix(path, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, strings.TrimPrefix(path, "~"))
		}
	}
	return path
}

// sortedKeys returns a map's keys in order, for stable views.
func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
