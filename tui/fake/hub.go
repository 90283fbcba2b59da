package fake

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"whet/engine/hub"
	"whet/tui"
)

// Hub is a scripted Hugging Face Hub: a fixed cache listing, and
// downloads that replay Script's reports with Delay between them. With
// HoldAfter > 0 a download stops after that many reports until it is
// cancelled (a screen to look at); Err makes it fail after the script. A
// download that succeeds adds its model to the listing. Nothing is read
// or written on disk.
type Hub struct {
	Setting hub.Settings
	Models  []hub.CachedModel
	// Script gives the reports of a download of ref (nil: PullScript of
	// a small model).
	Script    func(ref hub.Ref) []hub.Progress
	Delay     time.Duration
	HoldAfter int
	Err       error

	mu    sync.Mutex
	pulls []hub.Ref
}

var _ tui.Hub = (*Hub)(nil)

// Settings implements tui.Hub.
func (h *Hub) Settings() hub.Settings { return h.Setting }

// Cached implements tui.Hub.
func (h *Hub) Cached() ([]hub.CachedModel, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hub.CachedModel(nil), h.Models...), nil
}

// Pulls returns the refs downloads were asked for, in order.
func (h *Hub) Pulls() []hub.Ref {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hub.Ref(nil), h.pulls...)
}

// Pull implements tui.Hub.
func (h *Hub) Pull(ctx context.Context, ref hub.Ref, progress func(hub.Progress)) (*hub.Snapshot, error) {
	h.mu.Lock()
	h.pulls = append(h.pulls, ref)
	h.mu.Unlock()
	script := h.Script
	if script == nil {
		script = func(ref hub.Ref) []hub.Progress { return PullScript(ref.Repo, DemoFiles, 64<<20, time.Second) }
	}
	reports := script(ref)
	cancelled := func() error {
		return fmt.Errorf("pull %s: %w (what arrived is kept and the next pull resumes)", ref, ctx.Err())
	}
	for i, p := range reports {
		if h.Delay > 0 {
			select {
			case <-time.After(h.Delay):
			case <-ctx.Done():
				return nil, cancelled()
			}
		}
		if ctx.Err() != nil {
			return nil, cancelled()
		}
		progress(p)
		if h.HoldAfter > 0 && i+1 == h.HoldAfter {
			<-ctx.Done()
			return nil, cancelled()
		}
	}
	if h.Err != nil {
		return nil, h.Err
	}
	commit := "0123456789abcdef0123456789abcdef01234567"
	var files []string
	var size int64
	if n := len(reports); n > 0 {
		commit, size = reports[n-1].Commit, reports[n-1].Total
	}
	for _, p := range reports {
		if p.Phase == hub.PhaseFileDone {
			files = append(files, p.File)
		}
	}
	sort.Strings(files)
	dir := path.Join(h.Setting.CacheDir, "models--"+strings.ReplaceAll(ref.Repo, "/", "--"), "snapshots", commit)
	h.mu.Lock()
	h.Models = append(h.Models, hub.CachedModel{Repo: ref.Repo, Size: size, Refs: map[string]string{ref.Revision: commit},
		Snapshots: []hub.CachedSnapshot{{Commit: commit, Dir: dir, Files: files, Size: size}}})
	sort.Slice(h.Models, func(i, j int) bool { return h.Models[i].Repo < h.Models[j].Repo })
	h.mu.Unlock()
	return &hub.Snapshot{Ref: ref, Commit: commit, Dir: dir, Files: files}, nil
}

// PullFile is a file of a scripted download.
type PullFile struct {
	Name string
	Size int64
}

// DemoFiles look like a small model's: config, tokenizer and weights.
var DemoFiles = []PullFile{
	{"config.json", 660}, {"generation_config.json", 242}, {"tokenizer.json", 7 << 20},
	{"tokenizer_config.json", 7 << 10}, {"model.safetensors", 988 << 20},
}

// PullScript makes the reports of a download of files, one after another,
// at a steady rate (bytes per second), one report per every of the
// download's time: the same numbers on every run, and with Hub.Delay set
// to every, the times left come true.
func PullScript(repo string, files []PullFile, rate float64, every time.Duration) []hub.Progress {
	const commit = "5ca1ab1e0ddba11c0ffee0000000000000c0ffee"
	var total int64
	for _, f := range files {
		total += f.Size
	}
	secs := func(n int64) time.Duration { return time.Duration(float64(n) / rate * float64(time.Second)) }
	chunk := max(int64(rate*every.Seconds()), 1)
	p := hub.Progress{Phase: hub.PhaseStart, Repo: repo, Commit: commit, Total: total, Files: len(files)}
	out := []hub.Progress{p}
	for _, f := range files {
		for done := min(chunk, f.Size); ; done = min(done+chunk, f.Size) {
			q := p
			q.Phase, q.File, q.FileDone, q.FileSize = hub.PhaseBytes, f.Name, done, f.Size
			q.Done = p.Done + done
			q.FileRate, q.Rate = rate, rate
			q.FileETA, q.ETA = secs(f.Size-done), secs(total-q.Done)
			if done == f.Size {
				q.Phase = hub.PhaseFileDone
				q.FilesDone++
				out = append(out, q)
				break
			}
			out = append(out, q)
		}
		p.Done += f.Size
		p.FilesDone++
	}
	p.Phase, p.Rate = hub.PhaseDone, rate
	return append(out, p)
}

// DemoHub is the Hub of `whet studio --fake`: a cache holding one model
// and downloads at 100 MiB/s (ten seconds for a 1 GB model).
func DemoHub() *Hub {
	const commit = "d3ad0000beef0000d3ad0000beef0000d3ad0000"
	return &Hub{
		Setting: hub.Settings{Endpoint: "https://hub.invalid (fake)", CacheDir: "~/.cache/huggingface/hub (fake)"},
		Models: []hub.CachedModel{{Repo: "Qwen/Qwen2.5-0.5B-Instruct", Size: 988 << 20, Refs: map[string]string{"main": commit},
			Snapshots: []hub.CachedSnapshot{{Commit: commit, Dir: "~/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B-Instruct/snapshots/" + commit,
				Files: []string{"config.json", "model.safetensors", "tokenizer.json"}, Size: 988 << 20}}}},
		Delay: demoEvery,
		Script: func(ref hub.Ref) []hub.Progress {
			return PullScript(ref.Repo, DemoFiles, 100<<20, demoEvery)
		},
	}
}

// demoEvery is how often the demo's downloads report.
const demoEvery = 150 * time.Millisecond
