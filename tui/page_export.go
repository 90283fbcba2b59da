package tui

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"whet/engine"
)

// exportFormat is one choice of the export page.
type exportFormat struct {
	id, name, about string
	quants          []string // the first is the default; none for peft
}

// exportFormats are the formats engine/export writes, with the precisions
// each accepts (its Options.Check is the authority; these match it).
var exportFormats = []exportFormat{
	{id: "peft", name: "PEFT adapter", about: "the adapter alone, for transformers/PEFT and vLLM"},
	{id: "merged", name: "Merged safetensors", about: "base and adapter merged into one Hugging Face model folder", quants: []string{"bf16", "f16"}},
	{id: "gguf", name: "GGUF", about: "one model.gguf and an Ollama Modelfile: llama.cpp, Ollama", quants: []string{"q8_0", "q4_k_m", "f16", "bf16"}},
}

// quantAbout says what a precision costs, shown under the choice.
var quantAbout = map[string]string{
	"bf16":   "16-bit brain float: float32's range with fewer digits",
	"f16":    "16-bit float, the widest tool support",
	"q8_0":   "8-bit blocks, close to f16 at about half its size",
	"q4_k_m": "4-bit k-quant, about a quarter of f16's size, slightly less accurate",
}

// Export messages. id ties them to one export, so that the messages of an
// export the user cancelled are dropped.
type (
	exportProgressMsg struct {
		id          int
		done, total int
		what        string
	}
	// exportDoneMsg ends an export. It repeats the last progress report,
	// which the page may have dropped or not yet read.
	exportDoneMsg struct {
		id          int
		done, total int
		files       []string
		err         error
	}
)

// exportPage writes the finished run as a PEFT adapter, merged
// safetensors or GGUF, with a progress bar fed by the exporter.
type exportPage struct {
	*common
	exporter Exporter
	cfg      engine.RunConfig
	dir      string // the run directory
	// nested: opened from the summary of a run opened from the runs page,
	// so q goes back (to that summary) instead of quitting the studio.
	nested bool

	format int            // index into exportFormats
	quant  map[string]int // chosen precision per format

	running     bool
	id          int // of the latest export; messages of older ones are dropped
	cancel      context.CancelFunc
	progress    chan exportProgressMsg
	result      chan exportDoneMsg
	finished    chan struct{} // closed when the exporter has returned
	done, total int
	what        string

	// The outcome of the last export: what was written where, or why not.
	outcome   string
	exporting string // "GGUF q8_0": the export on screen
	outDir    string
	files     []string
	err       string
	cancelled bool
}

func newExportPage(c *common, e Exporter, cfg engine.RunConfig, dir string) *exportPage {
	p := &exportPage{common: c, exporter: e, cfg: cfg, dir: dir, quant: map[string]int{}}
	p.format = slices.IndexFunc(exportFormats, func(f exportFormat) bool { return f.id == "gguf" })
	return p
}

func (p *exportPage) current() exportFormat { return exportFormats[p.format] }

// chosenQuant is the selected precision of the selected format ("" for
// peft).
func (p *exportPage) chosenQuant() string {
	f := p.current()
	if len(f.quants) == 0 {
		return ""
	}
	return f.quants[p.quant[f.id]]
}

// outputDir is where the export goes: the folder whet export uses by
// default (engine.ExportDir).
func (p *exportPage) outputDir() string {
	return engine.ExportDir(p.dir, p.current().id, p.chosenQuant())
}

// listenExport waits for the next progress report or the end of the
// export; the page re-arms it after each progress message.
func listenExport(progress <-chan exportProgressMsg, result <-chan exportDoneMsg) tea.Cmd {
	return func() tea.Msg {
		select {
		case m := <-progress:
			return m
		case m := <-result:
			return m
		}
	}
}

