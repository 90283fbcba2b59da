package export

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/gguf"
	"whet/engine/safetensors"
)

// The mmproj file: Gemma 3's vision tower and projector as llama.cpp's
// multimodal library (tools/mtmd, clip.cpp) loads them beside the language
// model's GGUF (llama-mtmd-cli -m model.gguf --mmproj mmproj-model.gguf).
// Read from convert_hf_to_gguf.py (MmprojModel, Gemma3VisionModel) and
// gguf-py's constants and tensor map:
//
//   - general.architecture "clip", clip.projector_type "gemma3",
//     clip.has_vision_encoder, clip.use_gelu, and clip.vision.{image_size,
//     patch_size, embedding_length, feed_forward_length, projection_dim (the
//     language model's hidden size), block_count, attention.head_count,
//     attention.layer_norm_epsilon, image_mean, image_std};
//     clip.vision.projector.scale_factor (the pooling kernel) only when it is
//     not the released models' 4, as the converter writes it;
//   - tensors v.patch_embd, v.position_embd, v.blk.N.{ln1, attn_q, attn_k,
//     attn_v, attn_out, ln2, ffn_up (fc1), ffn_down (fc2)}, v.post_ln,
//     mm.soft_emb_norm (stored as 1 + w: llama.cpp multiplies by the stored
//     weight, Gemma3RMSNorm by 1 + w) and mm.input_projection (the
//     [Dv, Dt] parameter as stored, so GGUF's dims are [Dt, Dv]);
//   - types: 1-D tensors and the two embeddings F32, the other matrices F16
//     (the converter forces the projection to F16), whatever the language
//     model's precision.
const (
	mmprojFile     = "mmproj-model.gguf"
	preprocessFile = "preprocessor_config.json"
)

// hasGemma3Tower reports whether a model folder is a Gemma 3 checkpoint
// with its vision tower (the patch embedding in any layout the engine
// reads).
func hasGemma3Tower(dir string) (bool, error) {
	cfg, err := engine.LoadModelConfig(dir)
	if err != nil || cfg.ModelType != "gemma3" {
		return false, nil // the loader reports a bad config by name
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return false, fmt.Errorf("export: %w", err)
	}
	defer set.Close()
	_, _, ok := engine.Gemma3VisionLayout(func(n string) bool { _, ok := set.Info(n); return ok })
	return ok, nil
}

// mmprojNormalize is the mean and std the model's preprocessor_config.json
// gives (the released defaults without one).
func mmprojNormalize(modelDir string) ([3]float32, [3]float32, error) {
	d := vision.DefaultGemma3()
	path := filepath.Join(modelDir, preprocessFile)
	pc, err := vision.LoadProcessorConfig(path)
	if errors.Is(err, fs.ErrNotExist) {
		return d.Mean, d.Std, nil
	}
	if err != nil {
		return d.Mean, d.Std, fmt.Errorf("export: %w", err)
	}
	if pc.Gemma3 == nil {
		return d.Mean, d.Std, fmt.Errorf("export: %s: image_processor_type %s is not Gemma 3's", path, pc.Type)
	}
	return pc.Gemma3.Mean, pc.Gemma3.Std, nil
}

// mmprojTensorName maps a tower or projector weight (whet's released name)
// to clip.cpp's.
func mmprojTensorName(name string) (string, error) {
	if rest, ok := strings.CutPrefix(name, "vision_tower.vision_model."); ok {
		switch rest {
		case "embeddings.patch_embedding.weight":
			return "v.patch_embd.weight", nil
		case "embeddings.patch_embedding.bias":
			return "v.patch_embd.bias", nil
		case "embeddings.position_embedding.weight":
			return "v.position_embd.weight", nil
		case "post_layernorm.weight":
			return "v.post_ln.weight", nil
		case "post_layernorm.bias":
			return "v.post_ln.bias", nil
		}
		if l, ok := strings.CutPrefix(rest, "encoder.layers."); ok {
			num, part, ok := strings.Cut(l, ".")
			if ok {
				for _, m := range [][2]string{
					{"layer_norm1.", "ln1."}, {"layer_norm2.", "ln2."},
					{"self_attn.q_proj.", "attn_q."}, {"self_attn.k_proj.", "attn_k."}, {"self_attn.v_proj.", "attn_v."},
					{"self_attn.out_proj.", "attn_out."}, {"mlp.fc1.", "ffn_up."}, {"mlp.fc2.", "ffn_down."},
				} {
					if suffix, ok := strings.CutPrefix(part, m[0]); ok && (suffix == "weight" || suffix == "bias") {
						return "v.blk." + num + "." + m[1] + suffix, nil
					}
				}
			}
		}
	}
	switch name {
	case "multi_modal_projector.mm_soft_emb_norm.weight":
		return "mm.soft_emb_norm.weight", nil
	case "multi_modal_projector.mm_input_projection_weight":
		return "mm.input_projection.weight", nil
	}
	return "", fmt.Errorf("export: mmproj: no llama.cpp name for tensor %s", name)
}

