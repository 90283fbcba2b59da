package tui

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"whet/engine"
	"whet/engine/units"
)

// runsPage lists the runs folder: which runs a worker trains now, which
// ended and how, which crashed (with the worker's last words and the
// checkpoint to resume from). Enter opens one in a viewer: its history,
// then, for a live run, its live events, with the dashboard's keys.
type runsPage struct {
	*common
	src      RunBrowser
	dir      string
	runs     []RunInfo
	warnings []string
	err      string // listing the folder failed
	// openErr is why the run last opened or continued could not be; it
	// stays until the next key, not until the next listing (which came
	// within seconds and wiped it).
	openErr string
	loaded  bool
	at      int
	seq     int
	// pick is the run the cursor goes to at the next listing, unless a
	// key moved it first: the one whose summary or viewer was just left,
	// when the list did not hold it yet.
	pick string
	// attaching is the run being opened (enter pressed, no answer yet).
	attaching string
	// every is how often the shown list is read again; tickGen drops the
	// ticks of a page that was left since.
	every   time.Duration
	tickGen int
}

// Messages of the runs page.
type (
	// runsListMsg is a listing of the runs folder; seq drops answers to
	// superseded refreshes.
	runsListMsg struct {
		seq      int
		runs     []RunInfo
		warnings []string
		err      error
	}
	// runsTickMsg reads the list again while the page is shown.
	runsTickMsg struct{ gen int }
	// runAttachedMsg answers opening run name in a viewer; cancel leaves it.
	runAttachedMsg struct {
		name   string
		run    AttachedRun
		cancel context.CancelFunc
		err    error
	}
)

func newRunsPage(c *common, src RunBrowser, dir string, every time.Duration) *runsPage {
	return &runsPage{common: c, src: src, dir: dir, every: every}
}

// show is entering the page: the list is read now and then every
// p.every while the page stays shown (runs start, end and crash meanwhile).
func (p *runsPage) show() tea.Cmd {
	p.tickGen++
	return tea.Batch(p.refresh(), p.tick())
}

// choose puts the cursor on the named run, now if the list holds it, else
// at the next listing.
func (p *runsPage) choose(name string) {
	p.pick = name
	for i, r := range p.runs {
		if r.Name == name {
			p.at, p.pick = i, ""
			return
		}
	}
}

// hide is leaving the page: its pending tick is dropped.
func (p *runsPage) hide() { p.tickGen++ }

func (p *runsPage) tick() tea.Cmd {
	gen := p.tickGen
	return tea.Tick(p.every, func(time.Time) tea.Msg { return runsTickMsg{gen: gen} })
}

// refresh lists the folder again (in a command: it reads files and probes
// locks).
func (p *runsPage) refresh() tea.Cmd {
	p.seq++
	seq, src := p.seq, p.src
	return func() tea.Msg {
		runs, warnings, err := src.List()
		return runsListMsg{seq: seq, runs: runs, warnings: warnings, err: err}
	}
}

// runsAction is what the root should do after a key on the runs page.
type runsAction int

const (
	runsStay runsAction = iota
	runsBack            // back to the wizard
	runsQuit
)

func (p *runsPage) update(msg tea.Msg) (tea.Cmd, runsAction) {
	switch msg := msg.(type) {
	case runsTickMsg:
		if msg.gen != p.tickGen {
			return nil, runsStay
		}
		return tea.Batch(p.refresh(), p.tick()), runsStay
	case runsListMsg:
		if msg.seq != p.seq {
			return nil, runsStay
		}
		p.loaded, p.runs, p.warnings, p.err = true, msg.runs, msg.warnings, ""
		if msg.err != nil {
			p.err = msg.err.Error()
		}
		p.at = min(p.at, max(len(p.runs)-1, 0))
		if p.pick != "" {
			p.choose(p.pick)
		}
		return nil, runsStay
	case tea.KeyPressMsg:
		p.openErr, p.pick = "", ""
		switch msg.String() {
		case "up", "k":
			p.at = max(p.at-1, 0)
		case "down", "j":
			p.at = min(p.at+1, max(len(p.runs)-1, 0))
		case "home":
			p.at = 0
		case "end":
			p.at = max(len(p.runs)-1, 0)
		case "r":
			return p.refresh(), runsStay
		case "esc":
			return nil, runsBack
		case "q":
			return nil, runsQuit
		case "enter":
			if p.attaching != "" || p.at >= len(p.runs) {
				return nil, runsStay
			}
			return p.open(p.runs[p.at].Name), runsStay
		case "c":
			if r, ok := p.resumable(); ok {
				return p.resume(r.Name), runsStay
			}
		}
	}
	return nil, runsStay
}

