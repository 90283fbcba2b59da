package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/term"

	"whet/engine"
	"whet/engine/hub"
	"whet/engine/units"
	"whet/presets"
)

func init() {
	register("pull", "download a model from the Hugging Face Hub (ORG/NAME[@REVISION]) into its cache", runPull)
}

// runPull is `whet pull ORG/NAME[@REVISION]`: it brings the files a run
// needs into the huggingface_hub cache and prints the snapshot folder.
// --list shows what the cache holds instead.
func runPull(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jsonOut := fs.Bool("json", false, "print progress and the result as JSON lines")
	configOnly := fs.Bool("config-only", false, "fetch config.json alone (what whet fit needs)")
	list := fs.Bool("list", false, "list the models in the cache with their sizes")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: whet pull [--json] [--config-only] ORG/NAME[@REVISION] | CATALOG-NAME")
		fmt.Fprintln(stderr, "       whet pull --list [--json]")
		fmt.Fprintln(stderr, "The cache is huggingface_hub's ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub);")
		fmt.Fprintln(stderr, "HF_TOKEN gives a token, HF_ENDPOINT a mirror, HF_HUB_OFFLINE=1 uses the cache only.")
		fs.PrintDefaults()
	}
	// Flags may come after the repo id too: whet pull org/name --json.
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	client, err := hub.FromEnv()
	if err != nil {
		return err
	}
	if *list {
		if len(pos) > 0 {
			return fmt.Errorf("--list takes no repo id (got %q)", pos[0])
		}
		return listCache(stdout, client.Cache(), *jsonOut)
	}
	switch len(pos) {
	case 1:
	case 0:
		return errors.New("want a repo id, such as whet pull Qwen/Qwen2.5-0.5B-Instruct or meta-llama/Llama-3.2-1B@main (whet pull --list shows the cache)")
	default:
		return fmt.Errorf("want one repo id, got %d (%s): pull them one at a time", len(pos), strings.Join(pos, ", "))
	}
	ref, err := pullRef(pos[0])
	if err != nil {
		return err
	}
	opts := hub.PullOptions{}
	if *configOnly {
		opts.Files = hub.ConfigOnly
	}
	ctx, received, release := stopOnSignal(context.Background())
	defer release()
	var show *pullPrinter
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		opts.Progress = func(p hub.Progress) { enc.Encode(progressJSON(p)) }
	} else {
		show = &pullPrinter{w: stdout, live: isTerminal(stdout), width: termWidth(stdout), endpoint: client.Endpoint}
		opts.Progress = show.report
	}
	snap, err := client.Pull(ctx, ref, opts)
	if show != nil {
		show.finish()
	}
	if err != nil {
		if *jsonOut {
			json.NewEncoder(stdout).Encode(errorJSON(err))
		}
		if sig := received(); sig != 0 && ctx.Err() != nil {
			// Stopped by Ctrl-C or SIGTERM: exit 130 or 143, as a shell
			// reports a process the signal ended.
			return &interruptedError{sig: sig, msg: fmt.Sprintf("cancelled by %s (exit status %d); what arrived is kept in %s and `whet pull %s` resumes",
				signalName(sig), 128+int(sig), client.CacheDir, ref)}
		}
		return err
	}
	if *jsonOut {
		m := map[string]any{
			"event": "snapshot", "repo": ref.Repo, "revision": ref.Revision, "commit": snap.Commit,
			"dir": snap.Dir, "files": snap.Files,
		}
		if p := snap.NewerPartial; p != nil {
			m["newer_partial"] = partialJSON(p)
		}
		return json.NewEncoder(stdout).Encode(m)
	}
	if n := snap.OlderNotice(); n != "" {
		fmt.Fprintf(stdout, "HF_HUB_OFFLINE is set, %s\n", n)
	}
	fmt.Fprintf(stdout, "%s at commit %s:\n%s\n", ref, hub.ShortCommit(snap.Commit), snap.Dir)
	return nil
}

