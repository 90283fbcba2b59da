//go:build unix

package main

import (
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SIGTERM (kill, docker stop, a scheduler) during `whet pull` ends it as
// Ctrl-C does: the bytes are kept and the message says how to resume.
func TestPullCommandSIGTERM(t *testing.T) {
	srv, cache := pullEnv(t)
	// Without the pull's own handler SIGTERM would kill the test binary:
	// this channel keeps it alive, so that the test fails instead.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGTERM)
	defer signal.Stop(guard)
	var once sync.Once
	srv.BeforeStorage = func(name string) {
		if name != "model.safetensors" {
			return
		}
		once.Do(func() {
			syscall.Kill(os.Getpid(), syscall.SIGTERM)
			// Hold the download until the signal ended the pull's request;
			// a pull that ignores SIGTERM gets the file after 3 s.
			time.Sleep(3 * time.Second)
		})
	}
	start := time.Now()
	code, _, stderr := pullCLI("whet-test/tiny-llama")
	if code == 0 || !strings.Contains(stderr, "cancelled; what arrived is kept in "+cache) || !strings.Contains(stderr, "`whet pull whet-test/tiny-llama` resumes") {
		t.Fatalf("SIGTERM during the pull: exit %d, stderr:\n%s\nwant what was kept and how to resume", code, stderr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the pull ended %v after SIGTERM, not at once", d)
	}
}