// open attaches to run name in a command.
func (p *runsPage) open(name string) tea.Cmd {
	p.attaching, p.openErr = name, ""
	src, parent := p.src, p.ctx
	return func() tea.Msg {
		ctx, cancel := context.WithCancel(parent)
		run, err := src.Attach(ctx, name)
		if err != nil {
			cancel()
			return runAttachedMsg{name: name, err: err}
		}
		return runAttachedMsg{name: name, run: run, cancel: cancel}
	}
}

// resumable is the selected run when c can train it again: it stopped or
// crashed, or its status.json could not be read but it has a checkpoint
// (the resume starts from the newest whole one; without one c would start
// over a run that may have finished), no worker
// trains it, and the browser can start one.
func (p *runsPage) resumable() (RunInfo, bool) {
	if _, ok := p.src.(RunResumer); !ok || p.attaching != "" || p.at >= len(p.runs) {
		return RunInfo{}, false
	}
	r := p.runs[p.at]
	return r, !r.Live && (r.State == "stopped" || r.State == "crashed" || r.State == "unreadable" && r.ResumeFrom != "")
}

// resume trains run name again in a worker and follows it, in a command
// (the answer is a runAttachedMsg, as opening a run).
func (p *runsPage) resume(name string) tea.Cmd {
	p.attaching, p.openErr = name, ""
	rs, parent := p.src.(RunResumer), p.ctx
	return func() tea.Msg {
		ctx, cancel := context.WithCancel(parent)
		run, err := rs.Resume(ctx, name)
		if err != nil {
			cancel()
			return runAttachedMsg{name: name, err: err}
		}
		return runAttachedMsg{name: name, run: run, cancel: cancel}
	}
}

func (p *runsPage) help() []key.Binding {
	keys := []key.Binding{p.keys.Up}
	if len(p.runs) > 0 {
		label := "open"
		if r := p.runs[min(p.at, len(p.runs)-1)]; r.Live {
			label = "follow"
		}
		keys = append(keys, bind("enter", label))
	}
	if _, ok := p.resumable(); ok {
		keys = append(keys, bind("c", "continue"))
	}
	return append(keys, bind("r", "refresh"), bind("esc", "wizard"), p.keys.Quit)
}

// stateLabel is a run's state in a word with its marker (colour is never
// the only cue).
func (p *runsPage) stateLabel(r RunInfo) string {
	st := p.styles
	switch {
	case r.Live && r.State == "paused":
		return st.Warn.Render("‖ paused")
	case r.Live && (r.State == "running" || r.State == "unknown" || r.State == "unreadable" || r.State == ""):
		if r.Silent > 0 {
			return st.Warn.Render("? silent")
		}
		return st.Good.Render("● training")
	case r.Live:
		return st.Good.Render("● ending")
	case r.State == "running" && r.Silent > 0:
		return st.Warn.Render("? silent")
	case r.State == "crashed":
		return st.Bad.Render("✗ crashed")
	case r.State == "failed":
		return st.Bad.Render("✗ failed")
	case r.State == "done":
		return st.Good.Render("✓ finished")
	case r.State == "stopped":
		return st.Warn.Render("■ stopped")
	}
	return st.Muted.Render("? " + orDefault(r.State, "unknown"))
}

