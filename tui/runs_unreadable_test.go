package tui_test

import (
	"strings"
	"testing"

	"whet/tui"
	"whet/tui/fake"
)

// A run whose status.json a crash left empty is still shown, with the
// step its metrics reached, why its state is not known, and where whet
// train -c resumes it from.
func TestRunsPageShowsARunWithAnUnreadableStatus(t *testing.T) {
	runs := scriptedRuns()
	runs.Runs = append(runs.Runs, tui.RunInfo{Name: "z-empty", Method: "lora", Model: "tiny", State: "unreadable",
		StatusErr: "runs/z-empty/status.json is empty", Step: 40, Last: 1.25, HasLast: true,
		ResumeFrom: "runs/z-empty/checkpoints/step-00000040", ResumeStep: 40, Config: "runs/z-empty/run.yaml"})
	o := testOptions(&fake.Engine{})
	o.Runs = runs
	d := newDriver(t, o, 120, 40)
	d.keys("r")
	d.waitScreen("persona-lora")
	d.keys("end")
	s := d.screen()
	for _, want := range []string{"? unreadable", "1.2500", "runs/z-empty/status.json is empty: how it ended is not known",
		"resume: whet train -c runs/z-empty/run.yaml (from its checkpoint at step 40"} {
		if !strings.Contains(s, want) {
			t.Errorf("runs page lacks %q:\n%s", want, s)
		}
	}
}
