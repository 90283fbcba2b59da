package tui

import (
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"

	"whet/engine"
)

// Another viewer's pause (engine.PauseEvent from the worker) shows on this
// dashboard too: the header says paused and p offers to resume; a resume
// puts it back. A second SSH session said "● training" over a paused run.
func TestDashboardShowsAnotherViewersPause(t *testing.T) {
	c := &common{width: 80, height: 24, styles: newStyles(colorprofile.NoTTY), keys: newKeyMap(), now: time.Now}
	d := newDashboard(c, engine.RunConfig{Name: "r"}, nil, nopControl{}, nil, time.Hour)
	d.viewer = true
	d.update(engineEventMsg{src: d.events, ev: engine.StepEvent{Step: 1, TotalSteps: 10, Loss: 2}})
	if s := ansi.Strip(d.view(80, 24)); !strings.Contains(s, "training") || !strings.Contains(s, "p pause") {
		t.Fatalf("before the pause:\n%s", s)
	}
	d.update(engineEventMsg{src: d.events, ev: engine.PauseEvent{Paused: true}})
	if s := ansi.Strip(d.view(80, 24)); !strings.Contains(s, "paused") || !strings.Contains(s, "p resume") {
		t.Fatalf("after another viewer paused the run:\n%s", s)
	}
	d.update(engineEventMsg{src: d.events, ev: engine.PauseEvent{Paused: false}})
	if s := ansi.Strip(d.view(80, 24)); strings.Contains(s, "paused") || !strings.Contains(s, "p pause") {
		t.Fatalf("after another viewer resumed the run:\n%s", s)
	}
}