// start runs the export in the background.
func (p *exportPage) start() tea.Cmd {
	if p.running {
		return nil
	}
	p.id++
	id, format, quant, out := p.id, p.current().id, p.chosenQuant(), p.outputDir()
	ctx, cancel := context.WithCancel(p.ctx)
	p.running, p.cancel = true, cancel
	p.done, p.total, p.what = 0, 0, "starting…"
	p.outcome, p.outDir, p.files, p.err, p.cancelled = "", out, nil, "", false
	p.exporting = exportLabel(format, quant)
	// Progress reports are dropped when the page is behind: the next one
	// supersedes them. The result has a slot of its own, so the exporter
	// never blocks on a page that has stopped listening.
	progress := make(chan exportProgressMsg, 16)
	result := make(chan exportDoneMsg, 1)
	p.progress, p.result = progress, result
	e, dir := p.exporter, p.dir
	finished := make(chan struct{})
	p.finished = finished
	go func() {
		defer close(finished)
		// An exporter may report from goroutines of its own.
		var mu sync.Mutex
		var last exportProgressMsg
		files, err := e.Export(ctx, dir, format, quant, out, func(done, total int, what string) {
			mu.Lock()
			defer mu.Unlock()
			last = exportProgressMsg{id: id, done: done, total: total, what: what}
			select {
			case progress <- last:
			default:
			}
		})
		mu.Lock()
		end := exportDoneMsg{id: id, done: last.done, total: last.total, files: files, err: err}
		mu.Unlock()
		result <- end
	}()
	return listenExport(progress, result)
}

// stop cancels a running export; its messages are dropped from now on.
func (p *exportPage) stop() {
	if !p.running {
		return
	}
	p.cancel()
	p.running, p.cancelled = false, true
	p.id++
}

// exportLabel names the export for the outcome line: "GGUF q8_0".
func exportLabel(format, quant string) string {
	for _, f := range exportFormats {
		if f.id == format {
			format = f.name
		}
	}
	return strings.TrimSpace(format + " " + quant)
}

// update returns back=true when the user leaves the page.
func (p *exportPage) update(msg tea.Msg) (cmd tea.Cmd, back bool) {
	switch msg := msg.(type) {
	case exportProgressMsg:
		if msg.id != p.id || !p.running {
			return nil, false
		}
		p.done, p.total, p.what = msg.done, msg.total, msg.what
		return listenExport(p.progress, p.result), false
	case exportDoneMsg:
		if msg.id != p.id || !p.running {
			return nil, false
		}
		p.cancel()
		p.running = false
		p.done, p.total = msg.done, msg.total
		what := p.exporting
		if msg.err != nil {
			p.err = fmt.Sprintf("%s export failed: %v", what, msg.err)
			if errors.Is(msg.err, context.Canceled) {
				p.err, p.cancelled = "", true
			}
			return nil, false
		}
		// Progress reports may have been dropped or overtaken by the
		// result, so the step line would name an earlier step.
		p.what = "done"
		p.outcome, p.files = what, msg.files
	case tea.KeyPressMsg:
		if p.running {
			if msg.String() == "esc" {
				p.stop()
				return nil, true
			}
			return nil, false // the choice is fixed while the export runs
		}
		before, beforeQuant := p.format, p.chosenQuant()
		defer func() {
			if p.format != before || p.chosenQuant() != beforeQuant {
				p.forgetLast()
			}
		}()
		switch msg.String() {
		case "esc":
			return nil, true
		case "up", "k":
			p.format = (p.format + len(exportFormats) - 1) % len(exportFormats)
		case "down", "j", "tab":
			p.format = (p.format + 1) % len(exportFormats)
		case "left", "h", "right", "l":
			if f := p.current(); len(f.quants) > 0 {
				step := 1
				if s := msg.String(); s == "left" || s == "h" {
					step = len(f.quants) - 1
				}
				p.quant[f.id] = (p.quant[f.id] + step) % len(f.quants)
			}
		case "enter":
			return p.start(), false
		}
	}
	return nil, false
}

// forgetLast clears the bar and the outcome of the last export once the
// user picks another format or precision: they describe other files.
func (p *exportPage) forgetLast() {
	p.done, p.total, p.what = 0, 0, ""
	p.outcome, p.exporting, p.outDir, p.files, p.err, p.cancelled = "", "", "", nil, "", false
}

// close cancels a running export when the studio exits.
// close cancels a running export and waits (at most exportCloseWait) for
// the exporter to return: it removes what it wrote when cancelled, which
// a process quitting at once (ctrl+c on the page) cut short, leaving a
// half-written export.
func (p *exportPage) close() {
	running := p.running
	p.stop()
	if running && p.finished != nil {
		select {
		case <-p.finished:
		case <-time.After(exportCloseWait):
		}
	}
}

// exportCloseWait bounds how long quitting waits for a cancelled export.
const exportCloseWait = 30 * time.Second

func (p *exportPage) help() []key.Binding {
	if p.running {
		return []key.Binding{bind("esc", "cancel the export and go back"), bind("ctrl+c", "quit")}
	}
	keys := []key.Binding{bind("↑/↓", "format")}
	if len(p.current().quants) > 0 {
		keys = append(keys, bind("←/→", "precision"))
	}
	if p.nested {
		return append(keys, bind("enter", "export"), bind("q/esc", "back"))
	}
	return append(keys, bind("enter", "export"), bind("esc", "back"), bind("q", "quit"))
}

