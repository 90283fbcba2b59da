package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// interruptOnAnswer passes whet chat's output on and sends this process
// SIGINT once, at the first piece of the first answer, which it holds
// while the signal arrives.
type interruptOnAnswer struct {
	w      io.Writer
	mu     sync.Mutex
	seen   strings.Builder
	signal bool
}

func (i *interruptOnAnswer) Write(p []byte) (int, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.seen.Write(p)
	if !i.signal && string(p) != "> " && strings.Contains(i.seen.String(), "\n> ") {
		i.signal = true
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		// Hold the answer (this write is its stream) while the signal
		// arrives, so that it lands during the answer, not after it.
		time.Sleep(300 * time.Millisecond)
	}
	return i.w.Write(p)
}

// Ctrl-C during an answer stops that answer, and the next one is answered
// in full. Before, whet chat's one context stayed cancelled after the
// first Ctrl-C: every later answer ended at once ("0 tokens … cancelled")
// and Ctrl-C no longer ended the chat. whet chat runs in a child process
// (this test binary, re-run as the helper below) that interrupts itself
// while it streams the first answer.
func TestChatCtrlCStopsOneAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestChatCtrlCHelper$")
	cmd.Env = append(os.Environ(), "WHET_CHAT_CTRLC=1")
	cmd.Stdin = strings.NewReader("Tell me a long story.\nAnd another one.\n\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("whet chat: %v\n%s", err, out)
	}
	stats := regexp.MustCompile(`\((\d+) tokens, [0-9.]+ tok/s, (\w+)\)`).FindAllStringSubmatch(string(out), -1)
	if len(stats) != 2 {
		t.Fatalf("want two answers' stats lines:\n%s", out)
	}
	if stats[0][2] != "cancelled" {
		t.Errorf("the first answer ended with %q, want cancelled by the SIGINT:\n%s", stats[0][2], out)
	}
	if stats[1][2] == "cancelled" || stats[1][1] == "0" {
		t.Errorf("the second answer was cut (%s tokens, %s): Ctrl-C should stop only the answer it came in:\n%s", stats[1][1], stats[1][2], out)
	}
}

func TestChatCtrlCHelper(t *testing.T) {
	if os.Getenv("WHET_CHAT_CTRLC") == "" {
		t.Skip("run by TestChatCtrlCStopsOneAnswer")
	}
	out := &interruptOnAnswer{w: os.Stdout}
	if code := runMain([]string{"chat", "--model", "testdata/tiny-llama", "--backend", "cpu", "--seed", "1",
		"--temperature", "1", "--max-new-tokens", "400"}, os.Stdin, out, os.Stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// whet chat --run with a folder that is not a run says so (it said only
// "open nothere/run.yaml: no such file or directory").
func TestChatRunNotARun(t *testing.T) {
	code, _, errs := runCLI(t, "chat", "--run", filepath.Join(t.TempDir(), "nothere"))
	if code != 1 || !strings.Contains(errs, "is not a run directory (no run.yaml") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

// whet chat --run RUN --compare on a run with no saved adapter yet (still
// training, or stopped before its end) chatted with the base model alone,
// without a word: no comparison, no note. It is refused now, naming the
// missing adapter; without --compare the base model still answers, with a
// note on stderr. --compare with --model alone is refused too.
func TestChatCompareNeedsAnAdapter(t *testing.T) {
	dir, err := filepath.Abs("testdata/tiny-llama")
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "unfinished")
	if err := os.MkdirAll(filepath.Join(run, "checkpoints", "step-00000002"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "name: unfinished\nmodel: " + dir + "\nmethod: lora\nbackend: cpu\ndata: {path: data.jsonl}\n"
	if err := os.WriteFile(filepath.Join(run, "run.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "chat", "--run", run, "--compare", "--backend", "cpu", "--prompt", "Hi", "--max-new-tokens", "2")
	if code != 1 || !strings.Contains(errs, "--compare: run "+run+" has no saved adapter yet") || strings.Contains(out, "tokens") {
		t.Errorf("--compare on a run without an adapter: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "chat", "--run", run, "--backend", "cpu", "--prompt", "Hi", "--max-new-tokens", "2", "--temperature", "0")
	if code != 0 || !strings.Contains(out, "tokens") || !strings.Contains(errs, "has no saved adapter or model yet") || !strings.Contains(errs, "chatting with its base model") {
		t.Errorf("chat --run without an adapter: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "chat", "--model", dir, "--compare", "--backend", "cpu", "--prompt", "Hi", "--max-new-tokens", "2")
	if code != 1 || !strings.Contains(errs, "--compare answers with the base and the tuned model: it needs an adapter") {
		t.Errorf("--compare with --model alone: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
