package tui

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"whet/datasets"
	"whet/engine"
	"whet/engine/units"
	"whet/tui/components/form"
	"whet/tui/components/imageview"
)

// findDatasets lists the files the loaders read under the dirs (two
// levels deep, skipping hidden folders and run output), folder by folder
// in the order given, shallow files first, at most limit.
func findDatasets(dirs []string, limit int) []string {
	seen := map[string]bool{}
	var out []string
	for _, dir := range dirs {
		from := len(out)
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable entries are skipped, not fatal
			}
			rel, _ := filepath.Rel(dir, path)
			if d.IsDir() {
				name := d.Name()
				if path != dir && (strings.HasPrefix(name, ".") || name == "runs" || name == "node_modules") {
					return fs.SkipDir
				}
				if rel != "." && strings.Count(filepath.ToSlash(rel), "/") >= 2 {
					return fs.SkipDir
				}
				if path != dir && modelFolder(path) {
					return fs.SkipDir // its JSON files are configs, not data
				}
				return nil
			}
			if datasets.IsDataFile(path) && !seen[filepath.Clean(path)] {
				seen[filepath.Clean(path)] = true
				out = append(out, filepath.Clean(path))
			}
			return nil
		})
		// The folder's own files first, then those in its subfolders.
		sort.Slice(out[from:], func(i, j int) bool {
			a, b := out[from+i], out[from+j]
			if da, db := strings.Count(a, string(filepath.Separator)), strings.Count(b, string(filepath.Separator)); da != db {
				return da < db
			}
			return a < b
		})
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// modelFolder reports whether dir holds a model, an adapter or a
// tokenizer.
func modelFolder(dir string) bool {
	for _, f := range []string{"config.json", "adapter_config.json", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// dataFile is one file the data page offers, and why it is offered.
type dataFile struct {
	path string
	from string // "for this model", "chosen", "recent", "typed", or "" (found in a folder)
}

// dataPage picks the training file and shows what training will see. The
// list starts where data lives: the model's own dataset, recent files,
// then the data files of the folders it scans. Typing filters it; the
// first row opens what was typed as a path. Tab opens the format and
// column mapping, which the loader's errors ask for.
type dataPage struct {
	*common
	cfg       *engine.RunConfig
	previewer DataPreviewer
	dirs      []string
	// suggested is the dataset the model page put in the config (the
	// model's own), recentList the file that lists recent datasets ("":
	// none could be found).
	suggested  *string
	recentList string
	recentErr  string
	files      []dataFile
	filter     string
	cursor     int // 0 is the path row, then the files that match the filter
	note       string
	selected   string // path of the file being previewed
	// previewedFor is what else the preview depends on (model, template,
	// data settings) when it was asked for; a change reloads it.
	previewedFor string
	seq          int // numbers the previews asked for
	loading      bool
	// cancel stops the read in flight (esc, another file); progress is
	// how far it has come. stopped: the user stopped the read of
	// selected, which is chosen but not read.
	cancel   context.CancelFunc
	progress datasets.Progress
	stopped  bool
	preview  *DataPreview
	err      string
	example  int
	// editing: keys go to the format and columns form.
	editing  bool
	settings form.Model
	w, h     int
}

func newDataPage(c *common, cfg *engine.RunConfig, pv DataPreviewer, dirs []string, suggested *string, recentList string, recentErr error) *dataPage {
	p := &dataPage{common: c, cfg: cfg, previewer: pv, dirs: dirs, suggested: suggested, recentList: recentList}
	if recentErr != nil {
		p.recentErr = recentErr.Error()
	}
	return p
}

func (p *dataPage) title() string { return "data" }

// formatChoices are the data formats the user can set, auto first.
func formatChoices() []string {
	out := []string{string(datasets.FormatAuto)}
	for _, f := range datasets.Formats {
		out = append(out, string(f))
	}
	return out
}

// modelsTemplate is the template choice that leaves data.template empty:
// the chat template of the model's tokenizer_config.json.
const modelsTemplate = "model's own"

// templateChoices are the chat templates the user can set: the model's
// own first, then the built-in ones (data.template).
func templateChoices() []string {
	return append([]string{modelsTemplate}, datasets.TemplateNames()...)
}

// settingsForm holds the format, the column mapping and the chat template
// of the config.
func (p *dataPage) settingsForm() form.Model {
	f := form.New([]form.Field{
		{Key: "format", Label: "Format", Kind: form.Choice, Value: orDefault(p.cfg.Data.Format, "auto"), Options: formatChoices(),
			Hint: "←/→: auto detects it from the columns; enter applies and reads the file again"},
		{Key: "columns", Label: "Columns", Kind: form.Text, Value: formatColumns(p.cfg.Data.Columns),
			Hint: "the format's column = yours, comma-separated, e.g. instruction=question, output=answer"},
		{Key: "template", Label: "Chat template", Kind: form.Choice, Value: orDefault(p.cfg.Data.Template, modelsTemplate), Options: templateChoices(),
			Hint: "←/→: the model's own (from tokenizer_config.json) or a built-in one"},
		{Key: "bad_rows", Label: "Unreadable rows", Kind: form.Choice, Value: badRowsChoice(p.cfg.Data.SkipBadRows), Options: []string{stopAtBadRow, skipBadRows},
			Hint: "←/→: a row that cannot be read (bad JSON, bad UTF-8) stops, or is skipped and counted"},
	}, formStyles(p.styles))
	f.SetSize(p.w, settingsFormHeight)
	return f
}

// settingsFormHeight is the format form's height: its four fields, the
// hint and an error line.
const settingsFormHeight = 6

// The choices of data.skip_bad_rows in the format form.
const (
	stopAtBadRow = "stop at the first"
	skipBadRows  = "skip and count"
)

func badRowsChoice(skip bool) string {
	if skip {
		return skipBadRows
	}
	return stopAtBadRow
}

// asksForSkip reports whether a loader error is a row that cannot be read,
// which skipping unreadable rows (tab) gets past.
func asksForSkip(err string) bool {
	return strings.Contains(err, "data.skip_bad_rows")
}

func (p *dataPage) enter() tea.Cmd {
	p.editing, p.note = false, ""
	p.files = p.offered()
	if p.cfg.Data.Path == "" {
		// The model changed and brought no dataset: nothing is chosen.
		p.stopRead()
		p.seq++
		p.selected, p.loading, p.preview, p.err, p.stopped = "", false, nil, "", false
		p.cursor = min(1, len(p.files))
		return nil
	}
	p.cursor = min(1, len(p.files))
	for i, f := range p.visible() {
		if samePath(f.path, p.cfg.Data.Path) {
			p.cursor = i + 1
		}
	}
	// Another file, or the same file for another model, template or
	// data settings: what was shown no longer holds.
	if p.selected != p.cfg.Data.Path || p.previewedFor != previewKey(*p.cfg) {
		return p.load(p.cfg.Data.Path)
	}
	return nil
}

// offered lists the files in the order the page offers them, each once:
// the model's dataset, the file chosen before, recent files, then the
// files found in the folders.
func (p *dataPage) offered() []dataFile {
	var out []dataFile
	add := func(path, from string) {
		if path == "" {
			return
		}
		for _, f := range out {
			if samePath(f.path, path) {
				return
			}
		}
		out = append(out, dataFile{path: path, from: from})
	}
	if p.suggested != nil {
		add(*p.suggested, "for this model")
	}
	add(p.cfg.Data.Path, "chosen")
	if p.recentList != "" {
		recent, err := readRecent(p.recentList)
		if err != nil {
			p.recentErr = err.Error()
		}
		for _, f := range recent {
			add(f, "recent")
		}
	}
	for _, f := range findDatasets(p.dirs, 200) {
		add(f, "")
	}
	return out
}

// samePath reports whether two paths name the same file (one may be
// relative to the working folder).
func samePath(a, b string) bool {
	if a == b {
		return true
	}
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// visible are the offered files that hold every word of the filter.
func (p *dataPage) visible() []dataFile {
	words := strings.Fields(strings.ToLower(p.filter))
	if len(words) == 0 {
		return p.files
	}
	var out []dataFile
	for _, f := range p.files {
		name := strings.ToLower(DisplayPath(f.path))
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(name, w)
		}
		if ok {
			out = append(out, f)
		}
	}
	return out
}

// DisplayPath shows a path relative to the working folder when it lies
// inside it, else with ~ for the home folder. The studio and whet runs
// show paths by it, so that the two read alike.
func DisplayPath(path string) string {
	if filepath.IsAbs(path) {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, path); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return rel
			}
		}
		if home, err := os.UserHomeDir(); err == nil && strings.HasPrefix(path, home+string(filepath.Separator)) {
			return "~" + strings.TrimPrefix(path, home)
		}
	}
	return path
}

