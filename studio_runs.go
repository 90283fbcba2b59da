package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"whet/engine"
	"whet/engine/atomicfile"
	"whet/engine/worker"
	"whet/tui"
)

// studioRuns is the studio's runs page over a runs folder: the listing
// of whet runs, and worker.Attach to open a run.
type studioRuns struct{ dir string }

var _ tui.RunBrowser = studioRuns{}

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
