package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runExportCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runMain(append([]string{"export"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// copyTree copies a folder of folders (the committed chat run).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestExportCommandWritesGGUFAndMerged(t *testing.T) {
	run := filepath.Join(t.TempDir(), "chat-run")
	copyTree(t, "testdata/export/chat-run", run)

	code, out, errs := runExportCLI(t, "--run", run, "--format", "gguf", "--quant", "q8_0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	dir := filepath.Join(run, "export", "gguf-q8_0")
	for _, want := range []string{"[1/", "token_embd.weight", "Modelfile", "exported gguf to " + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"model.gguf", "Modelfile"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}

	out2 := filepath.Join(t.TempDir(), "merged")
	if code, _, errs := runExportCLI(t, "--run", run, "--format", "merged", "--quant", "f16", "--out", out2); code != 0 {
		t.Fatalf("merged: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(out2, "model.safetensors")); err != nil {
		t.Error(err)
	}
}

func TestExportCommandErrors(t *testing.T) {
	run := filepath.Join(t.TempDir(), "chat-run")
	copyTree(t, "testdata/export/chat-run", run)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "gguf"}, "--run and --format are required"},
		{[]string{"--run", run, "--format", "onnx"}, `unknown format "onnx"`},
		{[]string{"--run", run, "--format", "gguf", "--quant", "q2_k"}, "--quant q2_k is not a GGUF type"},
		{[]string{"--run", run, "--format", "merged", "--quant", "q8_0"}, "not available for merged"},
		{[]string{"--run", run, "--format", "peft"}, "full fine-tuning run"},
		{[]string{"--run", t.TempDir(), "--format", "gguf"}, "not a run directory"},
		{[]string{"--run", run, "--format", "gguf", "--template", "nope"}, `unknown chat template "nope"`},
	} {
		code, _, errs := runExportCLI(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error containing %q", c.args, code, errs, c.want)
		}
	}
}
