// Package tui is whet's terminal studio: a wizard that builds a RunConfig,
// a dashboard that watches and steers the run, and a summary at the end.
//
// The root Model routes messages by state (glow and soft-serve's pattern):
// it handles the global keys and the terminal size, and passes the rest to
// the active screen. Engine events reach it through a tea.Cmd that reads
// one event and is re-armed after each, so there is no global program.
package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/colorprofile"

	"whet/engine"
	"whet/tui/components/imageview"
)

// Options wires the studio to its dependencies. Nil dependencies are
// allowed: the page that needs one says it is not available.
type Options struct {
	Engine  Engine
	Catalog Catalog
	Presets Presets // nil: built-in PEFT/TRL-style defaults
	Fit     FitChecker
	Data    DataPreviewer
	GPU     GPUSampler
	Chat    Chatter // nil: the summary offers no chat page
	// Exporter writes a finished run as PEFT, merged or GGUF files; nil:
	// the summary offers no export page.
	Exporter Exporter
	// Hub lists the Hugging Face cache on the model page and downloads
	// models into it; nil: no Hub (catalog models are chosen by name).
	Hub Hub

	// RecentData is the file that lists the dataset files used lately
	// (default: whet/recent-datasets in the user's config folder).
	RecentData string

	ModelsDir string   // scanned for local Hugging Face folders
	DataDirs  []string // scanned for dataset files (default: "." and "testdata")
	RunsDir   string   // default "runs"

	Now      func() time.Time // names runs; injectable for tests
	Context  context.Context  // passed to the engine and the checkers
	GPUEvery time.Duration    // GPU sampling interval (default 1s)
	// RunsEvery is how often the runs page reads the folder again while
	// shown (default 2s).
	RunsEvery time.Duration
	Profile   colorprofile.Profile
	// Images is how the terminal can show images (imageview.Detect): the
	// data page's preview and the chat draw them with it, as the colour
	// profile allows (the zero value is text placeholders).
	Images imageview.Protocol

	// Attach opens the studio on the dashboard of a run that belongs to a
	// worker process (whet attach): its history then live events, steered
	// with the same keys; q leaves the viewer, the run goes on.
	Attach *AttachedRun
	// Runs lists the runs folder on the runs page (r on the model page)
	// and opens runs in a viewer; nil: no runs page.
	Runs RunBrowser
}

// AttachedRun is a run the studio watches but does not own.
type AttachedRun struct {
	Config  engine.RunConfig
	Events  <-chan engine.Event
	Control engine.RunControl
	// Warnings name lines of the run's files that could not be replayed;
	// the dashboard lists them with its log lines.
	Warnings []string
}

// state is the screen the root shows.
type state int

const (
	stateWizard state = iota
	stateDashboard
	stateSummary
	stateChat
	stateExport
	stateRuns
)

// Model is the root of the studio.
type Model struct {
	c     *common
	opts  Options
	state state
	wiz   *wizard
	dash  *dashboard
	sum   *summary
	chat  *chatPage
	exp   *exportPage
	runs  *runsPage
	// startedName is the name of the run last started from the wizard: back
	// in the wizard, a new name replaces it (starting again would resume
	// that run).
	startedName string
	// leaveRun ends the viewer of a run opened from the runs page.
	leaveRun context.CancelFunc
	cfg      *engine.RunConfig
	quit     bool
}

