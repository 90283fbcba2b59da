package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"whet/engine"
	"whet/engine/worker"
	"whet/tui"
)

// detachedStudioEngine starts each studio run in a worker process of its
// own (as whet train --detach does) and follows it through the run's
// control socket: the run goes on when the session that started it ends,
// and whet attach (or another session) can follow it.
type detachedStudioEngine struct{}

var (
	_ tui.Engine        = detachedStudioEngine{}
	_ tui.Detacher      = detachedStudioEngine{}
	_ tui.NameClaimer   = detachedStudioEngine{}
	_ tui.ModelResolver = detachedStudioEngine{}
)

// RunModel lets the review page show the model as run.yaml will hold it.
func (detachedStudioEngine) RunModel(model string) (string, error) { return runModel(model) }

// Detached tells the studio that quitting leaves the run training.
func (detachedStudioEngine) Detached() bool { return true }

// ClaimRunName makes the folder of the studio's proposed run name, or of
// the next free one (engine.ClaimRunName): two whet serve sessions that
// start in the same second train two runs.
func (detachedStudioEngine) ClaimRunName(runsDir, base string) (string, error) {
	return engine.ClaimRunName(runsDir, base)
}

func (detachedStudioEngine) Start(ctx context.Context, cfg engine.RunConfig) (<-chan engine.Event, engine.RunControl, error) {
	dir, err := runModel(cfg.Model)
	if err != nil {
		return nil, nil, err
	}
	cfg.Model = dir
	// The worker reads the run from a file; paths in it are made absolute
	// here, where they mean what the studio showed.
	abs := func(p string) (string, error) {
		if p == "" || filepath.IsAbs(p) {
			return p, nil
		}
		return filepath.Abs(p)
	}
	for _, p := range []*string{&cfg.Data.Path, &cfg.Data.EvalPath} {
		if *p, err = abs(*p); err != nil {
			return nil, nil, err
		}
	}
	if _, serr := os.Stat(cfg.Model); serr == nil {
		if cfg.Model, err = abs(cfg.Model); err != nil {
			return nil, nil, err
		}
	}
	if cfg.RunsDir == "" {
		cfg.RunsDir = engine.DefaultRunsDir
	}
	if cfg.RunsDir, err = abs(cfg.RunsDir); err != nil {
		return nil, nil, err
	}
	js, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("run file for the worker: %w", err)
	}
	f, err := os.CreateTemp("", "whet-run-*.yaml")
	if err != nil {
		return nil, nil, fmt.Errorf("run file for the worker: %w", err)
	}
	defer os.Remove(f.Name()) // the worker has read it once its socket is up
	if _, err := f.Write(js); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("run file for the worker: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, nil, fmt.Errorf("run file for the worker: %w", err)
	}
	if err := startDetached(ctx, cfg, f.Name(), "", cfg.ResumeAnyway, io.Discard); err != nil {
		return nil, nil, err
	}
	rd, err := engine.RunDirOf(cfg)
	if err != nil {
		return nil, nil, err
	}
	// The viewer's connection ends with ctx (an SSH session's); the run
	// does not.
	events, ctl, _, err := worker.AttachContext(ctx, rd)
	return events, ctl, err
}
