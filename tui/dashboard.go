package tui

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"whet/engine"
	"whet/engine/units"
	"whet/tui/components/lossplot"
)

// maxPlotPoints bounds the kept loss history; beyond it neighbouring
// points are averaged in pairs, which keeps the curve's shape.
const maxPlotPoints = 4000

// confirmKind is the question the dashboard is asking, if any.
type confirmKind int

const (
	confirmNone confirmKind = iota
	confirmStop             // s: stop the run, stay in the studio
	confirmQuit             // q / ctrl+c: stop the run, then exit
)

// dashboard watches a running trainer and steers it.
type dashboard struct {
	*common
	cfg      engine.RunConfig
	events   <-chan engine.Event
	control  engine.RunControl
	gpu      GPUSampler
	gpuEvery time.Duration

	train, eval []lossplot.Point
	last        *engine.StepEvent
	bestEval    float64
	bestEvalAt  int
	samples     []engine.SampleEvent
	checkpoints []engine.CheckpointEvent
	logs        []string
	// kernels is the latest progress line of the backend's kernel compile
	// (engine.KernelProgressPrefix; a cold kernel cache), shown in place
	// of the bare wait until the first step.
	kernels  string
	gpuStats *GPUStats
	gpuErr   string
	// gpuAll is every GPU of the machine (a sampler that reads them all),
	// for a run over several.
	gpuAll []GPUStats
	// recent are the last steps of the current trainer process (the
	// worker's, after a resume: the steps and elapsed time of the process
	// that wrote them), for the recent step rate behind the ETA and the
	// job's steps/s.
	recent []stepMark
	// noSamples is the engine's notice that this run makes no samples
	// though train.sample_every is set (engine.NoSamplesNote: a Llama 3.2
	// Vision run, a run without prompts), shown where the samples would be.
	noSamples string

	paused, stopping, quitAfter bool
	ckptAsked                   bool
	// viewer is set when the run belongs to a worker process (whet
	// attach, a detached studio run): q then leaves the viewer and the
	// run goes on. backToRuns: the viewer was opened from the runs page,
	// and q goes back there (left is set) rather than quitting.
	viewer, backToRuns, left bool
	confirm                  confirmKind
	done                     *engine.DoneEvent
}

func newDashboard(c *common, cfg engine.RunConfig, events <-chan engine.Event, ctl engine.RunControl, gpu GPUSampler, every time.Duration) *dashboard {
	return &dashboard{common: c, cfg: cfg, events: events, control: ctl, gpu: gpu, gpuEvery: every, bestEval: math.Inf(1)}
}

// init starts reading events and sampling the GPU.
func (d *dashboard) init() tea.Cmd {
	return tea.Batch(waitEvent(d.events), sampleGPU(d.gpu, 0, d.events))
}

// update handles events and keys. finished is true once the DoneEvent has
// arrived.
func (d *dashboard) update(msg tea.Msg) (cmd tea.Cmd, finished bool) {
	switch msg := msg.(type) {
	case engineEventMsg:
		if msg.src != d.events {
			return nil, false
		}
		if done, ok := msg.ev.(engine.DoneEvent); ok {
			d.done = &done
			return nil, true
		}
		d.apply(msg.ev)
		return waitEvent(d.events), false
	case engineEventsMsg:
		if msg.src != d.events {
			return nil, false
		}
		for _, ev := range msg.evs {
			if done, ok := ev.(engine.DoneEvent); ok {
				d.done = &done
				return nil, true
			}
			d.apply(ev)
		}
		if msg.closed {
			return d.update(engineClosedMsg{src: msg.src})
		}
		return waitEvent(d.events), false
	case engineClosedMsg:
		if msg.src != d.events {
			return nil, false
		}
		d.done = &engine.DoneEvent{Err: fmt.Errorf("the engine closed its event stream without reporting the end of the run")}
		if d.last != nil {
			d.done.Step = d.last.Step
		}
		return nil, true
	case gpuMsg:
		if msg.src != d.events {
			return nil, false // a left dashboard's sampling ends here
		}
		if msg.err != nil {
			d.gpuErr = msg.err.Error()
			return nil, false // no GPU: stop sampling
		}
		s := msg.stats
		d.gpuStats, d.gpuErr, d.gpuAll = &s, "", msg.all
		return sampleGPU(d.gpu, d.gpuEvery, d.events), false
	case tea.KeyPressMsg:
		return d.key(msg), false
	}
	return nil, false
}

