package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
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
	pv, err := (studioPreviewer{}).Preview(context.Background(), cfg, nil)
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
	if _, err := (studioPreviewer{}).Preview(context.Background(), cfg, nil); err == nil {
		t.Error("a chat file should not preview as GRPO prompts")
	}
}

// The studio's previewer stops when the data page's context ends (esc),
// in the read or in the tokenizing, for SFT and GRPO alike, and answers
// with the context's error: not with the image fallback's preview, which
// would read the file again.
func TestStudioPreviewStops(t *testing.T) {
	dir := t.TempDir()
	var chat, prompts strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&chat, `{"messages": [{"role": "user", "content": "question %d?"}, {"role": "assistant", "content": "answer %d."}]}`+"\n", i, i)
		fmt.Fprintf(&prompts, `{"prompt": "What is %d+%d?", "answer": "%d"}`+"\n", i, i, 2*i)
	}
	files := map[string]string{"chat.jsonl": chat.String(), "prompts.jsonl": prompts.String()}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		method, file string
		stage        datasets.Stage
	}{
		{"lora", "chat.jsonl", datasets.StageReading},
		{"lora", "chat.jsonl", datasets.StageTokenizing},
		{"grpo", "prompts.jsonl", datasets.StageReading},
		{"grpo", "prompts.jsonl", datasets.StageTokenizing},
	} {
		t.Run(tc.method+"/"+string(tc.stage), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := engine.RunConfig{Model: absPath(t, "testdata/tiny-llama"), Method: tc.method,
				Data: engine.DataConfig{Path: filepath.Join(dir, tc.file), MaxLength: 64}}
			var last datasets.Progress
			_, err := (studioPreviewer{}).Preview(ctx, cfg, func(pr datasets.Progress) {
				last = pr
				if pr.Stage == tc.stage && (pr.Bytes > 0 || pr.Rows > 0) {
					cancel()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v, want context.Canceled", err)
			}
			if last.Stage != tc.stage || (tc.stage == datasets.StageTokenizing && last.Rows >= last.TotalRows) {
				t.Errorf("last report %+v: should stop in %s, before its end", last, tc.stage)
			}
		})
	}
}

// TestStudioCatalogNoteNamesTheLicence: the line under the model list
// says "licence llama3.2", not the licence's id alone (which a new user
// read as a stray word); a model not trainable yet says that instead.
func TestStudioCatalogNoteNamesTheLicence(t *testing.T) {
	seen := false
	for _, info := range (studioCatalog{}).Models() {
		if info.Name != "llama-3.2-1b" {
			continue
		}
		seen = true
		if info.Note != "licence llama3.2" {
			t.Errorf("llama-3.2-1b's note = %q, want %q", info.Note, "licence llama3.2")
		}
	}
	if !seen {
		t.Fatal("llama-3.2-1b is not in the studio's catalog")
	}
}