// detail says, for the selected run, what state it is in and what enter
// (or whet train) does with it.
func (p *runsPage) detail(r RunInfo, w int) []string {
	st := p.styles
	var lines []string
	add := func(style lipgloss.Style, s string) {
		for _, l := range strings.Split(wrap(printable(s), w), "\n") {
			lines = append(lines, style.Render(l))
		}
	}
	_, canResume := p.resumable()
	history := engine.HeadlineMetric(r.Method) + " history" // what the viewer's chart draws
	resume := func() {
		switch {
		case r.ResumeFrom != "" && canResume:
			add(st.Label, fmt.Sprintf("c continues training from its checkpoint at step %d (%s), as whet train -c %s does", r.ResumeStep, r.ResumeFrom, r.Config))
		case r.ResumeFrom != "":
			add(st.Label, fmt.Sprintf("resume: whet train -c %s (from its checkpoint at step %d, %s)", r.Config, r.ResumeStep, r.ResumeFrom))
		case canResume:
			add(st.Label, fmt.Sprintf("no checkpoint: c starts it over, as whet train -c %s does", r.Config))
		default:
			add(st.Label, fmt.Sprintf("no checkpoint: whet train -c %s starts it over", r.Config))
		}
	}
	switch {
	case r.Live:
		who := "a worker"
		if r.PID > 0 {
			who = fmt.Sprintf("worker pid %d", r.PID)
		}
		add(st.Good, fmt.Sprintf("%s trains it now. enter follows it: its history, then live, with the dashboard's keys; q leaves it training.", who))
		if r.Silent > 0 {
			add(st.Warn, fmt.Sprintf("no step written for %s: it may be hung.", units.Duration(r.Silent)))
		}
	case r.State == "crashed":
		add(st.Bad, "crashed: its status says it was training, but no process holds its lock.")
		if r.LastWordsFile != "" {
			add(st.Muted, "last words ("+r.LastWordsFile+"): "+r.LastWords)
		} else {
			add(st.Muted, "no worker log: it was trained in a process that left none.")
		}
		resume()
	case r.State == "running" && r.Silent > 0:
		add(st.Warn, fmt.Sprintf("says running but has written no step for %s, and no lock tells whether a process trains it.", units.Duration(r.Silent)))
	case r.State == "done":
		add(st.Muted, "finished. enter shows its "+history+" and summary (chat, export).")
	case r.State == "stopped":
		add(st.Muted, "stopped with a checkpoint. enter shows its "+history+".")
		resume()
	case r.State == "failed" && r.NoStatus:
		add(st.Bad, "failed: it ended before writing its first status.json (a full disk or a write error).")
		if r.LastWordsFile != "" {
			add(st.Muted, "last words ("+r.LastWordsFile+"): "+r.LastWords)
		} else {
			add(st.Muted, "no worker log: its error went to the terminal that trained it.")
		}
		resume()
	case r.State == "failed":
		add(st.Muted, "failed. enter shows its "+history+" and the error.")
		if r.LastWordsFile != "" {
			add(st.Muted, "last words ("+r.LastWordsFile+"): "+r.LastWords)
		} else {
			add(st.Muted, "no worker log: its error went to the terminal that trained it.")
		}
		resume()
	case r.State == "unreadable":
		add(st.Warn, fmt.Sprintf("%s: how it ended is not known. enter shows its history.", orDefault(r.StatusErr, "its status.json could not be read")))
		resume()
	default:
		add(st.Muted, "enter shows what its folder holds.")
	}
	return lines
}

func (p *runsPage) view(w, h int) string {
	st := p.styles
	var out []string
	const lead = "whet  Runs in "
	dir := dirLabel(p.dir, w-len(lead))
	title := st.Title.Render("whet") + "  " + st.Bold.Render("Runs") + st.Muted.Render(" in "+dir)
	out = append(out, title, "")
	var status []string
	if p.openErr != "" {
		status = append(status, st.Bad.Render(wrap("✗ "+oneLine(printable(p.openErr)), w)))
	} else if p.err != "" {
		status = append(status, st.Bad.Render(wrap("✗ "+oneLine(printable(p.err)), w)))
	} else if p.attaching != "" {
		status = append(status, st.Muted.Render("opening "+p.attaching+"…"))
	} else if n := len(p.warnings); n > 0 {
		status = append(status, st.Warn.Render(trimTo(oneLine(printable(p.warnings[n-1])), w)))
	}
	if len(status) > 0 {
		// An error wraps over lines, each of which needs its row (the
		// rows were counted by message, which cut an error to its first).
		status = strings.Split(strings.Join(status, "\n"), "\n")
		status = status[:min(len(status), max(h/4, 1))]
	}
	switch {
	case !p.loaded && p.err == "":
		out = append(out, st.Muted.Render("reading "+dir+"…"))
	case len(p.runs) == 0 && p.err == "":
		out = append(out, st.Muted.Render(wrap("No runs in "+dirLabel(p.dir, w)+" yet. Start one from the wizard (esc), or with whet train -c run.yaml --detach.", w)))
	case len(p.runs) > 0:
		detail := p.detail(p.runs[min(p.at, len(p.runs)-1)], w-2)
		room := h - len(out) - 1 /* header */ - 1 /* blank */ - len(detail) - len(status) - 1 /* help */
		out = append(out, p.table(w, max(room, 1))...)
		out = append(out, "")
		for _, l := range detail {
			out = append(out, "  "+l)
		}
	}
	body := fitBlock(strings.Join(out, "\n"), w, h-1-len(status))
	if len(status) > 0 {
		body += "\n" + fitBlock(strings.Join(status, "\n"), w, len(status))
	}
	return body + "\n" + fitBlock(p.helpLine(p.help()...), w, 1)
}

