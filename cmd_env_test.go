package main

import (
	"errors"
	"os"
	"strings"
	"testing"

	"whet/engine/envswitch"
)

// A WHET_* switch set to a value whet does not accept stops every command
// (train, bench and chat among them) before it does anything, with one
// line naming the variable, the value and the accepted values, and exit
// status 2; help still answers, and whet env reports the value.
func TestBadSwitchStopsEveryCommand(t *testing.T) {
	t.Setenv("WHET_DECODE_ATTN", "v4")
	for name := range commands {
		if name == "env" {
			continue
		}
		code, out, errs := runCLI(t, name, "--no-such-flag")
		want := "whet " + name + `: WHET_DECODE_ATTN="v4" is not one of v1, v2, v3 (unset: v2) (whet env lists the switches)` + "\n"
		if code != 2 || errs != want || out != "" {
			t.Errorf("whet %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", name, code, out, errs, want)
		}
	}
	if code, _, errs := runCLI(t, "train", "--help"); code != 0 || errs != "" {
		t.Errorf("whet train --help with a bad switch: exit %d, %q", code, errs)
	}
	code, out, _ := runCLI(t, "env")
	if code != 1 || !strings.Contains(out, `WHET_DECODE_ATTN=v4  refused: WHET_DECODE_ATTN="v4" is not one of v1, v2, v3`) {
		t.Errorf("whet env: exit %d\n%s", code, out)
	}
	t.Setenv("WHET_DECODE_ATTN", "v3")
	t.Setenv("WHET_GEMM_TUNE", "yes")
	t.Setenv("WHET_MEMORY_LIMIT", "lots")
	code, _, errs := runCLI(t, "bench", "--no-such-flag")
	if code != 2 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, `WHET_GEMM_TUNE="yes" is not one of 0, 1 (unset: 1); WHET_MEMORY_LIMIT="lots"`) {
		t.Errorf("two bad switches: exit %d, %q", code, errs)
	}
}

// whet env lists the WHET_* variables set: accepted ones with what they
// take, refused ones with the reason (exit status 1), names whet does not
// read with the nearest switch; --all lists every switch.
func TestEnvCommand(t *testing.T) {
	var b strings.Builder
	if err := writeEnv(&b, []string{"HOME=/root"}, false); err != nil || !strings.HasPrefix(b.String(), "no WHET_* switch is set") {
		t.Errorf("none set: %v\n%s", err, b.String())
	}
	b.Reset()
	err := writeEnv(&b, []string{"WHET_GEMM_TUNE=0", "WHET_DECODE_ATN=v1", "WHET_NF4_MATVEC=v3", "WHET_TEST_LOCK_DIR=/tmp"}, false)
	var status exitStatus
	if !errors.As(err, &status) || status != 1 {
		t.Errorf("a refused value: %v, want exit status 1", err)
	}
	want := `WHET_DECODE_ATN=v1     not a switch of whet, which ignores it (did you mean WHET_DECODE_ATTN?)
WHET_GEMM_TUNE=0       ok (one of 0, 1; unset: 1)
WHET_NF4_MATVEC=v3     refused: WHET_NF4_MATVEC="v3" is not one of v1, v2, v2r8 (unset: v2)
WHET_TEST_LOCK_DIR=/tmp  not a switch of whet, which ignores it
1 value is not accepted: every other whet command refuses to start until it is fixed or unset
`
	if got := b.String(); got != want {
		// tabwriter aligns on the longest name; compare line by line, spaces folded.
		fold := func(s string) string { return strings.Join(strings.Fields(s), " ") }
		if fold(got) != fold(want) {
			t.Errorf("whet env:\n%s\nwant:\n%s", got, want)
		}
	}
	b.Reset()
	if err := writeEnv(&b, []string{"WHET_CUDA_SYNC=1"}, true); err != nil {
		t.Fatal(err)
	}
	for _, s := range envswitch.All() {
		if !strings.Contains(b.String(), "\n"+s.Name+" ") || !strings.Contains(b.String(), s.Doc) {
			t.Errorf("whet env --all lacks %s", s.Name)
		}
	}
	if !strings.Contains(b.String(), "\nWHET_CUDA_SYNC =1\n") || !strings.Contains(b.String(), "\nWHET_GEMM_TUNE unset\n") {
		t.Errorf("whet env --all:\n%s", b.String())
	}
	// From the command line, with this process's environment.
	os.Unsetenv("WHET_CUDA_SYNC")
	t.Setenv("WHET_CUDA_SYNC", "1")
	if code, out, errs := runCLI(t, "env"); code != 0 || errs != "" || !strings.Contains(out, "WHET_CUDA_SYNC=1  ok") {
		t.Errorf("whet env: exit %d, %q, %q", code, out, errs)
	}
}
