package datasets

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goldenNow is the clock tools/templates/render.py gives strftime_now.
var goldenNow = func() time.Time { return time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC) }

func loadConversations(t *testing.T) map[string][]Message {
	t.Helper()
	data, err := os.ReadFile("../testdata/templates/conversations.json")
	if err != nil {
		t.Fatal(err)
	}
	var convs map[string][]Message
	if err := json.Unmarshal(data, &convs); err != nil {
		t.Fatal(err)
	}
	return convs
}

// endOfTurn is the token each template's assistant spans must end with.
var endOfTurn = map[string]string{
	"llama-3.0": "<|eot_id|>", "llama-3.1": "<|eot_id|>", "llama-3.2": "<|eot_id|>",
	"chatml": "<|im_end|>", "qwen-2.5": "<|im_end|>", "qwen-3": "<|im_end|>",
	"gemma-2": "<end_of_turn>", "gemma-3": "<end_of_turn>",
	"mistral-v0.3": "</s>", "phi-3": "<|end|>", "phi-3.5": "<|end|>", "phi-4-mini": "<|end|>", "alpaca": "</s>",
	"plain": "</s>",
}

func TestTemplatesMatchJinjaGoldens(t *testing.T) {
	convs := loadConversations(t)
	dirs, err := os.ReadDir("../testdata/templates/golden")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	checked := 0
	for _, d := range dirs {
		name := d.Name()
		tpl, ok := LookupTemplate(name)
		if !ok {
			t.Errorf("golden folder %s has no built-in template", name)
			continue
		}
		seen[name] = true
		files, err := os.ReadDir(filepath.Join("../testdata/templates/golden", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			file := f.Name()
			ext := filepath.Ext(file)
			parts := strings.Split(strings.TrimSuffix(file, ext), ".")
			msgs, ok := convs[parts[0]]
			if !ok {
				t.Errorf("%s/%s: no conversation %q", name, file, parts[0])
				continue
			}
			opts := RenderOptions{Now: goldenNow}
			for _, p := range parts[1:] {
				switch p {
				case "gen":
					opts.AddGenerationPrompt = true
				case "think", "nothink":
					v := p == "think"
					opts.EnableThinking = &v
				default:
					t.Fatalf("%s/%s: unknown variant %q", name, file, p)
				}
			}
			want, err := os.ReadFile(filepath.Join("../testdata/templates/golden", name, file))
			if err != nil {
				t.Fatal(err)
			}
			got, rerr := tpl.Render(msgs, opts)
			checked++
			if ext == ".err" {
				if rerr == nil {
					t.Errorf("%s/%s: jinja2 raised %q, Go rendered without error", name, file, strings.TrimSpace(string(want)))
				}
				continue
			}
			if rerr != nil {
				t.Errorf("%s/%s: %v", name, file, rerr)
				continue
			}
			if got.Text != string(want) {
				t.Errorf("%s/%s differs from jinja2\n got: %q\nwant: %q", name, file, got.Text, want)
				continue
			}
			if name == "plain" && adjacentAssistants(msgs) {
				// plain writes nothing between two replies, so their spans
				// join into one (TestPlainTemplate checks its spans).
				continue
			}
			checkSpans(t, name+"/"+file, got, msgs, endOfTurn[name])
		}
	}
	for _, n := range TemplateNames() {
		if !seen[n] {
			t.Errorf("built-in template %s has no goldens", n)
		}
	}
	if checked < 100 {
		t.Errorf("only %d golden renders checked", checked)
	}
}

func adjacentAssistants(msgs []Message) bool {
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Role == "assistant" && msgs[i-1].Role == "assistant" {
			return true
		}
	}
	return false
}

// checkSpans: one span per assistant message, each ending with the
// end-of-turn token and holding the assistant's (trimmed) answer text.
func checkSpans(t *testing.T, where string, r Rendered, msgs []Message, end string) {
	t.Helper()
	var answers []string
	for _, m := range msgs {
		if m.Role == "assistant" {
			answers = append(answers, m.Content)
		}
	}
	if len(r.Assistant) != len(answers) {
		t.Errorf("%s: %d assistant spans for %d assistant turns", where, len(r.Assistant), len(answers))
		return
	}
	for i, sp := range r.Assistant {
		text := r.Text[sp.Start:sp.End]
		if !strings.HasSuffix(text, end) {
			t.Errorf("%s: span %d %q does not end with %q", where, i, text, end)
		}
		// The part after a </think> is what every template keeps.
		answer := answers[i]
		if k := strings.LastIndex(answer, "</think>"); k >= 0 {
			answer = answer[k+len("</think>"):]
		}
		if !strings.Contains(text, pyStrip(answer)) {
			t.Errorf("%s: span %d %q lacks the answer %q", where, i, text, pyStrip(answer))
		}
	}
}