// bar draws done of total as a bar of w cells; the filled part uses a
// different glyph, so it reads without colour.
func (p *exportPage) bar(w int) string {
	filled := 0
	if p.total > 0 {
		filled = min(w*max(p.done, 0)/p.total, w)
	}
	return p.styles.Accent.Render(strings.Repeat("█", filled)) + p.styles.Muted.Render(strings.Repeat("░", w-filled))
}

func (p *exportPage) view(w, h int) string {
	st := p.styles
	head := st.Title.Render("whet") + " " + st.Bold.Render("export") + st.Muted.Render(fmt.Sprintf(" · %s · %s on %s", p.cfg.Name, p.cfg.Method, DisplayPath(p.cfg.Model)))
	lines := []string{trimTo(head, w), "", st.Label.Render("Format")}
	nameW := 0
	for _, f := range exportFormats {
		nameW = max(nameW, len(f.name))
	}
	for i, f := range exportFormats {
		row := fmt.Sprintf("%-*s  %s", nameW, f.name, st.Muted.Render(f.about))
		if i == p.format {
			lines = append(lines, trimTo(st.Selected.Render("› "+fmt.Sprintf("%-*s", nameW, f.name))+"  "+st.Muted.Render(f.about), w))
		} else {
			lines = append(lines, trimTo("  "+row, w))
		}
	}
	lines = append(lines, "")
	prec := st.Label.Render("Precision  ")
	if f := p.current(); len(f.quants) == 0 {
		// Two lines like the other formats', so the page does not jump.
		prec += "—\n" + strings.Repeat(" ", 11) + st.Muted.Render("the adapter keeps its float32 weights")
	} else {
		var opts []string
		for i, q := range f.quants {
			if i == p.quant[f.id] {
				opts = append(opts, st.Selected.Render("["+q+"]"))
			} else {
				opts = append(opts, " "+q+" ")
			}
		}
		prec += strings.Join(opts, " ") + "\n" + strings.Repeat(" ", 11) + st.Muted.Render(quantAbout[p.chosenQuant()])
	}
	lines = append(lines, prec)
	out := p.outputDir()
	if p.running || p.outcome != "" || p.err != "" {
		out = p.outDir // the folder of the export on screen
	}
	lines = append(lines, trimTo(st.Label.Render("Output     ")+out, w), "")

	if p.running || p.total > 0 {
		count := fmt.Sprintf(" %d/%d", p.done, p.total)
		if p.total == 0 {
			count = " …"
		}
		lines = append(lines, p.bar(max(w-len(count)-1, 10))+count)
		lines = append(lines, st.Muted.Render(trimTo(printable(oneLine(p.what)), w)))
	}
	switch {
	case p.err != "":
		lines = append(lines, "", st.Bad.Render(wrap("✗ "+printable(p.err), w)))
	case p.cancelled && !p.running:
		lines = append(lines, "", st.Warn.Render("■ export cancelled"))
	case p.outcome != "":
		done := "✓ " + p.outcome + " written to " + p.outDir
		if len([]rune(done)) > w { // keep the path whole on a line of its own
			done = "✓ " + p.outcome + " written to\n  " + p.outDir
		}
		lines = append(lines, "", st.Good.Render(done))
		if len(p.files) > 0 {
			lines = append(lines, wrap(st.Muted.Render("files: ")+strings.Join(p.files, ", "), w))
		}
		if slices.Contains(p.files, "Modelfile") {
			// The Modelfile names the GGUF by a relative path, so the
			// command runs from the export's folder.
			lines = append(lines, "Ollama Modelfile written; load it into Ollama with",
				st.Accent.Render(trimTo("  cd "+p.outDir, w)), st.Accent.Render("  ollama create "+ollamaName(p.cfg.Name)+" -f Modelfile"))
		}
	case !p.running && p.total == 0:
		lines = append(lines, st.Muted.Render(wrap("enter writes the export; the run's files are left as they are.", w)))
	}
	body := fitBlock(strings.Join(lines, "\n"), w, h-1)
	return body + "\n" + p.helpLine(p.help()...)
}

// ollamaName is a model name Ollama accepts for the run: lower case,
// with anything but letters, digits, '-', '_' and '.' made '-'.
func ollamaName(run string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, run)
	if name == "" {
		return "whet-model"
	}
	return name
}
