package export

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// The runs these tests train go on the CPU, as whet's main registers it.
func init() {
	engine.RegisterBackend("cpu", func() (engine.Backend, error) { return cpu.New(), nil })
}

// trainWithTemplateFile trains a short LoRA run on the tiny Qwen2 with
// data.template naming a .jinja file of text, and returns the run folder.
func trainWithTemplateFile(t *testing.T, file, text string) string {
	t.Helper()
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	runs := t.TempDir()
	cfg := engine.RunConfig{Name: "tpl", Model: testdata("tiny-qwen2"), Method: "lora", Backend: "cpu", RunsDir: runs,
		LoRA:  engine.LoRAConfig{Rank: 2, Alpha: 4},
		Data:  engine.DataConfig{Path: testdata("datasets/tiny-chat.jsonl"), Template: file, MaxLength: 128, Packing: true, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 1, MicroBatch: 1, LR: 3e-3, Seed: 1}}
	if err := cfg.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	cfg.Train.SampleEvery = 0
	events, _, err := engine.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range events {
		if d, ok := ev.(engine.DoneEvent); ok && d.Err != nil {
			t.Fatalf("run failed: %v", d.Err)
		}
	}
	return filepath.Join(runs, "tpl")
}

// A run trained with a .jinja file exports the text it trained with, from
// the run folder's copy: the file deleted or edited since changes nothing.
func TestExportUsesTheRunsCopyOfItsTemplateFile(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "mine.jinja")
	own := "{#- mine #}\n" + customTemplate + "\n"
	run := trainWithTemplateFile(t, file, own)

	if err := os.WriteFile(file, []byte("{{ 'edited' }}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Run(Options{RunDir: run, Format: "peft", OutDir: filepath.Join(tmp, "edited")}, nil); err != nil {
		t.Fatal(err)
	}
	checkTokenizerConfig(t, "peft, the file edited", testdata("tiny-qwen2"), filepath.Join(tmp, "edited"), own)

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	var notices []string
	err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: filepath.Join(tmp, "gone")}, func(_, total int, what string) {
		if total == 0 {
			notices = append(notices, what)
		}
	})
	if err != nil {
		t.Fatalf("export with the template file deleted: %v", err)
	}
	if got := ggufChatTemplate(t, filepath.Join(tmp, "gone", "model.gguf")); got != own {
		t.Errorf("GGUF tokenizer.chat_template %q, want the trained %q", got, own)
	}
	if copy := engine.RunDir(run).ChatTemplate(); !strings.Contains(strings.Join(notices, "\n"), "data.template "+copy) {
		t.Errorf("the export's notices %q do not name the run's copy %s", notices, copy)
	}
}
