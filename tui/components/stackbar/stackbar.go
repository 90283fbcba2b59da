// Package stackbar draws a memory plan as one stacked horizontal bar
// measured against a capacity (the GPU's free memory), with a legend.
// Each part gets its own fill character as well as its own colour, so the
// bar still reads on a terminal without colour (NO_COLOR).
package stackbar

import (
	"fmt"
	"strings"

	"charm.land/lipgloss/v2"

	"whet/engine/units"
)

// Part is one slice of the plan.
type Part struct {
	Name  string
	Bytes uint64
}

// Bar is the component. Capacity is the memory the parts must fit in;
// CapacityLabel names it ("free").
type Bar struct {
	Width         int
	Parts         []Part
	Capacity      uint64
	CapacityLabel string
	Styles        []lipgloss.Style // one per part, cycled
	OverStyle     lipgloss.Style   // for the part of the bar past the capacity mark
	MutedStyle    lipgloss.Style
}

// SetSize sets the bar's width; its height follows from the legend.
func (b *Bar) SetSize(w, _ int) { b.Width = w }

var fills = []rune{'█', '▓', '▒', '░', '▚', '■', '▞', '▪', '▙', '▜', '◆', '●'}

// Fill returns the fill character of part i, for legends drawn elsewhere.
func Fill(i int) rune { return fills[i%len(fills)] }

// Total is the sum of the parts.
func (b Bar) Total() uint64 {
	var t uint64
	for _, p := range b.Parts {
		t += p.Bytes
	}
	return t
}

// View renders the bar, a scale line with the capacity mark, and the legend
// wrapped to the width.
func (b Bar) View() string {
	if b.Width < 20 {
		return ""
	}
	total := b.Total()
	scale := max(total, b.Capacity)
	if scale == 0 {
		scale = 1
	}
	w := b.Width
	cols := func(v uint64) int { return int(float64(v) / float64(scale) * float64(w)) }
	capCol := min(cols(b.Capacity), w)

	// Cell widths per part, rounding so that the bar ends exactly where the
	// total ends.
	var bar strings.Builder
	used, acc := 0, uint64(0)
	for i, p := range b.Parts {
		acc += p.Bytes
		end := cols(acc)
		if p.Bytes > 0 && end <= used && used < w {
			end = used + 1 // every non-empty part stays visible
		}
		n := end - used
		if n <= 0 {
			continue
		}
		style := b.style(i)
		for k := 0; k < n; k++ {
			c := string(Fill(i))
			if used+k >= capCol && b.Capacity > 0 {
				c = b.OverStyle.Render(c)
			} else {
				c = style.Render(c)
			}
			bar.WriteString(c)
		}
		used = end
	}
	if used < w {
		bar.WriteString(b.MutedStyle.Render(strings.Repeat("·", w-used)))
	}

	// The scale line marks the capacity with ▲ and prints it.
	label := fmt.Sprintf("%s %s", b.CapacityLabel, units.Bytes(int64(b.Capacity)))
	mark := min(capCol, w-1)
	var scaleLine string
	if mark+1+len(label)+1 <= w {
		scaleLine = strings.Repeat(" ", mark) + "▲ " + label
	} else {
		pad := max(mark-len(label)-1, 0)
		scaleLine = strings.Repeat(" ", pad) + label + " ▲"
	}

	// The legend: "█ weights 2.1 GiB" items, wrapped.
	var legend []string
	line := ""
	for i, p := range b.Parts {
		item := b.style(i).Render(string(Fill(i))) + " " + p.Name + " " + units.Bytes(int64(p.Bytes))
		if line != "" && lipgloss.Width(line)+3+lipgloss.Width(item) > w {
			legend = append(legend, line)
			line = ""
		}
		if line != "" {
			line += "   "
		}
		line += item
	}
	if line != "" {
		legend = append(legend, line)
	}
	total1 := fmt.Sprintf("total %s of %s %s", units.Bytes(int64(total)), units.Bytes(int64(b.Capacity)), b.CapacityLabel)
	return strings.Join(append([]string{bar.String(), b.MutedStyle.Render(scaleLine)}, append(legend, total1)...), "\n")
}

func (b Bar) style(i int) lipgloss.Style {
	if len(b.Styles) == 0 {
		return lipgloss.NewStyle()
	}
	return b.Styles[i%len(b.Styles)]
}
