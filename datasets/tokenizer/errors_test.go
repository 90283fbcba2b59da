package tokenizer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTiny copies the tiny tokenizer into a temp dir after letting edit
// change the parsed tokenizer.json, and returns the dir.
func writeTiny(t *testing.T, edit func(tj map[string]any)) string {
	t.Helper()
	src := filepath.Join(repoRoot(t), "testdata", "tokenizer", "tiny")
	dir := t.TempDir()
	for _, f := range []string{"tokenizer_config.json", "generation_config.json"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(src, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tj map[string]any
	if err := json.Unmarshal(data, &tj); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(tj)
	}
	out, err := json.Marshal(tj)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func obj(v any) map[string]any { return v.(map[string]any) }

// TestLoadErrors: a malformed file gives an error that names the file and
// the field at fault.
func TestLoadErrors(t *testing.T) {
	preSplit := func(tj map[string]any) map[string]any {
		return obj(obj(tj["pre_tokenizer"])["pretokenizers"].([]any)[0])
	}
	cases := []struct {
		name string
		edit func(tj map[string]any)
		file string // written raw instead of the edit, as name=content
		want []string
	}{
		{"model type", func(tj map[string]any) { obj(tj["model"])["type"] = "Unigram" }, "", []string{"tokenizer.json", "model.type", "Unigram"}},
		{"merge of unknown token", func(tj map[string]any) {
			m := obj(tj["model"])
			m["merges"] = append(m["merges"].([]any), []any{"zzz-not-a-token", "a"})
		}, "", []string{"tokenizer.json", "model.merges[300]", "zzz-not-a-token"}},
		{"merge malformed", func(tj map[string]any) {
			m := obj(tj["model"])
			m["merges"] = []any{"a b c"}
		}, "", []string{"tokenizer.json", "model.merges[0]"}},
		{"no vocab", func(tj map[string]any) { delete(obj(tj["model"]), "vocab") }, "", []string{"tokenizer.json", "model.vocab"}},
		{"unk not in vocab", func(tj map[string]any) { obj(tj["model"])["unk_token"] = "<nope>" }, "", []string{"tokenizer.json", "model.unk_token", "<nope>"}},
		{"bad regex", func(tj map[string]any) { preSplit(tj)["pattern"] = map[string]any{"Regex": "(unclosed"} }, "", []string{"tokenizer.json", "pre_tokenizer.pretokenizers[0].pattern.Regex"}},
		{"split without pattern", func(tj map[string]any) { delete(preSplit(tj), "pattern") }, "", []string{"tokenizer.json", "pre_tokenizer.pretokenizers[0].pattern", "missing"}},
		{"split behavior", func(tj map[string]any) { preSplit(tj)["behavior"] = "Sideways" }, "", []string{"tokenizer.json", "pre_tokenizer.pretokenizers[0].behavior", "Sideways"}},
		{"unknown pre-tokenizer", func(tj map[string]any) { tj["pre_tokenizer"] = map[string]any{"type": "Whirl"} }, "", []string{"tokenizer.json", "pre_tokenizer.type", "Whirl"}},
		{"unknown normalizer", func(tj map[string]any) {
			tj["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "NFC"}, map[string]any{"type": "Rot13"}}}
		}, "", []string{"tokenizer.json", "normalizer.normalizers[1].type", "Rot13"}},
		{"unknown decoder", func(tj map[string]any) { tj["decoder"] = map[string]any{"type": "Morse"} }, "", []string{"tokenizer.json", "decoder.type", "Morse"}},
		{"component without type", func(tj map[string]any) { tj["decoder"] = map[string]any{"content": "x"} }, "", []string{"tokenizer.json", "decoder.type", "missing"}},
		{"empty added token", func(tj map[string]any) { obj(tj["added_tokens"].([]any)[1])["content"] = "" }, "", []string{"tokenizer.json", "added_tokens[1].content"}},
		{"template token", func(tj map[string]any) {
			pp := obj(tj["post_processor"])
			pp["special_tokens"] = map[string]any{}
			pp["single"].([]any)[0] = map[string]any{"SpecialToken": map[string]any{"id": "<|nope|>", "type_id": 0}}
		}, "", []string{"tokenizer.json", "post_processor.single[0]", "<|nope|>"}},
		{"truncated tokenizer.json", nil, `tokenizer.json={"model": {"type": "BPE", "vocab": {`, []string{"tokenizer.json", "not a tokenizer.json"}},
		{"bad tokenizer_config.json", nil, `tokenizer_config.json={"bos_token": `, []string{"tokenizer_config.json"}},
		{"bad eos_token_id", nil, `generation_config.json={"eos_token_id": "two"}`, []string{"generation_config.json", "eos_token_id"}},
		{"bad eos_token_id item", nil, `generation_config.json={"eos_token_id": [1, "x"]}`, []string{"generation_config.json", "eos_token_id[1]"}},
		{"bad chat_template", nil, `tokenizer_config.json={"chat_template": 5}`, []string{"tokenizer_config.json", "chat_template"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTiny(t, c.edit)
			if c.file != "" {
				name, content, _ := strings.Cut(c.file, "=")
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load succeeded on a malformed file")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("Load of an empty dir: %v, want an error naming tokenizer.json", err)
	}
	if _, err := Load(writeTiny(t, nil)); err != nil {
		t.Errorf("unedited copy fails to load: %v", err)
	}
}

// TestPathologicalRegexGivesUp: a Split regex with catastrophic
// backtracking ((x+x+)+y on a run of x's takes exponential time) must not
// hang Encode: the match times out, Err names the pattern and where
// tokenizer.json holds it, and later encodings give up at once.
func TestPathologicalRegexGivesUp(t *testing.T) {
	defer func(d time.Duration) { regexMatchTimeout = d }(regexMatchTimeout)
	regexMatchTimeout = 50 * time.Millisecond
	const pathological = `(x+x+)+y`
	dir := writeTiny(t, func(tj map[string]any) {
		split := obj(obj(tj["pre_tokenizer"])["pretokenizers"].([]any)[0])
		split["pattern"] = map[string]any{"Regex": pathological}
	})
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ids := tok.Encode("xy", false); len(ids) == 0 || tok.Err() != nil {
		t.Fatalf("a text the pattern matches at once: ids %v, Err %v", ids, tok.Err())
	}
	done := make(chan []int, 1)
	go func() { done <- tok.Encode(strings.Repeat("x", 40), false) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Encode still running after 20s: the regex has no match timeout")
	}
	err = tok.Err()
	var pe *PatternError
	if !errors.As(err, &pe) {
		t.Fatalf("Err after the timeout = %v, want a *PatternError", err)
	}
	for _, want := range []string{"pre_tokenizer.pretokenizers[0].pattern.Regex", pathological, "xxxxxxxx"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if ids := tok.Encode("xy", false); ids != nil {
		t.Errorf("after the failure Encode returned %v, want nil (the tokenizer cannot be trusted)", ids)
	}
}