// setFilter changes the filter and puts the cursor on the first match
// (or on the path row when nothing matches).
func (p *dataPage) setFilter(f string) {
	p.filter, p.note = f, ""
	p.cursor = min(1, len(p.visible()))
}

// load starts a preview of path with the config as it stands, and stops
// the read before it, whose answer would be dropped anyway.
func (p *dataPage) load(path string) tea.Cmd {
	p.stopRead()
	p.selected, p.loading, p.preview, p.err, p.example = path, true, nil, "", 0
	p.progress, p.stopped = datasets.Progress{}, false
	// The config follows the choice at once, so that going back to
	// another model keeps the file the user picked.
	p.cfg.Data.Path = path
	p.previewedFor = previewKey(*p.cfg)
	p.seq++
	if p.previewer == nil {
		p.loading = false
		p.err = "dataset preview not available in this build"
		return nil
	}
	cfg := *p.cfg
	ctx, cancel := context.WithCancel(p.ctx)
	p.cancel = cancel
	pv, seq := p.previewer, p.seq
	// Only the latest report matters: the reader replaces one the page
	// has not taken yet, so it never waits for the page.
	reports := make(chan datasets.Progress, 1)
	done := make(chan struct{})
	report := func(pr datasets.Progress) {
		select {
		case <-reports:
		default:
		}
		select {
		case reports <- pr:
		default:
		}
	}
	var wait tea.Cmd
	wait = func() tea.Msg {
		select {
		case pr := <-reports:
			return previewProgressMsg{seq: seq, progress: pr, wait: wait}
		case <-done:
			return nil
		}
	}
	read := func() tea.Msg {
		defer cancel()
		pr, err := pv.Preview(ctx, cfg, report)
		close(done)
		return previewMsg{seq: seq, path: path, preview: pr, err: err}
	}
	return tea.Batch(read, wait)
}

