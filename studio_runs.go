package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"whet/engine"
	"whet/engine/atomicfile"
	"whet/engine/worker"
	"whet/tui"
)

// studioRuns is the studio's runs page over a runs folder: the listing
// of whet runs, and worker.Attach to open a run.
type studioRuns struct{ dir string }

var (
	_ tui.RunBrowser = studioRuns{}
	_ tui.RunResumer = studioRuns{}
)

// Resume trains run name again from its newest checkpoint with its own
// run.yaml, in a worker as the studio's runs are (whet train -c
// RUN/run.yaml --detach), and follows it.
func (r studioRuns) Resume(ctx context.Context, name string) (tui.AttachedRun, error) {
	rd, err := engine.NewRunDir(r.dir, name)
	if err != nil {
		return tui.AttachedRun{}, err
	}
	cfg, err := engine.LoadRunConfig(rd.Config())
	if err != nil {
		return tui.AttachedRun{}, err
	}
	// The run goes on in its own folder, whatever runs_dir its file names
	// (a relative one is the working folder's it was started in).
	if cfg.RunsDir, err = filepath.Abs(filepath.Dir(rd.Path())); err != nil {
		return tui.AttachedRun{}, err
	}
	cfg.Name = filepath.Base(rd.Path())
	events, ctl, err := detachedStudioEngine{}.Start(ctx, cfg)
	if err != nil {
		return tui.AttachedRun{}, err
	}
	return tui.AttachedRun{Config: cfg, Events: events, Control: ctl}, nil
}

func (r studioRuns) List() ([]tui.RunInfo, []string, error) {
	return worker.List(r.dir, time.Now())
}

func (r studioRuns) Attach(ctx context.Context, name string) (tui.AttachedRun, error) {
	rd, cfg, err := openRun(r.dir, name)
	if err != nil {
		return tui.AttachedRun{}, err
	}
	events, ctl, warnings, err := worker.AttachContext(ctx, rd)
	if err != nil {
		return tui.AttachedRun{}, err
	}
	return tui.AttachedRun{Config: cfg, Events: events, Control: ctl, Warnings: warnings}, nil
}

// openRun finds run name in the runs folder dir and its saved config
// (its name and folder only, if run.yaml cannot be read).
func openRun(dir, name string) (engine.RunDir, engine.RunConfig, error) {
	rd, err := engine.NewRunDir(dir, name)
	if err != nil {
		return "", engine.RunConfig{}, err
	}
	if _, err := os.Stat(rd.Path()); err != nil {
		return "", engine.RunConfig{}, fmt.Errorf("no run %s in %s (whet runs --dir %s lists them)", name, dir, dir)
	}
	cfg := engine.RunConfig{Name: name, RunsDir: dir}
	if raw, err := atomicfile.ReadFile(rd.Config()); err == nil {
		if saved, err := engine.DecodeRunConfig(raw); err == nil {
			cfg = saved
		}
	}
	return rd, cfg, nil
}
