package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
)

// tinyTrainer trains a random tiny model with LoRA over a few packed rows.
func tinyTrainer(t *testing.T, dir string) *engine.Trainer {
	t.Helper()
	m := newTiny(t, true, false)
	if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Dropout: 0.1, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	var rows []datasets.Batch
	for i := 0; i < 5; i++ {
		rows = append(rows, *tinyBatch(m.Cfg.VocabSize, uint64(10+i)))
	}
	a, err := m.NewActivations(2*len(rows[0].Tokens), false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.TrainConfig{MicroBatch: 2, GradAccum: 1, LR: 1e-2, MaxGradNorm: 1, Epochs: 3, KeepCheckpoints: 2}
	tr := &engine.Trainer{Model: m, Acts: a, Cfg: cfg, Train: rows, Seed: 42, Dir: dir,
		Opt: &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}}
	tr.Sched = engine.Schedule{Kind: "cosine", Warmup: 1, Total: tr.TotalSteps()}
	return tr
}

// uninterruptedLosses is the loss of every step of a tinyTrainer run
// that is never stopped.
func uninterruptedLosses(t *testing.T) []float64 {
	t.Helper()
	ref := tinyTrainer(t, "")
	var want []float64
	for i := 0; i < ref.TotalSteps(); i++ {
		ev, err := ref.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ev.Loss)
	}
	return want
}

// checkGoesOnAsUninterrupted trains tr from the step it resumed at to the
// end and checks every loss equals the uninterrupted run's to the bit.
func checkGoesOnAsUninterrupted(t *testing.T, tr *engine.Trainer, want []float64, when string) {
	t.Helper()
	for i := tr.Step(); i < len(want); i++ {
		ev, err := tr.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Loss != want[i] {
			t.Errorf("step %d %s: loss %.9g, uninterrupted %.9g", i+1, when, ev.Loss, want[i])
		}
	}
}

func TestCheckpointResumeIsExact(t *testing.T) {
	// Uninterrupted run.
	want := uninterruptedLosses(t)
	// Run 4 steps, checkpoint, then resume in a fresh trainer.
	dir := t.TempDir()
	a := tinyTrainer(t, dir)
	for i := 0; i < 4; i++ {
		if _, err := a.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	b := tinyTrainer(t, dir)
	ok, err := b.Resume()
	if err != nil || !ok {
		t.Fatalf("resume: %v %v", ok, err)
	}
	if b.Step() != 4 {
		t.Fatalf("resumed at step %d, want 4", b.Step())
	}
	checkGoesOnAsUninterrupted(t, b, want, "after resume")
}

func TestCheckpointInterruptedWriteKeepsPrevious(t *testing.T) {
	dir := t.TempDir()
	tr := tinyTrainer(t, dir)
	if _, err := tr.TrainStep(); err != nil {
		t.Fatal(err)
	}
	first, err := tr.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.TrainStep(); err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{"tensors-written", "state-written"} {
		crash := errors.New("power cut")
		engine.SetCheckpointHook(func(s string) error {
			if s == stage {
				return crash
			}
			return nil
		})
		_, err := tr.Checkpoint()
		engine.SetCheckpointHook(nil)
		if !errors.Is(err, crash) {
			t.Fatalf("stage %s: want the injected failure, got %v", stage, err)
		}
		all, err := engine.ListCheckpoints(filepath.Join(dir, "checkpoints"))
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0].Path != first {
			t.Fatalf("stage %s: checkpoints after a failed write: %+v, want only %s", stage, all, first)
		}
		fresh := tinyTrainer(t, dir)
		if ok, err := fresh.Resume(); err != nil || !ok || fresh.Step() != 1 {
			t.Fatalf("stage %s: previous checkpoint not loadable: ok=%v step=%d err=%v", stage, ok, fresh.Step(), err)
		}
	}
	// The next successful write clears the stale temp folder.
	if _, err := tr.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoints", "step-00000002.tmp")); !os.IsNotExist(err) {
		t.Fatalf("stale temp folder left behind: %v", err)
	}
	// It also clears the stale folder of a step the run will not write again
	// (whet train killed mid-write at step 835, resumed from step 800:
	// step-00000835.tmp stayed for good).
	other := filepath.Join(dir, "checkpoints", "step-00000835.tmp")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "trainable.safetensors"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.TrainStep(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("stale temp folder of another step left behind: %v", err)
	}
}

