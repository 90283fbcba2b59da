package datasets_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/datasets/tokenizer"
)

// Training data rendered with a model's own chat template: a template
// that fails on the rows (here an unknown filter) is named by its file,
// chat_template.jinja or tokenizer_config.json, with the template's line,
// not only by the data row it failed on.
func TestPrepareTemplateErrorNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("..", "testdata", "tiny-qwen2", "tokenizer.json")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "chat_template.jinja")
	if err := os.WriteFile(file, []byte("{% for m in messages %}\n{{ m.content | nosuchfilter }}\n{% endfor %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = datasets.Prepare(datasets.Options{Path: "../testdata/datasets/tiny-chat.jsonl", MaxLength: 128}, tok)
	if err == nil || !strings.Contains(err.Error(), file+": chat template: line 2: no filter named 'nosuchfilter'") {
		t.Fatalf("Prepare: %v, want the error to name %s and the template's line 2", err, file)
	}
}

// A misspelt filter in a chat template is named with where the template
// came from, its line, and the filter it was meant to be: the run file's
// data.template (the Jinja text itself, or a file it names) or the
// model's tokenizer_config.json / chat_template.jinja.
func TestTemplateErrorNamesEachOrigin(t *testing.T) {
	const tmpl = "{% for m in messages %}\n{{ m.content | trimm }}\n{% endfor %}"
	const want = "chat template: line 2: no filter named 'trimm'; did you mean 'trim'?"
	qwen, err := os.ReadFile(filepath.Join("..", "testdata", "tiny-qwen2", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	// model makes a model folder whose tokenizer's template is tmpl, in
	// the file given ("" for none).
	model := func(t *testing.T, file string) *tokenizer.Tokenizer {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), qwen, 0o644); err != nil {
			t.Fatal(err)
		}
		switch file {
		case "tokenizer_config.json":
			js, _ := json.Marshal(map[string]any{"chat_template": tmpl})
			if err := os.WriteFile(filepath.Join(dir, file), js, 0o644); err != nil {
				t.Fatal(err)
			}
		case "chat_template.jinja":
			if err := os.WriteFile(filepath.Join(dir, file), []byte(tmpl), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tok, err := tokenizer.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	data := "../testdata/datasets/tiny-chat.jsonl"

	t.Run("tokenizer_config.json", func(t *testing.T) {
		tok := model(t, "tokenizer_config.json")
		_, err := datasets.Prepare(datasets.Options{Path: data, MaxLength: 128}, tok)
		if err == nil || !strings.Contains(err.Error(), tok.ChatTemplateFile()+": "+want) || filepath.Base(tok.ChatTemplateFile()) != "tokenizer_config.json" {
			t.Fatalf("Prepare: %v, want %q after %s", err, want, tok.ChatTemplateFile())
		}
	})
	t.Run("chat_template.jinja", func(t *testing.T) {
		tok := model(t, "chat_template.jinja")
		_, err := datasets.Prepare(datasets.Options{Path: data, MaxLength: 128}, tok)
		if err == nil || !strings.Contains(err.Error(), tok.ChatTemplateFile()+": "+want) || filepath.Base(tok.ChatTemplateFile()) != "chat_template.jinja" {
			t.Fatalf("Prepare: %v, want %q after %s", err, want, tok.ChatTemplateFile())
		}
	})
	t.Run("data.template", func(t *testing.T) {
		// The model's own template is fine; the run's replaces it.
		_, err := datasets.Prepare(datasets.Options{Path: data, MaxLength: 128, Template: tmpl}, model(t, ""))
		if err == nil || !strings.Contains(err.Error(), "data.template: "+want) {
			t.Fatalf("Prepare: %v, want %q", err, "data.template: "+want)
		}
	})
	t.Run("data.template file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "my.jinja")
		if err := os.WriteFile(file, []byte(tmpl), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := datasets.Prepare(datasets.Options{Path: data, MaxLength: 128, Template: file}, model(t, ""))
		if err == nil || !strings.Contains(err.Error(), file+" (data.template): "+want) {
			t.Fatalf("Prepare: %v, want %q", err, file+" (data.template): "+want)
		}
	})
}

// data.template's other mistakes name the field too: Jinja that does
// not parse (with its line), a file that is not there, a name that is
// not a built-in family (with the other two forms it may take).
func TestTemplateSettingErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.jinja")
	for _, c := range []struct{ value, want string }{
		{"{% for m in messages %}\n{{ m.content }", "data.template: chat template: line 2:"},
		{missing, "data.template: chat template file: open " + missing},
		{"chatmll", `data.template: unknown chat template "chatmll" (known: `},
	} {
		_, err := datasets.TemplateSetting(c.value, "data.template")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("TemplateSetting(%q): %v, want %q…", c.value, err, c.want)
		}
	}
	if !strings.Contains(fmt.Sprint(datasets.TemplateSetting("chatmll", "data.template")), "or a .jinja file") {
		t.Error("an unknown name does not say a .jinja file or Jinja text may be given")
	}
	for _, v := range []string{"chatml", "t.jinja", "dir/t.J2"} {
		if got := datasets.IsTemplateFile(v); got != (v != "chatml") {
			t.Errorf("IsTemplateFile(%q) = %v", v, got)
		}
	}
	if datasets.IsTemplateFile("{{ x }}.jinja") {
		t.Error("Jinja text ending in .jinja taken for a file")
	}
}

// A data.template file at fault itself (an unknown filter, Jinja that does
// not parse) is named with its line only, never with a data row: the row
// did nothing wrong. One that does not parse is told before any row is
// read, so a data file that is not there is not what is reported. A row
// whose content the template refuses (raise_exception on its roles) is
// named with both the row and the template.
func TestTemplateFaultIsNotARows(t *testing.T) {
	qwen := filepath.Join("..", "testdata", "tiny-qwen2")
	tok, err := tokenizer.Load(qwen)
	if err != nil {
		t.Fatal(err)
	}
	data := "../testdata/datasets/tiny-chat.jsonl"
	write := func(t *testing.T, text string) string {
		file := filepath.Join(t.TempDir(), "bad.jinja")
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return file
	}
	t.Run("unknown filter", func(t *testing.T) {
		for _, skip := range []bool{false, true} {
			file := write(t, "{% for m in messages %}\n{{ m.content | trimm }}\n{% endfor %}")
			_, err := datasets.Prepare(datasets.Options{Path: data, MaxLength: 128, Template: file, SkipBadRows: skip}, tok)
			want := "data: " + file + " (data.template): chat template: line 2: no filter named 'trimm'; did you mean 'trim'?"
			if err == nil || err.Error() != want {
				t.Errorf("skip_bad_rows %v: Prepare: %v\nwant %s", skip, err, want)
			}
		}
	})
	t.Run("parse error", func(t *testing.T) {
		file := write(t, "{% for m in messages %}\n{{ m.content }")
		_, err := datasets.Prepare(datasets.Options{Path: filepath.Join(t.TempDir(), "missing.jsonl"), MaxLength: 128, Template: file}, tok)
		if err == nil || !strings.HasPrefix(err.Error(), file+" (data.template): chat template: line 2:") {
			t.Errorf("Prepare: %v, want the template's error before the data's", err)
		}
		_, err = datasets.PreparePrompts(datasets.Options{Path: filepath.Join(t.TempDir(), "missing.jsonl"), MaxLength: 128, Template: file}, tok)
		if err == nil || !strings.HasPrefix(err.Error(), file+" (data.template): chat template: line 2:") {
			t.Errorf("PreparePrompts: %v, want the template's error before the data's", err)
		}
	})
	t.Run("row content", func(t *testing.T) {
		file := write(t, "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system messages') }}{% endif %}\n{{ m.content }}{% endfor %}")
		_, err := datasets.Prepare(datasets.Options{Path: data, MaxLength: 128, Template: file}, tok)
		want := "data: " + data + ":4: " + file + " (data.template): chat template: no system messages"
		if err == nil || err.Error() != want {
			t.Errorf("Prepare: %v\nwant %s", err, want)
		}
	})
}
