package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// byteRunes maps each byte to the printable character that stands for it
// in a byte-level vocabulary (GPT-2's scheme): printable Latin-1 bytes
// stand for themselves, and the rest (controls, space, a few others) take
// the characters from U+0100 upward, in byte order.
var byteRunes = func() [256]rune {
	var m [256]rune
	next := rune(256)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			m[b] = rune(b)
		} else {
			m[b] = next
			next++
		}
	}
	return m
}()

func byteLevel(b []byte) string {
	rs := make([]rune, len(b))
	for i, c := range b {
		rs[i] = byteRunes[c]
	}
	return string(rs)
}

// vocabulary is the trained tokenizer: specials[i] has id i, byte b has id
// len(specials)+b, and merge k makes id len(specials)+256+k.
type vocabulary struct {
	specials []string
	merges   []Merge
}

// tokenBytes returns the bytes each non-special id stands for.
func (v vocabulary) tokenBytes() [][]byte {
	first := len(v.specials)
	out := make([][]byte, first+256+len(v.merges))
	for b := 0; b < 256; b++ {
		out[first+b] = []byte{byte(b)}
	}
	for _, m := range v.merges {
		out[m.Result] = append(append([]byte(nil), out[m.Left]...), out[m.Right]...)
	}
	return out
}

// The file writers below spell JSON out by hand so that the vocabulary
// and merges come in id order, which keeps the files readable and their
// diffs small when the tokenizer is rebuilt.

func jsonString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err) // a Go string always encodes
	}
	return string(bytes.TrimRight(buf.Bytes(), "\n"))
}

func (v vocabulary) tokenizerJSON() []byte {
	var b bytes.Buffer
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n")
	for i, s := range v.specials {
		sep := ","
		if i == len(v.specials)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "    {\"id\": %d, \"content\": %s, \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}%s\n", i, jsonString(s), sep)
	}
	b.WriteString("  ],\n  \"normalizer\": null,\n")
	fmt.Fprintf(&b, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": %s}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}]},\n", jsonString(splitPattern))
	b.WriteString("  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n")
	b.WriteString("  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n")
	b.WriteString("  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {\n")
	tokens := v.tokenBytes()
	for id := len(v.specials); id < len(tokens); id++ {
		sep := ","
		if id == len(tokens)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "      %s: %d%s\n", jsonString(byteLevel(tokens[id])), id, sep)
	}
	b.WriteString("    },\n    \"merges\": [\n")
	for i, m := range v.merges {
		sep := ","
		if i == len(v.merges)-1 {
			sep = ""
		}
		// Byte-level tokens never contain a space, so the "left right"
		// string form is unambiguous and every tokenizers version reads it.
		fmt.Fprintf(&b, "      %s%s\n", jsonString(byteLevel(tokens[m.Left])+" "+byteLevel(tokens[m.Right])), sep)
	}
	b.WriteString("    ]\n  }\n}\n")
	return b.Bytes()
}

// chatTemplate is plain ChatML with no default system message, written
// exactly as whet's built-in "chatml" template expects to find it.
const chatTemplate = `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`

func (v vocabulary) configJSON(eos, pad string, maxLength int) ([]byte, error) {
	added := map[string]any{}
	for i, s := range v.specials {
		added[fmt.Sprint(i)] = map[string]any{
			"content": s, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true,
		}
	}
	cfg := map[string]any{
		"added_tokens_decoder":         added,
		"bos_token":                    nil,
		"eos_token":                    eos,
		"pad_token":                    pad,
		"unk_token":                    nil,
		"chat_template":                chatTemplate,
		"clean_up_tokenization_spaces": false,
		"model_max_length":             maxLength,
		"tokenizer_class":              "PreTrainedTokenizerFast",
	}
	return marshal(cfg)
}

func generationConfigJSON(eosIDs []int, padID int) ([]byte, error) {
	return marshal(map[string]any{
		"eos_token_id": eosIDs,
		"pad_token_id": padID,
	})
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeFiles writes tokenizer.json, tokenizer_config.json and
// generation_config.json into dir.
func writeFiles(dir string, v vocabulary, eos, pad string, maxLength int) error {
	id := func(s string) (int, error) {
		for i, t := range v.specials {
			if t == s {
				return i, nil
			}
		}
		return 0, fmt.Errorf("%q is not one of the special tokens %q", s, v.specials)
	}
	eosID, err := id(eos)
	if err != nil {
		return fmt.Errorf("eos token: %w", err)
	}
	padID, err := id(pad)
	if err != nil {
		return fmt.Errorf("pad token: %w", err)
	}
	cfg, err := v.configJSON(eos, pad, maxLength)
	if err != nil {
		return err
	}
	// Stop generating at the end of a chat turn, and at the end of a
	// document, which the base model learned during pretraining.
	eosIDs := []int{eosID}
	if padID != eosID {
		eosIDs = append(eosIDs, padID)
	}
	gen, err := generationConfigJSON(eosIDs, padID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"tokenizer.json":         v.tokenizerJSON(),
		"tokenizer_config.json":  cfg,
		"generation_config.json": gen,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
