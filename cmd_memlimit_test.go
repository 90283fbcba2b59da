package main

import (
	"flag"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"whet/engine"
)

// --memory-limit wins over WHET_MEMORY_LIMIT and is written to it in bytes
// (so the CUDA backend and a detached worker see it); without the flag the
// variable is the cap; bad values name their setting.
func TestMemoryLimitFlag(t *testing.T) {
	parse := func(args ...string) (int64, string, error) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		m := addMemoryLimitFlag(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return m.apply()
	}
	t.Setenv(engine.MemoryLimitEnv, "")
	if n, _, err := parse(); n != 0 || err != nil {
		t.Errorf("no cap: %d, %v", n, err)
	}
	t.Setenv(engine.MemoryLimitEnv, "24GiB")
	if n, src, err := parse(); n != 24<<30 || src != engine.MemoryLimitEnv || err != nil {
		t.Errorf("from the variable: %d %s %v", n, src, err)
	}
	n, src, err := parse("--memory-limit", "80GB")
	if n != 80e9 || src != "--memory-limit" || err != nil || os.Getenv(engine.MemoryLimitEnv) != strconv.FormatInt(80e9, 10) {
		t.Errorf("flag: %d %s %v, variable now %q", n, src, err, os.Getenv(engine.MemoryLimitEnv))
	}
	if _, _, err := parse("--memory-limit", "80G"); err == nil || !strings.HasPrefix(err.Error(), "--memory-limit: ") {
		t.Errorf("bad flag: %v", err)
	}
	t.Setenv(engine.MemoryLimitEnv, "lots")
	if _, _, err := parse(); err == nil || !strings.HasPrefix(err.Error(), engine.MemoryLimitEnv+`="lots" is not a size`) {
		t.Errorf("bad variable: %v", err)
	}
	// train and bench refuse a bad cap before doing anything else (a bad
	// variable, even under the flag, stops them earlier: envswitch).
	t.Setenv(engine.MemoryLimitEnv, "")
	for _, cmd := range []string{"train", "bench"} {
		code, _, errs := runCLI(t, cmd, "-c", "x.yaml", "--memory-limit", "12 parsecs")
		if cmd == "bench" {
			code, _, errs = runCLI(t, cmd, "--memory-limit", "12 parsecs")
		}
		if code != 1 || !strings.Contains(errs, `--memory-limit: size "12 parsecs": unknown unit`) {
			t.Errorf("whet %s: exit %d, stderr %q", cmd, code, errs)
		}
	}
}