// New builds the studio. It scans the models directory once; a scan error
// is shown on the first page, not returned, so the studio always opens.
func New(o Options) *Model {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	if o.Presets == nil {
		o.Presets = catalogPresets{}
	}
	if o.DataDirs == nil {
		o.DataDirs = []string{".", "testdata"}
	}
	if o.RunsDir == "" {
		o.RunsDir = "runs"
	}
	if o.GPUEvery == 0 {
		o.GPUEvery = time.Second
	}
	if o.RunsEvery == 0 {
		o.RunsEvery = 2 * time.Second
	}
	if o.Profile == 0 {
		o.Profile = colorprofile.TrueColor
	}
	c := &common{styles: newStyles(o.Profile), keys: newKeyMap(), now: o.Now, ctx: o.Context, width: MinWidth, height: MinHeight,
		imageDetected: o.Images, imageMode: imageProtocol(o.Images, o.Profile)}

	cfg, err := o.Presets.Defaults("", "lora")
	if err != nil {
		cfg, _ = catalogPresets{}.Defaults("", "lora")
	}
	cfg.Name = engine.RunNameAt(o.Now())
	cfg.RunsDir = o.RunsDir
	if _, ok := o.Engine.(NameClaimer); ok {
		c.autoName = cfg.Name
	}

	var catalog []ModelInfo
	if o.Catalog != nil {
		catalog = o.Catalog.Models()
	}
	for i, e := range catalog {
		if e.Params == 0 && e.Path != "" {
			catalog[i].Params = folderParams(e.Path)
		}
	}
	local, scanErr := FindLocalModels(o.ModelsDir)
	recent, recentErr := o.RecentData, error(nil)
	if recent == "" {
		recent, recentErr = defaultRecentFile()
	}
	m := &Model{c: c, opts: o, cfg: &cfg}
	mp := newModelPage(c, &cfg, catalog, local, o.ModelsDir, scanErr, o.Hub)
	mp.runsKey = o.Runs != nil
	m.wiz = &wizard{common: c, cfg: &cfg, pages: []page{
		mp,
		newMethodPage(c, &cfg, o.Presets),
		newDataPage(c, &cfg, o.Data, o.DataDirs, &mp.suggested, recent, recentErr),
		newSettingsPage(c, &cfg),
		newFitPage(c, &cfg, o.Fit),
		newReviewPage(c, &cfg, o.Engine),
	}}
	m.wiz.current().enter()
	if o.Runs != nil {
		m.runs = newRunsPage(c, o.Runs, o.RunsDir, o.RunsEvery)
	}
	if a := o.Attach; a != nil {
		*m.cfg = a.Config
		m.dash = newDashboard(c, a.Config, a.Events, a.Control, o.GPU, o.GPUEvery)
		m.dash.viewer = true
		m.state = stateDashboard
	}
	m.resize(c.width, c.height)
	return m
}

// Init implements tea.Model: an attached run's dashboard starts reading
// its events.
func (m *Model) Init() tea.Cmd {
	if m.state == stateDashboard {
		return m.dash.init()
	}
	return nil
}

// Running returns the events and control of a run that has not ended, so
// the caller can stop it with a checkpoint if the program exits early
// (SIGTERM, a closed terminal). Both are nil when no run is live, and
// for an attached run, which its worker keeps training.
func (m *Model) Running() (<-chan engine.Event, engine.RunControl) {
	if m.dash != nil && m.dash.done == nil && !m.dash.viewer {
		return m.dash.events, m.dash.control
	}
	return nil, nil
}

// Outcome describes the run that ended in this session, or one it left
// training in its worker, for lines left on the terminal after the studio
// closes ("" if neither). Its fixed words fit an 80-column terminal after
// the caller's "whet: " with a run name of 30 characters; a command to
// copy (whet train -c with the run file's absolute path, which may be
// longer) stands on a line of its own, indented, so that no words break
// mid-word around it.
func (m *Model) Outcome() string {
	if m.dash != nil && m.dash.viewer && m.dash.done == nil {
		return GoesOn(m.dash.cfg.Name)
	}
	if m.dash == nil || m.dash.done == nil {
		return ""
	}
	d, cfg := m.dash.done, m.dash.cfg
	file := runDir(cfg).Config()
	switch {
	case d.Err != nil && (d.Checkpointed || len(m.dash.checkpoints) > 0):
		return fmt.Sprintf("run %s failed at step %d: %v\n  resume: whet train -c %s", cfg.Name, d.Step, d.Err, file)
	case d.Err != nil:
		return fmt.Sprintf("run %s failed at step %d: %v\n  no checkpoint; start it over: whet train -c %s", cfg.Name, d.Step, d.Err, file)
	case d.Stopped:
		return fmt.Sprintf("run %s stopped at step %d with a checkpoint\n  resume: whet train -c %s", cfg.Name, d.Step, file)
	}
	return fmt.Sprintf("run %s finished after %d steps; its folder:\n  %s", cfg.Name, d.Step, d.FinalDir)
}

