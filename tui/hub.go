package tui

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	tea "charm.land/bubbletea/v2"

	"whet/engine/hub"
	"whet/engine/units"
)

// Hub is the Hugging Face Hub as the model page sees it: the models its
// local cache (huggingface_hub's layout, shared with transformers) holds,
// and downloads into that cache. HubClient is the real one; tui/fake has
// a scripted one for demos.
type Hub interface {
	// Settings says where models come from and go, for the page to show
	// (the endpoint, the cache folder, offline mode).
	Settings() hub.Settings
	// Cached lists the models in the cache.
	Cached() ([]hub.CachedModel, error)
	// Pull brings what a run needs of ref into the cache. progress is
	// called from other goroutines, one call at a time. Cancelling ctx
	// keeps what arrived, and the next Pull resumes from there. Errors are
	// *hub.Error values where the cause is known (gated, token, missing,
	// network with the cached snapshot, disk).
	Pull(ctx context.Context, ref hub.Ref, progress func(hub.Progress)) (*hub.Snapshot, error)
}

// HubClient is the Hub through engine/hub.
type HubClient struct{ Client *hub.Client }

var _ Hub = HubClient{}

func (h HubClient) Settings() hub.Settings             { return h.Client.Settings }
func (h HubClient) Cached() ([]hub.CachedModel, error) { return h.Client.Cache().Models() }
func (h HubClient) Pull(ctx context.Context, ref hub.Ref, progress func(hub.Progress)) (*hub.Snapshot, error) {
	return h.Client.Pull(ctx, ref, hub.PullOptions{Progress: progress})
}

// Pull messages. id ties them to one download, so the messages of a
// download the page has given up on are dropped.
type (
	// pullProgressMsg says the download's state changed; the page reads
	// it from the job.
	pullProgressMsg struct{ id int }
	// pullDoneMsg ends a download.
	pullDoneMsg struct {
		id   int
		snap *hub.Snapshot
		err  error
	}
)

// pullJob is one download running in the background. The download's
// goroutines write its state under mu and wake the page through a channel
// of one slot, so no report is lost (a finished file always leaves the
// list) and the page draws at its own pace.
type pullJob struct {
	id     int
	ref    hub.Ref
	cancel context.CancelFunc
	wake   chan struct{}
	result chan pullDoneMsg

	mu    sync.Mutex
	state pullState
}

// pullState is what the page draws of a download: the totals and the
// files in flight.
type pullState struct {
	started bool           // the files and sizes are known
	total   hub.Progress   // the latest report's totals
	files   []hub.Progress // files in flight, in the order they started
	// notes are the download's notes (hub.PhaseNote: a resumed file's
	// bytes were corrupt and it starts again), the latest per file.
	notes []hub.Progress
}

// record folds one report into the state.
func (s *pullState) record(p hub.Progress) {
	if p.Phase == hub.PhaseNote {
		s.notes = slices.DeleteFunc(s.notes, func(n hub.Progress) bool { return n.File == p.File })
		s.notes = append(s.notes, p)
	}
	s.total = p
	if p.Phase == hub.PhaseStart {
		s.started = true
	}
	i := -1
	for j, f := range s.files {
		if f.File == p.File {
			i = j
		}
	}
	switch {
	case p.File == "":
	case p.Phase == hub.PhaseFileDone && i >= 0:
		s.files = append(s.files[:i], s.files[i+1:]...)
	case p.Phase == hub.PhaseBytes && i >= 0:
		s.files[i] = p
	case p.Phase == hub.PhaseBytes:
		s.files = append(s.files, p)
	}
}

// startPull runs a download in the background and returns the command
// that waits for its first message.
func startPull(parent context.Context, h Hub, id int, ref hub.Ref) (*pullJob, tea.Cmd) {
	ctx, cancel := context.WithCancel(parent)
	j := &pullJob{id: id, ref: ref, cancel: cancel, wake: make(chan struct{}, 1), result: make(chan pullDoneMsg, 1)}
	go func() {
		snap, err := h.Pull(ctx, ref, func(p hub.Progress) {
			j.mu.Lock()
			j.state.record(p)
			j.mu.Unlock()
			select {
			case j.wake <- struct{}{}:
			default: // the page has not read the last wake-up yet
			}
		})
		j.result <- pullDoneMsg{id: id, snap: snap, err: err}
	}()
	return j, j.listen()
}

