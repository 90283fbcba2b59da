package tui_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"whet/engine"
	"whet/tui"
)

// After a resume the summary's time is this session's, and says so (the
// earlier sessions' time is not known); a run resumed with fewer total
// steps than it had done stopped where it was, which the summary says
// plainly instead of "335 of 5 steps".
func TestGoldenSummaryAfterResume(t *testing.T) {
	for _, sz := range sizes {
		name := fmt.Sprintf("%dx%d", sz.w, sz.h)
		resumed := []engine.Event{
			engine.StepEvent{Step: 41, TotalSteps: 60, Loss: 1.25, Elapsed: 2 * time.Second},
			engine.StepEvent{Step: 60, TotalSteps: 60, Loss: 1.1, Elapsed: 40 * time.Second},
			engine.DoneEvent{Step: 60, Elapsed: 41 * time.Second, FinalDir: "runs/persona-lora/adapter", FromStep: 40},
		}
		v := renderSummary(t, resumed, sz.w, sz.h)
		golden(t, "summary_resumed_"+name, v)
		if s := ansi.Strip(v); !strings.Contains(s, "60 of 60 steps") || !strings.Contains(s, "time 0m41s this session (from step 40)") {
			t.Errorf("%s: want 60 of 60 steps and this session's time from step 40:\n%s", name, s)
		}

		past := []engine.Event{
			engine.StepEvent{Step: 335, TotalSteps: 5, Loss: 0.9, Elapsed: time.Second},
			engine.DoneEvent{Step: 335, Elapsed: time.Second, FinalDir: "runs/persona-lora/adapter", FromStep: 335},
		}
		v = renderSummary(t, past, sz.w, sz.h)
		golden(t, "summary_past_total_"+name, v)
		if s := ansi.Strip(v); !strings.Contains(s, "stopped at step 335, past the run's 5 total steps") || strings.Contains(s, "335 of 5") {
			t.Errorf("%s: want the stop past the total said plainly:\n%s", name, s)
		}
	}
}

func renderSummary(t *testing.T, evs []engine.Event, w, h int) string {
	t.Helper()
	v := tui.RenderDashboard(goldenRun(), w, h, evs, nil, nil)
	checkSize(t, v, w, h)
	return v
}
