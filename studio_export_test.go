package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"whet/engine"
)

// makeFullStudioRun makes a finished full fine-tuning run of the tiny
// test model: run.yaml and model/ are all the export reads.
func makeFullStudioRun(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny-full")
	model := filepath.Join(dir, "model")
	if err := os.MkdirAll(model, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join("testdata", "tiny-llama")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(model, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	abs, _ := filepath.Abs(src)
	cfg := engine.RunConfig{Name: "tiny-full", Model: abs, Method: "full", Backend: "cpu",
		Data: engine.DataConfig{Path: "data.jsonl", Template: "chatml", MaxLength: 64}}
	if err := cfg.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run.yaml"), y, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// progressLog records progress reports, which may come from another
// goroutine.
type progressLog struct {
	mu    sync.Mutex
	steps []string
	last  [2]int
}

func (p *progressLog) report(done, total int, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps = append(p.steps, what)
	p.last = [2]int{done, total}
}

func TestStudioExportWritesGGUFAndModelfile(t *testing.T) {
	run := makeFullStudioRun(t)
	out := filepath.Join(run, "export", "gguf-q8_0")
	var log progressLog
	files, err := newStudioExport().Export(context.Background(), run, "gguf", "q8_0", out, log.report)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if !slices.Equal(files, []string{"Modelfile", "model.gguf"}) {
		t.Errorf("files = %q, want Modelfile and model.gguf", files)
	}
	for _, f := range files {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if log.last[0] != log.last[1] || log.last[1] < 3 || !slices.Contains(log.steps, "Modelfile") {
		t.Errorf("progress should end at total with the Modelfile step: last %v, steps %q", log.last, log.steps)
	}
}

func TestStudioExportRejectsBadChoiceAndMissingRun(t *testing.T) {
	e := newStudioExport()
	dir := t.TempDir()
	if _, err := e.Export(context.Background(), dir, "gguf", "q2_k", filepath.Join(dir, "out"), func(int, int, string) {}); err == nil || !strings.Contains(err.Error(), "q2_k") {
		t.Errorf("an unknown quant should be named in the error, got %v", err)
	}
	if _, err := e.Export(context.Background(), dir, "peft", "", filepath.Join(dir, "out"), func(int, int, string) {}); err == nil || !strings.Contains(err.Error(), "no run.yaml") {
		t.Errorf("a folder without run.yaml should be refused clearly, got %v", err)
	}
}

// A cancelled export returns at once with the context's error, leaves no
// folder it created, and does not block the next export.
func TestStudioExportCancel(t *testing.T) {
	run := makeFullStudioRun(t)
	e := newStudioExport()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := filepath.Join(run, "export", "gguf-f16")
	if _, err := e.Export(ctx, run, "gguf", "f16", gone, func(int, int, string) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Export with a cancelled context = %v, want context.Canceled", err)
	}
	out := filepath.Join(run, "export", "merged-bf16")
	var log progressLog
	files, err := e.Export(context.Background(), run, "merged", "bf16", out, log.report)
	if err != nil {
		t.Fatalf("the export after a cancelled one: %v", err)
	}
	if !slices.Contains(files, "model.safetensors") || !slices.Contains(files, "config.json") {
		t.Errorf("merged files = %q", files)
	}
	// The second export started only after the first had ended and
	// cleaned up.
	if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cancelled export's folder should be removed, stat: %v", err)
	}
}