func (d *dashboard) apply(ev engine.Event) {
	switch ev := ev.(type) {
	case engine.StepEvent:
		d.last = &ev
		d.recent = markStep(d.recent, ev)
		d.train = appendBounded(d.train, lossplot.Point{X: float64(ev.Step), Y: plotValue(d.cfg.Method, ev)})
	case engine.EvalEvent:
		d.eval = appendBounded(d.eval, lossplot.Point{X: float64(ev.Step), Y: ev.Loss})
		if ev.Loss < d.bestEval {
			d.bestEval, d.bestEvalAt = ev.Loss, ev.Step
		}
	case engine.SampleEvent:
		d.samples = append(d.samples, ev)
		if len(d.samples) > 20 {
			d.samples = d.samples[1:]
		}
	case engine.CheckpointEvent:
		d.checkpoints = append(d.checkpoints, ev)
		d.ckptAsked = false
	case engine.PauseEvent:
		// Another viewer of the run (a second SSH session, whet attach)
		// pressed p: this one shows it too.
		if !d.stopping {
			d.paused = ev.Paused
		}
	case engine.LogEvent:
		if strings.HasPrefix(ev.Text, engine.NoSamplesNote) {
			d.noSamples = ev.Text
		}
		if strings.HasPrefix(ev.Text, engine.KernelProgressPrefix) {
			d.kernels = ev.Text
		}
		d.logs = append(d.logs, ev.Text)
		if len(d.logs) > 20 {
			d.logs = d.logs[1:]
		}
	}
}

func appendBounded(ps []lossplot.Point, p lossplot.Point) []lossplot.Point {
	ps = append(ps, p)
	if len(ps) <= maxPlotPoints {
		return ps
	}
	half := make([]lossplot.Point, 0, len(ps)/2+1)
	for i := 0; i+1 < len(ps); i += 2 {
		half = append(half, lossplot.Point{X: (ps[i].X + ps[i+1].X) / 2, Y: (ps[i].Y + ps[i+1].Y) / 2})
	}
	if len(ps)%2 == 1 {
		half = append(half, ps[len(ps)-1])
	}
	return half
}

// key handles the dashboard's keys. Quitting never abandons a run: it
// asks, then stops the run (which writes a checkpoint) and exits only once
// the engine reports the run has ended.
func (d *dashboard) key(k tea.KeyPressMsg) tea.Cmd {
	s := k.String()
	if d.confirm != confirmNone {
		switch {
		case s == "y" || s == "Y" || s == "enter" || s == "ctrl+c":
			if d.confirm == confirmQuit {
				d.quitAfter = true
			}
			d.confirm = confirmNone
			d.requestStop()
		case s == "n" || s == "N" || s == "esc":
			d.confirm = confirmNone
		}
		return nil
	}
	switch s {
	case "p", "space":
		if d.stopping {
			return nil
		}
		if d.paused {
			d.control.Resume()
		} else {
			d.control.Pause()
		}
		d.paused = !d.paused
	case "c":
		if !d.stopping {
			d.control.Checkpoint()
			d.ckptAsked = true
		}
	case "s":
		if !d.stopping {
			d.confirm = confirmStop
		}
	case "esc":
		if d.viewer && d.backToRuns {
			d.left = true // as q: back to the runs page; the worker trains on
		}
	case "q", "ctrl+c":
		if d.viewer && d.backToRuns && s == "q" {
			d.left = true // back to the runs page; the worker trains on
			return nil
		}
		if d.viewer {
			return tea.Quit // the worker trains on
		}
		if d.stopping {
			d.quitAfter = true // already stopping: leave when it ends
		} else {
			d.confirm = confirmQuit
		}
	}
	return nil
}

