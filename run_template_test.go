package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
)

// A run trained with data.template naming a .jinja file (relative to the
// run file) keeps using the template it trained with after the file is
// edited or deleted: whet chat --run and the studio's chat prompt with it,
// whet export writes it, and whet train on the same run file refuses to
// resume with the edited file, naming data.template, the file and the run's
// copy.
func TestRunTemplateFileOutlivesTheFile(t *testing.T) {
	proj := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	jinja := func(name string) string {
		tpl, ok := datasets.LookupTemplate(name)
		if !ok {
			t.Fatalf("no built-in %s", name)
		}
		return tpl.Jinja()
	}
	file := filepath.Join(proj, "mine.jinja")
	if err := os.WriteFile(file, []byte(jinja("alpaca")), 0o644); err != nil {
		t.Fatal(err)
	}
	runFile := filepath.Join(proj, "run.yaml")
	if err := os.WriteFile(runFile, fmt.Appendf(nil, `name: tpl
model: %s
backend: cpu
runs_dir: %s
lora: {r: 2, alpha: 4}
data: {path: %s, template: mine.jinja, max_length: 64, packing: true, seed: 1}
train: {max_steps: 2, lr: 0.001, seed: 1}
`, abs("testdata/tiny-llama"), filepath.Join(proj, "runs"), abs("testdata/datasets/tiny-chat.jsonl")), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runTrain([]string{"-c", runFile}, nil, &out, &out); err != nil {
		t.Fatalf("train: %v\n%s", err, out.String())
	}
	run := filepath.Join(proj, "runs", "tpl")

	// Edited to another family's template since training.
	if err := os.WriteFile(file, []byte(jinja("chatml")), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, errs := runCLI(t, "chat", "--run", run, "--backend", "cpu")
	if code != 0 || !strings.Contains(stdout, "(template alpaca, adapter ") {
		t.Errorf("whet chat --run: exit %d, stdout %q, stderr %q; want the trained template alpaca", code, stdout, errs)
	}
	cfg := engine.RunConfig{Backend: "cpu", Method: "lora", Model: abs("testdata/tiny-llama")}
	s, err := (studioChatter{}).OpenChat(context.Background(), run, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sc, ok := s.(*studioChat); !ok || sc.s.Template.Name != "alpaca" {
		t.Errorf("the studio's chat (%T) does not use the trained template alpaca", s)
	}
	s.Close()

	err = runTrain([]string{"-c", runFile}, nil, &out, &out)
	copy := engine.RunDir(run).ChatTemplate()
	if err == nil || !strings.Contains(err.Error(), "data.template: the content of "+file+" differs from "+copy) || !strings.Contains(err.Error(), "--resume-anyway") {
		t.Errorf("resume with the template file edited: %v, want a refusal naming data.template, %s and %s", err, file, copy)
	}

	// Deleted: the export still carries the trained template.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	exp := filepath.Join(proj, "peft")
	if code, stdout, errs := runCLI(t, "export", "--run", run, "--format", "peft", "--out", exp); code != 0 {
		t.Fatalf("whet export with the template file deleted: exit %d\n%s%s", code, stdout, errs)
	}
	var tc map[string]any
	b, err := os.ReadFile(filepath.Join(exp, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &tc); err != nil {
		t.Fatal(err)
	}
	if tc["chat_template"] != jinja("alpaca") {
		t.Errorf("exported chat_template %q, want the trained alpaca's", tc["chat_template"])
	}
}
