// Command mkmodel writes a randomly initialised Llama-architecture model in
// Hugging Face format (config.json, model.safetensors, generation_config.json
// and the tokenizer files of another folder): the starting point that whet
// then pretrains into the demo model.
//
//	go run ./tools/demo/mkmodel -tokenizer presets/demo/tokenizer -out .cache/demo/init
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"whet/datasets/tokenizer"
	"whet/engine"
	"whet/engine/cpu"
)

func main() {
	tokDir := flag.String("tokenizer", "presets/demo/tokenizer", "folder with tokenizer.json and tokenizer_config.json")
	out := flag.String("out", ".cache/demo/init", "output folder")
	hidden := flag.Int("hidden", 256, "hidden size")
	inter := flag.Int("intermediate", 704, "MLP width")
	layers := flag.Int("layers", 6, "decoder layers")
	heads := flag.Int("heads", 4, "attention heads")
	kvHeads := flag.Int("kv-heads", 2, "key/value heads")
	ctx := flag.Int("context", 512, "max positions")
	seed := flag.Uint64("seed", 1, "init seed")
	flag.Parse()
	if err := run(*tokDir, *out, *hidden, *inter, *layers, *heads, *kvHeads, *ctx, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkmodel:", err)
		os.Exit(1)
	}
}

func run(tokDir, out string, hidden, inter, layers, heads, kvHeads, ctx int, seed uint64) error {
	tok, err := tokenizer.Load(tokDir)
	if err != nil {
		return err
	}
	eos := tok.EOSIDs()
	if len(eos) == 0 {
		return fmt.Errorf("%s: the tokenizer names no EOS token", tokDir)
	}
	// The vocabulary is rounded up to a multiple of 64 for the GEMMs.
	vocab := (tok.VocabSize() + 63) / 64 * 64
	cfg := engine.ModelConfig{ModelType: "llama", VocabSize: vocab, HiddenSize: hidden, IntermediateSize: inter,
		NumLayers: layers, NumHeads: heads, NumKVHeads: kvHeads, HeadDim: hidden / heads, RMSNormEps: 1e-5,
		RopeTheta: 10000, MaxPositions: ctx, TieWordEmbeddings: true}
	m, err := engine.NewModel(cfg, cpu.New())
	if err != nil {
		return err
	}
	if err := m.InitRandom(seed, 0.02); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	hf := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "vocab_size": vocab,
		"hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
		"num_attention_heads": heads, "num_key_value_heads": kvHeads, "head_dim": hidden / heads,
		"hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": nil,
		"max_position_embeddings": ctx, "tie_word_embeddings": true, "attention_bias": false,
		"mlp_bias": false, "bos_token_id": nil, "eos_token_id": eos[0], "torch_dtype": "bfloat16",
		"initializer_range": 0.02,
	}
	gen := map[string]any{"eos_token_id": eos, "do_sample": false}
	for name, obj := range map[string]any{"config.json": hf, "generation_config.json": gen} {
		js, _ := json.MarshalIndent(obj, "", "  ")
		if err := os.WriteFile(filepath.Join(out, name), append(js, '\n'), 0o644); err != nil {
			return err
		}
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		data, err := os.ReadFile(filepath.Join(tokDir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			return err
		}
	}
	// SaveModel copies config files from its source folder; pointing it at
	// out keeps the ones just written.
	if err := engine.SaveModel(out, m, out); err != nil {
		return err
	}
	fmt.Printf("%s: %d parameters, vocab %d\n", out, m.NumParams(), vocab)
	return nil
}