func (d *dashboard) requestStop() {
	if d.stopping {
		return
	}
	d.stopping = true
	d.paused = false
	d.control.Stop()
}

// status is the run's state in a word or two.
func (d *dashboard) status() string {
	switch {
	case d.stopping && d.quitAfter:
		return "stopping: checkpoint, then exit"
	case d.stopping:
		return "stopping: writing a checkpoint"
	case d.paused:
		return "paused"
	case d.last == nil:
		return "starting"
	}
	return "training"
}

func (d *dashboard) help() []key.Binding {
	quit := d.keys.Quit
	if d.viewer {
		quit = bind("q", "quit viewer (run goes on)")
		if d.backToRuns {
			quit = bind("q/esc", "runs (run goes on)")
		}
	}
	if d.stopping {
		if d.viewer {
			// The worker stops the run whether or not anyone watches:
			// "run goes on" would say the opposite.
			if d.backToRuns {
				return []key.Binding{bind("q/esc", "runs (the stop goes on)")}
			}
			return []key.Binding{bind("q", "quit viewer (the stop goes on)")}
		}
		return []key.Binding{bind("q", "exit when stopped")}
	}
	pause := d.keys.Pause
	if d.paused {
		pause = bind("p", "resume")
	}
	return []key.Binding{pause, d.keys.Checkpoint, bind("s", "stop (checkpoint first)"), quit}
}

// footer is the confirm question or the help line.
func (d *dashboard) footer() string {
	switch d.confirm {
	case confirmStop:
		return d.styles.Warn.Render("Stop the run? A checkpoint is written first.  y stop · n keep training")
	case confirmQuit:
		return d.styles.Warn.Render("Stop the run and quit? A checkpoint is written first.  y stop and quit · n stay")
	}
	return d.helpLine(d.help()...)
}

// eta is the time the steps left take at the recent step rate. The
// elapsed time of a step event counts from its trainer process's start,
// so elapsed/step is no rate: a resumed run's process starts at step 800
// with nothing elapsed (its ETA came out far too short, then grew over
// the run), and the first steps carry the setup.
func (d *dashboard) eta() string {
	l := d.last
	rate, ok := d.stepRate()
	if l == nil || l.TotalSteps == 0 || !ok {
		return "–"
	}
	left := float64(max(l.TotalSteps-l.Step, 0))
	return units.Duration(time.Duration(left / rate * float64(time.Second)))
}

// stepMark is a step and its trainer process's elapsed time then.
type stepMark struct {
	step    int
	elapsed time.Duration
}

// recentSteps is how many of the last steps the step rate is taken over.
const recentSteps = 32

// markStep adds ev to the recent steps. A step that does not follow the
// last one (its step or elapsed time went back: a resumed run's new
// process, in the history an attach replays) starts them afresh.
func markStep(recent []stepMark, ev engine.StepEvent) []stepMark {
	if n := len(recent); n > 0 && (ev.Step <= recent[n-1].step || ev.Elapsed < recent[n-1].elapsed) {
		recent = recent[:0]
	}
	recent = append(recent, stepMark{ev.Step, ev.Elapsed})
	if len(recent) > recentSteps {
		recent = append(recent[:0], recent[len(recent)-recentSteps:]...)
	}
	return recent
}