// stopRead ends the read in flight, if any. Its answer, should it still
// come, has an old seq and is dropped.
func (p *dataPage) stopRead() {
	if p.cancel != nil {
		p.cancel()
		p.cancel = nil
	}
}

// stopReading is esc while reading: the read ends at once, and the file
// stays chosen but unread until enter reads it again.
func (p *dataPage) stopReading() {
	p.stopRead()
	p.seq++
	p.loading, p.stopped, p.progress, p.note = false, true, datasets.Progress{}, ""
}

// previewKey is what a preview depends on besides the file: the model
// (its tokenizer) and the data settings.
func previewKey(c engine.RunConfig) string {
	d := c.Data
	d.Path = ""
	return fmt.Sprintf("%s|%+v", c.Model, d)
}

func (p *dataPage) leave() error {
	if p.selected == "" {
		return fmt.Errorf("choose a dataset file (enter on a file previews it)")
	}
	if p.loading {
		return fmt.Errorf("the preview of %s is still loading", p.selected)
	}
	if p.stopped {
		return fmt.Errorf("the read of %s was stopped: enter on it to read it again", p.selected)
	}
	if p.err != "" && p.previewer != nil {
		return fmt.Errorf("%s cannot be used: %s", p.selected, p.err)
	}
	if pr := p.preview; pr != nil && pr.Unusable != "" {
		return fmt.Errorf("%s cannot be used: %s", p.selected, pr.Unusable)
	}
	if pr := p.preview; pr != nil && pr.Format != "" {
		// DPO learns from pairs; other methods from single answers.
		if err := engine.CheckDataFormat(*p.cfg, p.selected, pr.Format); err != nil {
			return err
		}
	}
	p.cfg.Data.Path = p.selected
	if p.cfg.Data.Format == "" {
		// "auto" rather than the detected format, so the YAML still works
		// if the file is replaced; the detected format is shown above.
		p.cfg.Data.Format = "auto"
	}
	return nil
}

