// Package tokenizer encodes and decodes text exactly as Hugging Face
// tokenizers does for the BPE models that causal LMs ship: byte-level BPE
// (GPT-2, Llama 3, Qwen) and SentencePiece-style BPE with byte fallback
// (Llama 2, Mistral, Gemma). It reads tokenizer.json and the companion
// tokenizer_config.json, special_tokens_map.json and generation_config.json.
//
// Encoding runs: added tokens are cut out of the raw text (leftmost,
// longest first); each remaining section is normalized, cut into words by
// the pre-tokenizer, and each word is BPE-merged (cached per word); the
// post-processor adds BOS and the like when special tokens are asked for.
package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// Tokenizer is safe for concurrent use.
type Tokenizer struct {
	model      *bpe
	normalizer normalizer   // nil: none
	pre        preTokenizer // nil: the section is one word
	decoder    decoder      // nil: tokens joined with spaces, as the Rust library does
	post       template

	rawAdded  *matcher // tokens matched on the raw text
	normAdded *matcher // tokens with normalized=true, matched after normalization

	idToToken []string
	vocab     map[string]int // the model's vocabulary, as spelled in the file
	addedToID map[string]int
	special   map[int]bool

	// fault holds the first regex that gave up on a text; after it,
	// encodings are incomplete (see Err).
	fault *regexFault

	config       map[string]any
	chatTemplate string
	// chatTemplateFile is the file chatTemplate was read from, when the
	// tokenizer was loaded from a folder.
	chatTemplateFile string
	bos              int
	hasBOS           bool
	eos              []int
}

// tokenizerJSON is the top level of tokenizer.json; components stay raw
// until their type is known.
type tokenizerJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

// splitTokenizerJSON cuts the top level of tokenizer.json into its parts
// without decoding the big model; small parts then go through
// encoding/json.
func splitTokenizerJSON(data []byte) (tokenizerJSON, error) {
	var tj tokenizerJSON
	fields, err := objectFields(data, "top level")
	if err != nil {
		return tj, fmt.Errorf("not a tokenizer.json: %v", err)
	}
	if raw, ok := fields["added_tokens"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &tj.AddedTokens); err != nil {
			return tj, fmt.Errorf("added_tokens: %v", err)
		}
	}
	tj.Normalizer = fields["normalizer"]
	tj.PreTokenizer = fields["pre_tokenizer"]
	tj.PostProcessor = fields["post_processor"]
	tj.Decoder = fields["decoder"]
	tj.Model = fields["model"]
	return tj, nil
}

