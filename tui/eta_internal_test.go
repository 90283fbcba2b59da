package tui

import (
	"testing"
	"time"

	"github.com/charmbracelet/colorprofile"

	"whet/engine"
	"whet/engine/units"
)

// etaAfter feeds a fresh dashboard step events (a fake event stream, as
// an attach replays a run's history and then goes on live) and returns
// the ETA it shows.
func etaAfter(t *testing.T, events []engine.StepEvent) string {
	t.Helper()
	c := &common{width: 120, height: 40, styles: newStyles(colorprofile.NoTTY), keys: newKeyMap(), now: time.Now}
	d := newDashboard(c, engine.RunConfig{}, nil, nopControl{}, nil, time.Hour)
	for _, ev := range events {
		d.update(engineEventMsg{src: d.events, ev: ev})
	}
	return d.eta()
}

// steps are the step events of one trainer process: steps from..to, the
// first after setup (elapsed counting from the process's start), then one
// every per.
func steps(from, to, total int, setup, per time.Duration) []engine.StepEvent {
	var out []engine.StepEvent
	for s := from; s <= to; s++ {
		out = append(out, engine.StepEvent{Step: s, TotalSteps: total, Elapsed: setup + time.Duration(s-from)*per})
	}
	return out
}

// The ETA is the steps left at the recent step rate. Elapsed/step made a
// resumed run's ETA start far too short (its process starts at step 800
// with nothing elapsed) and grow over the run.
func TestDashboardETAFromRecentStepRate(t *testing.T) {
	// Resumed from step 800 of 1000: 30s of setup, then a step a second.
	run := steps(801, 1000, 1000, 30*time.Second, time.Second)
	for _, at := range []int{810, 850, 900, 990} {
		left := time.Duration(1000-at) * time.Second
		if got, want := etaAfter(t, run[:at-800]), units.Duration(left); got != want {
			t.Errorf("resumed run at step %d: ETA %s, want %s (a step a second)", at, got, want)
		}
	}
	// An attach replays the history: a first process that made steps
	// 1-50 at 2s each, then the resumed one from step 40 at 1s each.
	history := append(steps(1, 50, 200, 5*time.Second, 2*time.Second), steps(41, 60, 200, 20*time.Second, time.Second)...)
	if got, want := etaAfter(t, history), units.Duration(140*time.Second); got != want {
		t.Errorf("after a resume in the history: ETA %s, want %s", got, want)
	}
	// The rate is the recent one: a run that sped up (a slow first
	// process's steps long gone from the window) shows the new pace.
	sped := append(steps(1, 100, 400, 0, 4*time.Second), steps(101, 200, 400, 0, time.Second)...)
	for i := range sped[100:] {
		sped[100+i].Elapsed += sped[99].Elapsed + time.Second
	}
	if got, want := etaAfter(t, sped), units.Duration(200*time.Second); got != want {
		t.Errorf("after speeding up: ETA %s, want %s (the last %d steps' rate)", got, want, recentSteps)
	}
	// One step of a process is no rate yet.
	if got := etaAfter(t, run[:1]); got != "–" {
		t.Errorf("after one step: ETA %s, want –", got)
	}
}