// GoesOn is what the studio and whet attach leave on the terminal when
// they close while the run's worker trains on: two lines, each within 80
// columns after "whet: " with a 30-character run name.
func GoesOn(name string) string {
	return fmt.Sprintf("run %s goes on in its worker\n  follow it again: whet attach %s", name, name)
}

// Config returns the config the wizard has built so far.
func (m *Model) Config() engine.RunConfig { return *m.cfg }

func (m *Model) resize(w, h int) {
	m.c.width, m.c.height = w, h
	m.wiz.setSize(w, h)
}

func (m *Model) tooSmall() bool { return m.c.width < MinWidth || m.c.height < MinHeight }

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.resize(msg.Width, msg.Height)
		return m, nil
	case tea.ColorProfileMsg:
		m.c.styles = newStyles(msg.Profile)
		m.c.imageMode = imageProtocol(m.c.imageDetected, msg.Profile)
		return m, nil
	case tea.InterruptMsg:
		return m, m.interrupt()
	case runStartedMsg:
		return m, m.started(msg)
	case runAttachedMsg:
		return m, m.attached(msg)
	case runsListMsg, runsTickMsg:
		if m.runs != nil {
			cmd, _ := m.runs.update(msg)
			return m, cmd
		}
		return m, nil
	case chatOpenedMsg, chatPieceMsg, chatDoneMsg:
		// The chat's models load (and its answers end) in the background:
		// its page takes them whichever screen shows, so that it is not
		// left loading when the user went back to the summary meanwhile.
		// A page closed since (backToRuns) has freed what it loaded
		// (chatPage.open, close), and its messages are dropped.
		if m.chat == nil || chatMsgPage(msg) != m.chat {
			return m, nil
		}
		cmd, _ := m.chat.update(msg)
		return m, cmd
	case exportProgressMsg, exportDoneMsg:
		// An export reports to its page whichever screen is showing.
		if m.exp != nil {
			cmd, _ := m.exp.update(msg)
			return m, cmd
		}
		return m, nil
	case tea.KeyPressMsg:
		if msg.String() == "ctrl+c" {
			return m, m.interrupt()
		}
		if m.tooSmall() {
			if msg.String() == "q" && m.state == stateSummary && m.sum.backToRuns {
				return m, m.backToRuns()
			}
			if msg.String() == "q" && m.state == stateExport && m.exp.nested {
				if !m.exp.running {
					m.state = stateSummary
				}
				return m, nil
			}
			if msg.String() == "q" && m.state != stateDashboard {
				return m, tea.Quit
			}
			if m.state != stateDashboard {
				return m, nil // the user cannot see what a key would do
			}
		}
	}

	switch m.state {
	case stateWizard:
		if k, ok := msg.(tea.KeyPressMsg); ok && k.String() == "q" && !m.wiz.current().typing() {
			return m, tea.Quit
		}
		if k, ok := msg.(tea.KeyPressMsg); ok && k.String() == "r" && m.runs != nil && m.wiz.at == 0 {
			if mp, ok := m.wiz.current().(*modelPage); ok && mp.plain() {
				m.state = stateRuns
				return m, m.runs.show()
			}
		}
		cmd, start := m.wiz.update(msg)
		if start {
			return m, tea.Batch(cmd, m.start())
		}
		return m, cmd
	case stateDashboard:
		if k, ok := msg.(tea.KeyPressMsg); ok && m.tooSmall() && k.String() != "q" && k.String() != "y" && k.String() != "n" {
			return m, nil
		}
		cmd, finished := m.dash.update(msg)
		if m.dash.left {
			return m, m.backToRuns()
		}
		if finished {
			if m.dash.quitAfter {
				return m, tea.Quit
			}
			m.sum = newSummary(m.dash)
			m.sum.chat = m.opts.Chat != nil
			m.sum.export = m.opts.Exporter != nil
			m.sum.backToRuns = m.dash.backToRuns
			m.sum.runsPage = m.runs != nil
			// A stopped run continues from the runs page's c, here too.
			_, canResume := m.opts.Runs.(RunResumer)
			m.sum.resume = canResume && m.runs != nil && m.sum.done.Stopped && m.sum.done.Err == nil
			m.state = stateSummary
		}
		return m, cmd
	case stateSummary:
		if k, ok := msg.(tea.KeyPressMsg); ok {
			switch k.String() {
			case "q", "esc":
				// A summary opened from the runs page is a detail of
				// that list: q and esc go back to it. q quits only a
				// summary at the top (after a run started here).
				if m.sum.backToRuns {
					return m, m.backToRuns()
				}
				if k.String() == "q" {
					return m, tea.Quit
				}
				// The summary of a run started here: esc opens the runs
				// page (the run is listed there; esc again is the wizard,
				// for the next run). Before, esc did nothing and the only
				// way on was to quit and start whet again.
				if m.sum.runsPage {
					return m, m.backToRuns()
				}
			case "t", "enter":
				if m.sum.canChat() {
					if m.chat == nil {
						m.chat = newChatPage(m.c, m.opts.Chat, m.sum.cfg, runDir(m.sum.cfg).Path())
					}
					m.state = stateChat
					return m, m.chat.open()
				}
			case "c":
				if m.sum.resume {
					// Train it on in a new worker, followed as a run opened
					// from the runs page (q goes back to that list).
					name := m.sum.cfg.Name
					show := m.backToRuns()
					return m, tea.Batch(show, m.runs.resume(name))
				}
			case "e":
				if m.sum.canExport() {
					if m.exp == nil {
						m.exp = newExportPage(m.c, m.opts.Exporter, m.sum.cfg, runDir(m.sum.cfg).Path())
					}
					m.exp.nested = m.sum.backToRuns
					m.state = stateExport
				}
			}
		}
	case stateChat:
		cmd, back := m.chat.update(msg)
		if back {
			m.state = stateSummary
		}
		return m, cmd
	case stateExport:
		if k, ok := msg.(tea.KeyPressMsg); ok && k.String() == "q" && !m.exp.running {
			if m.exp.nested { // under the runs page: q goes back, as esc
				m.state = stateSummary
				return m, nil
			}
			return m, tea.Quit
		}
		cmd, back := m.exp.update(msg)
		if back {
			m.state = stateSummary
		}
		return m, cmd
	case stateRuns:
		cmd, act := m.runs.update(msg)
		switch act {
		case runsBack:
			m.runs.hide()
			m.state = stateWizard
			if m.startedName != "" && m.cfg.Name == m.startedName {
				// Back from the run started here: the same settings under
				// a new name, so that enter on the review page trains a
				// new run instead of resuming that one.
				m.cfg.Name = m.freshRunName()
				if _, ok := m.opts.Engine.(NameClaimer); ok {
					m.c.autoName = m.cfg.Name
				}
				m.startedName = ""
				return m, tea.Batch(cmd, m.wiz.current().enter())
			}
		case runsQuit:
			return m, tea.Quit
		}
		return m, cmd
	}
	return m, nil
}

