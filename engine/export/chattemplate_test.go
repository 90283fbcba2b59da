package export

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"go.yaml.in/yaml/v3"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine"
)

// setRunTemplate rewrites a run's run.yaml with data.template set to value.
func setRunTemplate(t *testing.T, run, value string) {
	t.Helper()
	path := engine.RunDir(run).Config()
	cfg, err := engine.LoadRunConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Data.Template = value
	js, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, js, 0o644); err != nil {
		t.Fatal(err)
	}
}

// exportAll writes the run's PEFT, merged (bf16) and GGUF (f16) exports
// under out/<format> and returns the notices each printed.
func exportAll(t *testing.T, run, out string) map[string][]string {
	t.Helper()
	notices := map[string][]string{}
	for _, f := range Formats {
		q := map[string]string{"merged": "bf16", "gguf": "f16"}[f]
		err := Run(Options{RunDir: run, Format: f, Quant: q, OutDir: filepath.Join(out, f)}, func(_, total int, what string) {
			if total == 0 {
				notices[f] = append(notices[f], what)
			}
		})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	return notices
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ggufChatTemplate reads a GGUF's tokenizer.chat_template back with
// gguf-parser-go, and exactly from the file's bytes (the parser trims
// spaces off strings, and a template's final newline is part of it): the
// key, its type (8, string), the length and the text.
func ggufChatTemplate(t *testing.T, path string) string {
	t.Helper()
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := gf.Header.MetadataKV.Get("tokenizer.chat_template")
	if !ok {
		t.Fatalf("%s: no tokenizer.chat_template", path)
	}
	raw := readFile(t, path)
	key := []byte("tokenizer.chat_template")
	i := bytes.Index(raw, key)
	if i < 0 || i+len(key)+12 > len(raw) {
		t.Fatalf("%s: tokenizer.chat_template not in the file", path)
	}
	p := raw[i+len(key):]
	if typ := binary.LittleEndian.Uint32(p); typ != 8 {
		t.Fatalf("%s: tokenizer.chat_template has GGUF type %d, want 8 (string)", path, typ)
	}
	n := binary.LittleEndian.Uint64(p[4:])
	if uint64(len(p)-12) < n {
		t.Fatalf("%s: tokenizer.chat_template runs past the file", path)
	}
	text := string(p[12 : 12+n])
	if strings.TrimSpace(text) != v.ValueString() {
		t.Fatalf("%s: gguf-parser-go reads tokenizer.chat_template as %q, the bytes hold %q", path, v.ValueString(), text)
	}
	return text
}

// templateNotices are the notices about the chat template.
func templateNotices(n map[string][]string) []string {
	var out []string
	for _, f := range Formats {
		for _, s := range n[f] {
			if strings.Contains(s, "template") || strings.Contains(s, "TEMPLATE") {
				out = append(out, f+": "+s)
			}
		}
	}
	return out
}

// checkTokenizerConfig: the export's tokenizer_config.json has the chat
// template want and otherwise the base's keys and values.
func checkTokenizerConfig(t *testing.T, what, base, out, want string) {
	t.Helper()
	var b, o map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join(base, "tokenizer_config.json")), &b); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(out, "tokenizer_config.json")), &o); err != nil {
		t.Fatal(err)
	}
	if o["chat_template"] != want {
		t.Errorf("%s: tokenizer_config.json chat_template %q, want %q", what, o["chat_template"], want)
	}
	delete(b, "chat_template")
	delete(o, "chat_template")
	bj, _ := json.Marshal(b)
	oj, _ := json.Marshal(o)
	if !bytes.Equal(bj, oj) {
		t.Errorf("%s: tokenizer_config.json changed beyond chat_template:\n%s\nwant\n%s", what, oj, bj)
	}
	// whet reads the folder back with the trained template (whet chat
	// --model on a merged export).
	tok, err := tokenizer.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ChatTemplate() != want {
		t.Errorf("%s: whet reads the chat template back as %q", what, tok.ChatTemplate())
	}
}

