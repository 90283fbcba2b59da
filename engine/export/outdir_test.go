package export

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// An export may not write where it reads or where the run keeps its
// state: the base model's folder, the run's adapter or trained model, its
// checkpoints, the run directory itself, or any folder inside the first
// four (also when reached through a symbolic link). Nothing is written or
// created there.
func TestExportRefusesOutDirOverInputs(t *testing.T) {
	tmp := t.TempDir()
	base := filepath.Join(tmp, "base")
	copyDir(t, testdata("tiny-llama"), base)
	lora := makeLoRARun(t, filepath.Join(tmp, "lora"), base, 3)
	full := makeFullRun(t, filepath.Join(tmp, "full"), base)
	if err := os.MkdirAll(filepath.Join(lora, "checkpoints", "step-10"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "link-to-base")
	if err := os.Symlink(base, link); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, tmp)
	for _, c := range []struct {
		run, format, out, want string
	}{
		{lora, "gguf", base, "is the base model's folder"},
		{lora, "merged", filepath.Join(base, "merged"), "is inside the base model's folder"},
		{lora, "peft", base + "/.", "is the base model's folder"},
		{lora, "gguf", filepath.Join(link, "out"), "is inside the base model's folder"},
		{full, "gguf", base, "is the base model's folder"},
		{lora, "peft", filepath.Join(lora, "adapter"), "is the run's adapter"},
		{full, "merged", filepath.Join(full, "model"), "is the run's trained model"},
		{full, "gguf", filepath.Join(full, "model", "gguf"), "is inside the run's trained model"},
		{lora, "gguf", filepath.Join(lora, "checkpoints"), "is the run's checkpoints"},
		{lora, "merged", filepath.Join(lora, "checkpoints", "step-10"), "is inside the run's checkpoints"},
		{lora, "gguf", lora, "is the run directory"},
	} {
		err := Run(Options{RunDir: c.run, Format: c.format, OutDir: c.out}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s export of %s to %s: %v, want an error saying it %s", c.format, filepath.Base(c.run), c.out, err, c.want)
		}
	}
	if after := snapshot(t, tmp); !slices.Equal(before, after) {
		t.Errorf("refused exports changed the tree:\nbefore %q\nafter  %q", before, after)
	}
	// A folder beside them, and one inside the run, are fine.
	if err := Run(Options{RunDir: lora, Format: "peft", OutDir: filepath.Join(lora, "my-adapter")}, nil); err != nil {
		t.Errorf("export into a new folder inside the run: %v", err)
	}
}

