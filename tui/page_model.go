package tui

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/tui/components/form"
)

// modelPage is the first screen: pick the base model from the catalog,
// from the local models directory, or by typing a folder path.
type modelPage struct {
	*common
	cfg       *engine.RunConfig
	catalog   []ModelInfo
	local     []ModelInfo
	modelsDir string
	scanErr   string
	cursor    int
	typing_   bool // the path field is open
	path      form.Model
	w, h      int
	suggested string // the dataset path this page put into the config
	filter    string // narrows the list to names, repos and notes containing it
	filtering bool   // "/" was pressed: keys go into the filter
}

func newModelPage(c *common, cfg *engine.RunConfig, catalog []ModelInfo, local []ModelInfo, modelsDir string, scanErr error) *modelPage {
	p := &modelPage{common: c, cfg: cfg, catalog: catalog, local: local, modelsDir: modelsDir}
	if scanErr != nil {
		p.scanErr = scanErr.Error()
	}
	p.path = form.New([]form.Field{{Key: "path", Label: "Model folder", Kind: form.Text,
		Hint: "a Hugging Face folder with config.json, tokenizer.json and *.safetensors"}}, formStyles(c.styles))
	return p
}

func (p *modelPage) title() string { return "model" }

// entries are the models already on disk (catalog entries with a folder,
// then the local folders), then the rest of the catalog; "enter a path"
// follows as the last row.
func (p *modelPage) entries() []ModelInfo {
	var out []ModelInfo
	for _, e := range p.catalog {
		if e.Path != "" {
			out = append(out, e)
		}
	}
	out = append(out, p.local...)
	for _, e := range p.catalog {
		if e.Path == "" {
			out = append(out, e)
		}
	}
	if p.filter == "" {
		return out
	}
	f := strings.ToLower(p.filter)
	kept := out[:0]
	for _, e := range out {
		if strings.Contains(strings.ToLower(e.Name+" "+e.Repo+" "+e.Note), f) {
			kept = append(kept, e)
		}
	}
	return kept
}

// listKey moves a list cursor for the navigation keys shared by the
// pages' lists; it reports whether the key was one of them.
func listKey(k string, cursor *int, n, page int) bool {
	switch k {
	case "up", "k":
		*cursor = (*cursor - 1 + n) % n
	case "down", "j":
		*cursor = (*cursor + 1) % n
	case "home", "g":
		*cursor = 0
	case "end", "G":
		*cursor = n - 1
	case "pgup":
		*cursor = max(*cursor-page, 0)
	case "pgdown":
		*cursor = min(*cursor+page, n-1)
	default:
		return false
	}
	return true
}

func (p *modelPage) enter() tea.Cmd {
	for i, e := range p.entries() {
		if p.cfg.Model != "" && (e.Name == p.cfg.Model || (e.Path != "" && e.Path == p.cfg.Model)) {
			p.cursor = i
		}
	}
	return nil
}

func (p *modelPage) leave() error {
	if p.typing_ {
		path := expandHome(strings.TrimSpace(p.path.Get("path")))
		if path == "" {
			return fmt.Errorf("type the path of a model folder")
		}
		if st, err := os.Stat(path); err != nil {
			return fmt.Errorf("model folder %s: %w", path, err)
		} else if !st.IsDir() {
			return fmt.Errorf("model path %s is a file; give the folder that holds config.json", path)
		}
		if _, err := os.Stat(filepath.Join(path, "config.json")); err != nil {
			return fmt.Errorf("model folder %s has no config.json", path)
		}
		p.choose(path, "", "")
		return nil
	}
	es := p.entries()
	if p.cursor >= len(es) {
		return fmt.Errorf("choose a model")
	}
	e := es[p.cursor]
	model := e.Name
	if e.Path != "" {
		model = e.Path
	}
	p.choose(model, e.Template, e.Dataset)
	return nil
}

// choose puts a model into the config with what comes with it, replacing
// what came with the previous one: its chat template (empty: the one its
// tokenizer names) and its dataset, unless the user chose another file.
func (p *modelPage) choose(model, template, dataset string) {
	p.cfg.Model = model
	p.cfg.Data.Template = template
	if p.cfg.Data.Path == "" || p.cfg.Data.Path == p.suggested {
		p.cfg.Data.Path, p.suggested = dataset, dataset
	}
}

