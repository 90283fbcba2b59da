package tui

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/tui/components/form"
)

// datasetExts are the file types the loaders read.
var datasetExts = map[string]bool{".jsonl": true, ".json": true, ".parquet": true, ".csv": true, ".txt": true}

// findDatasets lists dataset files under the dirs (two levels deep,
// skipping hidden folders and run output), sorted, at most limit.
func findDatasets(dirs []string, limit int) []string {
	seen := map[string]bool{}
	var out []string
	for _, dir := range dirs {
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
				return nil
			}
			if datasetExts[strings.ToLower(filepath.Ext(path))] && !seen[filepath.Clean(path)] {
				seen[filepath.Clean(path)] = true
				out = append(out, filepath.Clean(path))
			}
			return nil
		})
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// dataPage picks the training file and shows what training will see.
type dataPage struct {
	*common
	cfg       *engine.RunConfig
	previewer DataPreviewer
	dirs      []string
	files     []string
	cursor    int
	typing_   bool
	path      form.Model
	selected  string // path of the file being previewed
	// previewedFor is what else the preview depends on (model, template,
	// data settings) when it was asked for; a change reloads it.
	previewedFor string
	seq          int // numbers the previews asked for
	loading      bool
	preview      *DataPreview
	err          string
	example      int
	w, h         int
}

func newDataPage(c *common, cfg *engine.RunConfig, pv DataPreviewer, dirs []string) *dataPage {
	p := &dataPage{common: c, cfg: cfg, previewer: pv, dirs: dirs}
	p.path = form.New([]form.Field{{Key: "path", Label: "Dataset file", Kind: form.Text,
		Hint: "JSONL, JSON, Parquet, CSV or text; alpaca, sharegpt, messages, text or preference rows"}}, formStyles(c.styles))
	return p
}

func (p *dataPage) title() string { return "data" }

func (p *dataPage) enter() tea.Cmd {
	p.files = findDatasets(p.dirs, 200)
	if path := p.cfg.Data.Path; path != "" && !slices.Contains(p.files, path) {
		p.files = append([]string{path}, p.files...) // a suggested file outside the scanned folders
	}
	if p.cfg.Data.Path == "" {
		// The model changed and brought no dataset: nothing is chosen.
		p.seq++
		p.selected, p.loading, p.preview, p.err = "", false, nil, ""
		return nil
	}
	for i, f := range p.files {
		if f == p.cfg.Data.Path {
			p.cursor = i
		}
	}
	// Another file, or the same file for another model, template or
	// data settings: what was shown no longer holds.
	if p.selected != p.cfg.Data.Path || p.previewedFor != previewKey(*p.cfg) {
		return p.load(p.cfg.Data.Path)
	}
	return nil
}

// previewKey is what a preview depends on besides the file: the model
// (its tokenizer) and the data settings.
func previewKey(c engine.RunConfig) string {
	d := c.Data
	d.Path = ""
	return fmt.Sprintf("%s|%+v", c.Model, d)
}

// load starts a preview of path with the config as it stands.
func (p *dataPage) load(path string) tea.Cmd {
	p.selected, p.loading, p.preview, p.err, p.example = path, true, nil, "", 0
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
	cfg.Data.Path = path
	pv, ctx, seq := p.previewer, p.ctx, p.seq
	return func() tea.Msg {
		pr, err := pv.Preview(ctx, cfg)
		return previewMsg{seq: seq, path: path, preview: pr, err: err}
	}
}

