package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/cpu"
)

func init() {
	engine.RegisterBackend("cpu", func() (engine.Backend, error) { return cpu.New(), nil })
}

func runToEnd(t *testing.T, cfg engine.RunConfig) []engine.Event {
	t.Helper()
	events, _, err := engine.Start(context.Background(), withDefaults(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	var all []engine.Event
	for ev := range events {
		all = append(all, ev)
		if d, ok := ev.(engine.DoneEvent); ok && d.Err != nil {
			t.Fatalf("run failed: %v", d.Err)
		}
	}
	return all
}

func abs(p string) string {
	a, _ := filepath.Abs(p)
	return a
}

// TestStartLoRARunEndToEnd trains the tiny Llama on the tiny chat set from
// a RunConfig, as `whet train` does, and checks the run directory.
func TestStartLoRARunEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := engine.RunConfig{Name: "e2e", Model: abs("../testdata/tiny-llama"), Method: "lora", Backend: "cpu", RunsDir: dir,
		LoRA: engine.LoRAConfig{Rank: 8, Alpha: 16},
		Data: engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 256, Packing: true, EvalSplit: 0.1, Seed: 1},
		Train: engine.TrainConfig{Epochs: 4, MicroBatch: 2, GradAccum: 1, LR: 3e-3, Schedule: "constant", MaxGradNorm: 1, Seed: 1,
			EvalEvery: 4, SampleEvery: 8, SamplePrompts: []string{"What is a variable?"}, SampleTokens: 8}}
	cfg = noWarmupNoDecay(withDefaults(t, cfg))
	var losses []float64
	samples := 0
	for _, ev := range runToEnd(t, cfg) {
		switch e := ev.(type) {
		case engine.StepEvent:
			losses = append(losses, e.Loss)
		case engine.SampleEvent:
			samples++
		}
	}
	if len(losses) < 8 || !(losses[len(losses)-1] < losses[0]-0.3) {
		t.Fatalf("loss did not fall: %v", losses)
	}
	if samples == 0 {
		t.Fatal("no sample generations")
	}
	run := filepath.Join(dir, "e2e")
	for _, f := range []string{"run.yaml", "metrics.jsonl", "samples.jsonl", "status.json", "adapter/adapter_model.safetensors", "adapter/adapter_config.json"} {
		if _, err := os.Stat(filepath.Join(run, f)); err != nil {
			t.Errorf("run directory lacks %s: %v", f, err)
		}
	}
	var st engine.RunStatus
	js, _ := os.ReadFile(filepath.Join(run, "status.json"))
	json.Unmarshal(js, &st)
	if st.State != "done" || st.Step != len(losses) {
		t.Fatalf("status.json %s", js)
	}
	// The saved run.yaml reproduces the run.
	again, err := engine.LoadRunConfig(filepath.Join(run, "run.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Train.LR != cfg.Train.LR || again.LoRA.Rank != 8 || again.Data.Path != cfg.Data.Path {
		t.Fatalf("run.yaml round trip: %+v", again)
	}
}

// writePrefs writes a synthetic preference set: the chosen answer is always
// a polite sentence, the rejected one a curt refusal.
func writePrefs(t *testing.T, n int) string {
	p := filepath.Join(t.TempDir(), "prefs.jsonl")
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"prompt": "Question %d: can you help me?", "chosen": "Of course, here is how.", "rejected": "No."}`+"\n", i)
	}
	os.WriteFile(p, []byte(b.String()), 0o644)
	return p
}

// TestStartDPORunRaisesRewards runs DPO with LoRA from a RunConfig and
// checks that rewards/accuracies and the margin rise.
func TestStartDPORunRaisesRewards(t *testing.T) {
	dir := t.TempDir()
	cfg := engine.RunConfig{Name: "dpo", Model: abs("../testdata/tiny-qwen2"), Method: "dpo", Backend: "cpu", RunsDir: dir,
		LoRA: engine.LoRAConfig{Rank: 8, Alpha: 16}, DPO: engine.DPOConfig{Beta: 0.1},
		Data:  engine.DataConfig{Path: writePrefs(t, 12), MaxLength: 64, Packing: true, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 12, MicroBatch: 4, GradAccum: 1, LR: 5e-3, Schedule: "constant", Seed: 1}}
	cfg = noWarmupNoDecay(withDefaults(t, cfg))
	var steps []engine.StepEvent
	for _, ev := range runToEnd(t, cfg) {
		if e, ok := ev.(engine.StepEvent); ok {
			steps = append(steps, e)
		}
	}
	first, last := steps[0].Metrics, steps[len(steps)-1].Metrics
	if !(last["rewards/accuracies"] > first["rewards/accuracies"]) || !(last["rewards/margins"] > first["rewards/margins"]) {
		t.Fatalf("rewards did not rise: first %v, last %v", first, last)
	}
	if _, err := os.Stat(filepath.Join(dir, "dpo", "ref_logps.json")); err != nil {
		t.Fatalf("reference log-probs not cached: %v", err)
	}
}

// kernelCompilingBackend is the CPU backend reporting a kernel compile
// ahead of first use, the way engine/cuda does on a cold kernel cache: the
// first report at once, the last from another goroutine a little later.
type kernelCompilingBackend struct{ engine.Backend }

func (kernelCompilingBackend) PrecompileKernels(report func(engine.KernelProgress)) {
	report(engine.KernelProgress{Arch: "sm_90", Done: 0, Total: 2, CacheDir: "/cache"})
	go func() {
		time.Sleep(20 * time.Millisecond)
		report(engine.KernelProgress{Arch: "sm_90", Done: 2, Total: 2, CacheDir: "/cache", Elapsed: time.Second})
	}()
}

// TestStartReportsKernelCompiles: the progress of the backend's kernel
// compile reaches the run's events as log lines (whet train prints them;
// the studio's training view shows them).
func TestStartReportsKernelCompiles(t *testing.T) {
	// Under the name "cuda", which run files may name, for this test only.
	engine.RegisterBackendForTest(t, "cuda", func() (engine.Backend, error) { return kernelCompilingBackend{cpu.New()}, nil })
	cfg := engine.RunConfig{Name: "kc", Model: abs("../testdata/tiny-llama"), Method: "lora", Backend: "cuda", RunsDir: t.TempDir(),
		LoRA:  engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data:  engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 128, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 3, MicroBatch: 2, GradAccum: 1, LR: 1e-3, Schedule: "constant", Seed: 1}}
	cfg = noWarmupNoDecay(withDefaults(t, cfg))
	var lines []string
	for _, ev := range runToEnd(t, cfg) {
		if l, ok := ev.(engine.LogEvent); ok && (strings.HasPrefix(l.Text, engine.KernelProgressPrefix) || strings.HasPrefix(l.Text, "CUDA kernels: ")) {
			lines = append(lines, l.Text)
		}
	}
	want := []string{"CUDA kernels: the first run of this version on sm_90 compiles them into /cache; later runs load them from there",
		"compiling CUDA kernels for sm_90: 0 of 2 files (once, then cached)",
		"compiling CUDA kernels for sm_90: 2 of 2 files, done in 1.0 s"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("kernel lines among the events:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