// pullRef reads a repo id, or a catalog name (llama-3.2-1b), which stands
// for its repo.
func pullRef(arg string) (hub.Ref, error) {
	ref, err := hub.ParseRef(arg)
	if err == nil {
		return ref, nil
	}
	if e, lerr := presets.Lookup(arg); lerr == nil && !strings.Contains(arg, "/") {
		return hub.ParseRef(e.Repo)
	}
	return hub.Ref{}, fmt.Errorf("%w (or a catalog name such as llama-3.2-1b)", err)
}

// progressJSON is one --json line of a pull; rates in bytes per second,
// times in seconds.
func progressJSON(p hub.Progress) map[string]any {
	m := map[string]any{
		"event": string(p.Phase), "repo": p.Repo, "commit": p.Commit,
		"done": p.Done, "total": p.Total, "rate": round1(p.Rate), "eta_s": round1(p.ETA.Seconds()),
		"files_done": p.FilesDone, "files": p.Files,
	}
	if p.File != "" {
		m["file"], m["file_done"], m["file_size"] = p.File, p.FileDone, p.FileSize
		m["file_rate"], m["file_eta_s"] = round1(p.FileRate), round1(p.FileETA.Seconds())
	}
	if p.Note != "" {
		m["note"] = p.Note
	}
	return m
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

// errorJSON names the kind of failure so scripts can branch on it.
func errorJSON(err error) map[string]any {
	kind := "other"
	for _, k := range []struct {
		err  error
		name string
	}{
		{hub.ErrGated, "gated"}, {hub.ErrBadToken, "bad-token"}, {hub.ErrRepoNotFound, "repo-not-found"},
		{hub.ErrRevisionNotFound, "revision-not-found"}, {hub.ErrNetwork, "network"}, {hub.ErrNotCached, "not-cached"},
		{hub.ErrNoSpace, "no-space"}, {hub.ErrCacheNotWritable, "cache-not-writable"}, {hub.ErrChecksum, "checksum"}, {hub.ErrUnsafeName, "unsafe-name"},
		{context.Canceled, "cancelled"},
	} {
		if errors.Is(err, k.err) {
			kind = k.name
			break
		}
	}
	m := map[string]any{"event": "error", "kind": kind, "message": err.Error()}
	var he *hub.Error
	if errors.As(err, &he) && he.Cached != nil {
		m["cached_dir"], m["cached_commit"] = he.Cached.Dir, he.Cached.Commit
	}
	if errors.As(err, &he) && he.Partial != nil {
		// An earlier pull stopped part way: what the cache holds (files and
		// total are 0 when unknown).
		m["partial"] = partialJSON(he.Partial)
	}
	return m
}

// partialJSON is an unfinished pull in --json lines (files and total are
// 0 when unknown).
func partialJSON(p *hub.PartialPull) map[string]any {
	return map[string]any{"files_done": p.FilesDone, "files": p.Files, "done": p.Done, "total": p.Total, "commit": p.Commit}
}

// pullPrinter shows a pull for people: one line per finished file and, on
// a terminal, a status line redrawn in place with the current file and the
// totals.
type pullPrinter struct {
	mu       sync.Mutex
	w        io.Writer
	live     bool
	endpoint string
	status   bool // a status line is on screen
	// width is the terminal's width in cells: the status line is cut to
	// fit, since "\r\x1b[K" erases only the last row of a wrapped line.
	width int
	// lines holds the status line of each file still arriving and recent
	// their names, the latest report last: a finished file's line erases
	// the status line, which is then drawn again for a file still
	// arriving (or stalled), so that it stays on screen.
	lines  map[string]string
	recent []string
	// quietCached says nothing when everything is cached already (a
	// command loading a model by id, not `whet pull`).
	quietCached bool
	quiet       bool
}

func (p *pullPrinter) report(pr hub.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quiet {
		return
	}
	switch pr.Phase {
	case hub.PhaseStart:
		if pr.Done == pr.Total && p.quietCached {
			p.quiet = true
			return
		}
		fmt.Fprintf(p.w, "%s: commit %s from %s, %d files, %s", pr.Repo, pr.Commit[:min(12, len(pr.Commit))], p.endpoint, pr.Files, units.Bytes(pr.Total))
		if pr.Done > 0 {
			fmt.Fprintf(p.w, " (%s already here)", units.Bytes(pr.Done))
		}
		fmt.Fprintln(p.w)
	case hub.PhaseFileDone:
		p.clear()
		fmt.Fprintf(p.w, "  %-36s %10s\n", pr.File, units.Bytes(pr.FileSize))
		p.forget(pr.File)
		if p.live && len(p.recent) > 0 {
			p.draw(p.lines[p.recent[len(p.recent)-1]])
		}
	case hub.PhaseBytes:
		if !p.live {
			return
		}
		p.clear()
		line := p.statusLine(pr)
		p.forget(pr.File)
		if p.lines == nil {
			p.lines = map[string]string{}
		}
		p.lines[pr.File] = line
		p.recent = append(p.recent, pr.File)
		p.draw(line)
	case hub.PhaseNote:
		p.clear()
		fmt.Fprintf(p.w, "  %s\n", pr.Note)
		if p.live && len(p.recent) > 0 {
			p.draw(p.lines[p.recent[len(p.recent)-1]])
		}
	case hub.PhaseDone:
		p.clear()
		p.lines, p.recent = nil, nil
	}
}

// statusLine is a file's status line: the file's bytes, rate and ETA and
// the whole pull's. When that does not fit the terminal, the file's part
// shrinks to its percentage and the file name is shortened in its middle,
// so that the totals, the rate and the ETA stay on screen rather than
// being cut off the row's end (at 80 columns a sharded model's file names
// left "all 3.00 GiB/20.0 …", without the ETA).
func (p *pullPrinter) statusLine(pr hub.Progress) string {
	width := p.width
	if width <= 0 {
		width = 80
	}
	full := fmt.Sprintf("  %s %s/%s %s/s ETA %s · all %s/%s ETA %s", pr.File,
		units.Bytes(pr.FileDone), units.Bytes(pr.FileSize), units.Bytes(int64(pr.FileRate)), units.ETA(pr.FileETA),
		units.Bytes(pr.Done), units.Bytes(pr.Total), units.ETA(pr.ETA))
	if ansi.StringWidth(full) < width {
		return full
	}
	pct := 0
	if pr.FileSize > 0 {
		pct = int(pr.FileDone * 100 / pr.FileSize)
	}
	stats := fmt.Sprintf(" %d%% · all %s/%s %s/s ETA %s", pct,
		units.Bytes(pr.Done), units.Bytes(pr.Total), units.Bytes(int64(pr.Rate)), units.ETA(pr.ETA))
	room := max(width-1-2-ansi.StringWidth(stats), 12)
	name := pr.File
	if ansi.StringWidth(name) > room {
		// Every big file is a .safetensors one: its number says more.
		name = strings.TrimSuffix(name, ".safetensors")
	}
	return "  " + middleTruncate(name, room) + stats
}

// middleTruncate shortens s to at most n cells by replacing its middle
// with "…", keeping the start and the end (where a shard's number is).
func middleTruncate(s string, n int) string {
	if ansi.StringWidth(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return ansi.Truncate(s, n, "…") // wide characters: cut the end
	}
	tail := (n - 1) / 2
	head := n - 1 - tail
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// forget drops a file's status line.
func (p *pullPrinter) forget(file string) {
	delete(p.lines, file)
	for i, f := range p.recent {
		if f == file {
			p.recent = append(p.recent[:i], p.recent[i+1:]...)
			break
		}
	}
}

// draw puts a status line on screen, cut to one row short of the width
// (the cursor stays on the row).
func (p *pullPrinter) draw(line string) {
	width := p.width
	if width <= 0 {
		width = 80
	}
	fmt.Fprint(p.w, ansi.Truncate(line, width-1, "…"))
	p.status = true
}

func (p *pullPrinter) clear() {
	if p.status {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.status = false
	}
}

func (p *pullPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status {
		fmt.Fprintln(p.w)
		p.status = false
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := fileOf(w)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// fileOf is the file under w, through writers that wrap another and say
// so with Unwrap (main's echoRecorder wraps every command's stderr).
func fileOf(w io.Writer) (*os.File, bool) {
	for {
		switch v := w.(type) {
		case *os.File:
			return v, true
		case interface{ Unwrap() io.Writer }:
			w = v.Unwrap()
		default:
			return nil, false
		}
	}
}

// termWidth is the width of the terminal w writes to, 0 if unknown.
func termWidth(w io.Writer) int {
	f, ok := fileOf(w)
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(f.Fd())
	if err != nil {
		return 0
	}
	return width
}

func listCache(w io.Writer, cache hub.Cache, jsonOut bool) error {
	models, err := cache.Models()
	if err != nil {
		return err
	}
	if jsonOut {
		enc := json.NewEncoder(w)
		for _, m := range models {
			latest, _ := m.Latest()
			line := map[string]any{
				"repo": m.Repo, "size": m.Size, "partial": m.Partial, "refs": m.Refs,
				"dir": latest.Dir, "commit": latest.Commit, "weights": latest.HasWeights(),
			}
			if p, ok := cache.Unfinished(m.Repo); ok {
				line["partial_pull"] = partialJSON(p)
			}
			enc.Encode(line)
		}
		return nil
	}
	if len(models) == 0 {
		fmt.Fprintf(w, "no models in %s\n", cache.Dir)
		return nil
	}
	fmt.Fprintf(w, "%s\n", cache.Dir)
	for _, m := range models {
		latest, _ := m.Latest()
		var notes []string
		p, partial := cache.Unfinished(m.Repo)
		switch {
		case partial: // an interrupted pull: what its record or the cache tells
			notes = append(notes, "partial: "+p.String()+", whet pull resumes")
		case m.Partial > 0: // interrupted downloads of no pull known
			notes = append(notes, units.Bytes(m.Partial)+" partial, whet pull resumes")
		case !latest.HasWeights():
			notes = append(notes, "config only")
		}
		if len(m.Snapshots) > 1 {
			notes = append(notes, fmt.Sprintf("%d snapshots", len(m.Snapshots)))
		}
		note := ""
		if len(notes) > 0 {
			note = "  (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(w, "  %-44s %10s%s\n", m.Repo, units.Bytes(m.Size), note)
	}
	return nil
}

// pullModelArg makes a Hub id usable where a command takes a model folder:
// for ORG/NAME[@REVISION] it pulls what is missing (progress on w, quiet
// when everything is cached) and returns the snapshot folder; a folder
// comes back as it is. files selects what to fetch (nil: what a run needs).
func pullModelArg(ctx context.Context, model string, files func(string) bool, w io.Writer) (string, error) {
	if !hub.LooksLikeRef(model) {
		// A path that is not there: say so here, rather than have the
		// first file read fail ("tokenizer: open …/tokenizer.json").
		if strings.ContainsAny(model, `/\`) || strings.HasPrefix(model, ".") || strings.HasPrefix(model, "~") {
			if _, err := os.Stat(model); errors.Is(err, fs.ErrNotExist) {
				return "", engine.NoModelFolder(model)
			}
		}
		return model, nil
	}
	show := &pullPrinter{w: w, live: isTerminal(w), width: termWidth(w), quietCached: true}
	cacheDir := "the Hugging Face cache"
	if s, err := hub.SettingsFromEnv(os.Getenv); err == nil {
		show.endpoint, cacheDir = s.Endpoint, s.CacheDir
	}
	// Ctrl-C or SIGTERM during the download ends it as whet pull's does, saying what
	// was kept, rather than killing the process mid-line; the command
	// then exits 130 or 143 (interruptedError), as a finished whet train
	// stopped by the signal does, so `whet train … && whet export …` stops.
	ctx, received, release := stopOnSignal(ctx)
	defer release()
	dir, notice, err := engine.ModelFolder(ctx, model, hub.PullOptions{Files: files, Progress: show.report})
	show.finish()
	if notice != "" {
		fmt.Fprintln(w, notice)
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		if sig := received(); sig != 0 {
			return "", &interruptedError{sig: sig, msg: fmt.Sprintf("download of %s stopped by %s (exit status %d); what arrived is kept in %s and the pull resumes where it stopped when you run this again (or `whet pull %s`)",
				model, signalName(sig), 128+int(sig), cacheDir, model)}
		}
		return "", fmt.Errorf("download of %s cancelled; what arrived is kept in %s and running this again (or `whet pull %s`) resumes it", model, cacheDir, model)
	}
	return dir, err
}