var _ committer = (*dataPage)(nil)

// commit remembers the file the user went on with among the recent ones.
func (p *dataPage) commit() {
	if p.recentList == "" || p.selected == "" {
		return
	}
	if err := addRecent(p.recentList, p.selected); err != nil {
		p.recentErr = err.Error()
	}
}

// openTyped previews the path typed into the filter.
func (p *dataPage) openTyped() tea.Cmd {
	typed := strings.TrimSpace(p.filter)
	if typed == "" {
		p.note = "type the file's path (~ for your home folder), then enter"
		return nil
	}
	path := expandHome(typed)
	// A folder is read as whet train reads it: its data files (shards),
	// or the loader says it holds none.
	if _, err := os.Stat(path); err != nil {
		p.err = fmt.Sprintf("dataset %s: %v", path, err)
		return nil
	}
	if !slices.ContainsFunc(p.files, func(f dataFile) bool { return samePath(f.path, path) }) {
		p.files = append([]dataFile{{path: path, from: "typed"}}, p.files...)
	}
	p.setFilter("")
	for i, f := range p.visible() {
		if samePath(f.path, path) {
			p.cursor = i + 1
		}
	}
	return p.load(path)
}

// applySettings writes the format and columns form into the config and
// reads the file again with them.
func (p *dataPage) applySettings() tea.Cmd {
	cols, err := parseColumns(p.settings.Get("columns"))
	if err != nil {
		p.settings.FocusKey("columns")
		p.note = "Columns: " + err.Error()
		return nil
	}
	p.cfg.Data.Format = p.settings.Get("format")
	p.cfg.Data.Columns = cols
	p.cfg.Data.Template = p.settings.Get("template")
	if p.cfg.Data.Template == modelsTemplate {
		p.cfg.Data.Template = ""
	}
	p.cfg.Data.SkipBadRows = p.settings.Get("bad_rows") == skipBadRows
	p.editing, p.note = false, ""
	if p.selected != "" && p.previewedFor != previewKey(*p.cfg) {
		return p.load(p.selected)
	}
	return nil
}

