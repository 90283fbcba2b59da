package form

import (
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
)

func key(s string) tea.KeyPressMsg {
	switch s {
	case "up":
		return tea.KeyPressMsg{Code: tea.KeyUp}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "left":
		return tea.KeyPressMsg{Code: tea.KeyLeft}
	case "right":
		return tea.KeyPressMsg{Code: tea.KeyRight}
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "backspace":
		return tea.KeyPressMsg{Code: tea.KeyBackspace}
	case "space":
		return tea.KeyPressMsg{Code: ' ', Text: " "}
	}
	r := []rune(s)[0]
	return tea.KeyPressMsg{Code: r, Text: s}
}

func fields() []Field {
	return []Field{
		{Key: "rank", Label: "LoRA rank", Kind: Int, Value: "16", Min: 1, Max: 1024},
		{Key: "method", Label: "Method", Kind: Choice, Value: "lora", Options: []string{"lora", "qlora", "full"}},
		{Key: "rslora", Label: "rsLoRA", Kind: Bool, Value: "no", Advanced: true},
		{Key: "decay", Label: "Weight decay", Kind: Float, Value: "0.01", Advanced: true},
	}
}

func TestEditAndCycle(t *testing.T) {
	m := New(fields(), Styles{})
	m, _ = m.Update(key("backspace"))
	m, _ = m.Update(key("backspace"))
	m, _ = m.Update(key("3"))
	m, _ = m.Update(key("2"))
	if got := m.Int("rank"); got != 32 {
		t.Errorf("rank = %d, want 32", got)
	}
	m, _ = m.Update(key("down"))
	m, _ = m.Update(key("right"))
	if got := m.Get("method"); got != "qlora" {
		t.Errorf("method = %q, want qlora", got)
	}
	m, _ = m.Update(key("left"))
	m, _ = m.Update(key("left"))
	if got := m.Get("method"); got != "full" {
		t.Errorf("method = %q after wrapping left, want full", got)
	}
}

func TestAdvancedFold(t *testing.T) {
	m := New(fields(), Styles{})
	m.SetSize(60, 20)
	if v := ansi.Strip(m.View()); strings.Contains(v, "rsLoRA") || !strings.Contains(v, "advanced settings (2)") {
		t.Fatalf("advanced fields should start folded:\n%s", v)
	}
	m, _ = m.Update(key("down"))
	m, _ = m.Update(key("down"))
	m, used := m.Update(key("enter"))
	if !used || !m.Advanced() {
		t.Fatal("enter on the fold row should open the advanced section")
	}
	m, _ = m.Update(key("down"))
	m, _ = m.Update(key("space"))
	if !m.Bool("rslora") {
		t.Error("space should toggle rsLoRA on")
	}
	if _, used := m.Update(key("enter")); used {
		t.Error("enter on a field is the page's key, the form must not use it")
	}
}

func TestValidateNamesTheField(t *testing.T) {
	m := New(fields(), Styles{})
	m.Set("decay", "abc")
	err := m.Validate()
	if err == nil || !strings.Contains(err.Error(), "Weight decay") {
		t.Fatalf("Validate() = %v, want an error naming Weight decay", err)
	}
	if m.Focused() != "decay" || !m.Advanced() {
		t.Error("validation should focus the bad field and unfold it")
	}
	m.Set("decay", "0.1")
	m.Set("rank", "0")
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("rank 0 should be out of range, got %v", err)
	}
	m.SetHidden("rank", true)
	if err := m.Validate(); err != nil {
		t.Errorf("hidden fields are not validated, got %v", err)
	}
}

func TestScrollKeepsFocusVisible(t *testing.T) {
	var fs []Field
	for i := 0; i < 20; i++ {
		fs = append(fs, Field{Key: string(rune('a' + i)), Label: "field " + string(rune('a'+i)), Value: "x"})
	}
	m := New(fs, Styles{})
	m.SetSize(40, 7)
	for i := 0; i < 15; i++ {
		m, _ = m.Update(key("down"))
	}
	v := ansi.Strip(m.View())
	if !strings.Contains(v, "› field p") {
		t.Errorf("focused field p not visible:\n%s", v)
	}
	if n := strings.Count(v, "\n"); n > 6 {
		t.Errorf("view is %d lines, more than the 7 allowed", n+1)
	}
}
