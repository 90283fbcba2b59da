package tui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/engine/units"
	"whet/tui/components/stackbar"
)

// fitPage shows the memory plan of the config against the device's free
// memory, the verdict, and advice the user applies with one key.
type fitPage struct {
	*common
	cfg     *engine.RunConfig
	checker FitChecker
	seq     int
	loading bool
	report  *FitReport
	err     string
	applied string
	w, h    int
}

func newFitPage(c *common, cfg *engine.RunConfig, fc FitChecker) *fitPage {
	return &fitPage{common: c, cfg: cfg, checker: fc}
}

func (p *fitPage) title() string { return "fit check" }

func (p *fitPage) enter() tea.Cmd {
	p.applied = ""
	return p.check()
}

// check plans the current config; older answers are dropped by seq.
func (p *fitPage) check() tea.Cmd {
	p.seq++
	p.report, p.err = nil, ""
	if p.checker == nil {
		p.loading = false
		return nil
	}
	p.loading = true
	seq, cfg, fc, ctx := p.seq, *p.cfg, p.checker, p.ctx
	return func() tea.Msg {
		r, err := fc.Check(ctx, cfg)
		return fitMsg{seq: seq, report: r, err: err}
	}
}

func (p *fitPage) leave() error {
	switch {
	case p.loading:
		return fmt.Errorf("the fit check is still running")
	case p.report != nil && !p.report.Fits:
		if len(p.report.Advice) > 0 {
			return fmt.Errorf("this run does not fit: apply advice (press its number) or go back and change it")
		}
		return fmt.Errorf("this run does not fit: go back and choose a smaller model, method or batch")
	}
	return nil // fits, or no checker: the user goes on knowingly
}

func (p *fitPage) update(msg tea.Msg) (tea.Cmd, nav) {
	switch msg := msg.(type) {
	case fitMsg:
		if msg.seq != p.seq {
			return nil, stay
		}
		p.loading = false
		if msg.err != nil {
			p.err = msg.err.Error()
			return nil, stay
		}
		r := msg.report
		p.report = &r
	case tea.KeyPressMsg:
		s := msg.String()
		switch s {
		case "enter":
			return nil, next
		case "esc":
			return nil, back
		case "r":
			return p.check(), stay
		case "m":
			if r := p.report; r != nil && !p.loading && r.MaxSeq > 0 && r.MaxSeq != p.cfg.Data.MaxLength {
				p.cfg.Data.MaxLength = r.MaxSeq
				cmd := p.check()
				p.applied = fmt.Sprintf("max length %d tokens, the longest that fits", r.MaxSeq)
				if r.cappedByModel() {
					p.applied = fmt.Sprintf("max length %d tokens, the positions the model was trained on", r.MaxSeq)
				}
				return cmd, stay
			}
		}
		if len(s) == 1 && s[0] >= '1' && s[0] <= '9' && p.report != nil && !p.loading {
			i := int(s[0] - '1')
			if i < len(p.report.Advice) && p.report.Advice[i].Apply != nil {
				a := p.report.Advice[i]
				a.Apply(p.cfg)
				cmd := p.check()
				p.applied = a.Text
				return cmd, stay
			}
		}
	}
	return nil, stay
}

func (p *fitPage) setSize(w, h int) { p.w, p.h = w, h }

func (p *fitPage) typing() bool { return false }

func (p *fitPage) help() []key.Binding {
	b := []key.Binding{bind("enter", "review")}
	if p.report != nil && len(p.report.Advice) > 0 {
		b = append(b, bind(fmt.Sprintf("1-%d", len(p.report.Advice)), "apply advice"))
	}
	if p.report != nil && p.report.MaxSeq > 0 && p.report.MaxSeq != p.cfg.Data.MaxLength {
		b = append(b, bind("m", "longest context"))
	}
	return append(b, bind("r", "re-check"), p.keys.Back)
}

