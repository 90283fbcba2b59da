package export

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadVocab reads arbitrary tokenizer.json files for a GGUF export
// (whet export --format gguf reads the model folder's). No input panics; an
// error names the file; and a vocabulary that is accepted has one token and
// one known type per embedding row, an unknown token among them or none,
// and the merges (byte-level BPE) or scores (SentencePiece-style) of its
// kind only.
func FuzzReadVocab(f *testing.F) {
	const llama3Split = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	for _, s := range []struct {
		json string
		rows uint16
	}{
		{`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel"},` +
			`"added_tokens":[{"id":3,"content":"<|eot|>","special":true},{"id":4,"content":"<tool>","special":false}]}`, 8},
		{`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[` +
			`{"type":"Split","pattern":{"Regex":` + fmt.Sprintf("%q", llama3Split) + `}},{"type":"ByteLevel","use_regex":false}]}}`, 3},
		{`{"model":{"type":"BPE","byte_fallback":true,"unk_token":"<unk>","vocab":{"<unk>":0,"<0x41>":1,"▁":2,"▁a":3,"a":4},"merges":["▁ a"]},` +
			`"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},"pre_tokenizer":null}`, 5},
		{`{"model":{"type":"BPE","byte_fallback":true,"vocab":{"a":0}},"pre_tokenizer":{"type":"Metaspace","prepend_scheme":"first"}}`, 2},
		{`{"model":{"type":"BPE","vocab":{"a":0,"b":7}},"pre_tokenizer":{"type":"ByteLevel"}}`, 4},
		{`{"model":{"type":"BPE","vocab":{"a":0},"merges":[["a b","c"]]},"pre_tokenizer":{"type":"ByteLevel"}}`, 1},
		{`{"model":{"type":"Unigram"}}`, 1},
	} {
		f.Add([]byte(s.json), s.rows)
	}
	root := f.TempDir()
	n := 0
	f.Fuzz(func(t *testing.T, data []byte, rows uint16) {
		n++
		dir := filepath.Join(root, fmt.Sprint(n))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "tokenizer.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		size := int(rows%512) + 1
		v, err := readVocab(dir, size)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name %s: %v", path, err)
			}
			return
		}
		if len(v.Tokens) != size || len(v.Types) != size {
			t.Fatalf("%d tokens and %d types for %d rows", len(v.Tokens), len(v.Types), size)
		}
		for i, typ := range v.Types {
			if typ < tokenNormal || typ > tokenByte {
				t.Fatalf("token %d (%q) has type %d", i, v.Tokens[i], typ)
			}
		}
		if v.UnkID < -1 || v.UnkID >= size {
			t.Fatalf("unknown token id %d of %d rows", v.UnkID, size)
		}
		switch v.Model {
		case "gpt2":
			if v.Scores != nil {
				t.Fatalf("byte-level vocabulary with scores")
			}
			for i, m := range v.Merges {
				if strings.Count(m, " ") != 1 {
					t.Fatalf("merge %d %q is not two pieces", i, m)
				}
			}
		case "llama":
			if len(v.Scores) != size || v.Merges != nil {
				t.Fatalf("SentencePiece-style vocabulary with %d scores for %d rows and %d merges", len(v.Scores), size, len(v.Merges))
			}
		default:
			t.Fatalf("tokenizer model %q", v.Model)
		}
	})
}