// A run trained with a built-in template other than its base's (alpaca on
// a ChatML model) exports that template everywhere: tokenizer_config.json
// of the PEFT and merged folders (other keys and files unchanged), the
// GGUF's tokenizer.chat_template read back, the Modelfile's TEMPLATE and
// stop, and a notice naming data.template.
func TestExportCarriesBuiltinTrainingTemplate(t *testing.T) {
	tmp := t.TempDir()
	base := testdata("tiny-qwen2")
	run := makeLoRARun(t, filepath.Join(tmp, "run"), base, 7)
	setRunTemplate(t, run, "alpaca")
	alpaca, _ := datasets.LookupTemplate("alpaca")
	want := alpaca.Jinja()
	if !strings.Contains(want, "### Instruction:") {
		t.Fatalf("alpaca's Jinja: %q", want)
	}
	out := filepath.Join(tmp, "out")
	notices := exportAll(t, run, out)
	for _, f := range Formats {
		if !strings.Contains(strings.Join(notices[f], "\n"), "the run's data.template alpaca, which it was trained with") {
			t.Errorf("%s: no notice of the training template: %q", f, notices[f])
		}
	}
	for _, f := range []string{"peft", "merged"} {
		checkTokenizerConfig(t, f, base, filepath.Join(out, f), want)
		if !bytes.Equal(readFile(t, filepath.Join(base, "tokenizer.json")), readFile(t, filepath.Join(out, f, "tokenizer.json"))) {
			t.Errorf("%s: tokenizer.json changed", f)
		}
	}
	if got := ggufChatTemplate(t, filepath.Join(out, "gguf", "model.gguf")); got != want {
		t.Errorf("GGUF tokenizer.chat_template %q, want alpaca's", got)
	}
	mf := string(readFile(t, filepath.Join(out, "gguf", "Modelfile")))
	// The tokenizer's eos_token closes a reply, as in training.
	tpl, _ := OllamaTemplate("alpaca", "<|im_end|>")
	for _, s := range []string{"TEMPLATE \"\"\"" + tpl + "\"\"\"\n", "PARAMETER stop " + strconv.Quote("### Instruction:"), "the run's data.template alpaca"} {
		if !strings.Contains(mf, s) {
			t.Errorf("Modelfile lacks %q:\n%s", s, mf)
		}
	}

	// llama.cpp loads the GGUF with the new template, ends a reply at the
	// template's end-of-turn token and reads an alpaca prompt as whet does.
	tok, err := tokenizer.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	r, err := alpaca.Render([]datasets.Message{{Role: "user", Content: "Name a colour."}, {Role: "assistant", Content: "Blue."}}, datasets.RenderOptions{EOS: "<|im_end|>"})
	if err != nil {
		t.Fatal(err)
	}
	reply := runLlama(t, []llamaJob{{Model: filepath.Join(out, "gguf", "model.gguf"), Tokenize: []string{r.Text}}})[0]
	eot, _ := tok.TokenID("<|im_end|>")
	if !slices.Contains(reply.EogTokens, int32(eot)) {
		t.Errorf("llama.cpp's end-of-generation tokens %v lack <|im_end|> (%d)", reply.EogTokens, eot)
	}
	if want := toInt32(tok.Encode(r.Text, false)); !slices.Equal(reply.Tokenize[0], want) {
		t.Errorf("llama.cpp reads the alpaca prompt as %v, whet %v", reply.Tokenize[0], want)
	}
}

// A run trained with its own Jinja (the text in the run file, or a .jinja
// file) exports that Jinja as written; Ollama gets no TEMPLATE, and both the
// Modelfile and the export's notices say so naming data.template, rather
// than leave Ollama the base's template.
func TestExportCarriesJinjaTrainingTemplate(t *testing.T) {
	tmp := t.TempDir()
	base := testdata("tiny-qwen2")
	run := makeLoRARun(t, filepath.Join(tmp, "run"), base, 8)
	setRunTemplate(t, run, customTemplate)
	out := filepath.Join(tmp, "text")
	notices := exportAll(t, run, out)
	for _, f := range []string{"peft", "merged"} {
		checkTokenizerConfig(t, f, base, filepath.Join(out, f), customTemplate)
	}
	if got := ggufChatTemplate(t, filepath.Join(out, "gguf", "model.gguf")); got != customTemplate {
		t.Errorf("GGUF tokenizer.chat_template %q", got)
	}
	mf := string(readFile(t, filepath.Join(out, "gguf", "Modelfile")))
	if strings.Contains(mf, "TEMPLATE \"\"\"") || !strings.Contains(mf, "No Ollama TEMPLATE: the run's data.template (Jinja text) is Jinja") {
		t.Errorf("Modelfile:\n%s", mf)
	}
	if !strings.Contains(strings.Join(notices["gguf"], "\n"), "Ollama: No Ollama TEMPLATE: the run's data.template (Jinja text)") {
		t.Errorf("the GGUF export does not say Ollama has no TEMPLATE: %q", notices["gguf"])
	}

	// A file: its text as written.
	file := filepath.Join(tmp, "mine.jinja")
	own := "{#- mine #}\n" + customTemplate + "\n"
	if err := os.WriteFile(file, []byte(own), 0o644); err != nil {
		t.Fatal(err)
	}
	setRunTemplate(t, run, file)
	if err := Run(Options{RunDir: run, Format: "peft", OutDir: filepath.Join(tmp, "file")}, nil); err != nil {
		t.Fatal(err)
	}
	checkTokenizerConfig(t, "peft of a .jinja", base, filepath.Join(tmp, "file"), own)
}

