package stackbar

import (
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"
)

const gib = 1 << 30

func TestBarProportions(t *testing.T) {
	b := Bar{Width: 40, Capacity: 8 * gib, CapacityLabel: "free", Parts: []Part{
		{"weights", 2 * gib}, {"optimizer", 2 * gib},
	}}
	lines := strings.Split(ansi.Strip(b.View()), "\n")
	bar := []rune(lines[0])
	if len(bar) != 40 {
		t.Fatalf("bar is %d cells, want 40", len(bar))
	}
	if n := strings.Count(lines[0], string(Fill(0))); n != 10 {
		t.Errorf("weights take %d cells, want 10 (a quarter of 40)", n)
	}
	if n := strings.Count(lines[0], string(Fill(1))); n != 10 {
		t.Errorf("optimizer takes %d cells, want 10", n)
	}
	if !strings.Contains(lines[1], "▲ free 8.00 GiB") && !strings.Contains(lines[1], "free 8.00 GiB ▲") {
		t.Errorf("scale line %q lacks the capacity mark", lines[1])
	}
	if !strings.Contains(lines[len(lines)-1], "total 4.00 GiB of 8.00 GiB free") {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
}

// When the plan exceeds the capacity the bar is scaled to the plan and the
// capacity mark moves left of the end.
func TestBarOverCapacity(t *testing.T) {
	b := Bar{Width: 40, Capacity: 4 * gib, CapacityLabel: "free", Parts: []Part{{"weights", 8 * gib}}}
	lines := strings.Split(ansi.Strip(b.View()), "\n")
	if n := strings.Count(lines[0], string(Fill(0))); n != 40 {
		t.Errorf("over-capacity bar should fill all 40 cells, got %d", n)
	}
	if i := strings.Index(lines[1], "▲"); i < 0 || len([]rune(lines[1][:i])) != 20 {
		t.Errorf("capacity mark should sit at column 20 (half): %q", lines[1])
	}
}

func TestTinyPartStaysVisible(t *testing.T) {
	b := Bar{Width: 30, Capacity: 80 * gib, Parts: []Part{{"lora", 1 << 20}, {"weights", 10 * gib}}}
	if !strings.Contains(ansi.Strip(b.View()), string(Fill(0))) {
		t.Error("a 1 MiB part vanished from the bar")
	}
}