func (p *dataPage) update(msg tea.Msg) (tea.Cmd, nav) {
	switch msg := msg.(type) {
	case previewMsg:
		if msg.seq != p.seq {
			return nil, stay // an answer for a file, or a model, the user has left, or a stopped read
		}
		p.loading, p.cancel = false, nil
		if strings.HasPrefix(p.note, "still reading the file") {
			p.note = ""
		}
		if msg.err != nil {
			p.err = msg.err.Error()
			return nil, stay
		}
		pr := msg.preview
		p.preview = &pr
		return nil, stay
	case previewProgressMsg:
		if msg.seq != p.seq || !p.loading {
			return nil, stay // a read that was stopped or has ended: no more waiting
		}
		p.progress = msg.progress
		return msg.wait, stay
	case tea.PasteMsg:
		if p.editing {
			p.settings.Paste(msg.Content)
		} else {
			p.setFilter(p.filter + strings.TrimSpace(strings.ReplaceAll(msg.Content, "\n", " ")))
		}
		return nil, stay
	case tea.KeyPressMsg:
		if p.editing {
			var used bool
			p.settings, used = p.settings.Update(msg)
			if used {
				p.note = ""
				return nil, stay
			}
			switch msg.String() {
			case "enter":
				return p.applySettings(), stay
			case "esc":
				p.editing, p.note = false, ""
			}
			return nil, stay
		}
		vis := p.visible()
		n := len(vis) + 1
		switch k := msg.String(); k {
		case "up", "down", "home", "end", "pgup", "pgdown":
			listKey(k, &p.cursor, n, 5)
		case "left":
			if p.preview != nil && len(p.preview.Examples) > 0 {
				p.example = (p.example - 1 + len(p.preview.Examples)) % len(p.preview.Examples)
			}
		case "right":
			if p.preview != nil && len(p.preview.Examples) > 0 {
				p.example = (p.example + 1) % len(p.preview.Examples)
			}
		case "tab":
			p.editing, p.note = true, ""
			p.settings = p.settingsForm()
		case "backspace":
			if r := []rune(p.filter); len(r) > 0 {
				p.setFilter(string(r[:len(r)-1]))
			}
		case "ctrl+u":
			p.setFilter("")
		case "esc":
			if p.loading {
				// A large file takes a while: esc stops it, as it stops
				// a download (and the filter, if any, stays).
				p.stopReading()
				return nil, stay
			}
			if p.filter != "" {
				p.setFilter("")
				return nil, stay
			}
			return nil, back
		case "enter":
			p.note = ""
			if p.cursor == 0 {
				return p.openTyped(), stay
			}
			f := vis[p.cursor-1].path
			if f == p.selected && p.loading {
				// Not again: that started the read over (a 100k-row file
				// takes a while), and the earlier one ran on beside it.
				p.note = "still reading the file: enter again once its preview shows; esc stops it"
				return nil, stay
			}
			if f == p.selected && !p.loading {
				if p.err != "" || p.stopped {
					// Read it again: the file may have been fixed since,
					// or its read was stopped.
					return p.load(f), stay
				}
				return nil, next
			}
			return p.load(f), stay
		default:
			if msg.Text != "" && msg.Mod&^tea.ModShift == 0 {
				p.setFilter(p.filter + msg.Text)
			}
		}
	}
	return nil, stay
}

func (p *dataPage) setSize(w, h int) {
	p.w, p.h = w, h
	p.settings.SetSize(w, settingsFormHeight)
}

// typing: letters go into the filter, or into the columns field.
func (p *dataPage) typing() bool { return !p.editing || p.settings.TextFocused() }

func (p *dataPage) help() []key.Binding {
	if p.editing {
		return []key.Binding{bind("↑/↓", "field"), bind("←/→", "change"), bind("enter", "apply"), bind("esc", "cancel")}
	}
	if p.loading {
		return []key.Binding{bind("esc", "stop reading"), bind("type", "filter"), bind("tab", "format/columns")}
	}
	// ←/→ for the examples is written beside them, where it applies.
	return []key.Binding{bind("enter", "preview/next"), bind("type", "filter"), bind("tab", "format/columns"), p.keys.Back}
}

