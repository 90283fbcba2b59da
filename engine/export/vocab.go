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
	tokenUnknown     int32 = 2
	tokenControl     int32 = 3
	tokenUserDefined int32 = 4
	tokenUnused      int32 = 5
	tokenByte        int32 = 6
)

// ggufVocab is what the tokenizer.ggml.* metadata needs.
type ggufVocab struct {
	// Model is llama.cpp's tokenizer kind: "gpt2" for byte-level BPE,
	// "llama" for SentencePiece-style BPE with byte fallback (Llama 2,
	// Mistral).
	Model  string
	Tokens []string
	Types  []int32
	Merges []string // gpt2 only
	// Scores rank the pieces for llama.cpp's SentencePiece merging (llama
	// only): higher merges first.
	Scores []float32
	// Pre names the pre-tokenizer for llama.cpp (tokenizer.ggml.pre).
	Pre string
	// AddSpacePrefix is SentencePiece's leading "▁" (llama only).
	AddSpacePrefix bool
	UnkID          int // -1: none
}

// preTokenizerNames maps the Split regex of a byte-level BPE tokenizer to
// the name llama.cpp gives that pre-tokenizer. Llama 3's splits digits in
// runs of up to three; Qwen 2/2.5/3's one digit at a time.
var preTokenizerNames = map[string]string{
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: "llama-bpe",
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`:      "qwen2",
	// GPT-4o's o200k split, which Phi-4-mini's tokenizer uses too.
	`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`: "gpt-4o",
}

type tokJSON struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Normalizer   json.RawMessage `json:"normalizer"`
	Model        struct {
		Type         string          `json:"type"`
		Vocab        map[string]int  `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		ByteFallback bool            `json:"byte_fallback"`
		UnkToken     *string         `json:"unk_token"`
	} `json:"model"`
}

type preTokJSON struct {
	Type          string       `json:"type"`
	Pretokenizers []preTokJSON `json:"pretokenizers"`
	Pattern       struct {
		Regex  string `json:"Regex"`
		String string `json:"String"`
	} `json:"pattern"`
	UseRegex      *bool  `json:"use_regex"`
	PrependScheme string `json:"prepend_scheme"`
	AddPrefixSp   *bool  `json:"add_prefix_space"`
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
		return nil, fmt.Errorf("export: %s: model.type %q: GGUF export supports BPE tokenizers only (byte-level as Llama 3 and Qwen, or SentencePiece-style with byte fallback as Llama 2 and Mistral)", path, tj.Model.Type)
	}
	var pre preTokJSON
	if len(tj.PreTokenizer) > 0 && string(tj.PreTokenizer) != "null" {
		if err := json.Unmarshal(tj.PreTokenizer, &pre); err != nil {
			return nil, fmt.Errorf("export: %s: pre_tokenizer: %w", path, err)
		}
	}
	name, byteLevel, metaspace, spaceSplit, err := preTokenizerName(pre)
	if err != nil {
		return nil, fmt.Errorf("export: %s: pre_tokenizer: %w", path, err)
	}
	// Gemma 3 splits on " " after a normalizer that has already turned
	// every space into "▁": the split never cuts, SentencePiece-style.
	if spaceSplit && (byteLevel || !strings.Contains(string(tj.Normalizer), `"\u2581"`) && !strings.Contains(string(tj.Normalizer), "▁")) {
		return nil, fmt.Errorf("export: %s: pre_tokenizer: a Split on \" \" is supported only after a normalizer that replaces spaces by \"▁\" (Gemma's)", path)
	}
	v := &ggufVocab{Model: "gpt2", Pre: name, Tokens: make([]string, vocabSize), Types: make([]int32, vocabSize), UnkID: -1}
	if !byteLevel {
		if !tj.Model.ByteFallback {
			return nil, fmt.Errorf("export: %s: neither a ByteLevel pre-tokenizer nor byte_fallback: GGUF export supports byte-level BPE (Llama 3, Qwen) and SentencePiece-style BPE with byte fallback (Llama 2, Mistral)", path)
		}
		// SentencePiece converted to tokenizer.json: "▁" for spaces,
		// <0xNN> byte pieces, and a leading "▁" added either by the
		// normalizer (Prepend) or by a Metaspace pre-tokenizer.
		v.Model, v.Pre = "llama", "default"
		v.AddSpacePrefix = metaspace || strings.Contains(string(tj.Normalizer), `"Prepend"`)
	}
	set := make([]bool, vocabSize)
	put := func(id int, tok string, typ int32) error {
		if id < 0 || id >= vocabSize {
			return fmt.Errorf("export: %s: token %q has id %d, beyond the model's %d embedding rows", path, tok, id, vocabSize)
		}
		v.Tokens[id], v.Types[id], set[id] = tok, typ, true
		return nil
	}
	for tok, id := range tj.Model.Vocab {
		typ := tokenNormal
		if v.Model == "llama" && len(tok) == 6 && strings.HasPrefix(tok, "<0x") && strings.HasSuffix(tok, ">") {
			typ = tokenByte
		}
		if tj.Model.UnkToken != nil && tok == *tj.Model.UnkToken {
			typ, v.UnkID = tokenUnknown, id
		}
		if err := put(id, tok, typ); err != nil {
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
	if v.Model == "llama" {
		// tokenizer.json keeps BPE merges, not SentencePiece's scores.
		// llama.cpp's SentencePiece tokenizer merges first the adjacent
		// pair whose joined piece scores highest, so a piece scores minus
		// the rank of the merge that makes it, and pieces no merge makes
		// (which the BPE model never builds) score below all of them.
		v.Scores = make([]float32, vocabSize)
		for id := range v.Scores {
			v.Scores[id] = -1e9
		}
		for rank, m := range v.Merges {
			joined := strings.Replace(m, " ", "", 1)
			if id, ok := tj.Model.Vocab[joined]; ok && id < vocabSize && v.Scores[id] == -1e9 {
				v.Scores[id] = -float32(rank)
			}
		}
		v.Merges = nil
		return v, nil
	}
	return v, nil
}

// preTokenizerName finds the Split regex (or GPT-2's built-in one) and
// whether a ByteLevel step, or a Metaspace step that prepends "▁", is
// present.
func preTokenizerName(p preTokJSON) (name string, byteLevel, metaspace, spaceSplit bool, err error) {
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
				if p.Pattern.String == " " {
					spaceSplit = true
					return nil
				}
				re = p.Pattern.String
			}
			n, ok := preTokenizerNames[re]
			if !ok {
				return fmt.Errorf("split pattern %q is not one whet can name for llama.cpp (known: Llama 3's, Qwen 2's and GPT-4o's)", re)
			}
			name = n
		case "Metaspace":
			metaspace = p.PrependScheme != "never" && (p.AddPrefixSp == nil || *p.AddPrefixSp)
		case "":
		default:
			return fmt.Errorf("%s pre-tokenizer is not supported for GGUF export", p.Type)
		}
		return nil
	}
	if err := walk(p); err != nil {
		return "", false, false, false, err
	}
	if name == "" {
		name = "default"
	}
	return name, byteLevel, metaspace, spaceSplit, nil
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
