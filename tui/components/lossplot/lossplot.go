// Package lossplot draws loss curves in a terminal with braille dots: each
// character cell holds a 2×4 grid of dots, so a 60×10 cell chart has 120×40
// points of resolution. It has no dependency on a charting library because
// none that builds against Bubble Tea v2 was available (see the package
// test for the rendering contract).
package lossplot

import (
	"fmt"
	"math"
	"strings"

	"charm.land/lipgloss/v2"
)

// Point is one sample of a series: X is usually the step, Y the loss.
type Point struct{ X, Y float64 }

// Series is one curve. With Marker zero it is drawn as a braille line
// through its points; with a Marker each point becomes that character in
// its cell, which keeps sparse series (eval loss) readable without colour.
type Series struct {
	Name   string
	Points []Point
	Marker rune
	Style  lipgloss.Style
}

// Chart is a fixed-size plot. Width and Height count cells and include the
// axis labels; the plot area is what remains.
type Chart struct {
	Width, Height int
	Series        []Series
	AxisStyle     lipgloss.Style
}

// SetSize sets the chart's size in cells, axis labels included.
func (c *Chart) SetSize(w, h int) { c.Width, c.Height = w, h }

// Braille dot bits, indexed [row][column] within a cell (Unicode 2800 block).
var brailleBits = [4][2]rune{
	{0x01, 0x08},
	{0x02, 0x10},
	{0x04, 0x20},
	{0x40, 0x80},
}

const labelWidth = 8 // a label of up to 7 characters and the axis line

// cell is one character of the plot area.
type cell struct {
	dots   rune // braille bits
	marker rune // overrides dots when set
	series int  // index of the series that last touched the cell, -1 none
}

// View renders the chart. An empty chart (no points) still draws its axes
// with a "waiting for data" note so the layout does not jump.
func (c Chart) View() string {
	if c.Width < labelWidth+4 || c.Height < 3 {
		return ""
	}
	pw, ph := c.Width-labelWidth, c.Height-1
	grid := make([][]cell, ph)
	for r := range grid {
		grid[r] = make([]cell, pw)
		for k := range grid[r] {
			grid[r][k].series = -1
		}
	}

	xmin, xmax, ymin, ymax, ok := c.bounds()
	if ok {
		for si, s := range c.Series {
			c.plot(grid, si, s, xmin, xmax, ymin, ymax)
		}
	}

	var b strings.Builder
	for r := 0; r < ph; r++ {
		label := ""
		if ok {
			switch r {
			case 0:
				label = formatValue(ymax)
			case ph / 2:
				label = formatValue(ymax - (ymax-ymin)*float64(r)/float64(ph-1))
			case ph - 1:
				label = formatValue(ymin)
			}
		}
		b.WriteString(c.AxisStyle.Render(fmt.Sprintf("%*s┤", labelWidth-1, label)))
		b.WriteString(c.renderRow(grid[r]))
		b.WriteByte('\n')
	}
	b.WriteString(c.AxisStyle.Render(c.xAxis(pw, xmin, xmax, ok)))
	return b.String()
}

// bounds returns the data range with a little headroom on Y.
func (c Chart) bounds() (xmin, xmax, ymin, ymax float64, ok bool) {
	xmin, ymin = math.Inf(1), math.Inf(1)
	xmax, ymax = math.Inf(-1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !finite(p) {
				continue
			}
			ok = true
			xmin, xmax = math.Min(xmin, p.X), math.Max(xmax, p.X)
			ymin, ymax = math.Min(ymin, p.Y), math.Max(ymax, p.Y)
		}
	}
	if !ok {
		return 0, 0, 0, 0, false
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	if ymax == ymin {
		ymin, ymax = ymin-0.5, ymax+0.5
	} else if pad := (ymax/2 - ymin/2) * 0.1; !math.IsInf(ymin-pad, 0) && !math.IsInf(ymax+pad, 0) {
		// 5% headroom each side, but not below 0 for data that never is
		// (a loss that reaches 0.08 is not drawn on an axis from -1.2).
		lo := ymin - pad
		if ymin >= 0 && lo < 0 {
			lo = 0
		}
		ymin, ymax = lo, ymax+pad
	}
	return xmin, xmax, ymin, ymax, true
}

