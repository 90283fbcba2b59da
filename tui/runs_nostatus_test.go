package tui_test

import (
	"strings"
	"testing"

	"whet/tui"
	"whet/tui/fake"
)

// A run that ended before its first status.json (a full disk) is shown
// failed, with why and what whet train -c does with it, not "? unknown".
func TestRunsPageShowsARunThatEndedBeforeItsStatus(t *testing.T) {
	runs := scriptedRuns()
	runs.Runs = append(runs.Runs, tui.RunInfo{Name: "z-full", Method: "lora", Model: "tiny", State: "failed", NoStatus: true,
		LastWords: "whet train: write runs/z-full/status.json: no space left on device", LastWordsFile: "runs/z-full/worker.log",
		Config: "runs/z-full/run.yaml"})
	o := testOptions(&fake.Engine{})
	o.Runs = runs
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("persona-lora")
	d.keys("end")
	s := d.screen()
	for _, want := range []string{"z-full       ✗ failed", "failed: it ended before writing its first status.json", "no space left on device",
		"no checkpoint: whet train -c runs/z-full/run.yaml starts it over"} {
		if !strings.Contains(s, want) {
			t.Errorf("runs page lacks %q:\n%s", want, s)
		}
	}
}