func (p *dataPage) view() string {
	st := p.styles
	var b strings.Builder
	b.WriteString(st.Bold.Render("Choose the training data"))
	switch {
	case p.filter != "":
		b.WriteString("  " + st.Accent.Render("› "+printable(p.filter)+"▏"))
	case !p.editing:
		b.WriteString("  " + st.Muted.Render("type to filter, or a file's path"))
	}
	b.WriteString("\n")
	vis := p.visible()
	items := make([]string, 0, len(vis)+1)
	first := "  Enter a path…"
	if p.filter != "" {
		first = "  Open " + printable(strings.TrimSpace(p.filter)) + " as a path"
	}
	items = append(items, first)
	// Labels (why a file is offered) stand in one column after the
	// longest name, or at the right edge when names are long.
	labelAt := 0
	for _, f := range vis {
		labelAt = max(labelAt, lipgloss.Width(printable(DisplayPath(f.path)))+3)
	}
	labelAt = min(labelAt, max(p.w-6-len("for this model"), 10))
	for _, f := range vis {
		mark := "  "
		if f.path == p.selected {
			mark = "● "
		}
		name := printable(DisplayPath(f.path))
		if f.from != "" {
			name += strings.Repeat(" ", max(labelAt-lipgloss.Width(name), 2)) + st.Muted.Render(f.from)
		}
		items = append(items, mark+name)
	}
	if p.filter != "" && len(vis) == 0 {
		items = append(items, st.Muted.Render("  no file matches"))
	}
	var settings string
	if p.editing {
		settings = p.settings.View()
	} else {
		format := p.cfg.Data.Format
		if format == "" || format == string(datasets.FormatAuto) {
			format = "format detected"
		}
		cols := "columns " + formatColumns(p.cfg.Data.Columns)
		if len(p.cfg.Data.Columns) == 0 {
			cols = "the format's column names"
		}
		settings = st.Muted.Render(trimTo(fmt.Sprintf("read as: %s · %s · tab to change", format, cols), p.w))
		if p.cfg.Data.SkipBadRows {
			settings += "\n" + st.Muted.Render(trimTo("rows that cannot be read are skipped and counted (data.skip_bad_rows)", p.w))
		}
	}
	if p.note != "" {
		settings += "\n" + st.Warn.Render(trimTo(p.note, p.w))
	}
	if p.recentErr != "" {
		settings += "\n" + st.Warn.Render(trimTo("! "+p.recentErr, p.w))
	}
	listH := 6
	if p.h >= 30 {
		listH = 8
		if p.selected == "" && p.err == "" {
			// Nothing previewed: the list takes the room down to the one
			// line of the preview's hint (title, list, settings, a blank
			// line, the hint).
			listH = max(listH, p.h-3-(strings.Count(settings, "\n")+1))
		}
	}
	list := listViewFocus(st, items, p.cursor, p.w, listH, !p.editing)
	b.WriteString(list + "\n")
	used := 1 + strings.Count(list, "\n") + 1 // title, list
	b.WriteString(settings + "\n\n")
	used += strings.Count(settings, "\n") + 2
	rest := p.h - used
	b.WriteString(p.previewView(max(rest, 3)))
	return b.String()
}

// asksForMapping reports whether a loader error is one the format and
// column mapping can fix (the loader names data.format or data.columns).
func asksForMapping(err string) bool {
	return strings.Contains(err, "data.format") || strings.Contains(err, "data.columns")
}

// asksForTemplate reports whether a loader error is about the chat
// template, which tab can change (a template without content lists for
// image data, one the model's folder lacks).
func asksForTemplate(err string) bool {
	return strings.Contains(err, "chat template") || strings.Contains(err, "data.template")
}

// templateTip is the line above such an error.
const templateTip = "press tab to choose the chat template"