// header is two lines: what is training and how far it is.
func (d *dashboard) header(w int) string {
	st := d.styles
	left := st.Title.Render("whet") + " " + st.Bold.Render(d.cfg.Name) + st.Muted.Render(fmt.Sprintf(" · %s on %s", d.cfg.Method, DisplayPath(d.cfg.Model)))
	stat := d.status()
	var right string
	switch {
	case d.stopping:
		right = st.Warn.Render(stat)
	case d.paused:
		right = st.Warn.Render("‖ " + stat)
	default:
		right = st.Good.Render("● " + stat)
	}
	line1 := spread(left, right, w)

	var prog string
	if l := d.last; l != nil {
		info := fmt.Sprintf("step %d/%d · epoch %.2f · elapsed %s · ETA %s ", l.Step, l.TotalSteps, l.Epoch, units.Duration(l.Elapsed), d.eta())
		barW := w - lipgloss.Width(info) - 6
		frac := 0.0
		if l.TotalSteps > 0 {
			frac = float64(l.Step) / float64(l.TotalSteps)
		}
		prog = info + gauge(st, frac, max(barW, 5)) + fmt.Sprintf(" %3.0f%%", frac*100)
	} else if d.kernels != "" {
		// The first step waits for the kernels: say how far they are.
		prog = st.Muted.Render(trimTo(oneLine(printable(d.kernels)), w))
	} else {
		prog = st.Muted.Render("waiting for the first step…")
	}
	return line1 + "\n" + prog
}

// spread puts left and right on one line of width w, cutting the left
// part if both do not fit (the right part is the status, which matters).
func spread(left, right string, w int) string {
	gap := w - lipgloss.Width(left) - lipgloss.Width(right)
	if gap < 1 {
		left = ansi.Truncate(left, max(w-lipgloss.Width(right)-1, 0), "…")
		gap = w - lipgloss.Width(left) - lipgloss.Width(right)
	}
	return left + strings.Repeat(" ", gap) + right
}

// parallel reports whether the run is spread over several GPUs or ranks.
func (d *dashboard) parallel() bool {
	p := d.cfg.Parallel
	return p.Ranks > 1 || p.GPUs != "" || p.Nodes.NNodes > 1
}

// stepRate is the whole job's optimizer steps per second over the recent
// steps (every rank makes each step together); false before two steps of
// one trainer process.
func (d *dashboard) stepRate() (float64, bool) {
	if len(d.recent) < 2 {
		return 0, false
	}
	first, last := d.recent[0], d.recent[len(d.recent)-1]
	dt := (last.elapsed - first.elapsed).Seconds()
	if dt <= 0 {
		return 0, false
	}
	return float64(last.step-first.step) / dt, true
}

// runGPUs are the samples of the GPUs the run trains on, when the sampler
// reads every GPU and the run names several (parallel.gpus).
func (d *dashboard) runGPUs() []GPUStats {
	if len(d.gpuAll) < 2 || d.cfg.Parallel.GPUs == "" {
		return nil
	}
	ids, err := engine.ParseGPUs(d.cfg.Parallel.GPUs, len(d.gpuAll))
	if err != nil {
		return nil
	}
	out := make([]GPUStats, len(ids))
	for i, id := range ids {
		out[i] = d.gpuAll[id]
	}
	return out
}

// gpuRows is one compact line per GPU of the run: index, utilisation
// gauge, memory and power.
func (d *dashboard) gpuRows() []string {
	st := d.styles
	gs := d.runGPUs()
	ids, _ := engine.ParseGPUs(d.cfg.Parallel.GPUs, len(d.gpuAll))
	lines := []string{st.Subtle.Render(trimTo(fmt.Sprintf("%d× %s", len(gs), gs[0].Name), statsWidth-2))}
	for i, g := range gs {
		lines = append(lines, st.Label.Render(fmt.Sprintf("%-2d", ids[i]))+gauge(st, g.Util/100, 6)+
			fmt.Sprintf(" %3.0f%% %s %3.0fW", g.Util, units.BytesOf(int64(g.MemUsed), int64(g.MemTotal)), g.PowerW))
	}
	return lines
}

// gauge is a filled bar of width w.
func gauge(st Styles, frac float64, w int) string {
	frac = math.Max(0, math.Min(1, frac))
	n := int(math.Round(frac * float64(w)))
	return st.Accent.Render(strings.Repeat("█", n)) + st.Muted.Render(strings.Repeat("░", w-n))
}

const statsWidth = 31

