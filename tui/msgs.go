package tui

import (
	"time"

	tea "charm.land/bubbletea/v2"

	"whet/datasets"
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
	// engineEventsMsg is several events that came at once (a viewer's
	// replay of the run's history), applied in one update; closed says
	// the channel closed after them.
	engineEventsMsg struct {
		src    <-chan engine.Event
		evs    []engine.Event
		closed bool
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
		// claimed: cfg.Name is the folder claimed for the proposed name
		// (NameClaimer), this session's whether or not the start worked.
		claimed bool
	}
	// previewMsg is the dataset preview of path; seq drops answers to
	// superseded previews (the same file read for another model).
	previewMsg struct {
		seq     int
		path    string
		preview DataPreview
		err     error
	}
	// previewProgressMsg is how far the read of preview seq has come;
	// wait waits for the next report (nil once the read has ended).
	previewProgressMsg struct {
		seq      int
		progress datasets.Progress
		wait     tea.Cmd
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
		// A run opened from the runs page replays its history into a
		// buffered channel far faster than the dashboard draws it an event
		// at a time (2000 steps took seconds, shown as "training" with the
		// run's keys): the events already waiting in the buffer come in
		// the same message. Only those: this is the channel's one reader,
		// so taking len(ch) of them never blocks, and an unbuffered
		// channel (a live run's events as they come) is read as before.
		n := len(ch)
		if _, done := ev.(engine.DoneEvent); done || n == 0 {
			return engineEventMsg{src: ch, ev: ev}
		}
		evs := append(make([]engine.Event, 0, n+1), ev)
		for range n {
			next, ok := <-ch
			if !ok {
				return engineEventsMsg{src: ch, evs: evs, closed: true}
			}
			evs = append(evs, next)
			if _, done := next.(engine.DoneEvent); done {
				break
			}
		}
		return engineEventsMsg{src: ch, evs: evs}
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