// previewView draws the format, the stats and the examples in h lines.
func (p *dataPage) previewView(h int) string {
	st := p.styles
	switch {
	case p.err != "":
		out := st.Bad.Render(wrap("✗ "+printable(p.err), p.w))
		switch {
		case p.editing:
		case asksForMapping(p.err):
			out = st.Accent.Render("press tab to set the format and map the columns") + "\n" + out
		case asksForTemplate(p.err):
			out = st.Accent.Render(templateTip) + "\n" + out
		case asksForSkip(p.err):
			out = st.Accent.Render("press tab to skip unreadable rows, or fix the file and enter to read it again") + "\n" + out
		}
		return out
	case p.selected == "":
		return st.Muted.Render("enter on a file to preview it as training will see it")
	case p.loading:
		return p.readingView()
	case p.stopped:
		return st.Warn.Render(trimTo("stopped reading "+printable(p.selected), p.w)) + "\n" +
			st.Muted.Render(trimTo("enter on it reads it again, or choose another file", p.w))
	case p.preview == nil:
		return ""
	}
	pr := p.preview
	s := pr.Stats
	var lines []string
	head := fmt.Sprintf("format %s · %s", st.Value.Render(pr.Format), engine.Plural(s.Rows, "row"))
	if s.Skipped > 0 {
		head += st.Warn.Render(fmt.Sprintf(" (%d skipped)", s.Skipped))
	}
	if pr.Unusable != "" && s.Tokens == 0 {
		// Read but not tokenized (an image dataset): no token counts.
		lines = append(lines, head)
	} else {
		if pr.Format == "prompt" {
			// GRPO: the tokens with a loss are the answers it generates.
			head += fmt.Sprintf(" · %s prompt tokens, answers generated in training", units.Count(int64(s.Tokens)))
		} else {
			head += fmt.Sprintf(" · %s tokens, %s with loss", units.Count(int64(s.Tokens)), units.Count(int64(s.TrainTokens)))
		}
		lines = append(lines, head)
		lens := fmt.Sprintf("length mean %.0f · max %d", s.MeanLen, s.MaxLen)
		if s.Truncated > 0 {
			lens += st.Warn.Render(fmt.Sprintf(" · %s longer than max length %d (cut)", engine.Plural(s.Truncated, "row"), p.cfg.Data.MaxLength))
		}
		lines = append(lines, lens)
	}
	if pr.Unusable != "" {
		if asksForTemplate(pr.Unusable) && !p.editing {
			lines = append(lines, st.Accent.Render(templateTip))
		}
		lines = append(lines, strings.Split(st.Bad.Render(wrap("✗ "+printable(pr.Unusable), p.w)), "\n")...)
	}
	for _, w := range pr.Warnings {
		lines = append(lines, st.Warn.Render(trimTo("! "+printable(w), p.w)))
	}
	if len(pr.Examples) == 0 {
		return strings.Join(append(lines, st.Muted.Render("no examples")), "\n")
	}
	legend := st.Faint.Render("dim") + st.Muted.Render(" = prompt, no loss")
	// At 80×24 one example shows at a time; taller terminals show all.
	room := h - len(lines) - 1
	perEx := 6
	show := []int{p.example}
	if room >= 3*(perEx+1) && len(pr.Examples) > 1 {
		show = nil
		for i := range pr.Examples {
			show = append(show, i)
		}
		perEx = room/len(show) - 1
	} else {
		perEx = room - 1
	}
	for _, i := range show {
		title := fmt.Sprintf("example %d of %d", i+1, len(pr.Examples))
		if i < len(pr.Labels) && pr.Labels[i] != "" {
			title += " · " + printable(pr.Labels[i])
		}
		if len(show) == 1 && len(pr.Examples) > 1 {
			title += " (←/→)"
		}
		lines = append(lines, st.Accent.Render(title)+"  "+legend)
		var images []PreviewImage
		if i < len(pr.Images) {
			images = pr.Images[i]
		}
		lines = append(lines, p.exampleWithImages(pr.Examples[i], images, perEx)...)
	}
	return strings.Join(lines, "\n")
}

// readingView is the preview's place while the file is read: the stage,
// a bar of its bytes or rows, and how to stop.
func (p *dataPage) readingView() string {
	st := p.styles
	lines := []string{st.Muted.Render(trimTo("reading "+printable(p.selected)+"…", p.w))}
	pr := p.progress
	if done, total := pr.Done(); total > 0 {
		nums := fmt.Sprintf(" %3d%%  %s", done*100/total, pr)
		// One bar width for both stages, so the bar does not jump.
		lines = append(lines, trimTo(progressBar(st, done, total, min(max(p.w-42, 10), 40))+nums, p.w))
	}
	return strings.Join(append(lines, st.Muted.Render("esc stops reading")), "\n")
}