// stats is the right-hand panel: optimiser numbers and the GPU.
func (d *dashboard) stats(h int) string {
	st := d.styles
	row := func(label, value string) string {
		return st.Label.Render(fmt.Sprintf("%-10s", label)) + value
	}
	var lines []string
	if l := d.last; l != nil {
		loss := st.Value.Render(fmt.Sprintf("%.4f", l.Loss))
		lines = append(lines, row("loss", loss))
		if len(d.eval) > 0 {
			lines = append(lines, row("eval loss", fmt.Sprintf("%.4f", d.eval[len(d.eval)-1].Y)+st.Muted.Render(fmt.Sprintf(" best %.3f", d.bestEval))))
		}
		lines = append(lines,
			row("lr", fmt.Sprintf("%.2e", l.LR)),
			row("grad norm", fmt.Sprintf("%.3f", l.GradNorm)),
			row("tokens/s", units.Count(int64(l.TokensPerSec))))
		if rate, ok := d.stepRate(); ok && d.parallel() {
			lines = append(lines, row("steps/s", fmt.Sprintf("%.3g", rate)))
		}
		for _, r := range metricRows(l.Metrics) {
			lines = append(lines, row(r[0], r[1]))
		}
	} else {
		lines = append(lines, st.Muted.Render("no step yet"))
	}
	lines = append(lines, "")
	switch g := d.gpuStats; {
	case len(d.runGPUs()) > 1:
		lines = append(lines, d.gpuRows()...)
	case g != nil:
		lines = append(lines, st.Subtle.Render(trimTo(g.Name, statsWidth-2)))
		gw := statsWidth - 23
		lines = append(lines, row("util", gauge(st, g.Util/100, gw)+fmt.Sprintf(" %3.0f%%", g.Util)))
		memFrac := 0.0
		if g.MemTotal > 0 {
			memFrac = float64(g.MemUsed) / float64(g.MemTotal)
		}
		lines = append(lines, row("memory", gauge(st, memFrac, gw)+" "+units.BytesOf(int64(g.MemUsed), int64(g.MemTotal))))
		pw := fmt.Sprintf("%.0f W", g.PowerW)
		if g.PowerCapW > 0 {
			pw = fmt.Sprintf("%.0f/%.0f W", g.PowerW, g.PowerCapW)
		}
		lines = append(lines, row("temp", fmt.Sprintf("%.0f°C", g.TempC)), row("power", pw))
	case d.gpuErr != "":
		lines = append(lines, st.Muted.Render(wrap("GPU: "+d.gpuErr, statsWidth-2)))
	case d.gpu == nil:
		lines = append(lines, st.Muted.Render("GPU: not available"))
	default:
		lines = append(lines, st.Muted.Render("GPU: reading…"))
	}
	// Taller terminals also list the checkpoints on disk, newest first.
	if kept := d.keptCheckpoints(); len(kept) > 0 {
		if room := h - len(lines) - 2; room >= 2 {
			lines = append(lines, "", st.Subtle.Render("checkpoints"))
			for _, step := range kept {
				if room <= 1 {
					break
				}
				lines = append(lines, st.Muted.Render(fmt.Sprintf("  step %d", step)))
				room--
			}
		}
	}
	return fitBlock(strings.Join(lines, "\n"), statsWidth-2, h)
}

func trimTo(s string, w int) string {
	if lipgloss.Width(s) <= w {
		return s
	}
	// By cells, stepping over escape sequences: cutting a styled string
	// by runes counted its colour codes as text (the export page's
	// "whet export · NAME · lora on /…" at 80 columns).
	return ansi.Truncate(s, max(w, 1), "…")
}

// chart draws the loss plot in a box of w×h cells.
func (d *dashboard) chart(w, h int) string {
	st := d.styles
	title := st.BoxTitle.Render("loss") + st.Muted.Render("  ") + st.TrainLine.Render("⣿ train") + "  " + st.EvalLine.Render("◆ eval")
	if d.cfg.Method == "grpo" {
		title = st.BoxTitle.Render("reward") + st.Muted.Render("  ") + st.TrainLine.Render("⣿ mean reward of the sampled answers")
	}
	c := lossplot.Chart{Width: w - 2, Height: h - 3, AxisStyle: st.Muted, Series: []lossplot.Series{
		{Name: "train", Points: d.train, Style: st.TrainLine},
		{Name: "eval", Points: d.eval, Marker: '◆', Style: st.EvalLine},
	}}
	return st.Box.Width(w).Height(h).Render(title + "\n" + c.View())
}

