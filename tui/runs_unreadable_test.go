package tui_test

import (
	"strings"
	"testing"

	"whet/engine"
	"whet/tui"
	"whet/tui/fake"
)

// unreadableRuns is scriptedRuns with two runs whose status.json a crash
// left empty: one with a checkpoint, one without.
func unreadableRuns() *fake.Runs {
	runs := scriptedRuns()
	runs.Runs = append(runs.Runs,
		tui.RunInfo{Name: "y-empty-nockpt", Method: "lora", Model: "tiny", State: "unreadable",
			StatusErr: "runs/y-empty-nockpt/status.json is empty", Step: 3, Last: 2.5, HasLast: true, Config: "runs/y-empty-nockpt/run.yaml"},
		tui.RunInfo{Name: "z-empty", Method: "lora", Model: "tiny", State: "unreadable",
			StatusErr: "runs/z-empty/status.json is empty", Step: 40, Last: 1.25, HasLast: true,
			ResumeFrom: "runs/z-empty/checkpoints/step-00000040", ResumeStep: 40, Config: "runs/z-empty/run.yaml"})
	runs.Scripts["z-empty"] = []fake.Step{
		{Event: engine.StepEvent{Step: 41, TotalSteps: 100, Loss: 1.2}},
		{Event: engine.StepEvent{Step: 42, TotalSteps: 100, Loss: 1.1}},
	}
	return runs
}

// A run whose status.json a crash left empty is still shown, with the
// step its metrics reached, why its state is not known, and, when it has
// a checkpoint, c continues it from there; without one c is not offered.
func TestRunsPageShowsARunWithAnUnreadableStatus(t *testing.T) {
	runs := unreadableRuns()
	o := testOptions(&fake.Engine{})
	o.Runs = runs
	d := newDriver(t, o, 120, 40)
	d.keys("r")
	d.waitScreen("persona-lora")
	d.keys("end", "up") // y-empty-nockpt
	s := d.screen()
	for _, want := range []string{"? unreadable", "runs/y-empty-nockpt/status.json is empty: how it ended is not known",
		"no checkpoint: whet train -c runs/y-empty-nockpt/run.yaml starts it over"} {
		if !strings.Contains(s, want) {
			t.Errorf("runs page lacks %q:\n%s", want, s)
		}
	}
	d.keys("c")
	if s := d.screen(); strings.Contains(s, "c continue") || len(runs.Resumed()) != 0 {
		t.Fatalf("c offered or taken on an unreadable run without a checkpoint (resumed %v):\n%s", runs.Resumed(), s)
	}
	d.keys("end") // z-empty
	s = d.screen()
	for _, want := range []string{"1.2500", "runs/z-empty/status.json is empty: how it ended is not known",
		"c continues training from its checkpoint at step 40 (runs/z-empty/checkpoints/step-00000040)",
		"c continue"} {
		if !strings.Contains(s, want) {
			t.Errorf("runs page lacks %q:\n%s", want, s)
		}
	}
	d.keys("c")
	d.waitScreen("step 42/100")
	if got := runs.Resumed(); len(got) != 1 || got[0] != "z-empty" {
		t.Errorf("resumed %v, want [z-empty]", got)
	}
}

// The runs page at 80x24 with an unreadable run that has a checkpoint
// selected: its reason, c and the footer fit.
func TestGoldenRunsUnreadable(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Runs = unreadableRuns()
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("persona-lora")
	d.keys("end")
	checkSize(t, d.view(), 80, 24)
	golden(t, "runs_unreadable_80x24", d.view())
}
