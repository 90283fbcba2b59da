package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/tui"
	"whet/tui/fake"
)

// The studio's model page, wired as `whet studio` wires it (the Hub from
// HF_ENDPOINT and the cache from HF_HOME), downloads a typed repo id; the
// config keeps the id; the fit check and the data preview read the
// snapshot from the cache, also once the Hub is gone; and a run started
// by id records the id in its run.yaml.
func TestStudioPullsAndTrainsByRepoID(t *testing.T) {
	srv, cache := pullEnv(t)
	const id = "whet-test/tiny-llama"
	h, err := newStudioHub()
	if err != nil || h == nil {
		t.Fatalf("newStudioHub: %v, %v", h, err)
	}
	if got := h.Settings().CacheDir; got != cache {
		t.Fatalf("the studio's Hub writes to %s, want %s (HF_HOME/hub)", got, cache)
	}
	m := tui.New(tui.Options{Engine: &fake.Engine{}, Catalog: newStudioCatalog(), Presets: newStudioPresets(), Hub: h,
		RunsDir: t.TempDir(), RecentData: filepath.Join(t.TempDir(), "recent")})
	s := syncStudio{m}
	s.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	s.send(tea.KeyPressMsg{Code: tea.KeyEnd})
	s.enter(1)
	for _, r := range id {
		s.send(tea.KeyPressMsg{Code: r, Text: string(r)})
	}
	s.enter(1) // downloads; syncStudio runs each command to its end
	cfg := m.Config()
	if cfg.Model != id {
		t.Fatalf("Model = %q, want %q; screen:\n%s", cfg.Model, id, m.View().Content)
	}
	if !strings.Contains(m.View().Content, "How should it learn?") {
		t.Fatalf("the pull should go on to the method page:\n%s", m.View().Content)
	}
	srv.Close() // from here the cache alone answers

	dir, err := modelDir(id)
	if err != nil || !strings.HasPrefix(dir, cache) {
		t.Fatalf("modelDir(%s) = %q, %v; want a snapshot in %s", id, dir, err, cache)
	}
	if _, err := planConfig(id); err != nil {
		t.Errorf("the fit check cannot read the model's config from the cache: %v", err)
	}
	data, _ := filepath.Abs("testdata/datasets/tiny-chat.jsonl")
	cfg.Data.Path, cfg.Data.MaxLength = data, 128
	if pv, err := (studioPreviewer{}).Preview(context.Background(), cfg, nil); err != nil || pv.Stats.Rows == 0 {
		t.Errorf("the data preview should load the cached model's tokenizer: %+v, %v", pv.Stats, err)
	}

	runs := t.TempDir()
	cfg.Name, cfg.RunsDir, cfg.Backend = "byid", runs, "cpu"
	cfg.Train.MaxSteps, cfg.Train.MicroBatch, cfg.Train.GradAccum, cfg.Train.SampleEvery, cfg.Train.SamplePrompts = 1, 2, 1, 0, nil
	cfg.Train.EvalEvery, cfg.Train.SaveEvery = 0, 0
	events, _, err := studioEngine{}.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start by repo id with the Hub gone: %v", err)
	}
	deadline := time.After(60 * time.Second)
	for done := false; !done; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the run ended without a DoneEvent")
			}
			if d, isDone := ev.(engine.DoneEvent); isDone {
				if d.Err != nil {
					t.Fatalf("run failed: %v", d.Err)
				}
				done = true
			}
		case <-deadline:
			t.Fatal("the one-step run did not end")
		}
	}
	b, err := os.ReadFile(filepath.Join(runs, "byid", "run.yaml"))
	if err != nil || !strings.Contains(string(b), "model: "+id+"\n") {
		t.Errorf("run.yaml should record the repo id (%v):\n%s", err, b)
	}
}
