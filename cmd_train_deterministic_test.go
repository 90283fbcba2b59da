package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainDeterministicFlag: whet train --deterministic sets
// train.deterministic for the run (its notice; the CPU backend has no
// non-deterministic kernels to leave), and a run without it says nothing.
func TestTrainDeterministicFlag(t *testing.T) {
	dir := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	run := fmt.Sprintf(`name: det
model: %s
method: lora
backend: cpu
runs_dir: %s
data: {path: %s, max_length: 64, packing: true, seed: 1}
train: {max_steps: 1, micro_batch: 1, grad_accum: 1, lr: 0.001, schedule: constant, seed: 1}
`, abs("testdata/tiny-qwen2"), dir, abs("testdata/datasets/tiny-chat.jsonl"))
	cfgPath := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfgPath, []byte(run), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "train", "-c", cfgPath, "--deterministic", "--name", "det-on")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	if !strings.Contains(out+errs, "train.deterministic: this backend has no fused attention backward") {
		t.Errorf("whet train --deterministic does not say so:\n%s%s", out, errs)
	}
	code, out, errs = runCLI(t, "train", "-c", cfgPath, "--name", "det-off")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	if strings.Contains(out+errs, "train.deterministic") {
		t.Errorf("whet train without --deterministic speaks of it:\n%s%s", out, errs)
	}
}
