package engine_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"whet/datasets"
	"whet/engine"
)

// familyJinja is a built-in family's Jinja, as a user might keep in a
// .jinja file.
func familyJinja(t *testing.T, name string) string {
	t.Helper()
	tpl, ok := datasets.LookupTemplate(name)
	if !ok || tpl.Jinja() == "" {
		t.Fatalf("no built-in %s", name)
	}
	return tpl.Jinja()
}

func writeText(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A run whose data.template names a .jinja file keeps the file's text in
// its folder, and its run.yaml names that copy: read back, data.template
// is the copy. A resume compares the template by its text: the file moved
// with the same text resumes, the file edited, a built-in name or other
// Jinja text instead is refused naming data.template and both sources,
// unless ResumeAnyway, which keeps the new text. The run's own run.yaml
// (the studio's resume) resumes with the copy; the copy's text itself in
// the run file resumes too.
func TestRunKeepsItsTemplateFile(t *testing.T) {
	runs := t.TempDir()
	alpaca, chatml := familyJinja(t, "alpaca"), familyJinja(t, "chatml")
	file := filepath.Join(t.TempDir(), "mine.jinja")
	writeText(t, file, alpaca)
	cfg := smallRun(runs, "tpl")
	cfg.Data.Template = file
	runToEnd(t, cfg)
	rd, err := engine.NewRunDir(runs, "tpl")
	if err != nil {
		t.Fatal(err)
	}
	if got := readText(t, rd.ChatTemplate()); got != alpaca {
		t.Fatalf("%s holds %q, want the file's text", rd.ChatTemplate(), got)
	}
	raw := readText(t, rd.Config())
	saved, err := engine.DecodeRunConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if saved.Data.Template != engine.RunTemplateFile {
		t.Errorf("run.yaml's data.template is %q, want the copy %q", saved.Data.Template, engine.RunTemplateFile)
	}
	noteNames := func(source string) {
		t.Helper()
		first, _, _ := strings.Cut(readText(t, rd.Config()), "\n")
		if !strings.HasPrefix(first, "# data.template: ") || !strings.Contains(first, strconv.Quote(source)) {
			t.Errorf("run.yaml's first line %q does not say the copy is of %s", first, source)
		}
	}
	noteNames(file)
	loaded, err := engine.LoadRunConfig(rd.Config())
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Data.Template != rd.ChatTemplate() {
		t.Errorf("LoadRunConfig(run.yaml): data.template %q, want %q", loaded.Data.Template, rd.ChatTemplate())
	}

	prepare := func(cfg engine.RunConfig) ([]string, error) {
		s, err := engine.Prepare(cfg)
		if err != nil {
			return nil, err
		}
		s.Close()
		return s.Notices, nil
	}
	refused := func(what string, cfg engine.RunConfig, want string) {
		t.Helper()
		_, err := prepare(cfg)
		var changed *engine.ResumeChangedError
		if !errors.As(err, &changed) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a refusal saying %q", what, err, want)
		}
	}

	// Moved elsewhere with the same text: the same template.
	moved := filepath.Join(t.TempDir(), "moved.jinja")
	writeText(t, moved, alpaca)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	m := cfg
	m.Data.Template = moved
	if _, err := prepare(m); err != nil {
		t.Fatalf("resume with the template file moved: %v", err)
	}
	noteNames(moved)

	writeText(t, moved, chatml)
	refused("file edited", m, "data.template: the content of "+moved+" differs from "+rd.ChatTemplate()+", the template the checkpoints were trained with")
	name := cfg
	name.Data.Template = "alpaca"
	refused("a built-in name", name, "data.template: "+rd.ChatTemplate()+" → alpaca")
	text := cfg
	text.Data.Template = chatml
	refused("other Jinja text", text, "data.template: the Jinja text in the run file differs from "+rd.ChatTemplate())

	// The run folder's own run.yaml names the copy, which is the template.
	own, err := engine.LoadRunConfig(rd.Config())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prepare(own); err != nil {
		t.Fatalf("resume from the run's own run.yaml: %v", err)
	}
	if got := readText(t, rd.ChatTemplate()); got != alpaca {
		t.Errorf("after a resume from its own run.yaml the copy holds %q", got)
	}

	anyway := m // the edited file
	anyway.ResumeAnyway = true
	notices, err := prepare(anyway)
	if err != nil {
		t.Fatalf("resume anyway: %v", err)
	}
	if !strings.Contains(strings.Join(notices, "\n"), "data.template: the content of "+moved) {
		t.Errorf("notices %q do not say the template changed", notices)
	}
	if got := readText(t, rd.ChatTemplate()); got != chatml {
		t.Errorf("resumed anyway with another template, the copy holds %q, want the new text", got)
	}

	// The copy's very text in the run file is the same template; run.yaml
	// then holds the text and the copy, named by nothing, goes.
	text.Data.Template = chatml
	if _, err := prepare(text); err != nil {
		t.Fatalf("resume with the copy's very text in the run file: %v", err)
	}
	if got, err := engine.LoadRunConfig(rd.Config()); err != nil || got.Data.Template != chatml {
		t.Errorf("run.yaml's data.template %q (%v), want the text", got.Data.Template, err)
	}
	if _, err := os.Stat(rd.ChatTemplate()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left when run.yaml no longer names it (%v)", rd.ChatTemplate(), err)
	}
}

