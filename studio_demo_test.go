package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/engine/memplan"
	"whet/presets"
	"whet/tui"
	"whet/tui/fake"
)

// syncStudio drives the studio without a terminal, running each command
// at once and feeding its message back (enough for the wizard, whose
// commands all end).
type syncStudio struct{ m *tui.Model }

func (s syncStudio) send(msg tea.Msg) {
	_, cmd := s.m.Update(msg)
	s.run(cmd)
}

func (s syncStudio) run(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	switch msg := cmd().(type) {
	case nil:
	case tea.BatchMsg:
		for _, c := range msg {
			s.run(c)
		}
	default:
		s.send(msg)
	}
}

func (s syncStudio) enter(n int) {
	for range n {
		s.send(tea.KeyPressMsg{Code: tea.KeyEnter})
	}
}

// The demo, as a new user starts it (enter on every page), trains with
// the prompt of presets/demo/run.yaml, so the dashboard shows samples and
// the run writes samples.jsonl.
func TestStudioDemoRunSamplesOutOfTheBox(t *testing.T) {
	want, err := engine.LoadRunConfig(filepath.Join("presets", "demo", "run.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Train.SamplePrompts) == 0 || want.Train.SampleEvery == 0 {
		t.Fatalf("presets/demo/run.yaml should name a sample prompt and an interval: %+v", want.Train)
	}
	eng := &fake.Engine{Script: []fake.Step{{Event: engine.DoneEvent{}}}}
	s := syncStudio{tui.New(tui.Options{Engine: eng, Catalog: newStudioCatalog(), Presets: newStudioPresets(),
		Fit: newStudioFit(), Data: newStudioPreviewer(), RunsDir: t.TempDir(), DataDirs: []string{},
		RecentData: filepath.Join(t.TempDir(), "recent-datasets")})}
	s.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	s.enter(6) // model (the demo is first), method, data (its dataset is previewed), settings, fit, review
	if len(eng.Started()) != 1 {
		t.Fatalf("the run did not start; the config so far: %+v", s.m.Config())
	}
	cfg := eng.Started()[0]
	if !slices.Equal(cfg.Train.SamplePrompts, want.Train.SamplePrompts) || cfg.Train.SampleEvery != want.Train.SampleEvery {
		t.Fatalf("the demo run samples %q every %d steps, want %q every %d", cfg.Train.SamplePrompts, cfg.Train.SampleEvery, want.Train.SamplePrompts, want.Train.SampleEvery)
	}

	// One step of that config on the CPU ends with a sample (the last step
	// always samples) written to samples.jsonl.
	cfg.Backend, cfg.Train.MaxSteps, cfg.Train.Epochs, cfg.Train.SampleTokens = "cpu", 1, 0, 4
	cfg.Train.SaveEvery, cfg.Train.EvalEvery, cfg.Train.MicroBatch, cfg.Data.MaxLength = 0, 0, 1, 64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events, _, err := engine.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	samples := 0
	for ev := range events {
		switch ev := ev.(type) {
		case engine.SampleEvent:
			samples++
		case engine.DoneEvent:
			if ev.Err != nil {
				t.Fatalf("run failed: %v", ev.Err)
			}
		}
	}
	if samples == 0 {
		t.Error("the run sent no sample")
	}
	if _, err := os.Stat(filepath.Join(cfg.RunsDir, cfg.Name, "samples.jsonl")); err != nil {
		t.Errorf("the run wrote no samples.jsonl: %v", err)
	}
}

// Every method the demo model is trained with keeps the demo's prompt.
func TestStudioPresetsKeepTheDemoPrompt(t *testing.T) {
	want, err := engine.LoadRunConfig(filepath.Join("presets", "demo", "run.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir, ok := demoModelDir()
	if !ok {
		t.Fatal("the demo model is missing")
	}
	for _, method := range []string{"lora", "qlora", "full", "dpo", "grpo"} {
		rc, err := studioPresets{}.Defaults(dir, method)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if rc.Method != method || !slices.Equal(rc.Train.SamplePrompts, want.Train.SamplePrompts) || rc.Train.SampleEvery != want.Train.SampleEvery {
			t.Errorf("%s defaults for the demo: method %q, prompts %q every %d; want the demo's %q every %d", method, rc.Method,
				rc.Train.SamplePrompts, rc.Train.SampleEvery, want.Train.SamplePrompts, want.Train.SampleEvery)
		}
	}
}

// Advice to use a smaller model brings that model's chat template, as
// choosing it on the model page does; the previous model's would be stale.
func TestAdviceForAnotherModelTakesItsTemplate(t *testing.T) {
	models, err := presets.Models()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range models {
		if m.Template == "" {
			continue
		}
		rc := engine.RunConfig{Model: "some-other-model", Data: engine.DataConfig{Template: "previous-models-template"}}
		applyAdvice(&rc, memplan.Advice{Kind: memplan.AdviseSmallerModel, Model: m.Name, Options: memplan.Options{MicroBatch: 1, GradAccum: 1, SeqLen: 512}})
		if rc.Model != m.Name || rc.Data.Template != m.Template {
			t.Errorf("after the advice: model %q template %q, want %q with %q", rc.Model, rc.Data.Template, m.Name, m.Template)
		}
		return
	}
	t.Fatal("no catalog model names a template")
}
