package lossplot

import (
	"math"
	"strings"
	"testing"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

func TestChartSizeAndAxes(t *testing.T) {
	c := Chart{Width: 40, Height: 8, Series: []Series{{
		Name:   "train",
		Points: []Point{{1, 3}, {2, 2}, {3, 1.5}, {4, 1}},
	}}}
	lines := strings.Split(c.View(), "\n")
	if len(lines) != 8 {
		t.Fatalf("got %d lines, want 8", len(lines))
	}
	for i, l := range lines {
		if w := lipgloss.Width(l); w != 40 {
			t.Errorf("line %d is %d wide, want 40: %q", i, w, l)
		}
	}
	if !strings.HasPrefix(strings.TrimSpace(lines[0]), "3.100") {
		t.Errorf("top label = %q, want the max plus 5%% headroom (3.100)", lines[0])
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, "1") || !strings.HasSuffix(last, "4") {
		t.Errorf("x axis %q should run from step 1 to step 4", last)
	}
}

// A falling line starts in the top-left cell and ends in the bottom-right.
func TestChartFallingLineCorners(t *testing.T) {
	c := Chart{Width: 27, Height: 5, Series: []Series{{
		Points: []Point{{0, 10}, {10, 0}},
	}}}
	lines := strings.Split(ansi.Strip(c.View()), "\n")
	plot := func(r int) []rune { return []rune(lines[r])[labelWidth:] }
	if plot(0)[0] == ' ' {
		t.Errorf("top-left cell empty: %q", lines[0])
	}
	if p := plot(3); p[len(p)-1] == ' ' {
		t.Errorf("bottom-right cell empty: %q", lines[3])
	}
	if p := plot(0); p[len(p)-1] != ' ' {
		t.Errorf("top-right cell should be empty for a falling line: %q", lines[0])
	}
}

func TestChartMarkersAndEmpty(t *testing.T) {
	empty := ansi.Strip(Chart{Width: 30, Height: 4}.View())
	if !strings.Contains(empty, "waiting for data") {
		t.Errorf("empty chart lacks the waiting note:\n%s", empty)
	}
	c := Chart{Width: 30, Height: 4, Series: []Series{
		{Points: []Point{{0, 2}, {5, 1}}},
		{Points: []Point{{5, 1.2}}, Marker: '◆'},
	}}
	if got := strings.Count(c.View(), "◆"); got != 1 {
		t.Errorf("got %d eval markers, want 1", got)
	}
}

func TestChartTooSmall(t *testing.T) {
	if v := (Chart{Width: 5, Height: 2}).View(); v != "" {
		t.Errorf("tiny chart should render nothing, got %q", v)
	}
}

// FuzzChart feeds arbitrary series (NaN, infinities, huge and equal
// values, any sizes): the chart must not panic and must keep its size.
func FuzzChart(f *testing.F) {
	f.Add(40, 8, 1.0, 2.0, 3.0, 0.5)
	f.Add(11, 3, math.NaN(), math.Inf(1), -1e308, 1e308)
	f.Add(200, 60, 0.0, 0.0, 0.0, 0.0)
	f.Fuzz(func(t *testing.T, w, h int, a, b, c, d float64) {
		if w < 0 || h < 0 || w > 400 || h > 200 {
			return
		}
		ch := Chart{Width: w, Height: h, Series: []Series{
			{Points: []Point{{a, b}, {c, d}, {b, a}, {d, c}}},
			{Points: []Point{{c, a}}, Marker: '◆'},
		}}
		v := ch.View()
		if v == "" {
			return
		}
		lines := strings.Split(v, "\n")
		if len(lines) != h {
			t.Fatalf("%d lines, want %d", len(lines), h)
		}
		for _, l := range lines {
			if lw := lipgloss.Width(l); lw != w {
				t.Fatalf("line %q is %d wide, want %d", l, lw, w)
			}
		}
	})
}

// A loss that falls close to 0 is drawn on an axis that starts at 0, not
// below it: the 5% headroom under the lowest point stops at 0 for data
// that never goes negative (a vision run's summary showed -1.173 under a
// loss that ended at 0.08). Data below 0 keeps its headroom.
func TestChartHeadroomStopsAtZero(t *testing.T) {
	view := func(pts ...Point) string {
		return ansi.Strip(Chart{Width: 40, Height: 8, Series: []Series{{Points: pts}}}.View())
	}
	lines := strings.Split(view(Point{1, 26.06}, Point{2, 3}, Point{3, 0.08}), "\n")
	bottom := strings.TrimSpace(lines[len(lines)-2])
	if !strings.HasPrefix(bottom, "0.000") {
		t.Errorf("bottom label %q, want 0.000", bottom)
	}
	if v := view(Point{1, 2}, Point{2, -1}); !strings.Contains(v, "-1.150") {
		t.Errorf("a series below 0 should keep its headroom (-1.150):\n%s", v)
	}
}
