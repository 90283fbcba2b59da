package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChatAndExportRunFromAnotherFolder: a run trained from a run file
// with relative paths answers `whet chat --run` and `whet export --run`
// from any folder, not only from the one training ran in.
func TestChatAndExportRunFromAnotherFolder(t *testing.T) {
	proj, elsewhere := t.TempDir(), t.TempDir()
	copyTree(t, "testdata/tiny-llama", filepath.Join(proj, "models", "tiny"))
	chatData, err := os.ReadFile("testdata/datasets/tiny-chat.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(proj, "data"), 0o755)
	if err := os.WriteFile(filepath.Join(proj, "data", "chat.jsonl"), chatData, 0o644); err != nil {
		t.Fatal(err)
	}
	runFile := `name: away
model: models/tiny
method: lora
backend: cpu
runs_dir: runs
lora: {r: 4, alpha: 8}
data: {path: data/chat.jsonl, max_length: 64, packing: true, seed: 1}
train: {max_steps: 1, micro_batch: 1, lr: 0.001, seed: 1}
`
	if err := os.WriteFile(filepath.Join(proj, "run.yaml"), []byte(runFile), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(proj)
	if code, _, errs := runCLI(t, "train", "-c", "run.yaml"); code != 0 {
		t.Fatalf("train: exit %d: %s", code, errs)
	}
	run := filepath.Join(proj, "runs", "away")

	t.Chdir(elsewhere)
	for _, dir := range []string{run, mustRel(t, elsewhere, run)} {
		code, out, errs := runCLI(t, "chat", "--run", dir, "--backend", "cpu", "--prompt", "Hi", "--max-new-tokens", "2", "--temperature", "0")
		if code != 0 || !strings.Contains(out, "tokens") {
			t.Fatalf("chat --run %s from another folder: exit %d, stdout %q, stderr %q", dir, code, out, errs)
		}
	}
	out := filepath.Join(elsewhere, "peft")
	if code, _, errs := runCLI(t, "export", "--run", run, "--format", "peft", "--out", out); code != 0 {
		t.Fatalf("export --run from another folder: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(out, "adapter_config.json")); err != nil {
		t.Error(err)
	}
}

func mustRel(t *testing.T, base, target string) string {
	t.Helper()
	rel, err := filepath.Rel(base, target)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// whet chat --thinking on|off sets the template's enable_thinking; any
// other value is refused naming the flag.
func TestChatThinkingFlag(t *testing.T) {
	if code, _, errs := runCLI(t, "chat", "--model", "testdata/tiny-qwen2", "--thinking", "maybe", "--prompt", "hi"); code != 1 || !strings.Contains(errs, `--thinking "maybe": want on or off`) {
		t.Errorf("--thinking maybe: exit %d, stderr %q", code, errs)
	}
	code, out, errs := runCLI(t, "chat", "--model", "testdata/tiny-qwen2", "--template", "qwen-3", "--thinking", "off",
		"--backend", "cpu", "--max-new-tokens", "2", "--temperature", "0", "--prompt", "hi")
	if code != 0 || !strings.Contains(out, "tokens") {
		t.Errorf("--thinking off: exit %d, stderr %q\n%s", code, errs, out)
	}
}