func (p *modelPage) update(msg tea.Msg) (tea.Cmd, nav) {
	km, ok := msg.(tea.KeyPressMsg)
	if pm, isPaste := msg.(tea.PasteMsg); isPaste && p.typing_ {
		p.path.Paste(pm.Content)
		return nil, stay
	}
	if !ok {
		return nil, stay
	}
	if p.typing_ {
		switch km.String() {
		case "enter":
			return nil, next
		case "esc":
			p.typing_ = false
			return nil, stay
		}
		p.path, _ = p.path.Update(km)
		return nil, stay
	}
	if p.filtering {
		switch s := km.String(); {
		case s == "enter" || s == "down" || s == "up":
			p.filtering = false // keep the filter; the keys work on the list again
			if s == "enter" {
				return nil, stay
			}
		case s == "esc":
			p.filtering, p.filter, p.cursor = false, "", 0
			return nil, stay
		case s == "backspace":
			if r := []rune(p.filter); len(r) > 0 {
				p.filter = string(r[:len(r)-1])
			}
			p.cursor = 0
			return nil, stay
		case km.Text != "":
			p.filter += km.Text
			p.cursor = 0
			return nil, stay
		default:
			return nil, stay
		}
	}
	if km.String() == "/" {
		p.filtering = true
		return nil, stay
	}
	if km.String() == "esc" && p.filter != "" {
		p.filter, p.cursor = "", 0
		return nil, stay
	}
	n := len(p.entries()) + 1
	if listKey(km.String(), &p.cursor, n, max(p.h-8, 3)) {
		return nil, stay
	}
	switch km.String() {
	case "enter":
		if p.cursor == n-1 {
			p.typing_ = true
			return nil, stay
		}
		return nil, next
	}
	return nil, stay
}

func (p *modelPage) setSize(w, h int) {
	p.w, p.h = w, h
	p.path.SetSize(w, 3)
}

func (p *modelPage) typing() bool { return p.typing_ || p.filtering }

func (p *modelPage) help() []key.Binding {
	if p.typing_ {
		return []key.Binding{bind("enter", "use this folder"), bind("esc", "back to the list")}
	}
	if p.filtering {
		return []key.Binding{bind("enter", "done"), bind("esc", "clear the filter")}
	}
	return []key.Binding{p.keys.Up, bind("enter", "choose"), bind("/", "filter")}
}

func (p *modelPage) view() string {
	st := p.styles
	var b strings.Builder
	b.WriteString(st.Bold.Render("Choose the base model to fine-tune"))
	switch {
	case p.filtering:
		b.WriteString("  " + st.Accent.Render("/ "+p.filter+"▏"))
	case p.filter != "":
		b.WriteString("  " + st.Muted.Render("filter: "+p.filter+" (esc clears)"))
	}
	b.WriteString("\n\n")
	es := p.entries()
	var items []string
	for _, e := range es {
		kind := "catalog"
		if e.Path != "" {
			kind = "local"
		}
		name := fmt.Sprintf("%-34s %6s  %s", e.Name, formatParams(e.Params), kind)
		items = append(items, name)
	}
	items = append(items, "Enter a path…")
	listH := max(p.h-8, 3)
	b.WriteString(listView(st, items, p.cursor, p.w, listH) + "\n\n")

	// Details of the highlighted entry, or the path field.
	switch {
	case p.typing_:
		b.WriteString(p.path.View())
	case p.cursor < len(es):
		e := es[p.cursor]
		var facts []string
		if e.Repo != "" {
			facts = append(facts, e.Repo)
		}
		if e.Path != "" {
			facts = append(facts, e.Path)
		}
		if e.Params > 0 {
			facts = append(facts, formatParams(e.Params)+" parameters")
		}
		if e.Template != "" {
			facts = append(facts, "template "+e.Template)
		}
		b.WriteString(st.Subtle.Render(strings.Join(facts, " · ")))
		if e.Note != "" {
			b.WriteString("\n" + st.Muted.Render(e.Note))
		}
	default:
		b.WriteString(st.Muted.Render("Type the path of a Hugging Face model folder."))
	}
	where := "local models: none found in " + p.modelsDir
	if len(p.local) > 0 {
		where = fmt.Sprintf("local models: %d found in %s", len(p.local), p.modelsDir)
	}
	if p.modelsDir == "" {
		where = "local models: no models directory"
	}
	if p.scanErr != "" {
		where = p.scanErr
	}
	b.WriteString("\n" + st.Muted.Render(where))
	return b.String()
}

// formStyles adapts the studio styles to the form component.
func formStyles(s Styles) form.Styles {
	return form.Styles{Label: s.Label, Focused: s.Selected, Value: s.Value, Hint: s.Muted, Error: s.Bad, Muted: s.Muted}
}
