package tui

import (
	"time"

	tea "charm.land/bubbletea/v2"

	"whet/engine"
)

// Messages the studio sends itself. Each one carries the result of work
// done in a tea.Cmd, so Update never blocks.
type (
	// engineEventMsg is one event from the running trainer.
	engineEventMsg struct{ ev engine.Event }
	// engineClosedMsg says the event channel closed without a DoneEvent
	// (an engine bug, reported as a failed run).
	engineClosedMsg struct{}
	// runStartedMsg is the answer to starting a run.
	runStartedMsg struct {
		cfg     engine.RunConfig
		events  <-chan engine.Event
		control engine.RunControl
		err     error
	}
	// previewMsg is the dataset preview of path; seq drops answers to
	// superseded previews (the same file read for another model).
	previewMsg struct {
		seq     int
		path    string
		preview DataPreview
		err     error
	}
	// fitMsg is a fit report; seq drops answers to superseded checks.
	fitMsg struct {
		seq    int
		report FitReport
		err    error
	}
	// gpuMsg is a GPU sample; the dashboard re-arms the next one.
	gpuMsg struct {
		stats GPUStats
		err   error
	}
)

// waitEvent reads the next engine event. The dashboard calls it again
// after each event until the DoneEvent, so exactly one read is pending.
func waitEvent(ch <-chan engine.Event) tea.Cmd {
	return func() tea.Msg {
		ev, ok := <-ch
		if !ok {
			return engineClosedMsg{}
		}
		return engineEventMsg{ev: ev}
	}
}

// sampleGPU reads the sampler after the interval (immediately when zero).
func sampleGPU(g GPUSampler, every time.Duration) tea.Cmd {
	if g == nil {
		return nil
	}
	read := func(time.Time) tea.Msg {
		s, err := g.Sample()
		return gpuMsg{stats: s, err: err}
	}
	if every <= 0 {
		return func() tea.Msg { return read(time.Time{}) }
	}
	return tea.Tick(every, read)
}
