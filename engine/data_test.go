package engine_test

import (
	"strings"
	"testing"

	"whet/engine"
)

// TestPrepareRefusesDataOfTheOtherMethod: headless runs (engine.Prepare,
// as whet train calls it) refuse DPO on single-answer data and LoRA on
// preference pairs with the reason, as the studio's data page does.
func TestPrepareRefusesDataOfTheOtherMethod(t *testing.T) {
	cases := []struct {
		method, data, want string
	}{
		{"dpo", abs("../testdata/datasets/tiny-chat.jsonl"), "DPO needs preference data (prompt, chosen, rejected); " + abs("../testdata/datasets/tiny-chat.jsonl") + " is messages"},
		{"lora", abs("../testdata/datasets/preference.jsonl"), "preference.jsonl holds preference pairs: choose the dpo method"},
	}
	for _, c := range cases {
		cfg := engine.RunConfig{Model: abs("../testdata/tiny-qwen2"), Method: c.method, Backend: "cpu", RunsDir: t.TempDir(),
			Data: engine.DataConfig{Path: c.data, MaxLength: 64}}
		s, err := engine.Prepare(cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s on %s: prepared, want a refusal", c.method, c.data)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s on %s: error %q lacks %q", c.method, c.data, err, c.want)
		}
	}
}
