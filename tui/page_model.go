package tui

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/engine/hub"
	"whet/engine/units"
	"whet/tui/components/form"
)

// modelPage is the first screen: pick the base model from the catalog,
// the Hugging Face cache, the local models directory, or by typing a
// folder path or a Hub repo id, which it downloads with a progress bar.
type modelPage struct {
	*common
	// runsKey: the studio has a runs page, opened with r from this page.
	runsKey   bool
	cfg       *engine.RunConfig
	catalog   []ModelInfo
	local     []ModelInfo
	modelsDir string
	scanErr   string
	hub       Hub // nil: no Hub (catalog entries are chosen by name)
	cached    []hub.CachedModel
	cacheErr  string
	all       []modelEntry // every row but the last, rebuilt when the cache changes
	cursor    int
	typing_   bool // the path field is open
	path      form.Model
	w, h      int
	suggested string // the dataset path this page put into the config
	filter    string // narrows the list to names, repos and notes containing it
	filtering bool   // "/" was pressed: keys go into the filter

	// A download: the job while it runs (nil otherwise), the entry it is
	// for, and how the last one ended.
	pull      *pullJob
	pullSeq   int
	pullFor   modelEntry
	progress  pullState
	pullErr   error
	offer     *hub.Snapshot // the cached snapshot a failed download offers
	cancelled string        // what a cancelled download kept, for the page
	chosen    *modelEntry   // a finished download: leave() takes it
	// asked is the revision each repo was last downloaded at in this
	// session: an interrupted download writes no ref, so its partial
	// snapshot is resumed at what the user asked for, not its commit.
	asked map[string]hub.Ref
}

// entryKind is where a row's model lives.
type entryKind int

const (
	kindLocal   entryKind = iota // a folder on disk
	kindCached                   // a snapshot in the Hub cache
	kindCatalog                  // known by name; not on this machine
)

// modelEntry is one row of the list: the model, and for the Hub cache
// what of it is there.
type modelEntry struct {
	ModelInfo
	kind    entryKind
	ref     hub.Ref // the Hub revision (cached rows, catalog rows with a repo)
	hasRef  bool
	size    int64 // bytes in the cache
	partial int64 // bytes of interrupted downloads
	weights bool  // the cached snapshot holds safetensors
	commit  string
}

// id is what the row puts into RunConfig.Model: a folder, a Hub id (so
// the run directory records it as is), or a catalog name.
func (e modelEntry) id() string {
	switch {
	case e.kind == kindCached:
		return e.ref.String()
	case e.Path != "":
		return e.Path
	}
	return e.Name
}

// label is the row's kind column.
func (e modelEntry) label() string {
	switch {
	case e.kind == kindLocal:
		return "local"
	case e.kind == kindCatalog:
		return "catalog"
	case !e.weights && (e.Path == "" || e.partial > 0):
		return "partial"
	case !e.weights:
		return "config"
	}
	return "cached"
}

// ready reports whether the row can be used as it is; otherwise choosing
// it downloads (or resumes) it first.
func (e modelEntry) ready() bool {
	return e.kind == kindLocal || (e.kind == kindCached && e.weights)
}

func newModelPage(c *common, cfg *engine.RunConfig, catalog []ModelInfo, local []ModelInfo, modelsDir string, scanErr error, h Hub) *modelPage {
	p := &modelPage{common: c, cfg: cfg, catalog: catalog, local: local, modelsDir: modelsDir, hub: h}
	if scanErr != nil {
		p.scanErr = scanErr.Error()
	}
	label, hint := "Model folder", "a Hugging Face folder with config.json, tokenizer.json and *.safetensors"
	if h != nil {
		label, hint = "Folder or Hub id", "a model folder, or ORG/NAME[@REVISION] to download from the Hub into its cache"
	}
	p.path = form.New([]form.Field{{Key: "path", Label: label, Kind: form.Text, Hint: hint}}, formStyles(c.styles))
	p.rescan()
	return p
}

// rescan reads the Hub cache again and rebuilds the list.
func (p *modelPage) rescan() {
	p.cached, p.cacheErr = nil, ""
	if p.hub != nil {
		var err error
		if p.cached, err = p.hub.Cached(); err != nil {
			p.cacheErr = err.Error()
		}
	}
	p.all = p.build()
}

