package tui

import (
	"time"

	tea "charm.land/bubbletea/v2"

	"whet/engine"
)

// Messages the studio sends itself. Each one carries the result of work
// done in a tea.Cmd, so Update never blocks.
type (
	// engineEventMsg is one event from the running trainer; src is the
	// channel it came from, so a dashboard the user has left (a viewer
	// of the runs page) never takes another's events.
	engineEventMsg struct {
		src <-chan engine.Event
		ev  engine.Event
	}
	// engineClosedMsg says the event channel closed without a DoneEvent
	// (an engine bug, reported as a failed run, or a viewer that left).
	engineClosedMsg struct{ src <-chan engine.Event }
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
	// gpuMsg is a GPU sample; the dashboard whose events are src re-arms
	// the next one (a left dashboard's samples end there).
	gpuMsg struct {
		src   <-chan engine.Event
		stats GPUStats
		all   []GPUStats // every GPU, by device index, when the sampler reads them all
		err   error
	}
)

// waitEvent reads the next engine event. The dashboard calls it again
// after each event until the DoneEvent, so exactly one read is pending.
func waitEvent(ch <-chan engine.Event) tea.Cmd {
	return func() tea.Msg {
		ev, ok := <-ch
		if !ok {
			return engineClosedMsg{src: ch}
		}
		return engineEventMsg{src: ch, ev: ev}
	}
}

// sampleGPU reads the sampler after the interval (immediately when zero)
// for the dashboard whose events are src.
func sampleGPU(g GPUSampler, every time.Duration, src <-chan engine.Event) tea.Cmd {
	if g == nil {
		return nil
	}
	read := func(time.Time) tea.Msg {
		if m, ok := g.(MultiGPUSampler); ok {
			all, err := m.SampleAll()
			if err == nil && len(all) > 1 {
				return gpuMsg{src: src, stats: all[0], all: all}
			}
		}
		s, err := g.Sample()
		return gpuMsg{src: src, stats: s, err: err}
	}
	if every <= 0 {
		return func() tea.Msg { return read(time.Time{}) }
	}
	return tea.Tick(every, read)
}
