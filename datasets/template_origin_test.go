package datasets_test

import (
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