// snapshot lists every path under dir with its size and content hash.
func snapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		entry := rel
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			entry += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		out = append(out, entry)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A non-empty --out is refused without Force (nothing in it touched);
// with Force the files an earlier export left (a stale shard, a Modelfile,
// a killed writer's temporary file) are removed first and the user's own
// files stay. The run's default folder is whet's: exporting there again
// replaces the earlier export, and says so.
func TestExportIntoUsedFolder(t *testing.T) {
	tmp := t.TempDir()
	run := makeFullRun(t, filepath.Join(tmp, "run"), testdata("tiny-llama"))
	out := filepath.Join(tmp, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	old := map[string]string{
		"notes.txt":                         "mine",
		"model-00002-of-00002.safetensors":  "stale shard",
		"model.safetensors.index.json":      "{}",
		"Modelfile":                         "FROM old",
		".model.gguf.tmp12345":              "half a file",
		"model-2-of-2.safetensors":          "not whet's name",
		"adapter_config.json.orig":          "not whet's name either",
		"tokenizer.json":                    "{}",
		".adapter_config.json.tmp-99":       "temp",
		".hidden":                           "user's",
		"model-00001-of-00002.safetensorsx": "not a shard",
	}
	for name, data := range old {
		if err := os.WriteFile(filepath.Join(out, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: out}, nil)
	if err == nil || !strings.Contains(err.Error(), "is not empty (11 entries, first .adapter_config.json.tmp-99)") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("export into a non-empty folder without Force: %v, want a refusal naming --force", err)
	}
	for name, data := range old {
		if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(got) != data {
			t.Errorf("refused export touched %s: %q, %v", name, got, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "model.gguf")); err == nil {
		t.Error("refused export wrote model.gguf")
	}

	var notices []string
	progress := func(done, total int, what string) {
		if total == 0 && strings.HasPrefix(what, "replacing") {
			notices = append(notices, what)
		}
	}
	if err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: out, Force: true}, progress); err != nil {
		t.Fatalf("forced export: %v", err)
	}
	var names []string
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{".hidden", "Modelfile", "adapter_config.json.orig", "model-00001-of-00002.safetensorsx", "model-2-of-2.safetensors", "model.gguf", "notes.txt"}
	if !slices.Equal(names, want) {
		t.Errorf("after a forced export the folder holds %q, want %q", names, want)
	}
	if mf, _ := os.ReadFile(filepath.Join(out, "Modelfile")); strings.Contains(string(mf), "FROM old") {
		t.Error("the old Modelfile was not replaced")
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "model-00002-of-00002.safetensors") || !strings.Contains(notices[0], ".model.gguf.tmp12345") {
		t.Errorf("the forced export should say which earlier files it removed, notices %q", notices)
	}

	// The default folder: a second export replaces the first without Force.
	if err := Run(Options{RunDir: run, Format: "merged"}, nil); err != nil {
		t.Fatal(err)
	}
	notices = nil
	if err := Run(Options{RunDir: run, Format: "merged"}, progress); err != nil {
		t.Fatalf("exporting again into the run's default folder: %v", err)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "model.safetensors") {
		t.Errorf("re-export into the default folder should say what it replaced, notices %q", notices)
	}
	// One entry is named as such.
	one := filepath.Join(tmp, "one")
	if err := os.MkdirAll(one, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(one, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Run(Options{RunDir: run, Format: "gguf", OutDir: one}, nil); err == nil || !strings.Contains(err.Error(), "is not empty (it holds notes.txt)") {
		t.Errorf("a folder holding one file: %v", err)
	}
	// A cancelled or failed export leaves no folder it made: an unknown
	// template fails after the folder is prepared.
	fresh := filepath.Join(tmp, "fresh")
	if err := Run(Options{RunDir: run, Format: "gguf", OutDir: fresh, Template: "nope"}, nil); err == nil {
		t.Fatal("an unknown template should fail")
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("a failed export left the folder it created: %v", err)
	}
}

// earlierExport makes a full run and exports it to GGUF in the run's
// default folder; it returns the export's options, that folder and its
// files (name to content), for the tests of an export that replaces it.
func earlierExport(t *testing.T) (o Options, out string, files map[string]string) {
	t.Helper()
	tmp := t.TempDir()
	run := makeFullRun(t, filepath.Join(tmp, "run"), testdata("tiny-llama"))
	o = Options{RunDir: run, Format: "gguf", Quant: "f16"}
	if err := Run(o, nil); err != nil {
		t.Fatal(err)
	}
	out = DefaultOutDir(o)
	files = folderFiles(t, out)
	if len(files) != 2 || files["model.gguf"] == "" || files["Modelfile"] == "" {
		t.Fatalf("the first export wrote %q, want model.gguf and Modelfile", slices.Sorted(maps.Keys(files)))
	}
	return o, out, files
}

// folderFiles reads the files of dir, name to content; a folder in it is
// listed as NAME/ with no content.
func folderFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() { // such as a .whet-replaced left behind
			got[e.Name()+"/"] = ""
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		got[e.Name()] = string(data)
	}
	return got
}

// sameFiles fails the test unless dir holds exactly want's files with
// want's contents.
func sameFiles(t *testing.T, when, dir string, want map[string]string) {
	t.Helper()
	got := folderFiles(t, dir)
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("%s: the folder holds %q, want the earlier export's %q", when, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for name, data := range want {
		if got[name] != data {
			t.Errorf("%s: %s differs from the earlier export's", when, name)
		}
	}
}

// An export into a folder holding an earlier one (the run's default
// folder, or --force) that is cancelled or fails leaves the earlier export
// as it was; one that completes leaves only its own files. Before, the
// earlier files were removed before the new export began, and esc on a
// second export in the studio left an empty folder.
func TestReplacedExportSurvivesCancelAndFailure(t *testing.T) {
	o, out, first := earlierExport(t)

	// Cancelled while writing model.gguf.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var notices []string
	err := RunContext(ctx, o, func(done, total int, what string) {
		if total == 0 {
			notices = append(notices, what)
		}
		if done == 3 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled export: %v", err)
	}
	sameFiles(t, "after a cancelled export", out, first)
	if !slices.ContainsFunc(notices, func(n string) bool { return strings.HasPrefix(n, "replacing an earlier export's files in ") }) {
		t.Errorf("the export should say it replaces the earlier one, notices %q", notices)
	}

	// Failed after the folder was prepared (an unknown template).
	bad := o
	bad.Template = "nope"
	if err := Run(bad, nil); err == nil {
		t.Fatal("an unknown template should fail")
	}
	sameFiles(t, "after a failed export", out, first)

	// Completed: its files replace the earlier ones, nothing set aside stays.
	q8 := o
	q8.OutDir, q8.Quant = out, "q8_0"
	q8.Force = true
	if err := Run(q8, nil); err != nil {
		t.Fatal(err)
	}
	got := folderFiles(t, out)
	if len(got) != 2 || got["model.gguf"] == first["model.gguf"] {
		t.Errorf("the completed export should replace model.gguf and leave 2 files, got %d files", len(got))
	}
	if _, err := os.Stat(filepath.Join(out, replacedDir)); !os.IsNotExist(err) {
		t.Errorf("the earlier export's files should be gone after a completed export: %v", err)
	}
}

// An export that ended after setting an earlier one aside (killed, or the
// studio quitting while it was cancelled: its goroutine does not finish)
// leaves .whet-replaced; the next export into the folder puts those files
// back first, so a failed next export still leaves them, and a completed
// one replaces them.
func TestInterruptedReplacementIsPutBack(t *testing.T) {
	o, out, first := earlierExport(t)
	// As a killed export leaves it: the earlier files aside, half a new one.
	aside := filepath.Join(out, replacedDir)
	if err := os.Mkdir(aside, 0o755); err != nil {
		t.Fatal(err)
	}
	for name := range first {
		if err := os.Rename(filepath.Join(out, name), filepath.Join(aside, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, "model.gguf"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := o
	bad.Template = "nope"
	var notices []string
	if err := Run(bad, func(_, total int, what string) {
		if total == 0 {
			notices = append(notices, what)
		}
	}); err == nil {
		t.Fatal("an unknown template should fail")
	}
	// The earlier files are back as they were, and .whet-replaced is gone.
	sameFiles(t, "after a failed export", out, first)
	if !slices.ContainsFunc(notices, func(n string) bool { return strings.HasPrefix(n, "put back the earlier export") }) {
		t.Errorf("the export should say it put the earlier one back, notices %q", notices)
	}
}
