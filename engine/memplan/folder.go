package memplan

import (
	"fmt"
	"os"
	"path/filepath"

	"whet/engine"
)

// FolderParams is the parameter count of the model in the Hugging Face
// folder dir, the one whet fit plans with: ParamCount of its decoder for
// the text families (Llama, Qwen2.5, Qwen3, Mistral, Gemma 2 and 3,
// Phi-3), and for the vision models the whole model as PlanMllama and
// PlanGemma3Vision count it (language model, vision tower, projector).
// The studio's model picker shows it, so that the two never disagree.
func FolderParams(dir string) (int64, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return 0, err
	}
	// Any valid options: the weights' count does not depend on them.
	opts := Options{Method: LoRA, SeqLen: 1, MicroBatch: 1, LoRARank: 1}
	if engine.IsMllamaConfig(raw) {
		cfg, err := engine.LoadMllamaConfig(dir)
		if err != nil {
			return 0, err
		}
		p, err := PlanMllama(cfg, opts, MllamaOptions{})
		if err != nil {
			return 0, fmt.Errorf("%s: %w", dir, err)
		}
		return p.Params, nil
	}
	text, err := engine.LoadModelConfig(dir)
	if err != nil {
		return 0, err
	}
	if engine.VisionModelKind(dir) == engine.VisionGemma3 {
		vis, err := engine.ParseGemma3VisionConfig(raw, text.HiddenSize)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", dir, err)
		}
		p, err := PlanGemma3Vision(text, vis, opts, Gemma3VisionOptions{})
		if err != nil {
			return 0, fmt.Errorf("%s: %w", dir, err)
		}
		return p.Params, nil
	}
	if err := checkConfig(text); err != nil {
		return 0, fmt.Errorf("%s: %w", dir, err)
	}
	return ParamCount(text), nil
}
