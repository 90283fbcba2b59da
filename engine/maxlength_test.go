package engine_test

import (
	"errors"
	"path/filepath"
	"testing"

	"whet/engine"
)

// A run file without data.max_length takes the method's default fitted to
// the model's positions (engine.MaxLengthFor), the rule the studio's
// presets follow: 512 for the tiny Llama (512 positions), not lora's 2048.
// A run file that sets max_length keeps it, past the positions too, and
// the run folder's run.yaml records the length the run used.
func TestRunFileWithoutMaxLengthFitsTheModel(t *testing.T) {
	for _, c := range []struct {
		extra string
		fit   bool
		want  int
	}{
		{"", true, 512},
		{"data: {max_length: 2048}\n", false, 2048},
		{"data: {max_length: 300}\n", false, 300},
	} {
		runs := t.TempDir()
		cfg, err := engine.LoadRunConfig(writeTinyRunFile(t, "name: fit\nbackend: cpu\nruns_dir: "+runs+"\n"+c.extra))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.FitMaxLength != c.fit {
			t.Errorf("%q: FitMaxLength %v, want %v", c.extra, cfg.FitMaxLength, c.fit)
		}
		s, err := engine.Prepare(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if s.Cfg.Data.MaxLength != c.want {
			t.Errorf("%q: the run's max length %d, want %d", c.extra, s.Cfg.Data.MaxLength, c.want)
		}
		saved, err := engine.LoadRunConfig(engine.RunDir(filepath.Join(runs, "fit")).Config())
		if err != nil {
			t.Fatal(err)
		}
		if saved.Data.MaxLength != c.want || saved.FitMaxLength {
			t.Errorf("%q: run.yaml records max length %d (to fit: %v), want %d", c.extra, saved.Data.MaxLength, saved.FitMaxLength, c.want)
		}
	}
}

// A run folder being resumed from a run file without data.max_length
// keeps the length its run.yaml records: a run started past the model's
// 512 positions (as run files without the key were, at lora's 2048,
// before they were fitted; 600 here, which trains faster) resumes,
// instead of being refused as changed.
func TestResumeFromRunFileWithoutMaxLengthKeepsTheRuns(t *testing.T) {
	runs := t.TempDir()
	cfg := smallRun(runs, "kept")
	cfg.Data.MaxLength = 600
	cfg.Train.MaxSteps, cfg.Train.SaveEvery, cfg.Train.EvalEvery, cfg.Train.SampleEvery = 2, 2, 0, 0
	runToEnd(t, cfg)
	again := withDefaults(t, cfg)
	again.FitMaxLength = true // as read from a file without the key
	s, err := engine.Prepare(again)
	if err != nil {
		var changed *engine.ResumeChangedError
		t.Fatalf("resume: %v (changed: %v)", err, errors.As(err, &changed))
	}
	s.Close()
	if s.Cfg.Data.MaxLength != 600 || s.Trainer.Step() != 2 {
		t.Errorf("resumed at step %d with max length %d, want step 2 and the run's 600", s.Trainer.Step(), s.Cfg.Data.MaxLength)
	}
}
