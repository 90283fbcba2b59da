package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"whet/engine"
)

func mkdirs(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if strings.HasSuffix(p, ".jsonl") {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("{}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeRunFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadRunConfigPathsAreTheFilesFolders: relative paths in a run file
// are read against the file's folder, even where the working directory
// holds a folder of the same name, and come back absolute; one found only
// from the working directory is an error naming both; a Hub id stays a
// Hub id.
func TestLoadRunConfigPathsAreTheFilesFolders(t *testing.T) {
	proj, elsewhere := t.TempDir(), t.TempDir()
	sub := filepath.Join(proj, "sub")
	mkdirs(t, filepath.Join(sub, "model"), filepath.Join(sub, "data.jsonl"),
		filepath.Join(elsewhere, "model"), filepath.Join(elsewhere, "data.jsonl"), filepath.Join(elsewhere, "eval.jsonl"))
	writeRunFile(t, filepath.Join(sub, "run.yaml"), "model: model\ndata:\n  path: data.jsonl\n  eval_path: eval.jsonl\n")
	t.Chdir(elsewhere)
	// eval.jsonl is in the working directory only: the error says which
	// folder counts and where the file is.
	_, err := engine.LoadRunConfig(filepath.Join(sub, "run.yaml"))
	want := "data.eval_path: eval.jsonl is read against the run file's folder " + sub + ", where it is not; from the working folder it is " +
		filepath.Join(elsewhere, "eval.jsonl") + ": write that path, or one relative to the run file"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("eval.jsonl in the working directory only: %v, want %q", err, want)
	}
	if err := os.Remove(filepath.Join(elsewhere, "eval.jsonl")); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadRunConfig(filepath.Join(sub, "run.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(sub, "model"); cfg.Model != want {
		t.Errorf("model = %q, want %q (the run file's folder, not the working directory's)", cfg.Model, want)
	}
	if want := filepath.Join(sub, "data.jsonl"); cfg.Data.Path != want {
		t.Errorf("data.path = %q, want %q", cfg.Data.Path, want)
	}
	// Missing: still the file's folder, absolute, so the error names
	// where it was looked for.
	if want := filepath.Join(sub, "eval.jsonl"); cfg.Data.EvalPath != want {
		t.Errorf("data.eval_path = %q, want %q", cfg.Data.EvalPath, want)
	}

	// A relative run file path from the project folder.
	t.Chdir(proj)
	cfg, err = engine.LoadRunConfig(filepath.Join("sub", "run.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(sub, "model"); cfg.Model != want {
		t.Errorf("from the project folder: model = %q, want %q", cfg.Model, want)
	}

	// A Hub id is left as it is; a relative path of the same form that
	// exists next to the run file is a folder.
	writeRunFile(t, filepath.Join(sub, "hub.yaml"), "model: Qwen/Qwen2.5-0.5B-Instruct\ndata:\n  path: data.jsonl\n")
	if cfg, err = engine.LoadRunConfig(filepath.Join(sub, "hub.yaml")); err != nil || cfg.Model != "Qwen/Qwen2.5-0.5B-Instruct" {
		t.Errorf("hub id: model = %q, %v", cfg.Model, err)
	}
	writeRunFile(t, filepath.Join(sub, "rev.yaml"), "model: Qwen/Qwen2.5-0.5B-Instruct@v1.0\ndata:\n  path: data.jsonl\n")
	if cfg, err = engine.LoadRunConfig(filepath.Join(sub, "rev.yaml")); err != nil || cfg.Model != "Qwen/Qwen2.5-0.5B-Instruct@v1.0" {
		t.Errorf("hub id with a revision: model = %q, %v", cfg.Model, err)
	}
	mkdirs(t, filepath.Join(sub, "Qwen", "Qwen2.5-0.5B-Instruct"))
	if cfg, err = engine.LoadRunConfig(filepath.Join(sub, "hub.yaml")); err != nil || cfg.Model != filepath.Join(sub, "Qwen", "Qwen2.5-0.5B-Instruct") {
		t.Errorf("folder of a hub id's form: model = %q, %v", cfg.Model, err)
	}
}

// TestLoadRunConfigOldRunDirectory: a run directory's run.yaml written
// before paths were recorded absolute named them relative to the folder
// training ran in; from that folder it still loads.
func TestLoadRunConfigOldRunDirectory(t *testing.T) {
	proj := t.TempDir()
	run := engine.RunDir(filepath.Join(proj, "runs", "old"))
	mkdirs(t, filepath.Join(proj, "models", "tiny"), filepath.Join(proj, "chat.jsonl"), run.Path())
	writeRunFile(t, run.Config(), "name: old\nmodel: models/tiny\ndata:\n  path: chat.jsonl\n")
	writeRunFile(t, run.Status(), `{"state":"done"}`)
	t.Chdir(proj)
	cfg, err := engine.LoadRunConfig(run.Config())
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(proj, "models", "tiny"); cfg.Model != want || cfg.Data.Path != filepath.Join(proj, "chat.jsonl") {
		t.Errorf("old run: model %q, data %q; want %q and chat.jsonl in %s", cfg.Model, cfg.Data.Path, want, proj)
	}
}

// copyFiles copies the files of src (no sub-folders) into dst.
func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	mkdirs(t, dst)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunDirectoryRecordsAbsolutePaths: a run started from a config with
// paths relative to the working directory (as the studio builds them)
// keeps a run.yaml whose paths are absolute, so that it reads the same
// from any folder.
func TestRunDirectoryRecordsAbsolutePaths(t *testing.T) {
	proj, elsewhere := t.TempDir(), t.TempDir()
	copyFiles(t, "../testdata/tiny-llama", filepath.Join(proj, "tiny-llama"))
	chat, err := os.ReadFile("../testdata/datasets/tiny-chat.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proj, "chat.jsonl"), chat, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(proj)
	cfg := engine.RunConfig{Name: "rel", Model: "tiny-llama", Method: "lora", Backend: "cpu", RunsDir: "runs",
		LoRA:  engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data:  engine.DataConfig{Path: "chat.jsonl", MaxLength: 64, Packing: true, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 1, MicroBatch: 1, LR: 1e-3, Seed: 1}}
	runToEnd(t, cfg)
	run := engine.RunDir(filepath.Join(proj, "runs", "rel"))
	raw, err := os.ReadFile(run.Config())
	if err != nil {
		t.Fatal(err)
	}
	var saved engine.RunConfig
	if err := yaml.Unmarshal(raw, &saved); err != nil {
		t.Fatal(err)
	}
	for field, got := range map[string]string{"model": saved.Model, "data.path": saved.Data.Path, "runs_dir": saved.RunsDir} {
		if !filepath.IsAbs(got) {
			t.Errorf("run.yaml records %s %q, want an absolute path", field, got)
		}
	}
	t.Chdir(elsewhere)
	again, err := engine.LoadRunConfig(run.Config())
	if err != nil {
		t.Fatal(err)
	}
	if again.Model != filepath.Join(proj, "tiny-llama") || again.Data.Path != filepath.Join(proj, "chat.jsonl") {
		t.Errorf("from another folder: model %q, data %q", again.Model, again.Data.Path)
	}
}

// TestRunWithoutRunsDirGoesUnderRuns: a run file that names no runs_dir
// trains in runs/NAME (engine.DefaultRunsDir), where whet runs, whet
// attach and the studio look, not in a NAME folder of the working folder.
func TestRunWithoutRunsDirGoesUnderRuns(t *testing.T) {
	proj := t.TempDir()
	copyFiles(t, "../testdata/tiny-llama", filepath.Join(proj, "tiny-llama"))
	chat, err := os.ReadFile("../testdata/datasets/tiny-chat.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proj, "chat.jsonl"), chat, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(proj)
	cfg := engine.RunConfig{Name: "norunsdir", Model: "tiny-llama", Method: "lora", Backend: "cpu",
		LoRA:  engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data:  engine.DataConfig{Path: "chat.jsonl", MaxLength: 64, Packing: true, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 1, MicroBatch: 1, LR: 1e-3, Seed: 1}}
	runToEnd(t, cfg)
	if _, err := os.Stat(filepath.Join(proj, "norunsdir")); err == nil {
		t.Errorf("the run went into %s, the working folder itself", filepath.Join(proj, "norunsdir"))
	}
	if _, err := os.Stat(engine.RunDir(filepath.Join(proj, engine.DefaultRunsDir, "norunsdir")).Config()); err != nil {
		t.Errorf("no run.yaml under %s: %v", engine.DefaultRunsDir, err)
	}
}

// A run name that cannot be a folder is refused when the file is read,
// with the file's name, like the other keys (it was refused only when the
// run started, without it).
func TestLoadRunConfigRefusesABadName(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, filepath.Join(dir, "model"), filepath.Join(dir, "data.jsonl"))
	path := filepath.Join(dir, "run.yaml")
	writeRunFile(t, path, "name: ../evil\nmodel: model\ndata:\n  path: data.jsonl\n")
	_, err := engine.LoadRunConfig(path)
	if want := path + `: name: "../evil" cannot be a run name`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want it to start with %q", err, want)
	}
}

// A data.template naming a Jinja file is read against the run file's
// folder, like data.path, and comes back absolute; a built-in name and
// Jinja text are left as they are.
func TestLoadRunConfigTemplateFileIsTheFilesFolders(t *testing.T) {
	proj := t.TempDir()
	mkdirs(t, filepath.Join(proj, "model"), filepath.Join(proj, "data.jsonl"))
	if err := os.WriteFile(filepath.Join(proj, "chat.jinja"), []byte("{{ messages }}"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	for _, c := range []struct{ template, want string }{
		{"chat.jinja", filepath.Join(proj, "chat.jinja")},
		{"chatml", "chatml"},
		{"'{{ messages }}'", "{{ messages }}"},
	} {
		writeRunFile(t, filepath.Join(proj, "run.yaml"), "model: model\ndata:\n  path: data.jsonl\n  template: "+c.template+"\n")
		cfg, err := engine.LoadRunConfig(filepath.Join(proj, "run.yaml"))
		if err != nil || cfg.Data.Template != c.want {
			t.Errorf("data.template %s: %q (%v), want %q", c.template, cfg.Data.Template, err, c.want)
		}
	}
}
