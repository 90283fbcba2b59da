package tui

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"go.yaml.in/yaml/v3"

	"whet/engine"
)

// marshalConfig is the YAML the wizard saves as run.yaml; `whet train -c`
// reads the same file.
func marshalConfig(cfg engine.RunConfig) (string, error) {
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("writing the run config as YAML: %w", err)
	}
	return string(out), nil
}

// runDir is where a run's files go, as the engine lays them out ("" for a
// name that cannot be a folder, which the settings page refuses).
func runDir(cfg engine.RunConfig) engine.RunDir {
	d, _ := engine.RunDirOf(cfg)
	return d
}

// reviewPage shows the YAML that will be saved and starts the run.
type reviewPage struct {
	*common
	cfg      *engine.RunConfig
	text     string
	err      string
	offset   int
	starting bool
	startErr string
	w, h     int
	resolver ModelResolver // nil: the model is shown as given
}

func newReviewPage(c *common, cfg *engine.RunConfig, eng Engine) *reviewPage {
	p := &reviewPage{common: c, cfg: cfg}
	p.resolver, _ = eng.(ModelResolver)
	return p
}

// shownModel is the model as run.yaml will hold it, in DisplayPath form:
// the written file records the folder a catalog name or a relative path
// resolves to, absolute, because a resume reads relative paths against the
// run folder and knows no catalog names. The name as given when there is
// no resolver or it fails (starting the run reports why).
func (p *reviewPage) shownModel() string {
	m := p.cfg.Model
	if p.resolver == nil || m == "" {
		return m
	}
	written, err := p.resolver.RunModel(m)
	if err != nil {
		return m
	}
	if _, err := os.Stat(written); err == nil {
		if abs, err := filepath.Abs(written); err == nil {
			return DisplayPath(abs)
		}
	}
	return written // a Hub id
}

func (p *reviewPage) title() string { return "review" }

func (p *reviewPage) enter() tea.Cmd {
	p.offset, p.startErr, p.starting = 0, "", false
	p.cfg.ResumeAnyway = false // only ever for the start that asked for it
	p.text, p.err = "", ""
	shown := *p.cfg
	shown.Model = p.shownModel()
	t, err := marshalConfig(shown)
	if err != nil {
		p.err = err.Error()
	}
	p.text = t
	return nil
}

func (p *reviewPage) leave() error {
	if p.err != "" {
		return fmt.Errorf("%s", p.err)
	}
	if p.starting {
		return fmt.Errorf("the run is starting")
	}
	return nil
}

func (p *reviewPage) lines() []string { return strings.Split(strings.TrimRight(p.text, "\n"), "\n") }

func (p *reviewPage) boxHeight() int { return max(p.h-4, 3) }

func (p *reviewPage) update(msg tea.Msg) (tea.Cmd, nav) {
	km, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil, stay
	}
	maxOff := max(len(p.lines())-p.boxHeight(), 0)
	switch km.String() {
	case "up", "k":
		p.offset = max(p.offset-1, 0)
	case "down", "j":
		p.offset = min(p.offset+1, maxOff)
	case "pgup":
		p.offset = max(p.offset-p.boxHeight(), 0)
	case "pgdown", "space":
		p.offset = min(p.offset+p.boxHeight(), maxOff)
	case "enter":
		return nil, next
	case "a":
		if p.canResumeAnyway() {
			// The run folder's checkpoints were made with other
			// settings: go on from them anyway, as whet train
			// --resume-anyway does.
			p.cfg.ResumeAnyway = true
			return nil, next
		}
	case "esc":
		return nil, back
	}
	return nil, stay
}

// canResumeAnyway reports whether the start was refused because the run's
// checkpoints were made with other data, model or settings, which a = resume
// anyway overrides.
func (p *reviewPage) canResumeAnyway() bool {
	return !p.starting && strings.Contains(p.startErr, "--resume-anyway")
}

func (p *reviewPage) setSize(w, h int) { p.w, p.h = w, h }

func (p *reviewPage) typing() bool { return false }

func (p *reviewPage) help() []key.Binding {
	if p.canResumeAnyway() {
		return []key.Binding{bind("a", "resume anyway"), bind("↑/↓", "scroll"), p.keys.Back}
	}
	return []key.Binding{bind("enter", "start"), bind("↑/↓", "scroll"), p.keys.Back}
}

func (p *reviewPage) view() string {
	st := p.styles
	var b strings.Builder
	file := runDir(*p.cfg).Config()
	// The file is written when the run starts, not before.
	b.WriteString(st.Bold.Render("Review") + "  " + st.Muted.Render(trimTo("written to "+file+" when training starts", max(p.w-8, 10))) + "\n")
	switch {
	case existingRun(*p.cfg) && p.cfg.Name == p.autoName:
		// The proposed name, not one the user typed: it never resumes
		// another run (one started in the same second by another session).
		b.WriteString(st.Muted.Render("a run named "+p.cfg.Name+" exists: this one takes the next free name") + "\n")
	case existingRun(*p.cfg):
		b.WriteString(st.Warn.Render("! a run named "+p.cfg.Name+" exists: starting resumes it from its last checkpoint") + "\n")
	}
	if p.err != "" {
		b.WriteString(st.Bad.Render(p.err))
		return b.String()
	}
	// The line under the YAML, which may take several (a refused start
	// says why over a few): the YAML gives up the room it needs.
	var foot string
	switch {
	case p.starting:
		foot = st.Muted.Render("starting…")
	case p.startErr != "":
		foot = st.Bad.Render(wrap("✗ could not start: "+printable(p.startErr), p.w))
		if p.canResumeAnyway() {
			foot += "\n" + st.Accent.Render("a resumes from those checkpoints anyway; esc goes back to change the run")
		}
	default:
		foot = st.Good.Render("enter starts training") + st.Muted.Render(" · whet train -c with this file reruns it headless")
	}
	lines := p.lines()
	h := max(p.boxHeight()-strings.Count(foot, "\n"), 3)
	end := min(p.offset+h, len(lines))
	shown := make([]string, 0, h)
	for _, l := range lines[p.offset:end] {
		shown = append(shown, yamlLine(st, l))
	}
	more := ""
	if end < len(lines) {
		more = fmt.Sprintf(" ↓ %d more lines", len(lines)-end)
	}
	b.WriteString(fitBlock(strings.Join(shown, "\n"), p.w-2, h) + "\n")
	b.WriteString(st.Muted.Render(fmt.Sprintf("lines %d–%d of %d%s", p.offset+1, end, len(lines), more)) + "\n")
	b.WriteString(foot)
	return b.String()
}

// yamlLine colours a key: value line (keys muted, values plain).
func yamlLine(st Styles, l string) string {
	i := strings.Index(l, ":")
	if i < 0 || strings.HasPrefix(strings.TrimSpace(l), "- ") {
		return l
	}
	return st.Accent.Render(l[:i+1]) + l[i+1:]
}
