package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainRanksFlag: whet train --ranks 2 trains on two CPU ranks (the
// data-parallel notice, every step, one run folder), and --gpus on the
// CPU backend is refused naming the setting.
func TestTrainRanksFlag(t *testing.T) {
	dir := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	run := fmt.Sprintf(`name: ranks
model: %s
method: full
backend: cpu
runs_dir: %s
data: {path: %s, max_length: 64, packing: true, seed: 1}
train: {max_steps: 2, micro_batch: 1, grad_accum: 2, lr: 0.001, schedule: constant, seed: 1}
`, abs("testdata/tiny-qwen2"), dir, abs("testdata/datasets/tiny-chat.jsonl"))
	cfgPath := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfgPath, []byte(run), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "train", "-c", cfgPath, "--ranks", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	for _, want := range []string{"data parallel: 2 ranks on cpu", "sharded", "step 2/2", "done: 2 steps"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = runCLI(t, "train", "-c", cfgPath, "--gpus", "2")
	if code == 0 || !strings.Contains(out+errs, "parallel.gpus: needs backend cuda or auto") {
		t.Fatalf("--gpus on the CPU backend: exit %d: %s%s", code, out, errs)
	}
}