// listen waits for the next change or the end; the page re-arms it after
// each progress message, so one read is pending at a time.
func (j *pullJob) listen() tea.Cmd {
	return func() tea.Msg {
		select {
		case <-j.wake:
			return pullProgressMsg{id: j.id}
		case m := <-j.result:
			return m
		}
	}
}

func (j *pullJob) snapshot() pullState {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.state
	s.files = append([]hub.Progress(nil), s.files...)
	s.notes = append([]hub.Progress(nil), s.notes...)
	return s
}

// rateText writes bytes per second; "" when nothing is measured yet.
func rateText(r float64) string {
	if r <= 0 {
		return "–/s"
	}
	return units.Bytes(int64(r)) + "/s"
}

// progressBar draws done of total in w cells with distinct glyphs for the
// filled and empty parts, so it reads without colour.
func progressBar(st Styles, done, total int64, w int) string {
	w = max(w, 1)
	filled := 0
	if total > 0 {
		filled = int(min(int64(w)*max(done, 0)/total, int64(w)))
	}
	return st.Accent.Render(strings.Repeat("█", filled)) + st.Muted.Render(strings.Repeat("░", w-filled))
}

// pullView draws a download: the whole pull's bar with bytes, rate and
// ETA, its notes (wrapped to w, the latest first, cut to leave room for
// two file bars), then a bar per file in flight, in w×h cells.
func pullView(st Styles, s pullState, w, h int) string {
	var lines []string
	t := s.total
	if !s.started {
		return st.Muted.Render("asking the Hub for the file list…")
	}
	pct := 0
	if t.Total > 0 {
		pct = int(t.Done * 100 / t.Total)
	}
	nums := fmt.Sprintf(" %3d%%  %s / %s", pct, units.Bytes(t.Done), units.Bytes(t.Total))
	lines = append(lines, progressBar(st, t.Done, t.Total, max(w-len([]rune(nums)), 10))+nums)
	lines = append(lines, st.Subtle.Render(fmt.Sprintf("%d of %d files · %s · ETA %s", t.FilesDone, t.Files, rateText(t.Rate), units.ETA(t.ETA))))
	noteRoom := max(h-len(lines)-1-min(len(s.files), 2), 0)
	for i := len(s.notes) - 1; i >= 0 && noteRoom > 0; i-- {
		// The hub's notes already name the file ("model.safetensors: …").
		nl := strings.Split(wrap(printable(s.notes[i].Note), max(w, 1)), "\n")
		if len(nl) > noteRoom {
			nl = nl[:noteRoom]
			nl[noteRoom-1] = trimTo(nl[noteRoom-1]+" …", w)
		}
		for _, l := range nl {
			lines = append(lines, st.Warn.Render(trimTo(l, w)))
		}
		noteRoom -= len(nl)
	}
	files := append([]hub.Progress(nil), s.files...)
	sort.SliceStable(files, func(i, j int) bool { return files[i].File < files[j].File })
	room := h - len(lines) - 1
	if len(files) > 0 && room > 0 {
		lines = append(lines, "")
		nameW := 0
		for _, f := range files {
			nameW = max(nameW, len([]rune(f.File)))
		}
		nameW = min(nameW, max(w/3, 12))
		// The numbers are right-aligned in one column, so the bars line up.
		nums := make([]string, len(files))
		numW := 0
		for i, f := range files {
			nums[i] = fmt.Sprintf("%s / %s  %s  ETA %s", units.Bytes(f.FileDone), units.Bytes(f.FileSize), rateText(f.FileRate), units.ETA(f.FileETA))
			numW = max(numW, len([]rune(nums[i])))
		}
		for i, f := range files {
			if i == room-1 && len(files) > room {
				lines = append(lines, st.Muted.Render(fmt.Sprintf("  … %d more files", len(files)-i)))
				break
			}
			name := fmt.Sprintf("  %-*s ", nameW, trimTo(printable(f.File), nameW))
			num := fmt.Sprintf(" %*s", numW, nums[i])
			barW := w - len([]rune(name)) - len([]rune(num))
			if barW < 6 {
				lines = append(lines, trimTo(name+nums[i], w))
				continue
			}
			lines = append(lines, name+progressBar(st, f.FileDone, f.FileSize, barW)+num)
		}
	}
	return strings.Join(lines, "\n")
}
