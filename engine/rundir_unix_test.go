//go:build unix

package engine_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"whet/engine"
)

// Files and folders a run creates get 0666/0777 less the user's umask,
// like any other program's, not a fixed 0644 or CreateTemp's private 0600.
func TestRunFilesHonourUmask(t *testing.T) {
	for _, mask := range []int{0o027, 0o002} {
		old := syscall.Umask(mask)
		dir := t.TempDir()
		runToEnd(t, smallRun(dir, "umask"))
		syscall.Umask(old)
		wantFile, wantDir := fs.FileMode(0o666&^mask), fs.FileMode(0o777&^mask)
		n := 0
		filepath.WalkDir(filepath.Join(dir, "umask"), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			info, _ := e.Info()
			want := wantFile
			if e.IsDir() {
				want = wantDir
			}
			if got := info.Mode().Perm(); got != want {
				t.Errorf("umask %03o: %s has mode %03o, want %03o", mask, p, got, want)
			}
			n++
			return nil
		})
		if n < 10 {
			t.Fatalf("walked only %d entries", n)
		}
	}
}

// A symlink planted in a run folder is refused, never written through.
func TestRunFilesRefuseSymlinks(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "precious")
	plant := func() {
		t.Helper()
		if err := os.WriteFile(outside, []byte("keep me\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	intact := func(what string) {
		t.Helper()
		if b, _ := os.ReadFile(outside); string(b) != "keep me\n" {
			t.Errorf("%s: the file behind the link was changed: %q", what, b)
		}
	}
	for _, name := range []string{"metrics.jsonl", "samples.jsonl"} {
		plant()
		dir := t.TempDir()
		run := filepath.Join(dir, "linked")
		os.MkdirAll(run, 0o755)
		if err := os.Symlink(outside, filepath.Join(run, name)); err != nil {
			t.Fatal(err)
		}
		events, _, err := engine.Start(context.Background(), smallRun(dir, "linked"))
		if err == nil {
			for ev := range events {
				if d, ok := ev.(engine.DoneEvent); ok {
					err = d.Err
				}
			}
		}
		if err == nil || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s as a link: want a refusal naming it, got %v", name, err)
		}
		intact(name)
	}
	// A checkpoints folder that links elsewhere: old checkpoints would be
	// pruned there.
	dir := t.TempDir()
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(dir, "checkpoints")); err != nil {
		t.Fatal(err)
	}
	tr := tinyTrainer(t, dir)
	if _, err := tr.TrainStep(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Checkpoint(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("checkpoints as a link: %v", err)
	}
	if e, _ := os.ReadDir(elsewhere); len(e) != 0 {
		t.Errorf("checkpoint written through the link: %v", e)
	}
}

// Files of a checkpoint are read only where they are: a trainer_state.json
// swapped for a link makes the checkpoint damaged, not followed.
func TestCheckpointReadRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	tr := tinyTrainer(t, dir)
	if _, err := tr.TrainStep(); err != nil {
		t.Fatal(err)
	}
	path, err := tr.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(path, "trainer_state.json")
	elsewhere := filepath.Join(t.TempDir(), "state.json")
	if err := os.Rename(state, elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, state); err != nil {
		t.Fatal(err)
	}
	var damaged *engine.DamagedCheckpointError
	if _, err := engine.LoadCheckpoint(path, tr.Model); !errors.As(err, &damaged) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a linked trainer_state.json: %v", err)
	}
}