// A run folder from before the copy (run.yaml names the user's file, no
// chat_template.jinja) resumes as it did: by the file's path, which must
// not change; the resume then keeps a copy.
func TestRunFolderWithoutTemplateCopy(t *testing.T) {
	runs := t.TempDir()
	file := filepath.Join(t.TempDir(), "mine.jinja")
	writeText(t, file, familyJinja(t, "alpaca"))
	cfg := smallRun(runs, "old")
	cfg.Data.Template = file
	runToEnd(t, cfg)
	rd, _ := engine.NewRunDir(runs, "old")
	// As whet wrote it before: the file's absolute path, no copy.
	saved, err := engine.LoadRunConfig(rd.Config())
	if err != nil {
		t.Fatal(err)
	}
	saved.Data.Template = file
	js, err := yaml.Marshal(saved)
	if err != nil {
		t.Fatal(err)
	}
	writeText(t, rd.Config(), string(js))
	if err := os.Remove(rd.ChatTemplate()); err != nil {
		t.Fatal(err)
	}
	if got, err := engine.LoadRunConfig(rd.Config()); err != nil || got.Data.Template != file {
		t.Fatalf("old run.yaml read back: data.template %q (%v), want %s", got.Data.Template, err, file)
	}

	other := filepath.Join(t.TempDir(), "other.jinja")
	writeText(t, other, familyJinja(t, "alpaca"))
	o := cfg
	o.Data.Template = other
	s, err := engine.Prepare(o)
	var changed *engine.ResumeChangedError
	if !errors.As(err, &changed) || !strings.Contains(err.Error(), "data.template: "+file+" → "+other) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("old folder, another template path: %v, want the path change named", err)
	}
	if s, err = engine.Prepare(cfg); err != nil {
		t.Fatalf("old folder, the same template path: %v", err)
	}
	s.Close()
	if got := readText(t, rd.ChatTemplate()); got != familyJinja(t, "alpaca") {
		t.Errorf("the resumed old folder keeps %q as its copy", got)
	}
}

// A built-in name or Jinja text in data.template is kept in run.yaml as it
// was: no copy is written.
func TestRunTemplateNameOrTextKeptAsWritten(t *testing.T) {
	for _, value := range []string{"alpaca", familyJinja(t, "alpaca")} {
		runs := t.TempDir()
		cfg := smallRun(runs, "kept")
		cfg.Data.Template = value
		s, err := engine.Prepare(withDefaults(t, cfg))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		rd, _ := engine.NewRunDir(runs, "kept")
		saved, err := engine.LoadRunConfig(rd.Config())
		if err != nil || saved.Data.Template != value {
			t.Errorf("data.template %.20q saved as %.20q (%v)", value, saved.Data.Template, err)
		}
		if strings.HasPrefix(readText(t, rd.Config()), "#") {
			t.Errorf("data.template %.20q: run.yaml has a note on a copy", value)
		}
		if _, err := os.Stat(rd.ChatTemplate()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("data.template %.20q: %s written (%v)", value, rd.ChatTemplate(), err)
		}
	}
}
