package memplan

import (
	"fmt"

	"whet/engine"
)

// MllamaOptions are what a Llama 3.2 Vision plan adds to Options.
type MllamaOptions struct {
	// Images per sequence (default 1); every image is MaxTiles tiles
	// whatever its size, as the processor pads it.
	Images int
	// Projector puts LoRA on multi_modal_projector as well.
	Projector bool
}

// PlanMllama plans LoRA or QLoRA of a Llama 3.2 Vision model (the vision
// tower frozen, as whet trains it): the language model as Plan plans a
// Llama of all its layers (a cross-attention layer holds the same
// projections as a self-attention one), plus
//
//	vision tower weights    bf16 (not quantized: whet's NF4 covers the language model)
//	projector               [D, OutputDim] + bias in the weight dtype, LoRA when asked
//	vision activations      one image at a time, forward only: one encoder
//	                        layer's buffers over A·Pp rows (A tiles of Pp padded
//	                        patches), the [A·Pp, A·Pp] fp32 mask, the kept
//	                        intermediate layers, and the output of every image
//	cross-attention         per cross layer k (before and after its norm) and v
//	                        over the K = images·A·P image tokens, their LoRA
//	                        intermediates; once: the projected states and their
//	                        gradient [K, D], the [N, K] fp32 bias
//	LM head                 Plan's: engine.LogitsChunk rows of logits at a time
//	                        (Options.LogitsChunk, the engine's MllamaModel.LogitsRows)
//
// Every buffer counts for the whole step (as Plan assumes): the vision
// tower's forward buffers are freed before the language model's backward
// in practice, so the peak is an upper bound by at most their size.
func PlanMllama(cfg *engine.MllamaConfig, opts Options, mo MllamaOptions) (*MemPlan, error) {
	if cfg == nil {
		return nil, fmt.Errorf("memplan: no Mllama config")
	}
	if b := opts.Method; b != "" && b != LoRA && b != QLoRA {
		return nil, fmt.Errorf("memplan: Llama 3.2 Vision is planned for lora or qlora (the vision tower frozen), not %s", b)
	}
	if mo.Images <= 0 {
		mo.Images = 1
	}
	text := cfg.Text
	p, err := Plan(&text, opts)
	if err != nil {
		return nil, err
	}
	o := p.Options
	dt := o.WeightDType
	v := &cfg.Vision
	D, hv, iv := int64(text.HiddenSize), int64(v.Hidden), int64(v.Intermediate)
	A, P, Pp := int64(v.MaxTiles), int64(v.Patches()), int64(v.PaddedPatches())
	nAR := int64(len(v.AspectRatios) + 1)
	add := func(name string, c Category, d DType, repeat int, shape ...int64) {
		p.Buffers = append(p.Buffers, Buffer{Name: name, Category: c, DType: d, Shape: shape, Repeat: repeat})
	}

	// ---- the 8 extra embedding rows and the cross layers' own weights ---
	add("embed_tokens.extra_rows", Weights, dt, 1, 8, D)
	nc := len(cfg.CrossLayers)
	if nc > 0 {
		add("cross_attn.q_norm.weight", Weights, dt, nc, int64(text.HeadDim))
		add("cross_attn.k_norm.weight", Weights, dt, nc, int64(text.HeadDim))
		add("cross_attn_gates", Weights, dt, nc, 2)
	}

	// ---- vision tower (frozen) -------------------------------------------
	var visionParams int64
	vw := func(name string, repeat int, shape ...int64) {
		add("vision_model."+name, Weights, dt, repeat, shape...)
		visionParams += int64(repeat) * (Buffer{Shape: shape}).Elems()
	}
	vw("patch_embedding.weight", 1, hv, int64(v.Channels), int64(v.PatchSize), int64(v.PatchSize))
	vw("class_embedding", 1, hv)
	vw("gated_positional_embedding.embedding", 1, P, hv)
	vw("gated_positional_embedding.tile_embedding.weight", 1, nAR, A*P*hv)
	vw("pre_tile_positional_embedding.embedding.weight", 1, nAR, A*hv)
	vw("post_tile_positional_embedding.embedding.weight", 1, nAR, A*hv)
	vw("gates", 1, 3)
	vw("layernorms", 1, 4, hv)
	layers := v.Layers + v.GlobalLayers
	vw("layers.self_attn.qkvo_proj.weight", layers, 4, hv, hv)
	vw("layers.mlp.fc1.weight", layers, iv, hv)
	vw("layers.mlp.fc2.weight", layers, hv, iv)
	vw("layers.mlp.biases", layers, iv+hv)
	vw("layers.layernorms", layers, 4, hv)
	if v.GlobalLayers > 0 {
		vw("global_transformer.layers.gates", v.GlobalLayers, 2)
	}
	out := int64(v.OutputDim)
	add("multi_modal_projector.weight", Weights, dt, 1, D, out)
	add("multi_modal_projector.bias", Weights, dt, 1, D)
	p.Params += visionParams + D*out + D + 8*D + int64(nc)*(2*int64(text.HeadDim)+2)

	r := int64(o.LoRARank)
	if mo.Projector {
		for _, b := range []Buffer{
			{Name: "multi_modal_projector.lora_A", Category: Adapters, DType: dt, Shape: []int64{r, out}, Repeat: 1},
			{Name: "multi_modal_projector.lora_B", Category: Adapters, DType: dt, Shape: []int64{D, r}, Repeat: 1},
		} {
			p.Buffers = append(p.Buffers, b)
			p.Trainable += b.Elems()
			for _, side := range []struct {
				prefix string
				cat    Category
			}{{"master.", Masters}, {"grad.", Gradients}, {"adam_m.", OptimizerState}, {"adam_v.", OptimizerState}} {
				if side.cat == Masters && dt == F32 {
					continue
				}
				c := b
				c.Name, c.Category, c.DType = side.prefix+b.Name, side.cat, F32
				p.Buffers = append(p.Buffers, c)
			}
		}
	}

	// ---- vision activations (one image at a time, no gradients) ----------
	n := A * Pp
	nside := int64(v.ImageSize / v.PatchSize)
	add("vision.pixels_unfolded", Activations, dt, 1, A*nside*nside, int64(v.Channels*v.PatchSize*v.PatchSize))
	add("vision.hidden", Activations, dt, 2, n, hv) // layer input and output
	add("vision.norm_out", Activations, dt, 1, n, hv)
	add("vision.norm_stats", Activations, F32, 2, n)
	add("vision.qkv", Activations, dt, 3, n, hv)
	add("vision.attention_out", Activations, dt, 1, n, hv)
	add("vision.attention_lse", Activations, F32, 1, int64(v.Heads), n)
	add("vision.mlp_hidden", Activations, dt, 1, n, iv)
	add("vision.mask", Activations, F32, 1, n, n)
	if k := len(v.Intermediates); k > 0 {
		add("vision.intermediate_layers", Activations, dt, k, n, hv)
	}
	kTok := int64(mo.Images) * A * P
	add("vision.output", Activations, dt, 1, kTok, out)

	// ---- cross-attention over the image tokens ---------------------------
	kv := int64(text.KVDim())
	add("cross.states", Activations, dt, 1, kTok, D)
	add("backward.cross.states_grad", BackwardScratch, dt, 1, kTok, D)
	add("cross.bias", Activations, F32, 1, p.Tokens, kTok)
	if nc > 0 {
		add("cross.k_raw", Activations, dt, nc, kTok, kv)
		add("cross.k", Activations, dt, nc, kTok, kv)
		add("cross.v", Activations, dt, nc, kTok, kv)
		add("cross.k_rstd", Activations, F32, nc, kTok, int64(text.NumKVHeads))
		add("cross.lora_xa", Activations, dt, 2*nc, kTok, r)
		add("backward.cross.dk_dv", BackwardScratch, dt, 3, kTok, kv)
	}
	if mo.Projector {
		add("projector.lora_xa", Activations, dt, 1, kTok, r)
	}
	return p, nil
}
