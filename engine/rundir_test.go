package engine_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"whet/engine"
)

// smallRun is a short LoRA run of the tiny Llama on the tiny chat set.
func smallRun(dir, name string) engine.RunConfig {
	return fillDefaults(engine.RunConfig{Name: name, Model: abs("../testdata/tiny-llama"), Method: "lora", Backend: "cpu", RunsDir: dir,
		LoRA: engine.LoRAConfig{Rank: 2, Alpha: 4},
		Data: engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 128, Packing: true, EvalSplit: 0.1, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 4, MicroBatch: 1, LR: 3e-3, Schedule: "constant", Seed: 1, SaveEvery: 2,
			EvalEvery: 2, SampleEvery: 4, SamplePrompts: []string{"Hi"}, SampleTokens: 2}})
}

// Every file a run leaves in its folder is one that engine.RunDir names:
// the layout has one owner, which the readers (whet runs, chat, export,
// the studio) use too.
func TestRunDirNamesEverythingARunWrites(t *testing.T) {
	dir := t.TempDir()
	cfg := smallRun(dir, "layout")
	// A data.template file: the run keeps a copy of it.
	cfg.Data.Template = filepath.Join(t.TempDir(), "mine.jinja")
	writeText(t, cfg.Data.Template, familyJinja(t, "alpaca"))
	runToEnd(t, cfg)
	d, err := engine.NewRunDir(dir, "layout")
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, p := range []string{d.Config(), d.Inputs(), d.Metrics(), d.Samples(), d.Status(), d.Checkpoints(),
		d.Adapter(), d.Model(), d.RefLogps(), d.LockFile(), d.ChatTemplate(), filepath.Dir(d.Export("peft", ""))} {
		if filepath.Dir(p) != d.Path() {
			t.Errorf("%s is not directly in the run folder %s", p, d.Path())
		}
		named[filepath.Base(p)] = true
	}
	entries, err := os.ReadDir(d.Path())
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		found = append(found, e.Name())
		if !named[e.Name()] {
			t.Errorf("the run wrote %s, which engine.RunDir does not name", e.Name())
		}
	}
	sort.Strings(found)
	for _, want := range []string{"adapter", "chat_template.jinja", "checkpoints", "metrics.jsonl", "run.yaml", "samples.jsonl", "status.json"} {
		if _, err := os.Stat(filepath.Join(d.Path(), want)); err != nil {
			t.Errorf("run folder holds %v, lacks %s", found, want)
		}
	}
	if all, _ := engine.ListCheckpoints(d.Checkpoints()); len(all) == 0 {
		t.Error("no checkpoint under RunDir.Checkpoints()")
	}
	if got := engine.ExportDir(d.Path(), "gguf", "q8_0"); got != filepath.Join(d.Path(), "export", "gguf-q8_0") {
		t.Errorf("ExportDir = %s", got)
	}
}

// A run name is a folder in the runs folder: it cannot climb out of it or
// name a path.
func TestRunNameCannotLeaveRunsFolder(t *testing.T) {
	runs := t.TempDir()
	for _, bad := range []string{"..", ".", "../escape", "a/b", "/etc", "a\\b", ".hidden", "x\x00y", ""} {
		if _, err := engine.NewRunDir(runs, bad); err == nil || !strings.Contains(err.Error(), "name:") {
			t.Errorf("name %q: want a refusal naming the field, got %v", bad, err)
		}
	}
	for _, good := range []string{"persona-lora", "run-20260101-120000", "v1.2_b"} {
		d, err := engine.NewRunDir(runs, good)
		if err != nil || d.Path() != filepath.Join(runs, good) {
			t.Errorf("name %q: %q, %v", good, d, err)
		}
	}
	if d, _ := engine.NewRunDir("", "x"); d.Path() != filepath.Join(engine.DefaultRunsDir, "x") {
		t.Errorf("default runs folder: %s", d)
	}
	// Prepare refuses such a name before it loads anything, and creates
	// nothing outside the runs folder.
	cfg := smallRun(filepath.Join(runs, "inner"), "../outside")
	if _, err := engine.Prepare(cfg); err == nil || !strings.Contains(err.Error(), "name:") {
		t.Fatalf("Prepare with name ../outside: %v", err)
	}
	if _, err := os.Stat(filepath.Join(runs, "outside")); !os.IsNotExist(err) {
		t.Errorf("a folder was made outside the runs folder: %v", err)
	}
}

// The name a run gets when none is given is one NewRunDir accepts, and
// the studio's -2 suffix keeps it so.
func TestRunNameAtIsAValidRunName(t *testing.T) {
	at := time.Date(2026, 12, 7, 21, 5, 9, 0, time.UTC)
	name := engine.RunNameAt(at)
	if name != "run-20261207-210509" {
		t.Errorf("RunNameAt = %q", name)
	}
	for _, n := range []string{name, name + "-2"} {
		if _, err := engine.NewRunDir(t.TempDir(), n); err != nil {
			t.Errorf("NewRunDir refuses the default name %q: %v", n, err)
		}
	}
}
