package tui_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"whet/tui"
	"whet/tui/fake"
)

// The studio runs as a real Bubble Tea program: keys come from the input
// stream, the first screen reaches the output, and q on the first page
// ends the program.
func TestProgramRunsAndQuits(t *testing.T) {
	m := tui.New(testOptions(&fake.Engine{}))
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := tea.NewProgram(m, tea.WithInput(strings.NewReader("jq")), tea.WithOutput(&out),
		tea.WithWindowSize(80, 24), tea.WithoutSignals(), tea.WithContext(ctx))
	if _, err := p.Run(); err != nil {
		t.Fatalf("program ended with %v", err)
	}
	if !strings.Contains(out.String(), "Choose the base model") {
		t.Errorf("the first screen never reached the terminal; output:\n%q", out.String())
	}
	if m.Config().Model != "" {
		t.Errorf("nothing was chosen, yet Model = %q", m.Config().Model)
	}
}
