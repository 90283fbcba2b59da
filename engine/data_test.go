package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"whet/datasets"
	"whet/engine"
)

// TestPrepareRefusesDataOfTheOtherMethod: headless runs (engine.Prepare,
// as whet train calls it) refuse DPO on single-answer data and LoRA on
// preference pairs with the reason, as the studio's data page does.
func TestPrepareRefusesDataOfTheOtherMethod(t *testing.T) {
	cases := []struct {
		method, data, want string
	}{
		{"dpo", abs("../testdata/datasets/tiny-chat.jsonl"), "DPO needs preference data (prompt, chosen, rejected); " + abs("../testdata/datasets/tiny-chat.jsonl") + " is messages"},
		{"lora", abs("../testdata/datasets/preference.jsonl"), "preference.jsonl holds preference pairs: choose the dpo method"},
	}
	for _, c := range cases {
		cfg := engine.RunConfig{Model: abs("../testdata/tiny-qwen2"), Method: c.method, Backend: "cpu", RunsDir: t.TempDir(),
			Data: engine.DataConfig{Path: c.data, MaxLength: 64}}
		s, err := engine.Prepare(withDefaults(t, cfg))
		if err == nil {
			s.Close()
			t.Errorf("%s on %s: prepared, want a refusal", c.method, c.data)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s on %s: error %q lacks %q", c.method, c.data, err, c.want)
		}
	}
}

// TestPrepareWarnsOfAnImageColumn: whet train's notices say, once, that
// the data file's image column is not read and the run trains on the text.
func TestPrepareWarnsOfAnImageColumn(t *testing.T) {
	src, err := os.ReadFile(abs("../testdata/datasets/tiny-chat.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(string(src)), "\n") {
		rows = append(rows, strings.TrimSuffix(line, "}")+`, "images": ["photo.png"]}`)
	}
	data := filepath.Join(t.TempDir(), "captions.jsonl")
	if err := os.WriteFile(data, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := engine.RunConfig{Model: abs("../testdata/tiny-qwen2"), Method: "lora", Backend: "cpu", RunsDir: t.TempDir(),
		Data: engine.DataConfig{Path: data, MaxLength: 64}}
	s, err := engine.Prepare(withDefaults(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := "data: warning: " + data + `:1: column "images" is not read`
	n := 0
	for _, line := range s.Notices {
		if strings.HasPrefix(line, "data: warning:") {
			n++
			if !strings.HasPrefix(line, want) {
				t.Errorf("notice %q, want one starting %q", line, want)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d image warnings in notices %q, want 1", n, s.Notices)
	}
}

// TestRunFileDataSectionIsDatasetsOptions: the data section of a run file
// is datasets.Options itself (one declaration of every data setting), its
// YAML keys are the ones run files have always used, the fields the
// program sets are never written or read, and DataOptions hands Prepare
// every setting of the run file.
func TestRunFileDataSectionIsDatasetsOptions(t *testing.T) {
	var cfg engine.RunConfig
	cfg.Data = datasets.Options{Path: "/d/train.jsonl", Format: "messages", Columns: map[string]string{"messages": "conv"},
		Template: "chatml", TrainOn: "all", MaxLength: 512, Packing: true, EvalSplit: 0.1, EvalPath: "/d/eval.jsonl",
		SkipBadRows: true, Seed: 7, Encoding: "latin1",
		Objective: datasets.ObjectivePreference, MicroBatch: 3, BatchTokens: 4096, Now: time.Now}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const want = `data:
    path: /d/train.jsonl
    format: messages
    columns:
        messages: conv
    template: chatml
    train_on: all
    max_length: 512
    packing: true
    eval_split: 0.1
    eval_path: /d/eval.jsonl
    skip_bad_rows: true
    seed: 7
    encoding: latin1
train:`
	if !strings.Contains(string(out), want) {
		t.Errorf("run file data section:\n%s\nwant:\n%s", out, want)
	}

	dir := t.TempDir()
	run := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(run, []byte("model: /m\n"+want+"\n    lr: 0.001\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := engine.LoadRunConfig(run)
	if err != nil {
		t.Fatal(err)
	}
	d := loaded.Data
	if d.Path != "/d/train.jsonl" || d.Format != "messages" || d.Columns["messages"] != "conv" || d.Template != "chatml" ||
		d.TrainOn != "all" || d.MaxLength != 512 || !d.Packing || d.EvalSplit != 0.1 || d.EvalPath != "/d/eval.jsonl" ||
		!d.SkipBadRows || d.Seed != 7 || d.Encoding != "latin1" {
		t.Errorf("loaded data section %+v", d)
	}
	opts := engine.DataOptions(loaded)
	if opts.Path != d.Path || opts.Columns["messages"] != "conv" || opts.Seed != 7 || !opts.SkipBadRows || opts.Encoding != "latin1" ||
		opts.Objective != datasets.ObjectiveSFT || opts.MicroBatch != 1 || opts.BatchTokens != 512 {
		t.Errorf("DataOptions %+v", opts)
	}

	if err := os.WriteFile(run, []byte("model: /m\ndata:\n    path: /d/train.jsonl\n    micro_batch: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.LoadRunConfig(run); err == nil || !strings.Contains(err.Error(), "micro_batch") {
		t.Errorf("a program-set field in a run file's data section: %v", err)
	}
}

// TestRunFileDataRulesAreThePipelines: a run file's data settings are
// checked by the data pipeline's own rule (datasets.Options.Validate) when
// the file is read, so a format, column mapping or encoding that Prepare
// would refuse is refused before any model loads, and what Prepare accepts
// (train_on: assistant, its alias of responses) the run file accepts.
func TestRunFileDataRulesAreThePipelines(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"data: {format: yaml}", `data.format: unknown "yaml"`},
		{"data: {columns: {msgs: conversation}}", `data.columns: maps unknown column "msgs"`},
		{"data: {encoding: klingon}", `data.encoding: unknown text encoding "klingon"`},
		{"data: {eval_split: 1}", "data.eval_split: must be in [0, 1), got 1"},
		{"data: {train_on: assistant}", ""},
		{"data: {format: dpo, encoding: latin1}", ""},
	} {
		_, err := engine.LoadRunConfig(writeTinyRunFile(t, tc.yaml))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.yaml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
