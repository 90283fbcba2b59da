package tui

import (
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"

	"whet/engine"
)

// nopControl is a RunControl for views that are never steered.
type nopControl struct{}

func (nopControl) Pause()      {}
func (nopControl) Resume()     {}
func (nopControl) Checkpoint() {}
func (nopControl) Stop()       {}

// RenderDashboard applies events to a fresh dashboard synchronously and
// renders it at w×h, for golden tests that must not depend on goroutine
// timing. A DoneEvent among the events switches to the summary.
func RenderDashboard(cfg engine.RunConfig, w, h int, events []engine.Event, gpu *GPUStats, gpuErr error) string {
	return RenderDashboardProfile(colorprofile.TrueColor, cfg, w, h, events, gpu, gpuErr)
}

// RenderDashboardProfile is RenderDashboard with the styles of a colour
// profile.
func RenderDashboardProfile(p colorprofile.Profile, cfg engine.RunConfig, w, h int, events []engine.Event, gpu *GPUStats, gpuErr error) string {
	c := &common{width: w, height: h, styles: newStyles(p), keys: newKeyMap(), now: time.Now}
	d := newDashboard(c, cfg, nil, nopControl{}, nil, time.Hour)
	if gpu != nil {
		d.update(gpuMsg{stats: *gpu})
	}
	if gpuErr != nil {
		d.update(gpuMsg{err: gpuErr})
	}
	for _, ev := range events {
		if _, finished := d.update(engineEventMsg{src: d.events, ev: ev}); finished {
			return newSummary(d).view(w, h)
		}
	}
	return d.view(w, h)
}

// RenderDashboardGPUs renders the dashboard of cfg after events with
// every GPU of the machine sampled (a run over several GPUs).
func RenderDashboardGPUs(cfg engine.RunConfig, w, h int, events []engine.Event, gpus []GPUStats) string {
	c := &common{width: w, height: h, styles: newStyles(colorprofile.TrueColor), keys: newKeyMap(), now: time.Now}
	d := newDashboard(c, cfg, nil, nopControl{}, nil, time.Hour)
	d.update(gpuMsg{stats: gpus[0], all: gpus})
	for _, ev := range events {
		d.update(engineEventMsg{src: d.events, ev: ev})
	}
	return d.view(w, h)
}

// RunsListForTest is a listing of the runs page's folder as its refresh
// delivers it (the runs it shows now), to send between keys.
func (m *Model) RunsListForTest() tea.Msg {
	return runsListMsg{seq: m.runs.seq, runs: m.runs.runs, warnings: m.runs.warnings}
}
