//go:build unix

package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"whet/engine/hub/hubtest"
)

// signalDuringDownload makes the fake Hub's storage, on its first GET of
// the weights, send this process sig and then hold the download open
// until the test calls the returned release (deferred by the caller, so
// the server can close). A command that honours the signal has ended its
// request, and returned, by then; one that ignores it gets the file only
// after 10 s and goes on, which its test sees as the wrong exit status.
func signalDuringDownload(t *testing.T, srv *hubtest.Server, sig syscall.Signal) (release func()) {
	t.Helper()
	// Without the command's own handler the signal would kill the test
	// binary: this channel keeps it alive, so that the test fails instead.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGINT, syscall.SIGTERM)
	t.Cleanup(func() { signal.Stop(guard) })
	held := make(chan struct{})
	var once sync.Once
	srv.BeforeStorage = func(name string) {
		if name != "model.safetensors" {
			return
		}
		once.Do(func() {
			syscall.Kill(os.Getpid(), sig)
			select {
			case <-held:
			case <-time.After(10 * time.Second): // never reached when the signal is honoured
			}
		})
	}
	var closed sync.Once
	return func() { closed.Do(func() { close(held) }) }
}

// SIGTERM (kill, docker stop, a scheduler) during `whet pull` ends it as
// Ctrl-C does: the bytes are kept, the message says how to resume, and
// whet exits 143 (130 for Ctrl-C), as a shell reports a process the
// signal ended.
func TestPullCommandSIGTERM(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGTERM, 143}, {syscall.SIGINT, 130}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			srv, cache := pullEnv(t)
			release := signalDuringDownload(t, srv, tc.sig)
			defer release()
			code, _, stderr := pullCLI("whet-test/tiny-llama")
			want := fmt.Sprintf("whet pull: cancelled by %s (exit status %d); what arrived is kept in %s and `whet pull whet-test/tiny-llama` resumes\n", signalName(tc.sig), tc.code, cache)
			if code != tc.code || !strings.HasSuffix(stderr, want) {
				t.Fatalf("%v during the pull: exit %d, stderr:\n%s\nwant exit %d and %q", tc.sig, code, stderr, tc.code, want)
			}
		})
	}
}

// Ctrl-C or SIGTERM while `whet train` still downloads its model (a Hub
// id) exits 130 or 143 as a stop during training does, saying that the
// pull resumes next time; it exited 1, and `whet train … && whet export`
// could not tell a stop from a failure. No run folder is made.
func TestTrainStoppedDuringPull(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			srv, cache := pullEnv(t)
			dir := t.TempDir()
			data, _ := filepath.Abs("testdata/datasets/tiny-chat.jsonl")
			run := fmt.Sprintf(`name: pulled
model: whet-test/tiny-llama
method: lora
backend: cpu
runs_dir: %s
lora: {r: 4, alpha: 8}
data: {path: %s, max_length: 64}
train: {max_steps: 1, micro_batch: 1, lr: 0.001}
`, dir, data)
			cfgPath := filepath.Join(dir, "run.yaml")
			if err := os.WriteFile(cfgPath, []byte(run), 0o644); err != nil {
				t.Fatal(err)
			}
			release := signalDuringDownload(t, srv, tc.sig)
			defer release()
			var out, errOut strings.Builder
			code := runMain([]string{"train", "-c", cfgPath}, strings.NewReader(""), &out, &errOut)
			want := fmt.Sprintf("whet train: download of whet-test/tiny-llama stopped by %s (exit status %d); what arrived is kept in %s and the pull resumes where it stopped when you run this again (or `whet pull whet-test/tiny-llama`)\n",
				signalName(tc.sig), tc.code, cache)
			if code != tc.code || !strings.HasSuffix(errOut.String(), want) {
				t.Fatalf("%v during the model's download: exit %d, stderr:\n%s\nwant exit %d and %q", tc.sig, code, errOut.String(), tc.code, want)
			}
			if _, err := os.Stat(filepath.Join(dir, "pulled")); !os.IsNotExist(err) {
				t.Errorf("a run stopped before training made its folder: %v", err)
			}
		})
	}
}
