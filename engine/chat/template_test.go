package chat

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
)

// A model whose chat template no built-in family renders is chatted with
// through the Jinja interpreter: the prompt is the template's own text.
func TestChatWithInterpretedTemplate(t *testing.T) {
	dir := copyModel(t, "tiny-qwen2", "{% for m in messages %}<|im_start|>{{ m.role | upper }}: {{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>ASSISTANT: {% endif %}", "")
	s, err := Open(cpu.New(), Options{ModelDir: dir, MaxLen: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Template.Interpreted() {
		t.Fatalf("template %s is not the interpreted one", s.Template.Name)
	}
	msgs := []datasets.Message{{Role: "user", Content: "hi"}}
	ids, err := s.Encode(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if text := s.Tok.Decode(toInts(ids), false); text != "<|im_start|>USER: hi<|im_end|>\n<|im_start|>ASSISTANT: " {
		t.Fatalf("prompt %q", text)
	}
	r, err := s.Generate(context.Background(), msgs, engine.SampleOptions{MaxNewTokens: 4}, false, func(string) {})
	if err != nil || r.Tokens == 0 {
		t.Fatalf("reply %+v, %v", r, err)
	}
	_ = strings.TrimSpace
}

func toInts(ids []int32) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}

// Options.Thinking reaches the template: Qwen 3's prompt with thinking off
// ends with the empty <think> block, with it on or unset it does not.
func TestChatThinkingSwitch(t *testing.T) {
	src := filepath.Join("..", "..", "testdata", "tiny-qwen2")
	msgs := []datasets.Message{{Role: "user", Content: "hi"}}
	for _, c := range []struct {
		thinking *bool
		suffix   string
	}{
		{nil, "<|im_start|>assistant\n"},
		{ptr(true), "<|im_start|>assistant\n"},
		{ptr(false), "<|im_start|>assistant\n<think>\n\n</think>\n\n"},
	} {
		s, err := Open(cpu.New(), Options{ModelDir: src, Template: "qwen-3", MaxLen: 64, Thinking: c.thinking})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := s.Encode(msgs)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if text := s.Tok.Decode(toInts(ids), false); text != "<|im_start|>user\nhi<|im_end|>\n"+c.suffix {
			t.Errorf("thinking %v: prompt %q", c.thinking, text)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// copyModel copies a testdata model folder, with tokenizer_config.json's
// chat_template replaced (deleted when template is "") and, when jinjaFile
// is set, a chat_template.jinja next to it.
func copyModel(t *testing.T, name, template, jinjaFile string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "..", "testdata", name)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "tokenizer_config.json" {
			var cfg map[string]any
			if err := json.Unmarshal(data, &cfg); err != nil {
				t.Fatal(err)
			}
			if template == "" {
				delete(cfg, "chat_template")
			} else {
				cfg["chat_template"] = template
			}
			data, _ = json.Marshal(cfg)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if jinjaFile != "" {
		if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte(jinjaFile), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A chat template that parses but fails on a conversation (an unknown
// filter, raise_exception) names the file it came from and the template's
// line, as a syntax error does: tokenizer_config.json, or
// chat_template.jinja for the newer checkpoints that keep it apart.
func TestChatTemplateErrorsNameTheFile(t *testing.T) {
	bad := "{% for m in messages %}\n{{ m.content | nosuchfilter }}\n{% endfor %}"
	for _, c := range []struct {
		name, inConfig, inFile, file, want string
	}{
		{"render in tokenizer_config.json", bad, "", "tokenizer_config.json", "line 2: no filter named 'nosuchfilter'"},
		{"render in chat_template.jinja", "", bad, "chat_template.jinja", "line 2: no filter named 'nosuchfilter'"},
		{"raise_exception", "{% for m in messages %}\n{{ raise_exception('Roles must alternate') }}{% endfor %}", "", "tokenizer_config.json", "Roles must alternate"},
		{"syntax in chat_template.jinja", "", "{% for m in messages %}\n\n{{ m.content }\n{% endfor %}", "chat_template.jinja", "line 3:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyModel(t, "tiny-qwen2", c.inConfig, c.inFile)
			s, err := Open(cpu.New(), Options{ModelDir: dir, MaxLen: 64})
			if err == nil {
				defer s.Close()
				_, err = s.Encode([]datasets.Message{{Role: "user", Content: "hi"}})
			}
			want := filepath.Join(dir, c.file) + ": chat template: "
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to name %q and %q", err, want, c.want)
			}
		})
	}
}
