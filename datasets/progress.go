package datasets

import (
	"context"
	"fmt"
	"io"
	"sync"

	"whet/engine/units"
)

// Stage is the part of Prepare that Progress counts.
type Stage string

const (
	StageReading    Stage = "reading"    // the data files are read (Bytes of TotalBytes)
	StageTokenizing Stage = "tokenizing" // the examples are tokenized (Rows of TotalRows)
)

// Progress says how far PrepareContext (or PreparePromptsContext) has come,
// for a caller that shows it while a large file is read: a 100,000-row
// file takes seconds.
type Progress struct {
	Stage Stage
	// Bytes of the data files (the eval file included) read so far, of
	// TotalBytes, their sizes on disk.
	Bytes, TotalBytes int64
	// Rows of TotalRows examples tokenized so far (StageTokenizing; 0 of 0
	// while reading).
	Rows, TotalRows int
}

// Done is how far the current stage has come, done of total (bytes while
// reading, rows while tokenizing); total is 0 before anything is known.
func (p Progress) Done() (done, total int64) {
	switch p.Stage {
	case StageReading:
		return p.Bytes, p.TotalBytes
	case StageTokenizing:
		return int64(p.Rows), int64(p.TotalRows)
	}
	return 0, 0
}

// String says what Done counts, as the studio's data page and whet train
// show it: "9.00 MiB of 36.0 MiB read", "45.0k of 100k rows tokenized".
func (p Progress) String() string {
	switch p.Stage {
	case StageReading:
		return fmt.Sprintf("%s of %s read", units.Bytes(p.Bytes), units.Bytes(p.TotalBytes))
	case StageTokenizing:
		return fmt.Sprintf("%s of %s rows tokenized", units.Count(int64(p.Rows)), units.Count(int64(p.TotalRows)))
	}
	return ""
}

// TokenizedEvery is how many examples go between two tokenizing reports: a
// report per example would cost more than it tells.
const TokenizedEvery = 256

// watch is how a caller follows and stops a Prepare: ctx ends it early
// (the read between two buffers, the tokenizing between two examples), fn
// hears its progress. A nil *watch does neither.
type watch struct {
	ctx  context.Context
	done <-chan struct{}
	fn   func(Progress)

	mu sync.Mutex // serializes fn: the tokenizing workers report too
	p  Progress
	// filesRead is the size of the files read to the end; the file being
	// read adds what its reader has passed on.
	filesRead int64
}

func newWatch(ctx context.Context, fn func(Progress)) *watch {
	if ctx == nil {
		ctx = context.Background()
	}
	return &watch{ctx: ctx, done: ctx.Done(), fn: fn}
}

// err is the context's error once it has ended, else nil. It does not
// lock: the tokenizing workers ask it once per example.
func (w *watch) err() error {
	if w == nil || w.done == nil {
		return nil
	}
	select {
	case <-w.done:
		return w.ctx.Err()
	default:
		return nil
	}
}

// report sends p to fn under the lock; set edits the progress first.
func (w *watch) report(set func(p *Progress)) {
	if w == nil || w.fn == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	set(&w.p)
	w.fn(w.p)
}

// reading starts the reading stage over files of total bytes.
func (w *watch) reading(total int64) {
	w.report(func(p *Progress) { *p = Progress{Stage: StageReading, TotalBytes: total} })
}

// fileRead counts a whole file as read (a Parquet file, whose reader
// jumps about, counts only here).
func (w *watch) fileRead(size int64) {
	if w == nil {
		return
	}
	w.report(func(p *Progress) {
		w.filesRead += size
		p.Bytes = min(w.filesRead, p.TotalBytes)
	})
}

// tokenizing starts the tokenizing stage over total examples.
func (w *watch) tokenizing(total int) {
	w.report(func(p *Progress) { p.Stage, p.Rows, p.TotalRows = StageTokenizing, 0, total })
}

// tokenized reports done examples. Workers report out of order, so the
// count only goes up.
func (w *watch) tokenized(done int) {
	w.report(func(p *Progress) { p.Rows = max(p.Rows, done) })
}

// reader passes r through, ending the read with the context's error once
// it has ended and reporting the bytes read of a file read from the start.
func (w *watch) reader(r io.Reader) io.Reader {
	if w == nil {
		return r
	}
	return &watchedReader{r: r, w: w}
}

type watchedReader struct {
	r io.Reader
	w *watch
	n int64 // bytes of this file read so far
}

func (r *watchedReader) Read(b []byte) (int, error) {
	if err := r.w.err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(b)
	if n > 0 {
		r.n += int64(n)
		r.w.report(func(p *Progress) { p.Bytes = min(r.w.filesRead+r.n, p.TotalBytes) })
	}
	return n, err
}