// interpreterOnly are real templates in testdata/templates that no built-in
// family renders: Llama 3.2 Vision's looks like Llama 3.2's but does not
// trim content and writes <|image|> (templates_images_test.go).
var interpreterOnly = map[string]bool{"llama-3.2-vision": true}

func TestDetectTemplateOnRealTemplates(t *testing.T) {
	// The built-in families' own (datasets/templates) and the real ones
	// only the interpreter renders (testdata/templates).
	files, err := filepath.Glob("templates/*.jinja")
	if err != nil {
		t.Fatal(err)
	}
	others, err := filepath.Glob("../testdata/templates/*.jinja")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, others...)
	if len(files) < 10 {
		t.Fatalf("only %d template files", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSuffix(filepath.Base(f), ".jinja")
		if interpreterOnly[want] {
			// No built-in renders it: detection must leave it to the interpreter.
			for _, src := range []string{string(data), strings.Join(strings.Fields(string(data)), " ")} {
				if got, ok := DetectTemplate(src); ok {
					t.Errorf("DetectTemplate(%s) = %q; want no built-in", filepath.Base(f), got)
				}
			}
			continue
		}
		if got, ok := DetectTemplate(string(data)); !ok || got != want {
			t.Errorf("DetectTemplate(%s) = %q, %v; want %q", filepath.Base(f), got, ok, want)
		}
		// A re-flowed copy (every newline and indent collapsed) is the same template.
		flat := strings.Join(strings.Fields(string(data)), " ")
		if got, ok := DetectTemplate(flat); !ok || got != want {
			t.Errorf("DetectTemplate(flattened %s) = %q, %v; want %q", filepath.Base(f), got, ok, want)
		}
	}
}