// dirLabel names the runs folder as the other pages name paths
// (DisplayPath), written so that it reads as a folder: a bare relative
// name gets "./" (the header said "Runs in runs"). A path wider than w
// keeps its end, the folder's own name, behind "…".
func dirLabel(dir string, w int) string {
	d := DisplayPath(filepath.Clean(dir))
	if !filepath.IsAbs(d) && !strings.HasPrefix(d, "~") && d != "." && d != ".." &&
		!strings.HasPrefix(d, "."+string(filepath.Separator)) && !strings.HasPrefix(d, ".."+string(filepath.Separator)) {
		d = "." + string(filepath.Separator) + d
	}
	if w < 2 || lipgloss.Width(d) <= w {
		return d
	}
	r := []rune(d)
	for len(r) > 0 && lipgloss.Width("…"+string(r)) > w {
		r = r[1:]
	}
	return "…" + string(r)
}

// table is the header and up to room rows, scrolled to keep the cursor in
// view.
func (p *runsPage) table(w, room int) []string {
	st := p.styles
	nameW := len("NAME")
	for _, r := range p.runs {
		nameW = max(nameW, lipgloss.Width(r.Name))
	}
	nameW = min(nameW, max(w/3, 12))
	// STEPS and LAST are as wide as their widest cell, up to "10000/10000"
	// and "reward -0.25" / "loss 12.3456" (RunInfo.LastText): the model's
	// name gets the rest, which fixed widths took at 80 columns.
	const stateW, methodW = 12, 6
	stepsW, lastW := len("STEPS"), len("LAST")
	for _, r := range p.runs {
		stepsW, lastW = max(stepsW, lipgloss.Width(r.Steps())), max(lastW, lipgloss.Width(r.LastText()))
	}
	stepsW, lastW = min(stepsW, 11), min(lastW, 12)
	modelW := max(w-2-nameW-stateW-stepsW-lastW-methodW-5, 4)
	cell := func(s string, n int) string {
		s = trimTo(s, n)
		return s + strings.Repeat(" ", max(n-lipgloss.Width(s), 0))
	}
	head := "  " + cell("NAME", nameW) + " " + cell("STATE", stateW) + " " + cell("STEPS", stepsW) + " " + cell("LAST", lastW) + " " + cell("METHOD", methodW) + " " + "MODEL"
	lines := []string{st.Muted.Render(head)}
	rows := room - 1
	first := 0
	if p.at >= rows {
		first = p.at - rows + 1
	}
	for i := first; i < len(p.runs) && i < first+rows; i++ {
		r := p.runs[i]
		name := cell(printable(r.Name), nameW)
		mark := "  "
		if i == p.at {
			mark, name = st.Selected.Render("› "), st.Selected.Render(name)
		}
		state := p.stateLabel(r)
		state += strings.Repeat(" ", max(stateW-lipgloss.Width(state), 0))
		lines = append(lines, mark+name+" "+state+" "+cell(r.Steps(), stepsW)+" "+cell(r.LastText(), lastW)+" "+cell(orDefault(r.Method, "–"), methodW)+" "+modelCell(r.Model, modelW))
	}
	return lines
}

// modelCell is a run's model in w cells: a folder relative to the working
// one when inside it, and a long name keeps its end, which names the
// model. Before, run files' absolute model paths were cut from the right
// at 80 columns, and every local run read "/tmp/ws-clone/pr…".
func modelCell(model string, w int) string {
	if model == "" {
		return "–"
	}
	m := printable(DisplayPath(model))
	if w < 2 || lipgloss.Width(m) <= w {
		return trimTo(m, w)
	}
	r := []rune(m)
	for len(r) > 0 && lipgloss.Width("…"+string(r)) > w {
		r = r[1:]
	}
	return "…" + string(r)
}

// attachedDashboard is the viewer of a run opened from the runs page.
func attachedDashboard(c *common, a AttachedRun, gpu GPUSampler, every time.Duration) *dashboard {
	d := newDashboard(c, a.Config, a.Events, a.Control, gpu, every)
	d.viewer, d.backToRuns = true, true
	for _, w := range a.Warnings {
		d.apply(engine.LogEvent{Text: w})
	}
	return d
}
