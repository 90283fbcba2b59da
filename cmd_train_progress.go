package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/charmbracelet/x/ansi"

	"whet/datasets"
)

// dataProgressAfter is how long whet train's data read goes on before it
// shows its progress: a small file is read in well under it and prints
// nothing, a 100,000-row one takes 5 to 15 s and was silent all along.
const dataProgressAfter = time.Second

// dataProgressNow is whet train's clock for dataProgressAfter (tests set
// one that makes every read long).
var dataProgressNow = time.Now

// dataProgress draws whet train's data read as one line on a terminal,
// redrawn in place ("reading data.jsonl: 45% (45.0k of 100k rows
// tokenized)") once the read has taken dataProgressAfter, and erased when
// the read ends, so the run's own lines follow as before. On anything
// but a terminal whet train prints nothing of it (a log would fill with
// carriage returns). datasets.PrepareContext calls report one call at a
// time and never after it returns, so report needs no lock and end,
// called after it, none either.
type dataProgress struct {
	w     io.Writer
	name  string // the data file, as the line names it
	width int    // the terminal's columns, 0 if unknown
	start time.Time
	now   func() time.Time
	shown string // the line on screen, "" when none
}

// newDataProgress is the printer of the read of dataPath on w, or nil
// when w is not a terminal.
func newDataProgress(w io.Writer, dataPath string, now func() time.Time) *dataProgress {
	if !isTerminal(w) {
		return nil
	}
	return &dataProgress{w: w, name: filepath.Base(dataPath), width: termWidth(w), start: now(), now: now}
}

// report is the datasets.Progress func.
func (p *dataProgress) report(pr datasets.Progress) {
	done, total := pr.Done()
	if total <= 0 || p.now().Sub(p.start) < dataProgressAfter {
		return
	}
	line := fmt.Sprintf("reading %s: %d%% (%s)", p.name, done*100/total, pr)
	if line == p.shown {
		return // reports come every 64 KiB and every 256 rows: draw changes only
	}
	width := p.width
	if width <= 0 {
		width = 80
	}
	// One column short of the width: the cursor stays on the row, so
	// "\r\x1b[K" erases the whole line.
	fmt.Fprint(p.w, "\r\x1b[K"+ansi.Truncate(line, width-1, "…"))
	p.shown = line
}

// end erases the line, if one was drawn.
func (p *dataProgress) end() {
	if p.shown != "" {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = ""
	}
}
