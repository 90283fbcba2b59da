package datasets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeData(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "prompts.jsonl")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPromptFormat: prompt-only rows are detected, read with their answer
// column (text or a number) and the row's fields, and checked.
func TestPromptFormat(t *testing.T) {
	p := writeData(t, `{"prompt": "What is 2+3?", "answer": 5, "level": "easy"}
{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}], "answer": "Paris"}
{"prompt": "Say hi"}
`)
	ps, err := PreparePrompts(Options{Path: p, MaxLength: 64, Seed: 1}, newFakeTok("<|im_start|>", "<|im_end|>"))
	if err != nil {
		t.Fatal(err)
	}
	if ps.Stats.Format != FormatPrompt || len(ps.Train) != 3 || ps.Template == nil {
		t.Fatalf("format %s, %d rows, template %v", ps.Stats.Format, len(ps.Train), ps.Template)
	}
	byAnswer := map[string]Example{}
	for _, ex := range ps.Train {
		byAnswer[ex.Answer] = ex
	}
	if ex := byAnswer["5"]; len(ex.Messages) != 1 || ex.Messages[0].Content != "What is 2+3?" || ex.Fields["level"] != "easy" {
		t.Errorf("numeric answer row: %+v", ex)
	}
	if ex := byAnswer["Paris"]; len(ex.Messages) != 2 || ex.Messages[0].Role != "system" {
		t.Errorf("messages prompt: %+v", ex)
	}
	for _, c := range []struct{ body, want string }{
		{`{"prompt": "   "}`, "the prompt is empty"},
		{`{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}`, "ends with an assistant turn"},
		{`{"prompt": "q", "answer": [1]}`, "answer"},
	} {
		_, err := PreparePrompts(Options{Path: writeData(t, c.body+"\n"), Format: "prompt", MaxLength: 64}, newFakeTok("<|im_start|>", "<|im_end|>"))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "prompts.jsonl:1") {
			t.Errorf("%s: error %v, want %q with the row", c.body, err, c.want)
		}
	}
	// A chat file is not prompt-only data.
	chat := writeData(t, `{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}`+"\n")
	if _, err := PreparePrompts(Options{Path: chat, MaxLength: 64}, newFakeTok("<|im_start|>", "<|im_end|>")); err == nil || !strings.Contains(err.Error(), "GRPO needs prompt-only data") {
		t.Errorf("chat data: %v", err)
	}
	if err := ObjectiveSFT.Check("x.jsonl", FormatPrompt); err == nil || !strings.Contains(err.Error(), "choose the grpo method") {
		t.Errorf("SFT on prompts: %v", err)
	}
}
