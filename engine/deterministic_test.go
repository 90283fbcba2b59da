package engine

import (
	"slices"
	"strings"
	"testing"
)

// detBackend records SetDeterministic; plainBackend has no such method.
type detBackend struct {
	Backend
	on, called bool
}

func (d *detBackend) SetDeterministic(on bool) { d.on, d.called = on, true }

type plainBackend struct{ Backend }

// TestApplyDeterministic: train.deterministic asks every rank's backend
// that has the choice for bit-equal kernels, skips those without it, and
// without the setting leaves every backend on its default.
func TestApplyDeterministic(t *testing.T) {
	a, b := &detBackend{}, &detBackend{}
	backends := []Backend{a, plainBackend{}, b}
	if n := applyDeterministic(TrainConfig{}, backends); n != 0 || a.called || b.called {
		t.Fatalf("without train.deterministic: %d backends set, SetDeterministic called %v %v", n, a.called, b.called)
	}
	if n := applyDeterministic(TrainConfig{Deterministic: true}, backends); n != 2 || !a.on || !b.on {
		t.Fatalf("with train.deterministic: %d backends set (want 2), on %v %v", n, a.on, b.on)
	}
}

// TestDeterministicRunFileKey: train.deterministic reads from a run file,
// is off when absent, and a resume may change it (it picks kernels, not
// what is trained).
func TestDeterministicRunFileKey(t *testing.T) {
	on, err := DecodeRunConfig([]byte("method: lora\ntrain:\n  deterministic: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !on.Train.Deterministic {
		t.Error("train.deterministic: true did not set TrainConfig.Deterministic")
	}
	off, err := DecodeRunConfig([]byte("method: lora\n"))
	if err != nil {
		t.Fatal(err)
	}
	if off.Train.Deterministic {
		t.Error("a run file without train.deterministic is deterministic")
	}
	if changes := configChanges(off, on); len(changes) != 0 {
		t.Errorf("turning train.deterministic on counts as a change of the run: %v", changes)
	}
	// Another train key still does (the comparison is not switched off).
	more := on
	more.Train.LR = on.Train.LR*2 + 1
	if changes := configChanges(off, more); !slices.ContainsFunc(changes, func(c string) bool { return len(c) > 0 }) {
		t.Error("a changed train.lr is not reported beside train.deterministic")
	}
	if _, err := DecodeRunConfig([]byte("method: lora\ntrain:\n  deterministic: maybe\n")); err == nil {
		t.Error("train.deterministic: maybe was accepted")
	}
}

// TestDeterministicNotice: the run says whether any backend changed
// kernels for train.deterministic.
func TestDeterministicNotice(t *testing.T) {
	if got := deterministicNotice(0, 1); !strings.Contains(got, "no fused attention backward to avoid") {
		t.Errorf("notice without a backend that has the choice: %q", got)
	}
	if got := deterministicNotice(2, 2); !strings.Contains(got, "deterministic kernels, which may be slower (2 of 2 backends)") {
		t.Errorf("notice for two GPU ranks: %q", got)
	}
}
