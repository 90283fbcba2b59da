package fake

import (
	"context"
	"fmt"
	"sync"

	"whet/engine"
	"whet/tui"
)

// Runs is a scripted runs folder: List returns Runs, and Attach replays
// the named run's script (history and live events alike) with a Control
// of its own, until the script ends or the viewer leaves (its context is
// cancelled). A step with a long After keeps a run live until then.
type Runs struct {
	Runs    []tui.RunInfo
	Scripts map[string][]Step
	// RunsDir names the folder the checkpoints are said to be in.
	RunsDir string
	ListErr error

	// ResumeErr, when set, is what Resume answers (a worker that refused
	// to start).
	ResumeErr error

	mu       sync.Mutex
	attached []string
	resumed  []string
	controls map[string]*Control
	left     int
}

var (
	_ tui.RunBrowser = (*Runs)(nil)
	_ tui.RunResumer = (*Runs)(nil)
)

// Resume implements tui.RunResumer: it records the name and plays the
// run's script as Attach does (a worker trains the run again).
func (r *Runs) Resume(ctx context.Context, name string) (tui.AttachedRun, error) {
	if r.ResumeErr != nil {
		return tui.AttachedRun{}, r.ResumeErr
	}
	r.mu.Lock()
	r.resumed = append(r.resumed, name)
	r.mu.Unlock()
	return r.Attach(ctx, name)
}

// Resumed is the names Resume was called with, in order.
func (r *Runs) Resumed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.resumed...)
}

// List implements tui.RunBrowser.
func (r *Runs) List() ([]tui.RunInfo, []string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ListErr != nil {
		return nil, nil, r.ListErr
	}
	return append([]tui.RunInfo(nil), r.Runs...), nil, nil
}

// SetRuns changes what List returns (a run ends, another starts).
func (r *Runs) SetRuns(runs []tui.RunInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Runs = runs
}

// Attach implements tui.RunBrowser.
func (r *Runs) Attach(ctx context.Context, name string) (tui.AttachedRun, error) {
	var info *tui.RunInfo
	r.mu.Lock()
	for i := range r.Runs {
		if r.Runs[i].Name == name {
			c := r.Runs[i]
			info = &c
		}
	}
	r.mu.Unlock()
	script, ok := r.Scripts[name]
	if info == nil || !ok {
		return tui.AttachedRun{}, fmt.Errorf("no run %s in %s", name, r.RunsDir)
	}
	ctl := &Control{resume: make(chan struct{}), runDir: r.RunsDir + "/" + name}
	r.mu.Lock()
	r.attached = append(r.attached, name)
	if r.controls == nil {
		r.controls = map[string]*Control{}
	}
	r.controls[name] = ctl
	r.mu.Unlock()
	ch := make(chan engine.Event)
	go func() {
		ctl.play(ctx, script, ch)
		if ctx.Err() != nil {
			r.mu.Lock()
			r.left++
			r.mu.Unlock()
		}
	}()
	cfg := engine.RunConfig{Name: name, Method: info.Method, Model: info.Model, RunsDir: r.RunsDir}
	return tui.AttachedRun{Config: cfg, Events: ch, Control: ctl}, nil
}

// Attached is the names Attach was called with, in order.
func (r *Runs) Attached() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.attached...)
}

// Control is the control of the latest viewer of run name (nil if none).
func (r *Runs) Control(name string) *Control {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.controls[name]
}

// Left is how many viewers left before their run's script ended.
func (r *Runs) Left() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.left
}