func finite(p Point) bool {
	return !math.IsNaN(p.X) && !math.IsInf(p.X, 0) && !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0)
}

// frac is where v lies between lo and hi, in [0, 1]. Halving first keeps
// hi-lo finite for any finite pair.
func frac(v, lo, hi float64) float64 {
	f := (v/2 - lo/2) / (hi/2 - lo/2)
	if math.IsNaN(f) {
		return 0
	}
	return math.Max(0, math.Min(1, f))
}

// plot draws one series into the grid: consecutive points joined by
// straight dot lines, or one marker per point.
func (c Chart) plot(grid [][]cell, si int, s Series, xmin, xmax, ymin, ymax float64) {
	ph, pw := len(grid), len(grid[0])
	dotW, dotH := pw*2, ph*4
	toDot := func(p Point) (int, int) {
		x := int(math.Round(frac(p.X, xmin, xmax) * float64(dotW-1)))
		y := int(math.Round((1 - frac(p.Y, ymin, ymax)) * float64(dotH-1)))
		return x, y
	}
	set := func(x, y int) {
		if x < 0 || y < 0 || x >= dotW || y >= dotH {
			return
		}
		cl := &grid[y/4][x/2]
		cl.dots |= brailleBits[y%4][x%2]
		cl.series = si
	}
	havePrev := false
	var px, py int
	for _, p := range s.Points {
		if !finite(p) {
			havePrev = false
			continue
		}
		x, y := toDot(p)
		if s.Marker != 0 {
			cl := &grid[y/4][x/2]
			cl.marker, cl.series = s.Marker, si
			continue
		}
		if havePrev {
			line(px, py, x, y, set)
		} else {
			set(x, y)
		}
		px, py, havePrev = x, y, true
	}
}

// line walks the dots from (x0,y0) to (x1,y1) with Bresenham's algorithm.
func line(x0, y0, x1, y1 int, set func(x, y int)) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		set(x0, y0)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// renderRow turns a row of cells into text, styling runs of cells that
// belong to the same series together to keep the escape codes short.
func (c Chart) renderRow(row []cell) string {
	var b, run strings.Builder
	runSeries := -2
	flush := func() {
		if run.Len() == 0 {
			return
		}
		if runSeries >= 0 {
			b.WriteString(c.Series[runSeries].Style.Render(run.String()))
		} else {
			b.WriteString(run.String())
		}
		run.Reset()
	}
	for _, cl := range row {
		if cl.series != runSeries {
			flush()
			runSeries = cl.series
		}
		switch {
		case cl.marker != 0:
			run.WriteRune(cl.marker)
		case cl.dots != 0:
			run.WriteRune(0x2800 + cl.dots)
		default:
			run.WriteByte(' ')
		}
	}
	flush()
	return b.String()
}

// xAxis is the bottom line: the corner, the first step at the left and the
// last step at the right.
func (c Chart) xAxis(pw int, xmin, xmax float64, ok bool) string {
	left := strings.Repeat(" ", labelWidth-1) + "└"
	if !ok {
		note := " waiting for data"
		if len(note) > pw {
			note = ""
		}
		return left + note + strings.Repeat(" ", pw-len(note))
	}
	lo, hi := formatStep(xmin), formatStep(xmax)
	gap := pw - len(lo) - len(hi)
	if gap < 1 {
		if len(hi) > pw {
			return left + strings.Repeat("─", pw) // no room for a label
		}
		return left + fmt.Sprintf("%*s", pw, hi)
	}
	return left + lo + strings.Repeat("─", gap) + hi
}

// formatValue prints a loss in at most seven characters.
func formatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e4:
		return fmt.Sprintf("%.0e", v)
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func formatStep(v float64) string {
	if math.Abs(v) >= 1e15 {
		return fmt.Sprintf("%.0e", v)
	}
	return fmt.Sprintf("%d", int64(math.Round(v)))
}