// BuildGemma3MMProj lays out the mmproj GGUF of src's Gemma 3 vision tower
// and projector (its adapter merged).
func BuildGemma3MMProj(src *Source) (*gguf.File, error) {
	v := src.Model.Gemma3Vision
	if v == nil {
		return nil, fmt.Errorf("export: mmproj: the model has no Gemma 3 vision tower")
	}
	c := v.Cfg
	mean, std, err := mmprojNormalize(src.ModelDir)
	if err != nil {
		return nil, err
	}
	f := &gguf.File{}
	kv := func(k string, val any) { f.KV = append(f.KV, gguf.KV{Key: k, Value: val}) }
	kv("general.architecture", "clip")
	kv("general.name", src.Name)
	kv("general.file_type", uint32(1)) // mostly F16
	kv("clip.projector_type", "gemma3")
	kv("clip.has_vision_encoder", true)
	kv("clip.vision.image_size", uint32(c.ImageSize))
	kv("clip.vision.patch_size", uint32(c.PatchSize))
	kv("clip.vision.embedding_length", uint32(c.Hidden))
	kv("clip.vision.feed_forward_length", uint32(c.Intermediate))
	kv("clip.vision.projection_dim", uint32(c.TextHidden))
	kv("clip.vision.block_count", uint32(c.Layers))
	kv("clip.vision.attention.head_count", uint32(c.Heads))
	kv("clip.vision.attention.layer_norm_epsilon", float32(c.LayerNormEps))
	kv("clip.vision.image_mean", mean[:])
	kv("clip.vision.image_std", std[:])
	kv("clip.use_gelu", true)
	if k := c.PoolKernel(); k != 4 {
		kv("clip.vision.projector.scale_factor", uint32(k))
	}
	kv("general.quantization_version", uint32(2))
	for _, w := range Weights(src.Model) {
		if !isVisionWeight(v, w.param) {
			continue
		}
		name, err := mmprojTensorName(w.Name)
		if err != nil {
			return nil, err
		}
		dims := make([]uint64, len(w.Shape))
		for i, d := range w.Shape {
			dims[len(w.Shape)-1-i] = uint64(d)
		}
		typ := gguf.F16
		if len(w.Shape) == 1 || strings.HasPrefix(name, "v.patch_embd.") || strings.HasPrefix(name, "v.position_embd.") {
			typ = gguf.F32
		}
		w, norm := w, name == "mm.soft_emb_norm.weight"
		f.Tensors = append(f.Tensors, gguf.Tensor{Name: name, Dims: dims, Type: typ, Data: func() ([]byte, error) {
			vals, err := w.Values(src.Model)
			if err != nil {
				return nil, fmt.Errorf("export: %w", err)
			}
			if norm {
				for i := range vals {
					vals[i]++
				}
			}
			return gguf.Encode(typ, vals)
		}})
	}
	return f, nil
}

// isVisionWeight reports whether p is one of the tower's or projector's
// base weights.
func isVisionWeight(v *engine.Gemma3Vision, p *engine.Param) bool {
	for _, q := range v.TowerParams() {
		if q == p {
			return true
		}
	}
	for _, q := range v.ProjectorParams() {
		if q == p {
			return true
		}
	}
	return false
}

// writeMMProj writes mmproj-model.gguf into dir.
func writeMMProj(ctx context.Context, src *Source, dir string, progress Progress) error {
	f, err := BuildGemma3MMProj(src)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, mmprojFile)
	progress(0, 0, mmprojFile+": the vision tower and projector (F16 matrices, F32 embeddings and norms) for llama.cpp's multimodal tools: llama-mtmd-cli -m model.gguf --mmproj "+mmprojFile)
	total := len(f.Tensors)
	if err := f.WriteFileContext(ctx, path, func(done, _ int, name string) { progress(done, total, "mmproj: "+name) }); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("export cancelled (%s not written): %w", path, ctx.Err())
		}
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// copyPreprocessorConfig copies the model's preprocessor_config.json, if it
// has one, so the exported folder carries the image processor's settings.
func copyPreprocessorConfig(srcDir, dir string) error {
	data, err := os.ReadFile(filepath.Join(srcDir, preprocessFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return writeFile(filepath.Join(dir, preprocessFile), data)
}
