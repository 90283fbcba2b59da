package hub

import (
	"sync"
	"time"
)

// Phase says what a Progress report is about.
type Phase string

const (
	// PhaseStart comes once, before the first byte: the files and the
	// total size are known, and the disk space was checked.
	PhaseStart Phase = "start"
	// PhaseBytes reports bytes of File arriving (at most every
	// progressEvery per file).
	PhaseBytes Phase = "bytes"
	// PhaseFileDone says File is complete and linked into the snapshot
	// (downloaded, or found in the cache).
	PhaseFileDone Phase = "file-done"
	// PhaseDone comes once, last, after a pull that succeeded.
	PhaseDone Phase = "done"
	// PhaseNote tells something a person should see about File, in Note:
	// its resumed bytes were corrupt and it starts again from zero.
	PhaseNote Phase = "note"
)

// Progress is one report of a pull, for a progress bar: the file it is
// about and the totals. Rates are bytes per second over the last few
// seconds; an ETA of 0 means not known yet.
type Progress struct {
	Phase     Phase
	Repo      string
	Commit    string
	File      string // "" for PhaseStart and PhaseDone
	FileDone  int64
	FileSize  int64
	FileRate  float64
	FileETA   time.Duration
	Done      int64 // bytes of all files, those already cached included
	Total     int64
	Rate      float64
	ETA       time.Duration
	FilesDone int
	Files     int
	Note      string // PhaseNote only
}

// progressEvery is the shortest gap between two byte reports of one file.
const progressEvery = 100 * time.Millisecond

// stallEvery is how often a file that receives nothing is reported again.
const stallEvery = time.Second

// rateWindow is how far back a rate looks: long enough to smooth out
// bursts, short enough to follow a change of speed.
const rateWindow = 5 * time.Second

// meter measures a rate over rateWindow from (time, total bytes) samples.
type meter struct {
	at    []time.Time
	bytes []int64
}

func (m *meter) add(t time.Time, total int64) {
	m.at = append(m.at, t)
	m.bytes = append(m.bytes, total)
	cut := 0
	for cut < len(m.at)-2 && t.Sub(m.at[cut+1]) > rateWindow {
		cut++
	}
	m.at, m.bytes = m.at[cut:], m.bytes[cut:]
}

func (m *meter) rate() float64 {
	if len(m.at) < 2 {
		return 0
	}
	dt := m.at[len(m.at)-1].Sub(m.at[0]).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(m.bytes[len(m.bytes)-1]-m.bytes[0]) / dt
}

func eta(left int64, rate float64) time.Duration {
	if rate <= 0 || left <= 0 {
		return 0
	}
	return time.Duration(float64(left) / rate * float64(time.Second))
}

// tracker keeps the totals of one pull and calls the callback, one report
// at a time, from whichever download goroutine has news.
type tracker struct {
	mu    sync.Mutex
	fn    func(Progress)
	p     Progress
	total meter
	files map[string]*fileTrack
	now   func() time.Time
	ended bool // stop was called: the timers report nothing more
}

type fileTrack struct {
	done, size int64
	m          meter
	last       time.Time
	final      bool        // complete: no more byte reports
	timer      *time.Timer // sends a held-back report, or one during a stall
}

func newTracker(fn func(Progress), repo, commit string, sizes map[string]int64, have map[string]int64) *tracker {
	t := &tracker{fn: fn, files: map[string]*fileTrack{}, now: time.Now}
	t.p = Progress{Repo: repo, Commit: commit, Files: len(sizes)}
	for name, size := range sizes {
		t.files[name] = &fileTrack{size: size, done: have[name]}
		t.p.Total += size
		t.p.Done += have[name]
	}
	return t
}

func (t *tracker) emit(p Progress) {
	if t.fn != nil {
		t.fn(p)
	}
}

func (t *tracker) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total.add(t.now(), t.p.Done)
	p := t.p
	p.Phase = PhaseStart
	t.emit(p)
}

// set records that done bytes of a file are on disk. A report held back
// by progressEvery is sent later by the file's timer, which then reports
// every stallEvery until more bytes come: a download that stalls shows
// the bytes that did arrive and a rate falling to zero, not the last
// report before the stall.
func (t *tracker) set(name string, done int64, final bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[name]
	now := t.now()
	t.p.Done += done - f.done
	f.done = done
	f.m.add(now, done)
	t.total.add(now, t.p.Done)
	if final {
		t.p.FilesDone++
		f.final = true
		if f.timer != nil {
			f.timer.Stop()
			f.timer = nil
		}
	} else if gap := now.Sub(f.last); gap < progressEvery {
		switch {
		case t.ended:
		case f.timer == nil:
			f.timer = time.AfterFunc(progressEvery-gap, func() { t.flush(name) })
		default: // the stall timer: sooner
			f.timer.Reset(progressEvery - gap)
		}
		return
	}
	t.report(name, f, now)
}

// note sends a PhaseNote about a file.
func (t *tracker) note(name, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[name]
	p := t.p
	p.Phase, p.File, p.FileDone, p.FileSize, p.Note = PhaseNote, name, f.done, f.size, msg
	t.emit(p)
}

// flush is a file's timer: it reports the file as it stands.
func (t *tracker) flush(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[name]
	f.timer = nil
	if f.final || t.ended {
		return
	}
	now := t.now()
	f.m.add(now, f.done)
	t.total.add(now, t.p.Done)
	t.report(name, f, now)
}

// report sends a file's bytes (or its end) and arms the stall timer of a
// file still arriving. t.mu is held.
func (t *tracker) report(name string, f *fileTrack, now time.Time) {
	f.last = now
	p := t.p
	p.Phase, p.File, p.FileDone, p.FileSize = PhaseBytes, name, f.done, f.size
	if f.final {
		p.Phase = PhaseFileDone
	} else if f.timer == nil && !t.ended {
		f.timer = time.AfterFunc(stallEvery, func() { t.flush(name) })
	}
	p.FileRate = f.m.rate()
	p.FileETA = eta(f.size-f.done, p.FileRate)
	p.Rate = t.total.rate()
	p.ETA = eta(t.p.Total-t.p.Done, p.Rate)
	t.emit(p)
}

// stop ends the timers: no report comes after the pull returns.
func (t *tracker) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended = true
	for _, f := range t.files {
		if f.timer != nil {
			f.timer.Stop()
			f.timer = nil
		}
	}
}

func (t *tracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.p
	p.Phase = PhaseDone
	p.Rate = t.total.rate()
	t.emit(p)
}