// build lists the models on this machine first (catalog entries with a
// folder, the Hub cache, local folders), then the rest of the catalog. A
// catalog entry whose repo is in the cache is shown once, as cached.
func (p *modelPage) build() []modelEntry {
	var out []modelEntry
	for _, e := range p.catalog {
		if e.Path != "" {
			out = append(out, modelEntry{ModelInfo: e, kind: kindLocal})
		}
	}
	inCache := map[int]bool{}
	for _, cm := range p.cached {
		e := modelEntry{kind: kindCached, size: cm.Size, partial: cm.Partial, hasRef: true, ref: hub.Ref{Repo: cm.Repo, Revision: hub.DefaultRevision}}
		if snap, ok := cm.Latest(); ok {
			e.Path, e.weights, e.commit, e.ref = snap.Dir, snap.HasWeights(), snap.Commit, cachedRef(cm, snap.Commit)
		}
		if r, ok := p.asked[cm.Repo]; ok && (e.Path == "" || e.ref.Revision == e.commit) {
			e.ref = r
		}
		cat := -1
		for i, c := range p.catalog {
			if c.Path == "" && strings.EqualFold(c.Repo, cm.Repo) {
				cat = i
			}
		}
		if cat >= 0 {
			inCache[cat] = true
			path := e.Path
			e.ModelInfo = p.catalog[cat]
			e.Path = path
		} else {
			e.Name, e.Repo = cm.Repo, cm.Repo
			e.Note = "Hugging Face cache"
			if e.Path != "" {
				e.Params = folderParams(e.Path)
				if mt := folderModelType(e.Path); mt != "" {
					e.Note = mt + " · Hugging Face cache"
				}
			}
		}
		out = append(out, e)
	}
	for _, e := range p.local {
		out = append(out, modelEntry{ModelInfo: e, kind: kindLocal})
	}
	for i, e := range p.catalog {
		if e.Path == "" && !inCache[i] {
			me := modelEntry{ModelInfo: e, kind: kindCatalog}
			if ref, err := hub.ParseRef(e.Repo); err == nil {
				me.ref, me.hasRef = ref, true
			}
			out = append(out, me)
		}
	}
	return out
}