func TestKeepLastCheckpoints(t *testing.T) {
	dir := t.TempDir()
	tr := tinyTrainer(t, dir)
	for i := 0; i < 4; i++ {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := engine.ListCheckpoints(filepath.Join(dir, "checkpoints"))
	if len(all) != 2 || all[0].Step != 3 || all[1].Step != 4 {
		t.Fatalf("kept %+v, want steps 3 and 4", all)
	}
}

func TestRunStopsWithCheckpoint(t *testing.T) {
	dir := t.TempDir()
	tr := tinyTrainer(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan engine.Event, 100)
	cancel() // a cancelled context is a stop: checkpoint, then done
	if err := tr.Run(ctx, events); err != nil {
		t.Fatal(err)
	}
	all, _ := engine.ListCheckpoints(filepath.Join(dir, "checkpoints"))
	if len(all) != 1 {
		t.Fatalf("stop wrote %d checkpoints, want 1", len(all))
	}
	st, _ := os.ReadFile(filepath.Join(dir, "status.json"))
	if !strings.Contains(string(st), `"stopped"`) {
		t.Fatalf("status.json = %s", st)
	}
}

// TestGradAccumulationEqualsOneBigBatch: two micro-batches accumulated give
// the gradient of the two laid end to end (the loss is normalised by the
// step's target count, as transformers' num_items_in_batch does).
func TestGradAccumulationEqualsOneBigBatch(t *testing.T) {
	grads := func(accum int) []float32 {
		tr := tinyTrainer(t, "")
		tr.Cfg.MicroBatch = 4 / accum
		tr.Cfg.GradAccum = accum
		tr.Cfg.MaxGradNorm = 0
		a, err := tr.Model.NewActivations(4*len(tr.Train[0].Tokens), false)
		if err != nil {
			t.Fatal(err)
		}
		tr.Acts = a
		for _, lin := range tr.Model.Linears() {
			lin.LoRA.Dropout = 0
		}
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
		var out []float32
		for _, p := range tr.Model.TrainableParams() {
			v := make([]float32, p.Grad.Len())
			tr.Model.B.Download(p.Grad, v)
			out = append(out, v...)
		}
		return out
	}
	one, two := grads(1), grads(2)
	var num, den float64
	for i := range one {
		d := float64(one[i] - two[i])
		num += d * d
		den += float64(one[i]) * float64(one[i])
	}
	if den == 0 || num/den > 1e-10 {
		t.Fatalf("accumulated gradient differs: relative %.3g (norm² %.3g)", num/den, den)
	}
}

// Re-saving the checkpoint of a step never leaves the step without one: a
// crash after the old folder is moved aside and before the new one is in
// place still resumes from that step.
func TestResaveSameStepKeepsOldUntilNewInPlace(t *testing.T) {
	dir := t.TempDir()
	tr := tinyTrainer(t, dir)
	for i := 0; i < 2; i++ {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	first, err := tr.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	crash := errors.New("power cut")
	engine.SetCheckpointHook(func(s string) error {
		if s == "old-moved-aside" {
			return crash
		}
		return nil
	})
	_, err = tr.Checkpoint() // the same step again
	engine.SetCheckpointHook(nil)
	if !errors.Is(err, crash) {
		t.Fatalf("want the injected failure, got %v", err)
	}
	all, err := engine.ListCheckpoints(filepath.Join(dir, "checkpoints"))
	if err != nil || len(all) != 1 || all[0].Step != 2 {
		t.Fatalf("after a crash mid-replace: %+v %v, want the step-2 checkpoint", all, err)
	}
	fresh := tinyTrainer(t, dir)
	if ok, err := fresh.Resume(); err != nil || !ok || fresh.Step() != 2 {
		t.Fatalf("resume after a crash mid-replace: ok=%v step=%d err=%v", ok, fresh.Step(), err)
	}
	// A good re-save puts the step back at its usual name, nothing aside.
	path, err := tr.Checkpoint()
	if err != nil || path != first {
		t.Fatalf("re-save: %s %v", path, err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "checkpoints"))
	if len(entries) != 1 || entries[0].Name() != filepath.Base(first) {
		t.Fatalf("checkpoints folder holds %v", entries)
	}
}

// A newest checkpoint whose tensors changed on disk is caught by its
// checksum; the resume says so and falls back to the one before it,
// and from there goes on exactly as an uninterrupted run.
func TestDamagedCheckpointFallsBackToPrevious(t *testing.T) {
	want := uninterruptedLosses(t)
	dir := t.TempDir()
	a := tinyTrainer(t, dir)
	for i := 0; i < 4; i++ {
		if _, err := a.TrainStep(); err != nil {
			t.Fatal(err)
		}
		if i == 2 || i == 3 {
			if _, err := a.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
	}
	all, _ := engine.ListCheckpoints(filepath.Join(dir, "checkpoints"))
	if len(all) != 2 || all[1].Step != 4 {
		t.Fatalf("checkpoints %+v", all)
	}
	// Flip one byte of a weight: the file still parses, only the sum knows.
	file := filepath.Join(all[1].Path, "trainable.safetensors")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 0x40
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var damaged *engine.DamagedCheckpointError
	if _, err := engine.LoadCheckpoint(all[1].Path, tinyTrainer(t, "").Model); !errors.As(err, &damaged) || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("loading the damaged checkpoint: %v", err)
	}
	b2 := tinyTrainer(t, dir)
	ok, err := b2.Resume()
	if err != nil || !ok || b2.Step() != 3 {
		t.Fatalf("resume: ok=%v step=%d err=%v, want step 3", ok, b2.Step(), err)
	}
	if len(b2.ResumeNotes) != 1 || !strings.Contains(b2.ResumeNotes[0], "step-00000004") || !strings.Contains(b2.ResumeNotes[0], "step-00000003 instead") {
		t.Errorf("resume notes %q, want the damaged checkpoint and the fallback named", b2.ResumeNotes)
	}
	checkGoesOnAsUninterrupted(t, b2, want, "after the fallback")
	// When every checkpoint is damaged the resume refuses rather than
	// start over silently.
	os.WriteFile(filepath.Join(all[0].Path, "trainer_state.json"), []byte("{"), 0o644)
	if _, err := tinyTrainer(t, dir).Resume(); !errors.As(err, &damaged) {
		t.Errorf("every checkpoint damaged: %v", err)
	}
}

// A resumed session's DoneEvent says where it began (FromStep), so the
// summary can say its time is this session's; a fresh run's is 0.
func TestDoneEventSaysWhereTheSessionBegan(t *testing.T) {
	dir := t.TempDir()
	a := tinyTrainer(t, dir)
	for i := 0; i < 2; i++ {
		if _, err := a.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	runDone := func(tr *engine.Trainer) engine.DoneEvent {
		t.Helper()
		out := make(chan engine.Event, 1024)
		errc := make(chan error, 1)
		go func() { errc <- tr.Run(context.Background(), out); close(out) }()
		var done engine.DoneEvent
		for ev := range out {
			if d, ok := ev.(engine.DoneEvent); ok {
				done = d
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		return done
	}
	b := tinyTrainer(t, dir)
	if ok, err := b.Resume(); err != nil || !ok {
		t.Fatalf("resume: %v %v", ok, err)
	}
	if d := runDone(b); d.FromStep != 2 || d.Step != b.TotalSteps() {
		t.Errorf("resumed run's DoneEvent: step %d from %d, want %d from 2", d.Step, d.FromStep, b.TotalSteps())
	}
	if d := runDone(tinyTrainer(t, t.TempDir())); d.FromStep != 0 {
		t.Errorf("fresh run's DoneEvent from step %d, want 0", d.FromStep)
	}
}
