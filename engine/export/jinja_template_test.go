package export

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

// customTemplate is a chat template no built-in family renders.
const customTemplate = "{% for m in messages %}<|im_start|>{{ m.role | upper }}: {{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>ASSISTANT: {% endif %}"

// A model whose chat template only the interpreter renders exports a GGUF
// that carries that template, and a Modelfile that says it has no Ollama
// translation for it instead of a TEMPLATE.
func TestExportOfInterpretedTemplate(t *testing.T) {
	tmp := t.TempDir()
	base := filepath.Join(tmp, "base")
	copyDir(t, testdata("tiny-qwen2"), base)
	cfgPath := filepath.Join(base, "tokenizer_config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["chat_template"] = customTemplate
	raw, _ = json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	run := makeLoRARun(t, filepath.Join(tmp, "run"), base, 3)
	src := loadRun(t, run)
	if src.Template == nil || !src.Template.Interpreted() {
		t.Fatalf("template %+v: want the interpreted one", src.Template)
	}
	out := filepath.Join(tmp, "gguf")
	if err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: out}, nil); err != nil {
		t.Fatal(err)
	}
	gf, err := parser.ParseGGUFFile(filepath.Join(out, "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := gf.Header.MetadataKV.Get("tokenizer.chat_template")
	if v.ValueString() != customTemplate {
		t.Fatalf("GGUF chat template %q", v.ValueString())
	}
	mf, err := os.ReadFile(filepath.Join(out, "Modelfile"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mf), "TEMPLATE \"\"\"") || !strings.Contains(string(mf), "this model's own Jinja chat template has no Go translation") {
		t.Fatalf("Modelfile:\n%s", mf)
	}
}
