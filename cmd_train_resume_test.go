package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// whet train refuses to resume checkpoints made with other settings, says
// what changed and how to go on; --resume-anyway goes on.
func TestTrainResumeAnyway(t *testing.T) {
	dir := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	runFile := func(lr string) string {
		run := fmt.Sprintf(`name: again
model: %s
backend: cpu
runs_dir: %s
lora: {r: 2, alpha: 4}
data: {path: %s, max_length: 64, packing: true, seed: 1}
train: {max_steps: 2, lr: %s, seed: 1}
`, abs("testdata/tiny-llama"), dir, abs("testdata/datasets/tiny-chat.jsonl"), lr)
		p := filepath.Join(dir, "run-"+lr+".yaml")
		if err := os.WriteFile(p, []byte(run), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var out bytes.Buffer
	if err := runTrain([]string{"-c", runFile("0.001")}, nil, &out, &out); err != nil {
		t.Fatalf("first run: %v\n%s", err, out.String())
	}
	err := runTrain([]string{"-c", runFile("0.002")}, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "train.lr: 0.001 → 0.002") || !strings.Contains(err.Error(), "--resume-anyway") {
		t.Fatalf("resume with another lr: %v", err)
	}
	out.Reset()
	if err := runTrain([]string{"-c", runFile("0.002"), "--resume-anyway"}, nil, &out, &out); err != nil {
		t.Fatalf("--resume-anyway: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "resuming anyway") {
		t.Errorf("output does not say it resumed anyway:\n%s", out.String())
	}
}
