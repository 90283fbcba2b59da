package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// GRPO data in the studio is previewed as the run reads it: prompts with
// the chat template's generation prompt, untrained, each with its answer.
// Before, the studio prepared it as supervised data and refused every
// prompt-only file: "none of the 4 rows of … has a token to train on"
// (seen in tmux on the demo model with {"prompt", "answer"} rows), so
// GRPO could not be started from the studio at all.
func TestStudioPreviewsGRPOPrompts(t *testing.T) {
	data := filepath.Join(t.TempDir(), "questions.jsonl")
	var rows strings.Builder
	for n := 1; n <= 3; n++ {
		fmt.Fprintf(&rows, `{"prompt": "What is %d+%d?", "answer": "%d"}`+"\n", n, n, 2*n)
	}
	fmt.Fprintf(&rows, `{"prompt": "%s", "answer": "long"}`+"\n", strings.Repeat("many words here ", 40))
	if err := os.WriteFile(data, []byte(rows.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := engine.RunConfig{Model: absPath(t, "testdata/tiny-llama"), Method: "grpo",
		Data: engine.DataConfig{Path: data, MaxLength: 32}}
	pv, err := (studioPreviewer{}).Preview(context.Background(), cfg)
	if err != nil {
		t.Fatalf("a prompt file should preview for GRPO: %v", err)
	}
	if pv.Format != "prompt" || pv.Stats.Rows != 4 || pv.Stats.TrainTokens != 0 || pv.Stats.Tokens == 0 || pv.Stats.Truncated != 1 || pv.Stats.MaxLen <= 32 {
		t.Errorf("format %q, stats %+v: want prompt, 4 rows, prompt tokens only, one prompt past 32 tokens", pv.Format, pv.Stats)
	}
	if len(pv.Examples) != 3 || len(pv.Labels) != 3 {
		t.Fatalf("%d examples, %d labels, want 3 of each", len(pv.Examples), len(pv.Labels))
	}
	for i, ex := range pv.Examples {
		if len(ex) != 1 || !ex[0].Masked {
			t.Errorf("example %d: %+v, want one untrained segment", i+1, ex)
			continue
		}
		text, label := ex[0].Text, pv.Labels[i]
		var a, b int
		if at := strings.Index(text, "What is "); at < 0 {
			// The long prompt, as the run keeps it: its last 32 tokens.
			if label != "answer: long" || strings.Contains(text, "<|im_start|>user") {
				t.Errorf("example %d %q: label %q", i+1, text, label)
			}
		} else if _, err := fmt.Sscanf(text[at:], "What is %d+%d?", &a, &b); err == nil {
			if label != fmt.Sprintf("answer: %d", a+b) {
				t.Errorf("example %d %q: label %q", i+1, text, label)
			}
		} else {
			t.Errorf("example %d %q: not a question of the file", i+1, text)
		}
		if !strings.HasSuffix(text, "<|im_start|>assistant\n") {
			t.Errorf("example %d should end with the generation prompt: %q", i+1, text)
		}
	}
	if w := strings.Join(pv.Warnings, "\n"); !strings.Contains(w, "1 prompts longer than max_length keep their last 32 tokens") {
		t.Errorf("warnings %q should say the long prompt is cut", pv.Warnings)
	}
	// Chat data is still refused for GRPO, by the page (CheckDataFormat).
	cfg.Data.Path = absPath(t, "testdata/datasets/tiny-chat.jsonl")
	if _, err := (studioPreviewer{}).Preview(context.Background(), cfg); err == nil {
		t.Error("a chat file should not preview as GRPO prompts")
	}
}