// attached opens the viewer of a run chosen on the runs page.
func (m *Model) attached(msg runAttachedMsg) tea.Cmd {
	if m.runs == nil || m.runs.attaching != msg.name {
		if msg.cancel != nil {
			msg.cancel()
		}
		return nil
	}
	m.runs.attaching = ""
	if msg.err != nil {
		m.runs.openErr = msg.err.Error()
		return nil
	}
	if m.state != stateRuns { // the user went elsewhere meanwhile
		msg.cancel()
		return nil
	}
	m.runs.hide()
	m.leaveRun = msg.cancel
	// The wizard's config stays as the user left it: the viewer has the
	// run's own.
	m.dash = attachedDashboard(m.c, msg.run, m.opts.GPU, m.opts.GPUEvery)
	m.sum = nil
	m.state = stateDashboard
	return m.dash.init()
}

// backToRuns leaves the viewer of a run opened from the runs page (the
// run goes on) and lists the runs again. The chat and export pages were
// of that run: they are closed.
func (m *Model) backToRuns() tea.Cmd {
	if m.leaveRun != nil {
		m.leaveRun()
		m.leaveRun = nil
	}
	m.Close()
	// The list opens on the run just left (the first run of the list
	// before, however far below the run was).
	switch {
	case m.sum != nil:
		m.runs.choose(m.sum.cfg.Name)
	case m.dash != nil:
		m.runs.choose(m.dash.cfg.Name)
	}
	m.chat, m.exp = nil, nil
	m.dash, m.sum = nil, nil
	m.state = stateRuns
	return m.runs.show()
}