// With no data.template, or one naming the family the base's own template
// is (chatml for this base), every export is byte for byte what it was:
// the tokenizer files copied, the GGUF and Modelfile unchanged, no notice.
func TestExportOfBaseTemplateUnchanged(t *testing.T) {
	tmp := t.TempDir()
	base := testdata("tiny-qwen2")
	run := makeLoRARun(t, filepath.Join(tmp, "run"), base, 9)
	none := filepath.Join(tmp, "none")
	if n := templateNotices(exportAll(t, run, none)); len(n) != 0 {
		t.Errorf("notices without data.template: %q", n)
	}
	for _, f := range []string{"peft", "merged"} {
		for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
			if !bytes.Equal(readFile(t, filepath.Join(base, name)), readFile(t, filepath.Join(none, f, name))) {
				t.Errorf("%s: %s is not the base's", f, name)
			}
		}
	}
	tok, err := tokenizer.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	if got := ggufChatTemplate(t, filepath.Join(none, "gguf", "model.gguf")); got != tok.ChatTemplate() {
		t.Errorf("GGUF tokenizer.chat_template %q, want the base's", got)
	}
	for _, setting := range []string{"chatml", tok.ChatTemplate()} {
		setRunTemplate(t, run, setting)
		same := filepath.Join(tmp, "same")
		os.RemoveAll(same)
		if n := templateNotices(exportAll(t, run, same)); len(n) != 0 {
			t.Errorf("data.template %q: notices %q", setting, n)
		}
		for _, f := range []string{"peft", "merged", "gguf"} {
			entries, err := os.ReadDir(filepath.Join(none, f))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if !bytes.Equal(readFile(t, filepath.Join(none, f, e.Name())), readFile(t, filepath.Join(same, f, e.Name()))) {
					t.Errorf("data.template %q: %s/%s differs from the export without data.template", setting, f, e.Name())
				}
			}
		}
	}
}

// A base that keeps its template in chat_template.jinja (newer
// transformers): the export copies that file, and a custom template goes
// into it, tokenizer_config.json (no chat_template key) left as it was.
func TestExportChatTemplateFile(t *testing.T) {
	tmp := t.TempDir()
	base := filepath.Join(tmp, "base")
	copyDir(t, testdata("tiny-qwen2"), base)
	cfgPath := filepath.Join(base, "tokenizer_config.json")
	var cfg map[string]any
	if err := json.Unmarshal(readFile(t, cfgPath), &cfg); err != nil {
		t.Fatal(err)
	}
	own := cfg["chat_template"].(string)
	delete(cfg, "chat_template")
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "chat_template.jinja"), []byte(own), 0o644); err != nil {
		t.Fatal(err)
	}
	run := makeLoRARun(t, filepath.Join(tmp, "run"), base, 10)
	for _, c := range []struct{ setting, want string }{{"", own}, {customTemplate, customTemplate}} {
		setRunTemplate(t, run, c.setting)
		out := filepath.Join(tmp, "peft"+strconv.Itoa(len(c.setting)))
		if err := Run(Options{RunDir: run, Format: "peft", OutDir: out}, nil); err != nil {
			t.Fatal(err)
		}
		if got := string(readFile(t, filepath.Join(out, "chat_template.jinja"))); got != c.want {
			t.Errorf("data.template %q: chat_template.jinja %q", c.setting, got)
		}
		if !bytes.Equal(readFile(t, cfgPath), readFile(t, filepath.Join(out, "tokenizer_config.json"))) {
			t.Errorf("data.template %q: tokenizer_config.json changed", c.setting)
		}
	}
}