func (p *fitPage) view() string {
	st := p.styles
	var b strings.Builder
	b.WriteString(st.Bold.Render("Will it fit?") + "  " + st.Muted.Render(fmt.Sprintf("%s · %s · micro-batch %d × %d tokens",
		p.cfg.Model, p.cfg.Method, p.cfg.Train.MicroBatch, p.cfg.Data.MaxLength)) + "\n\n")
	switch {
	case p.checker == nil:
		b.WriteString(st.Warn.Render("The memory plan is not available in this build; the run starts unchecked.") + "\n")
		b.WriteString(st.Muted.Render("enter to review the run anyway"))
		return b.String()
	case p.err != "":
		b.WriteString(st.Bad.Render(wrap("✗ fit check failed: "+printable(p.err), p.w)) + "\n")
		b.WriteString(st.Muted.Render("r to try again, esc to change the run, enter to go on unchecked"))
		return b.String()
	case p.loading || p.report == nil:
		b.WriteString(st.Muted.Render("planning memory…"))
		return b.String()
	}
	r := p.report
	if r.Unified != "" {
		// One pool for CPU and GPU: what is free is what the system has
		// available now, which any other program changes.
		b.WriteString(wrap(fmt.Sprintf("%s available of %s on %s · unified memory", units.Bytes(int64(r.Free)), units.Bytes(int64(r.Total)),
			st.Value.Render(r.Device)), p.w) + "\n")
		b.WriteString(st.Muted.Render(wrap("CPU and GPU share this memory ("+printable(r.Unified)+"): the plan is checked "+
			"against what the system has available now; close other programs to free more.", p.w)) + "\n")
	} else {
		b.WriteString(wrap(fmt.Sprintf("%s free of %s on %s", units.Bytes(int64(r.Free)), units.Bytes(int64(r.Total)),
			st.Value.Render(r.Device)), p.w) + "\n")
	}
	parts := make([]stackbar.Part, len(r.Parts))
	for i, pp := range r.Parts {
		parts[i] = stackbar.Part{Name: pp.Name, Bytes: pp.Bytes}
	}
	bar := stackbar.Bar{Width: max(p.w-2, 20), Parts: parts, Capacity: r.Free, CapacityLabel: "free",
		Styles: st.Parts, OverStyle: st.Over, MutedStyle: st.Muted}
	b.WriteString(bar.View() + "\n\n")
	if r.Fits {
		b.WriteString(st.Good.Render("✓ "+r.Verdict) + "\n")
	} else {
		b.WriteString(st.Bad.Render("✗ "+r.Verdict) + "\n")
	}
	for _, w := range r.Warnings {
		b.WriteString(st.Warn.Render(wrap("! "+printable(w), p.w)) + "\n")
	}
	switch ml := p.cfg.Data.MaxLength; {
	case r.MaxSeq <= 0 || r.MaxSeq == ml:
	case r.cappedByModel() && ml > r.MaxSeq:
		// Memory allows more, but the model knows only so many positions.
		b.WriteString(st.Warn.Render(wrap(fmt.Sprintf("! max length %d is past the %d positions the model was trained on (max_position_embeddings)", ml, r.MaxSeq), p.w)) + "\n")
		b.WriteString(wrap(fmt.Sprintf("%s sets max length to %s", st.Accent.Render("m"), st.Value.Render(fmt.Sprint(r.MaxSeq))), p.w) + "\n")
	case r.cappedByModel():
		b.WriteString(wrap(fmt.Sprintf("Longest context: %s tokens per sequence, the positions the model was trained on (memory allows more) — %s sets max length to it",
			st.Value.Render(fmt.Sprint(r.MaxSeq)), st.Accent.Render("m")), p.w) + "\n")
	default:
		b.WriteString(wrap(fmt.Sprintf("Longest context that fits: %s tokens per sequence — %s sets max length to it",
			st.Value.Render(fmt.Sprint(r.MaxSeq)), st.Accent.Render("m")), p.w) + "\n")
	}
	if p.applied != "" {
		b.WriteString(st.Muted.Render("applied: "+p.applied) + "\n")
	}
	if len(r.Advice) > 0 {
		b.WriteString("\n" + st.Subtle.Render("Advice — press the number to apply it:") + "\n")
		for i, a := range r.Advice {
			line := fmt.Sprintf(" %s  %s", st.Accent.Render(fmt.Sprint(i+1)), a.Text)
			if a.Saves > 0 {
				line += st.Muted.Render(" — saves " + units.Bytes(int64(a.Saves)))
			}
			b.WriteString(line + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}