// Close frees what the studio still holds (the chat's models). The
// command that ran the program calls it after the program ends.
func (m *Model) Close() {
	if m.leaveRun != nil {
		m.leaveRun()
	}
	if m.chat != nil {
		m.chat.close()
	}
	if m.exp != nil {
		m.exp.close()
	}
}

// interrupt is ctrl+c: leave at once unless a run is live, in which case
// the dashboard asks first (and a second ctrl+c confirms).
func (m *Model) interrupt() tea.Cmd {
	if m.state == stateDashboard && m.dash.done == nil {
		return m.dash.key(tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl})
	}
	return tea.Quit
}

// start launches the run from the reviewed config.
func (m *Model) start() tea.Cmd {
	rv := m.wiz.current().(*reviewPage)
	cfg := *m.cfg
	eng, ctx := m.opts.Engine, m.opts.Context
	if eng == nil {
		rv.startErr = "training engine not available"
		return nil
	}
	rv.starting, rv.startErr = true, ""
	// The name the studio proposed (not one the user typed) takes the next
	// free folder: another session may have started under it this second.
	claimer, claim := eng.(NameClaimer)
	claim = claim && cfg.Name != "" && cfg.Name == m.c.autoName
	return func() tea.Msg {
		if claim {
			name, err := claimer.ClaimRunName(cfg.RunsDir, cfg.Name)
			if err != nil {
				return runStartedMsg{cfg: cfg, err: err}
			}
			cfg.Name = name
		}
		ch, ctl, err := eng.Start(ctx, cfg)
		if err == nil && (ch == nil || ctl == nil) {
			err = errors.New("the engine returned no event channel or control")
		}
		return runStartedMsg{cfg: cfg, events: ch, control: ctl, err: err, claimed: claim}
	}
}

func (m *Model) started(msg runStartedMsg) tea.Cmd {
	rv := m.wiz.pages[len(m.wiz.pages)-1].(*reviewPage)
	rv.starting = false
	if msg.claimed {
		// The folder is this session's now: the wizard shows its name, and
		// a start again (after a refusal) uses it instead of claiming
		// another.
		m.cfg.Name, m.c.autoName = msg.cfg.Name, ""
	}
	if msg.err != nil {
		rv.startErr = msg.err.Error()
		return nil
	}
	m.startedName = msg.cfg.Name
	m.dash = newDashboard(m.c, msg.cfg, msg.events, msg.control, m.opts.GPU, m.opts.GPUEvery)
	// A run in a worker of its own is only watched: quitting leaves it
	// training.
	if d, ok := m.opts.Engine.(Detacher); ok && d.Detached() {
		m.dash.viewer = true
	}
	m.state = stateDashboard
	return m.dash.init()
}

// View implements tea.Model.
func (m *Model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	v.WindowTitle = "whet"
	return v
}

