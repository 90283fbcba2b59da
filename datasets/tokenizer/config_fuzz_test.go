package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfigFiles loads a model folder's tokenizer (Load) whose
// tokenizer.json is the tiny test tokenizer and whose tokenizer_config.json,
// special_tokens_map.json, generation_config.json and chat_template.jinja
// are arbitrary (empty: absent). No input panics; an error names the file;
// a tokenizer that loads has its BOS and every EOS id among the tokens (an
// EOS id is appended to text examples and pads batches), a chat template
// from the file that holds it, and encodes with its special tokens.
func FuzzLoadConfigFiles(f *testing.F) {
	src := filepath.Join(repoRoot(f), "testdata", "tokenizer", "tiny")
	tokJSON, err := os.ReadFile(filepath.Join(src, "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(src, "tokenizer_config.json"))
	gen, _ := os.ReadFile(filepath.Join(src, "generation_config.json"))
	f.Add(cfg, []byte(nil), gen, "")
	f.Add([]byte(`{"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": true, "add_eos_token": true, "bos_token": {"content": "<|bos|>"}, "eos_token": "<|eos|>",
		"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ messages[0].content }}"}]}`),
		[]byte(`{"bos_token": "<|bos|>", "eos_token": {"content": "<|eos|>"}}`), []byte(`{"eos_token_id": 559}`), "")
	f.Add([]byte(`{"tokenizer_class": "GemmaTokenizer", "add_bos_token": true}`), []byte(nil), []byte(`{"eos_token_id": [-1, 2.5]}`), "{{ bos_token }}")
	f.Add([]byte(`{"chat_template": 7, "bos_token": "nope"}`), []byte(`[]`), []byte(`{"eos_token_id": 1e300}`), "")
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tokJSON, 0o644); err != nil {
		f.Fatal(err)
	}
	names := []string{"tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja"}
	f.Fuzz(func(t *testing.T, config, specialMap, genConfig []byte, jinja string) {
		for i, data := range [][]byte{config, specialMap, genConfig, []byte(jinja)} {
			path := filepath.Join(dir, names[i])
			os.Remove(path)
			if len(data) > 0 {
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		tok, err := Load(dir)
		if err != nil {
			named := false
			for _, n := range names {
				named = named || strings.Contains(err.Error(), n)
			}
			if !named {
				t.Fatalf("error names none of the files: %v", err)
			}
			return
		}
		n := tok.VocabSize()
		if id, ok := tok.BOS(); ok && (id < 0 || id >= n) {
			t.Fatalf("BOS %d of %d tokens", id, n)
		}
		for _, id := range tok.EOSIDs() {
			if id < 0 {
				t.Fatalf("EOS id %d", id)
			}
		}
		if tok.ChatTemplate() != "" && !strings.HasPrefix(tok.ChatTemplateFile(), dir) {
			t.Fatalf("chat template from %q", tok.ChatTemplateFile())
		}
		for _, id := range tok.Encode("hello <|eos|> world", true) {
			if id < 0 || id >= n {
				t.Fatalf("encoded id %d of %d tokens", id, n)
			}
		}
	})
}