func TestDetectTemplateRejectsVariants(t *testing.T) {
	llama30, err := os.ReadFile("templates/llama-3.0.jinja")
	if err != nil {
		t.Fatal(err)
	}
	// The npm llama3 package's template always appends the assistant header.
	always := strings.Replace(string(llama30), "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
		"{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}", 1)
	if always == string(llama30) {
		t.Fatal("test did not build the always-header variant")
	}
	qwen2 := "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	for name, src := range map[string]string{
		"empty":                 "",
		"llama-3 always header": always,
		"qwen-2 default system": qwen2,
		"llama-2":               "{% for message in messages %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}",
	} {
		if got, ok := DetectTemplate(src); ok {
			t.Errorf("%s: DetectTemplate = %q, want no match", name, got)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	if _, err := Render("no-such-template", []Message{{Role: "user", Content: "x"}}, false); err == nil ||
		!strings.Contains(err.Error(), "llama-3.1") {
		t.Errorf("unknown template error should list known names, got %v", err)
	}
	if _, err := Render("chatml", nil, false); err == nil {
		t.Error("empty conversation rendered without error")
	}
	if _, err := Render("llama-3.1", []Message{{Role: "tool", Content: "x"}}, false); err == nil ||
		!strings.Contains(err.Error(), `"tool"`) {
		t.Errorf("tool role: got %v", err)
	}
}

func TestTemplateAliasesAndDefaults(t *testing.T) {
	// "llama-3" is the April 2024 template: no dated system header (issue 26).
	for alias, want := range map[string]string{"llama-3": "llama-3.0", "llama3": "llama-3.0", "llama-3.3": "llama-3.1", "Gemma": "gemma-3", "mistral": "mistral-v0.3"} {
		tpl, ok := LookupTemplate(alias)
		if !ok || tpl.Name != want {
			t.Errorf("LookupTemplate(%q) = %v, %v; want %s", alias, tpl, ok, want)
		}
	}
	msgs := []Message{{Role: "user", Content: "hi"}}
	// Llama 3.2 prints today's date when none is given.
	r, err := RenderWith("llama-3.2", msgs, RenderOptions{Now: func() time.Time { return time.Date(2025, 3, 9, 0, 0, 0, 0, time.UTC) }})
	if err != nil || !strings.Contains(r.Text, "Today Date: 09 Mar 2025\n") {
		t.Errorf("llama-3.2 date: %q, %v", r.Text, err)
	}
	r, err = RenderWith("llama-3.1", msgs, RenderOptions{DateString: "01 Feb 2025"})
	if err != nil || !strings.Contains(r.Text, "Today Date: 01 Feb 2025\n") {
		t.Errorf("llama-3.1 date_string: %q, %v", r.Text, err)
	}
	// The tokenizer's EOS text replaces the family default.
	r, err = RenderWith("alpaca", append(msgs, Message{Role: "assistant", Content: "yo"}), RenderOptions{EOS: "<|im_end|>"})
	if err != nil || !strings.Contains(r.Text, "yo<|im_end|>") {
		t.Errorf("alpaca EOS override: %q, %v", r.Text, err)
	}
	// Qwen 3 keeps explicit reasoning_content for the turn after the last query.
	reason := "step one"
	r, err = RenderWith("qwen-3", append(msgs, Message{Role: "assistant", Content: "done", Reasoning: &reason}), RenderOptions{})
	if err != nil || !strings.Contains(r.Text, "<think>\nstep one\n</think>\n\ndone<|im_end|>") {
		t.Errorf("qwen-3 reasoning_content: %q, %v", r.Text, err)
	}
}

func TestPyStripMatchesPythonWhitespace(t *testing.T) {
	// U+001F is whitespace to Python (and so to Jinja's trim), not to Go's TrimSpace.
	if got := pyStrip("\x1f\u3000 a b\u2029\x1c"); got != "a b" {
		t.Errorf("pyStrip = %q", got)
	}
	// U+200B (zero width space) is not whitespace to Python.
	if got := pyStrip("\u200ba\u200b"); got != "\u200ba\u200b" {
		t.Errorf("pyStrip stripped U+200B: %q", got)
	}
}

func TestPlainTemplate(t *testing.T) {
	r, err := RenderWith("plain", []Message{{Role: "user", Content: "The capital of Chile is"}, {Role: "assistant", Content: " Santiago."}}, RenderOptions{EOS: "<|end_of_text|>"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Text != "The capital of Chile is Santiago.<|end_of_text|>" || len(r.Assistant) != 1 || r.Text[r.Assistant[0].Start:r.Assistant[0].End] != " Santiago.<|end_of_text|>" {
		t.Errorf("plain: %q %v", r.Text, r.Assistant)
	}
}

func TestRenderOptionsFor(t *testing.T) {
	o := RenderOptionsFor(map[string]any{"bos_token": "<s>", "eos_token": map[string]any{"content": "<|im_end|>"}, "pad_token": nil})
	if o.BOS != "<s>" || o.EOS != "<|im_end|>" {
		t.Errorf("%+v", o)
	}
	if o := RenderOptionsFor(map[string]any{"bos_token": nil}); o.BOS != "" || o.EOS != "" {
		t.Errorf("null tokens: %+v", o)
	}
}

// Every built-in family carries its Jinja, which reads back as the same
// family (an export's tokenizer_config.json then chats as trained), and no
// embedded file lacks a family.
func TestBuiltinJinja(t *testing.T) {
	for _, name := range TemplateNames() {
		tpl, _ := LookupTemplate(name)
		src := tpl.Jinja()
		if src == "" {
			t.Errorf("%s: no Jinja (datasets/templates/%s.jinja)", name, name)
			continue
		}
		if got, ok := DetectTemplate(src); !ok || got != name {
			t.Errorf("%s: its Jinja is detected as %q (%v)", name, got, ok)
		}
	}
	files, err := familyJinja.ReadDir("templates")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(TemplateNames()) {
		t.Errorf("%d embedded templates for %d families", len(files), len(TemplateNames()))
	}
	interp, err := NewJinjaTemplate("{{ messages[0]['content'] }}")
	if err != nil {
		t.Fatal(err)
	}
	if interp.Jinja() != "{{ messages[0]['content'] }}" {
		t.Errorf("an interpreted template's Jinja is %q, want its source", interp.Jinja())
	}
}