// exampleWithImages draws an example in h lines: its text alone, or with
// its images in a column on the right (below the text in a narrow window
// or as placeholder lines), each under a line naming it. The errors of
// images that cannot be read follow the text, where there is room to
// read them.
func (p *dataPage) exampleWithImages(segs []Segment, images []PreviewImage, h int) []string {
	st := p.styles
	if len(images) == 0 {
		return renderExample(st, segs, p.w-2, h)
	}
	var good []PreviewImage
	var errs []string
	for _, im := range images {
		switch {
		case im.Err != "":
			errs = append(errs, im.Err)
		case im.Img == nil:
			errs = append(errs, "image not read: "+im.Info)
		default:
			good = append(good, im)
		}
	}
	twoCols := p.w >= 60 && p.imageMode != imageview.Text && len(good) > 0
	textW, imgW := p.w-2, 0
	if twoCols {
		imgW = min(max(p.w/3, 24), 48)
		textW = p.w - 2 - imgW - 2
	}
	var errLines []string
	for _, e := range errs {
		for _, l := range strings.Split(wrap("✗ "+printable(e), textW), "\n") {
			errLines = append(errLines, "  "+st.Bad.Render(l))
		}
	}
	textH := h
	switch {
	case !twoCols && len(good) > 0 && p.imageMode == imageview.Text:
		textH = max(h-len(good), 1) // a placeholder line for each image below
	case !twoCols && len(good) > 0:
		textH = max(h/2, 1) // the images below
	}
	text := renderExample(st, segs, textW, max(textH-len(errLines), 1))
	text = append(text, errLines...)
	text = text[:min(len(text), textH)]
	if !twoCols {
		for _, l := range p.imageColumn(good, p.w-2, h-len(text)) {
			text = append(text, "  "+l)
		}
		return text
	}
	imgs := p.imageColumn(good, imgW, h)
	out := make([]string, max(len(text), len(imgs)))
	for i := range out {
		var l, r string
		if i < len(text) {
			l = text[i]
		}
		if i < len(imgs) {
			r = imgs[i]
		}
		out[i] = padCell(l, textW+2) + "  " + r
	}
	return out
}

// imageColumn stacks images in w×h cells, sharing the height; when the
// last line is reached with several left, it counts them.
func (p *dataPage) imageColumn(images []PreviewImage, w, h int) []string {
	per := max(h/max(len(images), 1), min(h, 3))
	var out []string
	for i := range images {
		left := h - len(out)
		if left <= 0 {
			break
		}
		if left == 1 && i < len(images)-1 {
			out = append(out, p.styles.Muted.Render(trimTo(fmt.Sprintf("+%d more images", len(images)-i), w)))
			break
		}
		room := min(per, left)
		if i == len(images)-1 {
			room = left
		}
		out = append(out, p.drawImage(&images[i], w, room)...)
	}
	return out
}

// renderExample draws segments wrapped to w, masked ones dimmed, cut to h
// lines.
func renderExample(st Styles, segs []Segment, w, h int) []string {
	var raw strings.Builder
	for _, s := range segs {
		t := printable(strings.ReplaceAll(s.Text, "\r\n", "\n"))
		if s.Masked {
			// Style line by line so that wrapping keeps the dimming.
			parts := strings.Split(t, "\n")
			for i, part := range parts {
				if part != "" {
					parts[i] = st.Faint.Render(part)
				}
			}
			t = strings.Join(parts, "\n")
		}
		raw.WriteString(t)
	}
	lines := strings.Split(wrap(raw.String(), w), "\n")
	if len(lines) > h && h > 0 {
		lines = append(lines[:h-1], st.Muted.Render("…"))
	}
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return lines
}
