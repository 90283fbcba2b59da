package tui

import (
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"

	"whet/engine"
)

// A viewer of a run that is stopping is not told the run goes on when it
// leaves: the worker stops it all the same. Before the stop, it is.
func TestStoppingViewerFooterSaysTheStopGoesOn(t *testing.T) {
	for _, backToRuns := range []bool{false, true} {
		c := &common{width: 80, height: 24, styles: newStyles(colorprofile.NoTTY), keys: newKeyMap(), now: time.Now}
		d := newDashboard(c, engine.RunConfig{Name: "r"}, nil, nopControl{}, nil, time.Hour)
		d.viewer, d.backToRuns = true, backToRuns
		d.update(engineEventMsg{src: d.events, ev: engine.StepEvent{Step: 1, TotalSteps: 10, Loss: 2}})
		if s := ansi.Strip(d.footer()); !strings.Contains(s, "run goes on") {
			t.Errorf("backToRuns %v, training: footer %q", backToRuns, s)
		}
		d.stopping = true
		s := ansi.Strip(d.footer())
		if strings.Contains(s, "run goes on") || !strings.Contains(s, "the stop goes on") {
			t.Errorf("backToRuns %v, stopping: footer %q", backToRuns, s)
		}
	}
}
