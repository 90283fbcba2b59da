package tui

import (
	"fmt"
	"math"
	"strings"

	"charm.land/bubbles/v2/key"

	"whet/engine"
	"whet/engine/units"
	"whet/engine/worker"
	"whet/tui/components/lossplot"
)

// summary is the screen after a run ends: how it went and where it is.
type summary struct {
	*common
	cfg        engine.RunConfig
	done       engine.DoneEvent
	train      []lossplot.Point
	eval       []lossplot.Point
	last       *engine.StepEvent
	bestEval   float64
	bestEvalAt int
	lastCkpt   *engine.CheckpointEvent
	chat       bool // a chat page can be opened
	export     bool // an export page can be opened
	// backToRuns: opened from the runs page, to which q and esc go back.
	backToRuns bool
	// runsPage: the studio has a runs page, which esc opens from the
	// summary of a run started here (q quits).
	runsPage bool
	// resume: c trains the stopped run on from its checkpoint (the
	// runs page's RunResumer).
	resume bool
}

// checkpointed says whether the run folder holds a checkpoint that whet
// train -c resumes from: the engine says so, or one was seen (an older
// worker's DoneEvent does not carry it).
func (s *summary) checkpointed() bool { return s.done.Checkpointed || s.lastCkpt != nil }

// canChat: the run ended cleanly or was stopped (both leave a result).
func (s *summary) canChat() bool { return s.chat && s.done.Err == nil }

// canExport: as for the chat, only a run that left a result.
func (s *summary) canExport() bool { return s.export && s.done.Err == nil }

func newSummary(d *dashboard) *summary {
	s := &summary{common: d.common, cfg: d.cfg, done: *d.done, train: d.train, eval: d.eval, last: d.last,
		bestEval: d.bestEval, bestEvalAt: d.bestEvalAt}
	if n := len(d.checkpoints); n > 0 {
		c := d.checkpoints[n-1]
		s.lastCkpt = &c
	}
	return s
}

func (s *summary) help() []key.Binding {
	var keys []key.Binding
	if s.canChat() {
		keys = append(keys, bind("t", "chat: base vs tuned"))
	}
	if s.canExport() {
		keys = append(keys, bind("e", "export"))
	}
	if s.resume {
		keys = append(keys, bind("c", "continue"))
	}
	if s.backToRuns {
		return append(keys, bind("q/esc", "runs"))
	}
	if s.runsPage {
		keys = append(keys, bind("esc", "runs"))
	}
	return append(keys, bind("q", "quit"))
}

func (s *summary) view(w, h int) string {
	st := s.styles
	var state string
	switch {
	case s.done.Err != nil:
		state = st.Bad.Render("✗ failed")
	case s.done.Stopped:
		state = st.Warn.Render("■ stopped, checkpoint saved")
	default:
		state = st.Good.Render("✓ finished")
	}
	head := spread(st.Title.Render("whet")+" "+st.Bold.Render(s.cfg.Name)+st.Muted.Render(fmt.Sprintf(" · %s on %s", s.cfg.Method, DisplayPath(s.cfg.Model))), state, w)
	var facts []string
	steps := fmt.Sprintf("%d steps", s.done.Step)
	switch {
	case s.last != nil && engine.PastTotal(s.done.Step, s.last.TotalSteps):
		steps = fmt.Sprintf("stopped at step %d, past the run's %d total steps", s.done.Step, s.last.TotalSteps)
	case s.last != nil && s.last.TotalSteps > 0:
		steps = fmt.Sprintf("%d of %d steps", s.done.Step, s.last.TotalSteps)
	}
	facts = append(facts, steps)
	if s.last != nil {
		// GRPO's mean reward, the other methods' loss (engine.HeadlineMetric).
		name := engine.HeadlineMetric(s.cfg.Method)
		if v, ok := s.last.Headline(s.cfg.Method); ok {
			facts = append(facts, "last "+worker.MetricText(name, v))
		}
	}
	if !math.IsInf(s.bestEval, 1) {
		facts = append(facts, fmt.Sprintf("best eval %.4f at step %d", s.bestEval, s.bestEvalAt))
	}
	if s.done.FromStep > 0 {
		// Earlier sessions' time is not known here.
		facts = append(facts, fmt.Sprintf("time %s this session (from step %d)", units.Duration(s.done.Elapsed), s.done.FromStep))
	} else {
		facts = append(facts, "time "+units.Duration(s.done.Elapsed))
	}
	var lines []string
	lines = append(lines, head, "")
	// Wrapped: a resumed run's facts can be longer than 80 columns.
	lines = append(lines, strings.Split(wrap(strings.Join(facts, " · "), w), "\n")...)
	if s.done.Err != nil {
		lines = append(lines, st.Bad.Render(wrap("error: "+printable(s.done.Err.Error()), w)))
	}
	if s.done.FinalDir != "" {
		lines = append(lines, st.Label.Render("output      ")+DisplayPath(s.done.FinalDir))
	}
	if s.lastCkpt != nil {
		lines = append(lines, st.Label.Render("checkpoint  ")+fmt.Sprintf("%s (step %d)", DisplayPath(s.lastCkpt.Path), s.lastCkpt.Step))
	}
	// Paths inside the working folder are shown relative to it, so that
	// the commands fit the line (a run opened from the runs page or whet
	// attach has absolute ones, which 80 columns cut).
	yaml := DisplayPath(runDir(s.cfg).Config())
	// The same file again resumes the finished run, which has nothing
	// left to do: training again takes a new name.
	again := "train again: whet train -c " + yaml + " --name NEW"
	switch {
	case s.resume:
		again = "c continues it (whet train -c " + yaml + ")"
	case s.done.Stopped || (s.done.Err != nil && s.checkpointed()):
		again = "resume it: whet train -c " + yaml
	case s.done.Err != nil:
		// whet train -c trains a run folder without a checkpoint from
		// step 0 again: "resume" would promise what it does not do.
		again = "no checkpoint; start it over: whet train -c " + yaml
	}
	lines = append(lines, st.Muted.Render(again))
	if s.done.Err == nil && !s.chat {
		lines = append(lines, st.Muted.Render("compare base and tuned: whet chat --run "+DisplayPath(runDir(s.cfg).Path())+" --compare"))
	}
	lines = append(lines, "")
	chartH := h - len(lines) - 2
	if chartH >= 5 {
		c := lossplot.Chart{Width: w - 2, Height: chartH, AxisStyle: st.Muted, Series: []lossplot.Series{
			{Name: "train", Points: s.train, Style: st.TrainLine},
			{Name: "eval", Points: s.eval, Marker: '◆', Style: st.EvalLine},
		}}
		lines = append(lines, c.View())
	}
	body := fitBlock(strings.Join(lines, "\n"), w, h-1)
	return body + "\n" + s.helpLine(s.help()...)
}