// render draws the current screen at exactly the terminal's size.
func (m *Model) render() string {
	w, h := m.c.width, m.c.height
	if m.tooSmall() {
		extra := ""
		if m.state == stateDashboard {
			extra = "Training goes on meanwhile."
			if m.dash.confirm != confirmNone || m.dash.stopping {
				extra = m.dash.footer() // the question (or state) must stay visible
				if m.dash.stopping {
					extra = m.dash.status()
				}
			}
		}
		if keys := m.tooSmallKeys(); keys != "" {
			extra = strings.TrimPrefix(extra+"\n"+keys, "\n")
		}
		return tooSmallView(m.c.styles, w, h, extra)
	}
	switch m.state {
	case stateDashboard:
		return m.dash.view(w, h)
	case stateSummary:
		return m.sum.view(w, h)
	case stateChat:
		return m.chat.view(w, h)
	case stateExport:
		return m.exp.view(w, h)
	case stateRuns:
		return m.runs.view(w, h)
	}
	// A long error wraps onto up to three lines, taken from the bottom of
	// the page (where pages keep their slack).
	status, statusH := "", 1
	if m.wiz.err != "" {
		status = wrap("✗ "+oneLine(printable(m.wiz.err)), w)
		statusH = min(strings.Count(status, "\n")+1, 3)
		status = m.c.styles.Bad.Render(status)
	}
	body := fitBlock(m.wiz.view(), w, h-1-statusH)
	help := m.c.helpLine(append(m.wiz.current().help(), m.c.keys.Quit)...)
	if m.wiz.current().typing() {
		help = m.c.helpLine(append(m.wiz.current().help(), m.c.keys.ForceQuit)...)
	}
	return body + "\n" + fitBlock(status, w, statusH) + "\n" + fitBlock(help, w, 1)
}

// freshRunName is the default run name for now, with a -2, -3… suffix
// when a run folder of that name exists or it is the run just started.
func (m *Model) freshRunName() string {
	base := engine.RunNameAt(m.c.now())
	name := base
	for i := 2; ; i++ {
		c := *m.cfg
		c.Name = name
		if name != m.startedName && !existingRun(c) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// tooSmallKeys names the keys that still work below the minimum size (see
// Update: q, ctrl+c, and the dashboard's y/n), since the page's own help
// line is not drawn: the window said only "please enlarge it", and q did
// things nothing on the screen mentioned. "" while the dashboard shows its
// question or its stopping state instead.
func (m *Model) tooSmallKeys() string {
	quit := "ctrl+c quit"
	switch {
	case m.state == stateDashboard:
		if m.dash.confirm != confirmNone || m.dash.stopping {
			return ""
		}
		for _, b := range m.dash.help() {
			if h := b.Help(); strings.HasPrefix(h.Key, "q") {
				return "q " + h.Desc + " • " + quit
			}
		}
		return quit
	case m.state == stateSummary && m.sum.backToRuns:
		return "q back to the runs • " + quit
	case m.state == stateExport && m.exp.nested && m.exp.running:
		return quit
	case m.state == stateExport && m.exp.nested:
		return "q back to the summary • " + quit
	}
	return "q quit • " + quit
}

// tooSmallView asks for a bigger window, centred, in whatever room there is.
func tooSmallView(st Styles, w, h int, extra string) string {
	msg := fmt.Sprintf("whet needs a terminal of at least %d×%d.\nThis one is %d×%d: please enlarge it.", MinWidth, MinHeight, w, h)
	if extra != "" {
		msg += "\n" + extra
	}
	msg = wrap(msg, max(w, 1))
	return lipgloss.Place(max(w, 1), max(h, 1), lipgloss.Center, lipgloss.Center, st.Warn.Render(msg))
}

// existingRun reports whether a run folder of that name already holds a
// run (the engine resumes it rather than starting afresh).
func existingRun(cfg engine.RunConfig) bool {
	d := runDir(cfg)
	if d == "" {
		return false
	}
	_, err := os.Stat(d.Config())
	return err == nil
}