func (p *dataPage) leave() error {
	if p.selected == "" {
		return fmt.Errorf("choose a dataset file (enter on a file previews it)")
	}
	if p.loading {
		return fmt.Errorf("the preview of %s is still loading", p.selected)
	}
	if p.err != "" && p.previewer != nil {
		return fmt.Errorf("%s cannot be used: %s", p.selected, p.err)
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

func (p *dataPage) update(msg tea.Msg) (tea.Cmd, nav) {
	switch msg := msg.(type) {
	case previewMsg:
		if msg.seq != p.seq {
			return nil, stay // an answer for a file, or a model, the user has left
		}
		p.loading = false
		if msg.err != nil {
			p.err = msg.err.Error()
			return nil, stay
		}
		pr := msg.preview
		p.preview = &pr
		return nil, stay
	case tea.PasteMsg:
		if p.typing_ {
			p.path.Paste(msg.Content)
		}
		return nil, stay
	case tea.KeyPressMsg:
		if p.typing_ {
			switch msg.String() {
			case "enter":
				path := expandHome(strings.TrimSpace(p.path.Get("path")))
				if st, err := os.Stat(path); err != nil {
					p.err = fmt.Sprintf("dataset %s: %v", path, err)
					return nil, stay
				} else if st.IsDir() {
					p.err = fmt.Sprintf("dataset %s is a folder; give a file", path)
					return nil, stay
				}
				p.typing_ = false
				// List the typed file and put the cursor on it, so enter
				// goes on once its preview is in.
				if i := slices.Index(p.files, path); i >= 0 {
					p.cursor = i
				} else {
					p.files = append([]string{path}, p.files...)
					p.cursor = 0
				}
				return p.load(path), stay
			case "esc":
				p.typing_ = false
				return nil, stay
			}
			p.path, _ = p.path.Update(msg)
			return nil, stay
		}
		n := len(p.files) + 1
		if listKey(msg.String(), &p.cursor, n, 5) {
			return nil, stay
		}
		switch msg.String() {
		case "left", "h":
			if p.preview != nil && len(p.preview.Examples) > 0 {
				p.example = (p.example - 1 + len(p.preview.Examples)) % len(p.preview.Examples)
			}
		case "right", "l":
			if p.preview != nil && len(p.preview.Examples) > 0 {
				p.example = (p.example + 1) % len(p.preview.Examples)
			}
		case "esc":
			return nil, back
		case "enter":
			if p.cursor == n-1 {
				p.typing_ = true
				p.err = ""
				return nil, stay
			}
			f := p.files[p.cursor]
			if f == p.selected && !p.loading {
				return nil, next
			}
			return p.load(f), stay
		}
	}
	return nil, stay
}

func (p *dataPage) setSize(w, h int) {
	p.w, p.h = w, h
	p.path.SetSize(w, 3)
}

func (p *dataPage) typing() bool { return p.typing_ }

func (p *dataPage) help() []key.Binding {
	if p.typing_ {
		return []key.Binding{bind("enter", "preview"), bind("esc", "back to the list")}
	}
	b := []key.Binding{p.keys.Up, bind("enter", "preview / next")}
	if p.preview != nil && len(p.preview.Examples) > 1 {
		b = append(b, bind("←/→", "example"))
	}
	return append(b, p.keys.Back)
}

func (p *dataPage) view() string {
	st := p.styles
	var b strings.Builder
	b.WriteString(st.Bold.Render("Choose the training data") + "\n")
	items := make([]string, 0, len(p.files)+1)
	for _, f := range p.files {
		mark := "  "
		if f == p.selected {
			mark = "● "
		}
		items = append(items, mark+f)
	}
	items = append(items, "  Enter a path…")
	listH := 6
	if p.h >= 30 {
		listH = 7
	}
	list := listView(st, items, p.cursor, p.w, listH)
	b.WriteString(list + "\n\n")
	used := 2 + strings.Count(list, "\n") + 1 // title, list, blank line
	if p.typing_ {
		field := p.path.View()
		b.WriteString(field + "\n")
		used += strings.Count(field, "\n") + 1
	}
	rest := p.h - used
	b.WriteString(p.previewView(max(rest, 3)))
	return b.String()
}

// previewView draws the format, the stats and the examples in h lines.
func (p *dataPage) previewView(h int) string {
	st := p.styles
	switch {
	case p.err != "":
		return st.Bad.Render(wrap("✗ "+printable(p.err), p.w))
	case p.selected == "":
		return st.Muted.Render("enter on a file to preview it as training will see it")
	case p.loading:
		return st.Muted.Render("reading " + p.selected + "…")
	case p.preview == nil:
		return ""
	}
	pr := p.preview
	s := pr.Stats
	var lines []string
	head := fmt.Sprintf("format %s · %d rows", st.Value.Render(pr.Format), s.Rows)
	if s.Skipped > 0 {
		head += st.Warn.Render(fmt.Sprintf(" (%d skipped)", s.Skipped))
	}
	head += fmt.Sprintf(" · %s tokens, %s with loss", humanCount(s.Tokens), humanCount(s.TrainTokens))
	lines = append(lines, head)
	lens := fmt.Sprintf("length mean %.0f · max %d", s.MeanLen, s.MaxLen)
	if s.Truncated > 0 {
		lens += st.Warn.Render(fmt.Sprintf(" · %d rows longer than max length %d (cut)", s.Truncated, p.cfg.Data.MaxLength))
	}
	lines = append(lines, lens)
	for _, w := range pr.Warnings {
		lines = append(lines, st.Warn.Render("! "+w))
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
		if len(show) == 1 && len(pr.Examples) > 1 {
			title += " (←/→)"
		}
		lines = append(lines, st.Accent.Render(title)+"  "+legend)
		lines = append(lines, renderExample(st, pr.Examples[i], p.w-2, perEx)...)
	}
	return strings.Join(lines, "\n")
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

// humanCount prints 14230 as "14.2k".
func humanCount(n int) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fG", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
