package export

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// GGUF token types (llama.cpp's llama_token_type).
const (
	tokenNormal      int32 = 1
	tokenControl     int32 = 3
	tokenUserDefined int32 = 4
	tokenUnused      int32 = 5
)

// ggufVocab is what the tokenizer.ggml.* metadata needs.
type ggufVocab struct {
	Tokens []string
	Types  []int32
	Merges []string
	// Pre names the pre-tokenizer for llama.cpp (tokenizer.ggml.pre).
	Pre string
}

// preTokenizerNames maps the Split regex of a byte-level BPE tokenizer to
// the name llama.cpp gives that pre-tokenizer. Llama 3's splits digits in
// runs of up to three; Qwen 2/2.5/3's one digit at a time.
var preTokenizerNames = map[string]string{
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: "llama-bpe",
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`:      "qwen2",
}

type tokJSON struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        struct {
		Type   string          `json:"type"`
		Vocab  map[string]int  `json:"vocab"`
		Merges json.RawMessage `json:"merges"`
	} `json:"model"`
}

type preTokJSON struct {
	Type          string       `json:"type"`
	Pretokenizers []preTokJSON `json:"pretokenizers"`
	Pattern       struct {
		Regex  string `json:"Regex"`
		String string `json:"String"`
	} `json:"pattern"`
	UseRegex *bool `json:"use_regex"`
}

// readVocab reads dir/tokenizer.json for a GGUF file whose embedding has
// vocabSize rows: ids the tokenizer does not use become unused [PADn]
// tokens, as llama.cpp's converter writes them.
func readVocab(dir string, vocabSize int) (*ggufVocab, error) {
	path := filepath.Join(dir, "tokenizer.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("export: GGUF needs the tokenizer: %w", err)
	}
	var tj tokJSON
	if err := json.Unmarshal(data, &tj); err != nil {
		return nil, fmt.Errorf("export: %s: %w", path, err)
	}
	if tj.Model.Type != "BPE" {
		return nil, fmt.Errorf("export: %s: model.type %q: GGUF export supports byte-level BPE tokenizers (Llama 3, Qwen 2/2.5/3, Mistral Nemo style) only", path, tj.Model.Type)
	}
	var pre preTokJSON
	if len(tj.PreTokenizer) > 0 && string(tj.PreTokenizer) != "null" {
		if err := json.Unmarshal(tj.PreTokenizer, &pre); err != nil {
			return nil, fmt.Errorf("export: %s: pre_tokenizer: %w", path, err)
		}
	}
	name, byteLevel, err := preTokenizerName(pre)
	if err != nil {
		return nil, fmt.Errorf("export: %s: pre_tokenizer: %w", path, err)
	}
	if !byteLevel {
		return nil, fmt.Errorf("export: %s: pre_tokenizer has no ByteLevel step: GGUF export supports byte-level BPE tokenizers only (SentencePiece-style ones such as Llama 2's and Gemma's are not written yet)", path)
	}
	v := &ggufVocab{Pre: name, Tokens: make([]string, vocabSize), Types: make([]int32, vocabSize)}
	set := make([]bool, vocabSize)
	put := func(id int, tok string, typ int32) error {
		if id < 0 || id >= vocabSize {
			return fmt.Errorf("export: %s: token %q has id %d, beyond the model's %d embedding rows", path, tok, id, vocabSize)
		}
		v.Tokens[id], v.Types[id], set[id] = tok, typ, true
		return nil
	}
	for tok, id := range tj.Model.Vocab {
		if err := put(id, tok, tokenNormal); err != nil {
			return nil, err
		}
	}
	for _, a := range tj.AddedTokens {
		typ := tokenUserDefined
		if a.Special {
			typ = tokenControl
		}
		if err := put(a.ID, a.Content, typ); err != nil {
			return nil, err
		}
	}
	for id := range v.Tokens {
		if !set[id] {
			v.Tokens[id], v.Types[id] = fmt.Sprintf("[PAD%d]", id), tokenUnused
		}
	}
	if v.Merges, err = parseMerges(tj.Model.Merges); err != nil {
		return nil, fmt.Errorf("export: %s: model.merges: %w", path, err)
	}
	return v, nil
}

// preTokenizerName finds the Split regex (or GPT-2's built-in one) and
// whether a ByteLevel step is present.
func preTokenizerName(p preTokJSON) (name string, byteLevel bool, err error) {
	var walk func(p preTokJSON) error
	walk = func(p preTokJSON) error {
		switch p.Type {
		case "Sequence":
			for _, c := range p.Pretokenizers {
				if err := walk(c); err != nil {
					return err
				}
			}
		case "ByteLevel":
			byteLevel = true
			if (p.UseRegex == nil || *p.UseRegex) && name == "" {
				name = "gpt-2" // ByteLevel's own regex is GPT-2's
			}
		case "Split":
			re := p.Pattern.Regex
			if re == "" {
				re = p.Pattern.String
			}
			n, ok := preTokenizerNames[re]
			if !ok {
				return fmt.Errorf("split pattern %q is not one whet can name for llama.cpp (known: Llama 3's and Qwen 2's)", re)
			}
			name = n
		case "":
		default:
			return fmt.Errorf("%s pre-tokenizer is not supported for GGUF export", p.Type)
		}
		return nil
	}
	if err := walk(p); err != nil {
		return "", false, err
	}
	if name == "" {
		name = "default"
	}
	return name, byteLevel, nil
}

// parseMerges accepts both layouts of model.merges: "a b" strings and
// [a, b] pairs. GGUF stores "a b".
func parseMerges(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		return strs, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("want a list of \"a b\" strings or [a, b] pairs")
	}
	out := make([]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("entry %d has %d parts, want 2", i, len(p))
		}
		if strings.Contains(p[0], " ") || strings.Contains(p[1], " ") {
			return nil, fmt.Errorf("entry %d (%q, %q) contains a space, which GGUF's \"a b\" form cannot hold", i, p[0], p[1])
		}
		out[i] = p[0] + " " + p[1]
	}
	return out, nil
}