// bottom shows the latest sample, the checkpoints and the last log line.
func (d *dashboard) bottom(w, h int) string {
	st := d.styles
	var lines []string
	if n := len(d.samples); n > 0 {
		// The newest sample first, then older ones while they fit.
		room := h - 2
		if len(d.logs) == 0 {
			room++
		}
		for i := n - 1; i >= 0 && room >= 2; i-- {
			s := d.samples[i]
			head := fmt.Sprintf("sample · step %d", s.Step) + sampleReward(s)
			lines = append(lines, st.Accent.Render(head)+st.Muted.Render(" › "+trimTo(oneLine(printable(s.Prompt)), w-6-lipgloss.Width(head))))
			room--
			body := strings.Split(wrap(strings.TrimSpace(printable(s.Text)), w-2), "\n")
			if len(body) > room {
				body = append(body[:max(room-1, 0)], "…")
			}
			for _, l := range body {
				lines = append(lines, "  "+l)
			}
			room -= len(body)
		}
	} else if d.noSamples != "" {
		for i, l := range strings.Split(wrap(d.noSamples, w), "\n") {
			if i == 2 {
				break
			}
			lines = append(lines, st.Muted.Render(trimTo(l, w)))
		}
	} else if d.cfg.Train.SampleEvery == 0 && d.cfg.Method != "" && d.cfg.Method != "grpo" { // "": run.yaml unread
		// Nothing will come: the wait message would promise samples.
		lines = append(lines, st.Muted.Render(trimTo("no samples: train.sample_every is 0 (sample prompts in the settings add them)", w)))
	} else {
		lines = append(lines, st.Muted.Render("samples appear here as the trainer generates them"))
	}
	ck := st.Muted.Render("checkpoints: none yet")
	if n := len(d.checkpoints); n > 0 {
		c := d.checkpoints[n-1]
		ck = st.Label.Render(fmt.Sprintf("checkpoint #%d ", n)) + fmt.Sprintf("step %d → %s", c.Step, DisplayPath(c.Path))
	}
	if d.ckptAsked {
		ck += st.Warn.Render(" · checkpoint requested")
	}
	lines = append(lines, ck)
	if n := len(d.logs); n > 0 {
		lines = append(lines, st.Muted.Render(trimTo(oneLine(printable(d.logs[n-1])), w)))
	}
	return fitBlock(strings.Join(lines, "\n"), w, h)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// view lays out the dashboard to exactly w×h.
func (d *dashboard) view(w, h int) string {
	bottomH := 6
	if h >= 34 {
		bottomH = 10
	}
	bodyH := h - 2 - bottomH - 1
	chartW := w - statsWidth - 1
	stats := d.styles.Box.Width(statsWidth).Height(bodyH).Render(d.stats(bodyH - 2))
	body := lipgloss.JoinHorizontal(lipgloss.Top, d.chart(chartW, bodyH), " ", stats)
	out := d.header(w) + "\n" + body + "\n" + d.bottom(w, bottomH) + "\n" + d.footer()
	return fitBlock(out, w, h)
}

// keptCheckpoints are the steps of the checkpoints the run still has, newest
// first: the trainer keeps the newest train.keep_checkpoints of them by
// step and removes the others, which the list must not offer (it showed
// steps 100, 80, 60, 40 with only 80 and 100 on disk). A step written again
// (a resume redoing it) is listed once.
func (d *dashboard) keptCheckpoints() []int {
	var steps []int
	for _, c := range d.checkpoints {
		if !slices.Contains(steps, c.Step) {
			steps = append(steps, c.Step)
		}
	}
	slices.Sort(steps)
	slices.Reverse(steps)
	if keep := d.cfg.Train.KeepCheckpoints; keep > 0 && len(steps) > keep {
		steps = steps[:keep]
	}
	return steps
}