// cachedRef names a cached snapshot the way a run config should record
// it: the repo alone when main points at it, else a branch or tag that
// does, else its commit.
func cachedRef(cm hub.CachedModel, commit string) hub.Ref {
	if cm.Refs[hub.DefaultRevision] == commit {
		return hub.Ref{Repo: cm.Repo, Revision: hub.DefaultRevision}
	}
	var names []string
	for name, c := range cm.Refs {
		if c == commit {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) > 0 {
		return hub.Ref{Repo: cm.Repo, Revision: names[0]}
	}
	return hub.Ref{Repo: cm.Repo, Revision: commit}
}

func (p *modelPage) title() string { return "model" }

// entries are the rows the filter keeps; "enter a path" follows as the
// last row.
func (p *modelPage) entries() []modelEntry {
	if p.filter == "" {
		return p.all
	}
	f := strings.ToLower(p.filter)
	var kept []modelEntry
	for _, e := range p.all {
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
	p.point(p.cfg.Model)
	return nil
}

// point puts the cursor on the row of a model (by what it put into the
// config, or its name).
func (p *modelPage) point(model string) {
	if model == "" {
		return
	}
	for i, e := range p.entries() {
		if e.Name == model || e.id() == model {
			p.cursor = i
			return
		}
	}
}

func (p *modelPage) leave() error {
	if p.chosen != nil {
		e := *p.chosen
		p.chosen = nil
		p.choose(e.id(), e.Template, e.Dataset)
		return nil
	}
	if p.typing_ {
		path := expandHome(strings.TrimSpace(p.path.Get("path")))
		if path == "" {
			return fmt.Errorf("type the path of a model folder")
		}
		st, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return engine.NoModelFolder(path) // as whet's commands say it
		} else if err != nil {
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
	if !e.ready() && p.hub != nil && e.hasRef {
		return fmt.Errorf("%s is not downloaded yet: press enter on it to download it", e.ref)
	}
	p.choose(e.id(), e.Template, e.Dataset)
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

// download starts pulling an entry's repo into the cache.
func (p *modelPage) download(e modelEntry) tea.Cmd {
	p.pullSeq++
	p.pullFor, p.progress, p.pullErr, p.offer, p.cancelled = e, pullState{}, nil, nil, ""
	if p.asked == nil {
		p.asked = map[string]hub.Ref{}
	}
	p.asked[e.ref.Repo] = e.ref
	var cmd tea.Cmd
	p.pull, cmd = startPull(p.ctx, p.hub, p.pullSeq, e.ref)
	return cmd
}

// pulled handles the end of a download: on success the model is chosen
// and the wizard goes on, as with a folder; otherwise the page says why.
func (p *modelPage) pulled(msg pullDoneMsg) nav {
	job := p.pull
	p.pull = nil
	p.progress = job.snapshot()
	p.rescan()
	switch {
	case msg.err == nil:
		e := p.pullFor
		e.kind, e.ref, e.hasRef, e.Path, e.weights = kindCached, msg.snap.Ref, true, msg.snap.Dir, true
		p.chosen = &e
		p.point(e.id())
		p.progress = pullState{}
		return next
	case errors.Is(msg.err, context.Canceled):
		t := p.progress.total
		p.cancelled = fmt.Sprintf("Download of %s cancelled: %s kept in the cache; enter on it resumes.", job.ref, units.Bytes(t.Done))
		if t.Total > 0 {
			p.cancelled = fmt.Sprintf("Download of %s cancelled: %s of %s kept in the cache; enter on it resumes.", job.ref, units.Bytes(t.Done), units.Bytes(t.Total))
		}
	default:
		p.pullErr = msg.err
		var he *hub.Error
		if errors.As(msg.err, &he) && he.Kind == hub.ErrNetwork && he.Cached != nil {
			p.offer = he.Cached
		}
	}
	p.point(job.ref.String())
	p.progress = pullState{}
	return stay
}

func (p *modelPage) update(msg tea.Msg) (tea.Cmd, nav) {
	switch msg := msg.(type) {
	case pullProgressMsg:
		if p.pull == nil || msg.id != p.pull.id {
			return nil, stay
		}
		p.progress = p.pull.snapshot()
		return p.pull.listen(), stay
	case pullDoneMsg:
		if p.pull == nil || msg.id != p.pull.id {
			return nil, stay
		}
		return nil, p.pulled(msg)
	}
	km, ok := msg.(tea.KeyPressMsg)
	if pm, isPaste := msg.(tea.PasteMsg); isPaste && p.typing_ {
		p.path.Paste(pm.Content)
		return nil, stay
	}
	if !ok {
		return nil, stay
	}
	if p.pull != nil {
		if km.String() == "esc" {
			p.pull.cancel() // the download ends with context.Canceled
		}
		return nil, stay
	}
	if p.typing_ {
		switch km.String() {
		case "enter":
			text := strings.TrimSpace(p.path.Get("path"))
			if p.hub != nil && hub.LooksLikeRef(text) {
				ref, _ := hub.ParseRef(text)
				p.typing_ = false
				return p.download(modelEntry{ModelInfo: ModelInfo{Name: ref.Repo, Repo: ref.Repo}, ref: ref, hasRef: true}), stay
			}
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
				if len(p.entries()) == 0 {
					// Nothing matches: what was typed is a folder or a Hub id.
					p.openPath()
				}
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
	// A failed download's offer of the cached snapshot is taken with
	// enter; any other key puts it away with the message.
	if p.offer != nil {
		offer := p.offer
		p.offer, p.pullErr = nil, nil
		if km.String() == "enter" {
			e := p.pullFor
			e.kind, e.ref, e.hasRef, e.Path, e.weights = kindCached, offer.Ref, true, offer.Dir, true
			p.chosen = &e
			return nil, next
		}
	}
	if km.String() == "/" {
		p.filtering = true
		return nil, stay
	}
	if km.String() == "esc" {
		switch {
		case p.pullErr != nil || p.cancelled != "":
			p.pullErr, p.cancelled = nil, ""
		case p.filter != "":
			p.filter, p.cursor = "", 0
		}
		return nil, stay
	}
	es := p.entries()
	n := len(es) + 1
	if listKey(km.String(), &p.cursor, n, max(p.h-8, 3)) {
		p.pullErr, p.cancelled = nil, "" // the row's own details take their place
		return nil, stay
	}
	switch km.String() {
	case "enter":
		if p.cursor == n-1 {
			p.openPath()
			return nil, stay
		}
		if e := es[p.cursor]; !e.ready() && p.hub != nil && e.hasRef {
			return p.download(e), stay
		}
		return nil, next
	}
	return nil, stay
}

// openPath opens the field for a folder or a Hub id. A filter that
// matches no model is taken as the path or id it was typed for, so that
// typing a path at "/" and pressing enter twice uses it; it replaces what
// the field kept from an earlier try (a Hub id that failed), since it is
// what was typed last.
func (p *modelPage) openPath() {
	p.typing_ = true
	if f := strings.TrimSpace(p.filter); f != "" && len(p.entries()) == 0 {
		p.path.Set("path", f)
	}
}

func (p *modelPage) setSize(w, h int) {
	p.w, p.h = w, h
	p.path.SetSize(w, 3)
}

func (p *modelPage) typing() bool { return p.typing_ || p.filtering }

// plain: the list is shown with nothing typed, offered or downloading, so
// a letter key is a command (r: the runs page).
func (p *modelPage) plain() bool {
	return p.pull == nil && !p.typing_ && !p.filtering && p.offer == nil
}

func (p *modelPage) help() []key.Binding {
	switch {
	case p.pull != nil:
		return []key.Binding{bind("esc", "cancel the download (what arrived is kept)")}
	case p.typing_:
		return []key.Binding{bind("enter", "use this folder or download this id"), bind("esc", "back to the list")}
	case p.filtering:
		return []key.Binding{bind("enter", "done"), bind("esc", "clear the filter")}
	case p.offer != nil:
		return []key.Binding{bind("enter", "use the cached snapshot"), bind("esc", "dismiss")}
	}
	keys := []key.Binding{p.keys.Up, bind("enter", "choose"), bind("/", "filter")}
	if p.runsKey {
		keys = append(keys, bind("r", "runs"))
	}
	return keys
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
	if p.pull != nil {
		b.WriteString(p.pullPanel())
		return b.String()
	}

	// The bottom block first: the list takes the room it leaves.
	var bottom []string
	es := p.entries()
	switch {
	case p.pullErr != nil:
		bottom = append(bottom, st.Bad.Render(wrap("✗ "+printable(oneLine(p.pullErr.Error())), p.w)))
		if p.offer != nil {
			bottom = append(bottom, st.Accent.Render(wrap(fmt.Sprintf("enter uses the cached snapshot of %s (commit %s) · esc dismisses", p.offer.Ref, shortCommit(p.offer.Commit)), p.w)))
		}
	case p.cancelled != "":
		bottom = append(bottom, st.Warn.Render(wrap("■ "+p.cancelled, p.w)))
	case p.typing_:
		bottom = append(bottom, p.path.View())
	case p.cursor < len(es):
		bottom = append(bottom, p.details(es[p.cursor])...)
	default:
		what := "Type the path of a Hugging Face model folder."
		if p.hub != nil {
			what = "Type the path of a model folder, or a Hub id such as Qwen/Qwen2.5-0.5B-Instruct to download it."
		}
		bottom = append(bottom, st.Muted.Render(wrap(what, p.w)))
	}
	bottom = append(bottom, p.where()...)
	bottomText := strings.Join(bottom, "\n")

	var items []string
	for _, e := range es {
		size := ""
		if e.kind == kindCached {
			size = units.Bytes(e.size + e.partial)
		}
		row := fmt.Sprintf("%-34s %6s  %-7s %10s", trimTo(e.Name, 34), formatParams(e.Params), e.label(), size)
		items = append(items, strings.TrimRight(row, " "))
	}
	last := "Enter a path…"
	if p.hub != nil {
		last = "Enter a path or a Hub id…"
	}
	items = append(items, last)
	// The title, a blank line, the list, a blank line, the bottom block.
	listH := max(p.h-3-strings.Count(bottomText, "\n")-1, 3)
	b.WriteString(listView(st, items, p.cursor, p.w, listH) + "\n\n")
	b.WriteString(bottomText)
	return b.String()
}

// details describes the highlighted row, and what enter does with it.
func (p *modelPage) details(e modelEntry) []string {
	st := p.styles
	var facts []string
	if e.Repo != "" {
		facts = append(facts, e.Repo)
	}
	if e.kind == kindLocal && e.Path != "" {
		facts = append(facts, e.Path)
	}
	if e.Params > 0 {
		facts = append(facts, formatParams(e.Params)+" parameters")
	}
	if e.Template != "" {
		facts = append(facts, "template "+e.Template)
	}
	if e.kind == kindCached && e.commit != "" {
		facts = append(facts, "commit "+shortCommit(e.commit))
	}
	lines := []string{st.Subtle.Render(trimTo(strings.Join(facts, " · "), p.w))}
	if e.Note != "" {
		lines = append(lines, st.Muted.Render(trimTo(printable(e.Note), p.w)))
	}
	if p.hub == nil || !e.hasRef || e.ready() {
		return lines
	}
	var todo string
	switch {
	case e.kind == kindCatalog && p.hub.Settings().Offline:
		todo = "Not on this machine, and HF_HUB_OFFLINE is set: unset it to download this model."
	case e.kind == kindCatalog:
		todo = fmt.Sprintf("Not on this machine: enter downloads it from %s.", p.hub.Settings().Endpoint)
	case e.partial > 0:
		todo = fmt.Sprintf("An interrupted download left %s: enter resumes it.", units.Bytes(e.partial))
	default:
		todo = "Only config.json is cached (pulled for a fit check): enter downloads the weights."
	}
	return append(lines, st.Accent.Render(wrap(todo, p.w)))
}

// where says which folders the list comes from.
func (p *modelPage) where() []string {
	st := p.styles
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
	lines := []string{st.Muted.Render(trimTo(where, p.w))}
	if p.hub == nil {
		return lines
	}
	s := p.hub.Settings()
	var size int64
	for _, m := range p.cached {
		size += m.Size + m.Partial
	}
	cache := fmt.Sprintf("Hub cache: %d models, %s in %s", len(p.cached), units.Bytes(size), s.CacheDir)
	if len(p.cached) == 1 {
		cache = fmt.Sprintf("Hub cache: 1 model, %s in %s", units.Bytes(size), s.CacheDir)
	}
	if s.Offline {
		cache += " (offline: HF_HUB_OFFLINE)"
	}
	if p.cacheErr != "" {
		cache = p.cacheErr
	}
	return append(lines, st.Muted.Render(trimTo(cache, p.w)))
}

// pullPanel is the page while a download runs.
func (p *modelPage) pullPanel() string {
	st := p.styles
	s := p.hub.Settings()
	head := "Downloading " + p.pull.ref.String()
	if c := p.progress.total.Commit; c != "" {
		head += " at commit " + shortCommit(c)
	}
	lines := []string{st.Bold.Render(trimTo(head, p.w)),
		st.Muted.Render(trimTo("from "+s.Endpoint, p.w)), st.Muted.Render(trimTo("into "+s.CacheDir, p.w)), ""}
	foot := st.Muted.Render(wrap("esc cancels: what arrived stays in the cache, and the next download resumes from there.", p.w))
	room := p.h - 2 - len(lines) - strings.Count(foot, "\n") - 2
	lines = append(lines, pullView(st, p.progress, p.w, room), "", foot)
	return strings.Join(lines, "\n")
}

func shortCommit(c string) string { return c[:min(12, len(c))] }

// formStyles adapts the studio styles to the form component.
func formStyles(s Styles) form.Styles {
	return form.Styles{Label: s.Label, Focused: s.Selected, Value: s.Value, Hint: s.Muted, Error: s.Bad, Muted: s.Muted}
}