// modelJSON holds the small fields of the model; vocab and merges are read
// by fastjson.go.
type modelJSON struct {
	Type                    string   `json:"type"`
	UnkToken                *string  `json:"unk_token"`
	ByteFallback            bool     `json:"byte_fallback"`
	FuseUnk                 bool     `json:"fuse_unk"`
	IgnoreMerges            bool     `json:"ignore_merges"`
	Dropout                 *float64 `json:"dropout"`
	ContinuingSubwordPrefix *string  `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string  `json:"end_of_word_suffix"`
}

// Load reads the tokenizer files in dir. tokenizer.json is required; the
// others are read when present.
func Load(dir string) (*Tokenizer, error) {
	tokPath := filepath.Join(dir, "tokenizer.json")
	data, err := os.ReadFile(tokPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	config, err := readOptionalJSON(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		return nil, err
	}
	t, err := parse(data, config)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", tokPath, err)
	}
	specialMap, err := readOptionalJSON(filepath.Join(dir, "special_tokens_map.json"))
	if err != nil {
		return nil, err
	}
	genConfig, err := readOptionalJSON(filepath.Join(dir, "generation_config.json"))
	if err != nil {
		return nil, err
	}
	if err := t.setSpecialTokens(specialMap, genConfig, dir); err != nil {
		return nil, err
	}
	if t.chatTemplate != "" {
		t.chatTemplateFile = filepath.Join(dir, "tokenizer_config.json")
	} else {
		// Newer checkpoints keep the template in its own file.
		file := filepath.Join(dir, "chat_template.jinja")
		if b, err := os.ReadFile(file); err == nil {
			t.chatTemplate, t.chatTemplateFile = string(b), file
		}
	}
	return t, nil
}

func readOptionalJSON(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]any{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %v", path, err)
	}
	return m, nil
}

// parse builds a Tokenizer from the bytes of tokenizer.json and the parsed
// tokenizer_config.json. Errors name the JSON field at fault.
func parse(data []byte, config map[string]any) (*Tokenizer, error) {
	tj, err := splitTokenizerJSON(data)
	if err != nil {
		return nil, err
	}
	if config == nil {
		config = map[string]any{}
	}
	t := &Tokenizer{config: config, addedToID: map[string]int{}, special: map[int]bool{}, fault: &regexFault{}}
	if t.normalizer, err = parseNormalizer(tj.Normalizer, "normalizer", t.fault); err != nil {
		return nil, err
	}
	if t.pre, err = parsePreTokenizer(tj.PreTokenizer, "pre_tokenizer", t.fault); err != nil {
		return nil, err
	}
	if t.decoder, err = parseDecoder(tj.Decoder, "decoder", t.fault); err != nil {
		return nil, err
	}
	byteLevel := hasByteLevel(t.pre) || hasByteLevelDecoder(t.decoder)
	if err := t.parseModel(tj.Model, byteLevel); err != nil {
		return nil, err
	}
	if err := t.addTokens(tj.AddedTokens); err != nil {
		return nil, err
	}
	if t.post, err = parsePostProcessor(tj.PostProcessor, "post_processor", t.TokenID); err != nil {
		return nil, err
	}
	if err := t.applyConfigBOS(); err != nil {
		return nil, err
	}
	if t.chatTemplate, err = chatTemplateOf(config); err != nil {
		return nil, err
	}
	return t, nil
}

func hasByteLevel(p preTokenizer) bool {
	switch p := p.(type) {
	case *byteLevelPreTokenizer:
		return true
	case preTokenizerSeq:
		for _, q := range p {
			if hasByteLevel(q) {
				return true
			}
		}
	}
	return false
}

func hasByteLevelDecoder(d decoder) bool {
	switch d := d.(type) {
	case byteLevelDecoder:
		return true
	case decoderSeq:
		for _, q := range d {
			if hasByteLevelDecoder(q) {
				return true
			}
		}
	}
	return false
}

func (t *Tokenizer) parseModel(raw json.RawMessage, byteLevel bool) error {
	if len(raw) == 0 || string(raw) == "null" {
		return errors.New("model: missing")
	}
	fields, err := objectFields(raw, "model")
	if err != nil {
		return err
	}
	// Decode the small fields from an object without vocab and merges.
	small := map[string]json.RawMessage{}
	for k, v := range fields {
		if k != "vocab" && k != "merges" {
			small[k] = v
		}
	}
	smallJSON, err := json.Marshal(small)
	if err != nil {
		return fmt.Errorf("model: %v", err)
	}
	var mj modelJSON
	if err := json.Unmarshal(smallJSON, &mj); err != nil {
		return fmt.Errorf("model: %v", err)
	}
	vocabRaw, mergesRaw := fields["vocab"], fields["merges"]
	if mj.Type == "" && mergesRaw != nil {
		mj.Type = "BPE" // very old files leave the type out
	}
	if mj.Type != "BPE" {
		return fmt.Errorf("model.type: %q is not supported (only BPE models are)", mj.Type)
	}
	if len(vocabRaw) == 0 || string(vocabRaw) == "null" {
		return errors.New("model.vocab: missing")
	}
	vocab, err := readVocab(vocabRaw, "model.vocab")
	if err != nil {
		return err
	}
	if len(vocab) == 0 {
		return errors.New("model.vocab: empty")
	}
	if mj.Dropout != nil && *mj.Dropout > 0 {
		return fmt.Errorf("model.dropout: %v is not supported (BPE dropout is a training-time augmentation)", *mj.Dropout)
	}
	if mj.ContinuingSubwordPrefix != nil && *mj.ContinuingSubwordPrefix != "" {
		return fmt.Errorf("model.continuing_subword_prefix: %q is not supported", *mj.ContinuingSubwordPrefix)
	}
	if mj.EndOfWordSuffix != nil && *mj.EndOfWordSuffix != "" {
		return fmt.Errorf("model.end_of_word_suffix: %q is not supported", *mj.EndOfWordSuffix)
	}
	m := &bpe{
		byteLevel:    byteLevel,
		byteFallback: mj.ByteFallback,
		fuseUnk:      mj.FuseUnk,
		ignoreMerges: mj.IgnoreMerges,
		unk:          -1,
		cache:        map[string][]int{},
	}
	maxID := -1
	for tok, id := range vocab {
		if id < 0 {
			return fmt.Errorf("model.vocab[%q]: negative id %d", tok, id)
		}
		maxID = max(maxID, id)
	}
	t.idToToken = make([]string, maxID+1)
	t.vocab = vocab
	// SentencePiece-style models look words up by the vocabulary's own
	// spelling; byte-level ones by the bytes it stands for.
	m.vocab = vocab
	if byteLevel {
		m.vocab = make(map[string]int, len(vocab))
	}
	for tok, id := range vocab {
		t.idToToken[id] = tok
		if byteLevel {
			key := tok
			if b, ok := byteLevelToBytes(tok); ok {
				key = string(b)
			}
			m.vocab[key] = id
		}
	}
	for b := 0; b < 256; b++ {
		m.byteID[b] = -1
		var name string
		if byteLevel {
			name = string(byteToRune[b])
		} else if mj.ByteFallback {
			name = byteFallbackToken(byte(b))
		} else {
			continue
		}
		if id, ok := vocab[name]; ok {
			m.byteID[b] = id
		}
	}
	if mj.UnkToken != nil {
		id, ok := vocab[*mj.UnkToken]
		if !ok {
			return fmt.Errorf("model.unk_token: %q is not in model.vocab", *mj.UnkToken)
		}
		m.unk = id
	}
	pairs, err := readMerges(mergesRaw, "model.merges")
	if err != nil {
		return err
	}
	m.merges = make(map[uint64]merge, len(pairs))
	for i, p := range pairs {
		a, okA := vocab[p[0]]
		b, okB := vocab[p[1]]
		c, okC := vocab[p[0]+p[1]]
		if !okA || !okB || !okC {
			missing := p[0]
			if okA {
				missing = p[1]
			}
			if okA && okB {
				missing = p[0] + p[1]
			}
			return fmt.Errorf("model.merges[%d]: %q is not in model.vocab", i, missing)
		}
		key := pairKey(a, b)
		if _, dup := m.merges[key]; !dup {
			m.merges[key] = merge{rank: int32(i), id: int32(c)}
		}
	}
	t.model = m
	return nil
}

func (t *Tokenizer) addTokens(tokens []addedToken) error {
	splitSpecial, _ := t.config["split_special_tokens"].(bool)
	var raw, normed []addedToken
	for i, a := range tokens {
		if a.Content == "" {
			return fmt.Errorf("added_tokens[%d].content: empty", i)
		}
		if a.ID < 0 {
			return fmt.Errorf("added_tokens[%d].id: negative id %d", i, a.ID)
		}
		for a.ID >= len(t.idToToken) {
			t.idToToken = append(t.idToToken, "")
		}
		t.idToToken[a.ID] = a.Content
		t.addedToID[a.Content] = a.ID
		if a.Special {
			t.special[a.ID] = true
			if splitSpecial {
				continue // encoded as plain text, as transformers does
			}
		}
		if a.Normalized && t.normalizer != nil {
			normed = append(normed, a)
		} else {
			raw = append(raw, a)
		}
	}
	t.rawAdded = newMatcher(raw)
	if len(normed) > 0 {
		t.normAdded = newMatcher(normed)
	}
	if extra, ok := t.config["additional_special_tokens"].([]any); ok {
		for _, e := range extra {
			if s, ok := tokenString(e); ok {
				if id, ok := t.TokenID(s); ok {
					t.special[id] = true
				}
			}
		}
	}
	return nil
}

// applyConfigBOS follows transformers' LlamaTokenizerFast and
// GemmaTokenizerFast, which rebuild the post-processor from add_bos_token
// and add_eos_token in tokenizer_config.json instead of trusting
// tokenizer.json. Other classes use tokenizer.json's post-processor as is.
func (t *Tokenizer) applyConfigBOS() error {
	class, _ := t.config["tokenizer_class"].(string)
	switch strings.TrimSuffix(class, "Fast") {
	case "LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer":
	default:
		return nil
	}
	addBOS, addEOS := true, false
	if v, ok := t.config["add_bos_token"].(bool); ok {
		addBOS = v
	}
	if v, ok := t.config["add_eos_token"].(bool); ok {
		addEOS = v
	}
	var tpl template
	for _, want := range []struct {
		on   bool
		key  string
		dest *[]int
	}{{addBOS, "bos_token", &tpl.before}, {addEOS, "eos_token", &tpl.after}} {
		if !want.on {
			continue
		}
		name, ok := tokenString(t.config[want.key])
		if !ok {
			return fmt.Errorf("tokenizer_config.json: add_%s is true but %s is not set", strings.TrimSuffix(want.key, "_token")+"_token", want.key)
		}
		id, ok := t.TokenID(name)
		if !ok {
			return fmt.Errorf("tokenizer_config.json: %s %q is not in the vocabulary", want.key, name)
		}
		*want.dest = []int{id}
	}
	t.post = tpl
	return nil
}

// tokenString reads a special token from a config value: a string or an
// AddedToken object {"content": ...}.
func tokenString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != ""
	case map[string]any:
		s, ok := v["content"].(string)
		return s, ok && s != ""
	}
	return "", false
}

func chatTemplateOf(config map[string]any) (string, error) {
	switch v := config["chat_template"].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case []any:
		for i, e := range v {
			obj, ok := e.(map[string]any)
			if !ok {
				return "", fmt.Errorf("tokenizer_config.json: chat_template[%d]: want an object with name and template", i)
			}
			if obj["name"] == "default" {
				s, ok := obj["template"].(string)
				if !ok {
					return "", fmt.Errorf("tokenizer_config.json: chat_template[%d].template: want a string", i)
				}
				return s, nil
			}
		}
		return "", nil
	}
	return "", errors.New("tokenizer_config.json: chat_template: want a string or a list of named templates")
}

// setSpecialTokens resolves BOS and the EOS ids from tokenizer_config.json,
// falling back to special_tokens_map.json, plus generation_config.json's
// eos_token_id (models such as Llama 3 Instruct stop on several ids).
func (t *Tokenizer) setSpecialTokens(specialMap, genConfig map[string]any, dir string) error {
	lookup := func(key string) (string, bool) {
		if s, ok := tokenString(t.config[key]); ok {
			return s, true
		}
		return tokenString(specialMap[key])
	}
	if name, ok := lookup("bos_token"); ok {
		t.bos, t.hasBOS = t.TokenID(name)
	}
	seen := map[int]bool{}
	addEOS := func(id int) {
		if !seen[id] {
			seen[id] = true
			t.eos = append(t.eos, id)
		}
	}
	// An id that is no token (negative, fractional, past int32) would be
	// appended to text examples and used as padding: refused here, where
	// the file and field can be named, not as a batch's bad token.
	isID := func(f float64) bool { return f >= 0 && f <= math.MaxInt32 && f == math.Trunc(f) }
	switch v := genConfig["eos_token_id"].(type) {
	case nil:
	case float64:
		if !isID(v) {
			return fmt.Errorf("tokenizer: %s: eos_token_id: %v is not a token id (a whole number from 0)", filepath.Join(dir, "generation_config.json"), v)
		}
		addEOS(int(v))
	case []any:
		for i, e := range v {
			f, ok := e.(float64)
			if !ok || !isID(f) {
				return fmt.Errorf("tokenizer: %s: eos_token_id[%d]: want a token id (a whole number from 0), got %v", filepath.Join(dir, "generation_config.json"), i, e)
			}
			addEOS(int(f))
		}
	default:
		return fmt.Errorf("tokenizer: %s: eos_token_id: want an integer or a list of integers", filepath.Join(dir, "generation_config.json"))
	}
	if name, ok := lookup("eos_token"); ok {
		if id, ok := t.TokenID(name); ok {
			addEOS(id)
		}
	}
	return nil
}

// Encode returns the ids of text. With addSpecial, the post-processor's
// special tokens (BOS for Llama and Gemma) are added around it, as
// transformers does by default. Invalid UTF-8 is read as U+FFFD.
//
// Once a regex of tokenizer.json has given up on a text (see Err), the
// tokenizer cannot be trusted: Encode returns nil at once rather than pay
// the match timeout again on every text, and Err says why.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	if t.fault.err() != nil {
		return nil
	}
	text = strings.ToValidUTF8(text, "\uFFFD")
	out := make([]int, 0, len(text)/3+4)
	if addSpecial {
		out = append(out, t.post.before...)
	}
	var segs []segment
	segs = t.rawAdded.split(text, 0, segs)
	for _, seg := range segs {
		if seg.token >= 0 {
			out = append(out, t.rawAdded.tokens[seg.token].ID)
			continue
		}
		s := seg.text
		if t.normalizer != nil {
			s = t.normalizer.normalize(s)
		}
		if t.normAdded == nil {
			out = t.encodeSection(s, seg.start == 0, out)
			continue
		}
		for _, sub := range t.normAdded.split(s, seg.start, nil) {
			if sub.token >= 0 {
				out = append(out, t.normAdded.tokens[sub.token].ID)
			} else {
				out = t.encodeSection(sub.text, sub.start == 0, out)
			}
		}
	}
	if addSpecial {
		out = append(out, t.post.after...)
	}
	return out
}

// EncodeBatch encodes each text (see Encode), spreading the texts over
// the available cores.
func (t *Tokenizer) EncodeBatch(texts []string, addSpecial bool) [][]int {
	out := make([][]int, len(texts))
	workers := min(runtime.GOMAXPROCS(0), len(texts))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(texts) {
					return
				}
				out[i] = t.Encode(texts[i], addSpecial)
			}
		}()
	}
	wg.Wait()
	return out
}

// encodeSection pre-tokenizes one normalized section and BPE-encodes each
// word.
func (t *Tokenizer) encodeSection(s string, atStart bool, out []int) []int {
	if s == "" {
		return out
	}
	if t.pre == nil {
		return t.model.encodeWord(s, out)
	}
	t.pre.preTokenize(s, atStart, func(word string, _ bool) {
		out = t.model.encodeWord(word, out)
	})
	return out
}

// Decode turns ids back into text through tokenizer.json's decoder, as
// transformers' decode does, except that it never applies
// clean_up_tokenization_spaces (which deletes spaces before punctuation and
// so loses text). Unknown ids are skipped.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.idToToken) || (skipSpecial && t.special[id]) {
			continue
		}
		toks = append(toks, t.idToToken[id])
	}
	if t.decoder == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.decoder.decodeChain(toks), "")
}

// TokenID looks a token up in the added tokens and the vocabulary, spelled
// as tokenizer.json spells it ("Ġthe", "▁the", "<|eot_id|>").
func (t *Tokenizer) TokenID(token string) (int, bool) {
	if id, ok := t.addedToID[token]; ok {
		return id, true
	}
	id, ok := t.vocab[token]
	return id, ok
}

// Token is the vocabulary spelling of id, or "" for an unknown id.
func (t *Tokenizer) Token(id int) string {
	if id < 0 || id >= len(t.idToToken) {
		return ""
	}
	return t.idToToken[id]
}

// VocabSize is one more than the largest id, added tokens included.
func (t *Tokenizer) VocabSize() int { return len(t.idToToken) }

// BOS is the id of tokenizer_config.json's bos_token.
func (t *Tokenizer) BOS() (int, bool) { return t.bos, t.hasBOS }

// EOSIDs are the ids that end generation: generation_config.json's
// eos_token_id (one or a list) followed by tokenizer_config.json's
// eos_token when it is not among them.
func (t *Tokenizer) EOSIDs() []int { return append([]int(nil), t.eos...) }

// IsSpecial reports whether id is a special added token (skipped by
// Decode with skipSpecial).
func (t *Tokenizer) IsSpecial(id int) bool { return t.special[id] }

// Err reports the first regex of tokenizer.json that gave up on a text
// (a *PatternError), or nil. After it, Encode and Decode results are
// incomplete, so a caller that encodes data checks Err before using them.
func (t *Tokenizer) Err() error { return t.fault.err() }

// ChatTemplate is the raw Jinja chat template, "" when there is none.
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }

// ChatTemplateFile is the file the chat template was read from (the
// folder's tokenizer_config.json or chat_template.jinja), "" when there is
// no template or the tokenizer was not loaded from a folder. Errors about
// the template name it.
func (t *Tokenizer) ChatTemplateFile() string { return t.chatTemplateFile }

// Config is the parsed tokenizer_config.json (empty when absent).
func (t *Tokenizer) Config() map[string]any { return t.config }
