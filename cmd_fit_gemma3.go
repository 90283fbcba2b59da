package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"whet/engine"
	"whet/engine/memplan"
)

// gemma3ReleasedVision is the vision side of the released Gemma 3 4B, 12B
// and 27B config.json files (the same SigLIP tower and 256 image tokens).
const gemma3ReleasedVision = `"mm_tokens_per_image": 256, "image_token_index": 262144,
 "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "model_type": "siglip_vision_model",
  "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}`

// gemma3VisionForFit is the vision config of a Gemma 3 model for whet fit:
// a folder's config.json, or the released one for a catalog entry.
func gemma3VisionForFit(m fitModel) (*engine.Gemma3VisionConfig, error) {
	raw := []byte(`{"model_type": "gemma3", ` + gemma3ReleasedVision + `}`)
	if m.entry == nil {
		data, err := os.ReadFile(filepath.Join(m.label, "config.json"))
		if err != nil {
			return nil, err
		}
		raw = data
	}
	return engine.ParseGemma3VisionConfig(raw, m.config.HiddenSize)
}

// fitGemma3Vision plans a Gemma 3 model with its vision tower (frozen) and
// images per sequence (memplan.PlanGemma3Vision), prints it, and says what
// whet can do with it.
func fitGemma3Vision(w io.Writer, m fitModel, opts memplan.Options, target fitTarget, images int, visionLayers bool) error {
	vis, err := gemma3VisionForFit(m)
	if err != nil {
		return err
	}
	if images < 1 {
		return fmt.Errorf("--images %d: want at least 1", images)
	}
	batch := max(opts.MicroBatch, 1)
	// The engine's compute dtype on the target (bf16 on CUDA, float32 on
	// the CPU), as whet train runs it.
	opts, notes := memplan.ForVisionEngine(engine.VisionGemma3, opts)
	plan, err := memplan.PlanGemma3Vision(m.config, vis, opts, memplan.Gemma3VisionOptions{Images: images * batch, VisionLayers: visionLayers})
	if err != nil {
		return err
	}
	printFit(w, m, plan, target, nil)
	tower := "vision tower frozen"
	if visionLayers {
		tower = "LoRA on the vision tower's layers (its activations kept)"
	}
	fmt.Fprintf(w, "vision    %d image(s) per sequence of %d×%d patches pooled to %d tokens, %s; no advice for vision models yet\n",
		images, vis.PatchesPerSide(), vis.PatchesPerSide(), vis.TokensPerImage, tower)
	for _, n := range notes {
		fmt.Fprintf(w, "note      %s\n", n)
	}
	fmt.Fprintln(w, "note      whet train trains Gemma 3 on images (lora or qlora; the tower frozen unless lora.vision_layers), on a GPU too")
	if !target.fits(plan) {
		return exitStatus(1)
	}
	return nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
