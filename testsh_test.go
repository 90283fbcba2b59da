package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTestScriptHelp: bash tools/test.sh --help prints its usage and exits
// 0, and an argument it does not know is refused with exit 2, both before
// anything runs. Before, the script ignored its arguments: --help started
// the whole suite (apt-get and npm set-ups, go test ./..., fuzzing). The
// script runs from a copy whose only set-up step leaves a mark when run.
func TestTestScriptHelp(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script, err := os.ReadFile("tools/test.sh")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	mark := filepath.Join(root, "ran")
	for name, body := range map[string]string{
		"tools/test.sh":        string(script),
		"tools/setup/stop.sh":  "touch " + mark + "\nexit 1\n",
		"tools/arm64/test.sh":  "touch " + mark + "\nexit 1\n",
		"tools/fuzz/empty.txt": "",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		arg  string
		code int
	}{{"--help", 0}, {"-h", 0}, {"--verbose", 2}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "tools/test.sh"), tc.arg)
		out, err := cmd.CombinedOutput()
		cancel()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), "usage: bash tools/test.sh") {
			t.Errorf("bash tools/test.sh %s: exit %d, want %d and the usage; output:\n%s", tc.arg, code, tc.code, out)
		}
		if _, err := os.Stat(mark); err == nil {
			t.Fatalf("bash tools/test.sh %s ran the set-up steps", tc.arg)
		}
	}
}
