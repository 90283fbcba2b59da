package tui

import (
	"strings"
	"testing"

	"charm.land/lipgloss/v2"
)

// A word that fills a line exactly: lipgloss.Wrap kept the space after it,
// a line of w+1 cells. In a styled block (padded to its widest line) every
// line then went past the screen and was cut with "…"; the studio showed
// a dataset's non-UTF-8 row so at 80 columns.
func TestWrapFitsWidth(t *testing.T) {
	msg := "✗ data: /tmp/odd/nonutf8.jsonl:2: invalid UTF-8 at byte offset 421 of the file (column 43 of the line); " +
		"whet reads data as UTF-8 text; name the file's encoding in data.encoding (e.g. windows-1252), or convert " +
		"the file (iconv -f WINDOWS-1252 -t UTF-8), or skip such rows with data.skip_bad_rows"
	for _, w := range []int{80, 60, 40} {
		got := wrap(msg, w)
		for _, l := range strings.Split(got, "\n") {
			if lipgloss.Width(l) > w {
				t.Errorf("width %d: line %q is %d cells", w, l, lipgloss.Width(l))
			}
		}
		// (lipgloss may also break after a hyphen: compare without spaces)
		if strings.Join(strings.Fields(got), "") != strings.Join(strings.Fields(msg), "") {
			t.Errorf("width %d: wrapping changed the words:\n%s", w, got)
		}
		block := newStyles(0).Bad.Render(got)
		if fitted := fitBlock(block, w, 10); strings.Contains(fitted, "…") {
			t.Errorf("width %d: the styled block was cut:\n%s", w, fitted)
		}
	}
}
