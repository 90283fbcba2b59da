package memplan

import (
	"fmt"

	"whet/engine"
)

// Gemma3VisionOptions are what a Gemma 3 vision plan adds to Options.
type Gemma3VisionOptions struct {
	// Images in one micro-batch (default 1 per sequence: MicroBatch).
	Images int
	// Projector puts LoRA on multi_modal_projector's matrix as well.
	Projector bool
	// VisionLayers puts LoRA on the tower's linear layers (lora.vision_layers):
	// their adapters, and the tower keeps every layer's activations for its
	// backward.
	VisionLayers bool
}

// PlanGemma3Vision plans LoRA or QLoRA of a Gemma 3 vision model
// (Gemma3ForConditionalGeneration, the tower frozen as whet trains it by
// default): the language model as Plan plans it, plus
//
//	tower and projector weights   in the weight dtype (NF4 covers the language model only)
//	projector adapter             A [r, Dv], B [Dt, r] with masters, gradients and moments, when asked
//	tower activations             what engine/gemma3_vision_acts.go allocates for a frozen
//	                              tower over the micro-batch's n images of P patches: the
//	                              patch rows, two residual buffers and one layer's buffers
//	                              over n·P rows, the post-norm output, the [M, P] pooling
//	                              matrix; the projector's pooled, normed and projected rows
//	                              over n·M image tokens and their gradients; the LM's image
//	                              groups [N]
//	tower adapters (VisionLayers) A [r, in], B [out, r] on q, k, v, out_proj, fc1, fc2 of
//	                              each layer with masters, gradients and moments; the tower
//	                              then keeps L+1 residual buffers and L layers' buffers, its
//	                              backward's gradients over n·P rows, and one x Aᵀ scratch
//	                              and its gradient [n·P, r]
//
// TestPlanGemma3VisionMatchesEngine checks the activations against the
// CPU engine's own allocations.
func PlanGemma3Vision(text *engine.ModelConfig, vis *engine.Gemma3VisionConfig, opts Options, vo Gemma3VisionOptions) (*MemPlan, error) {
	if text == nil || vis == nil {
		return nil, fmt.Errorf("memplan: no Gemma 3 config")
	}
	if b := opts.Method; b != "" && b != LoRA && b != QLoRA {
		return nil, fmt.Errorf("memplan: Gemma 3 vision is planned for lora or qlora (the vision tower frozen), not %s", b)
	}
	p, err := Plan(text, opts)
	if err != nil {
		return nil, err
	}
	o := p.Options
	if vo.Images <= 0 {
		vo.Images = o.MicroBatch
	}
	dt := o.WeightDType
	add := func(name string, c Category, d DType, repeat int, shape ...int64) {
		p.Buffers = append(p.Buffers, Buffer{Name: name, Category: c, DType: d, Shape: shape, Repeat: repeat})
	}
	Dv, I, Dt := int64(vis.Hidden), int64(vis.Intermediate), int64(vis.TextHidden)
	P, M, K := int64(vis.NumPatches()), int64(vis.TokensPerImage), int64(vis.PatchDim())
	L := vis.Layers

	// ---- tower and projector weights (frozen) ----------------------------
	var params int64
	w := func(name string, repeat int, shape ...int64) {
		add(name, Weights, dt, repeat, shape...)
		params += int64(repeat) * (Buffer{Shape: shape}).Elems()
	}
	w("vision_tower.embeddings.patch_embedding.weight", 1, Dv, int64(vis.Channels), int64(vis.PatchSize), int64(vis.PatchSize))
	w("vision_tower.embeddings.patch_embedding.bias", 1, Dv)
	w("vision_tower.embeddings.position_embedding.weight", 1, P, Dv)
	w("vision_tower.layers.self_attn.qkvo.weight", 4*L, Dv, Dv)
	w("vision_tower.layers.self_attn.qkvo.bias", 4*L, Dv)
	w("vision_tower.layers.mlp.fc1.weight", L, I, Dv)
	w("vision_tower.layers.mlp.fc1.bias", L, I)
	w("vision_tower.layers.mlp.fc2.weight", L, Dv, I)
	w("vision_tower.layers.mlp.fc2.bias", L, Dv)
	w("vision_tower.layers.layer_norms", 4*L, Dv)
	w("vision_tower.post_layernorm", 2, Dv)
	w("multi_modal_projector.mm_soft_emb_norm.weight", 1, Dv)
	w("multi_modal_projector.mm_input_projection_weight", 1, Dv, Dt)
	p.Params += params

	r := int64(o.LoRARank)
	var adapters []Buffer
	if vo.Projector {
		adapters = append(adapters,
			Buffer{Name: "multi_modal_projector.mm_input_projection.lora_A", Category: Adapters, DType: dt, Shape: []int64{r, Dv}, Repeat: 1},
			Buffer{Name: "multi_modal_projector.mm_input_projection.lora_B", Category: Adapters, DType: dt, Shape: []int64{Dt, r}, Repeat: 1})
	}
	if vo.VisionLayers {
		adapters = append(adapters,
			Buffer{Name: "vision_tower.layers.self_attn.qkvo.lora_A", Category: Adapters, DType: dt, Shape: []int64{r, Dv}, Repeat: 4 * L},
			Buffer{Name: "vision_tower.layers.self_attn.qkvo.lora_B", Category: Adapters, DType: dt, Shape: []int64{Dv, r}, Repeat: 4 * L},
			Buffer{Name: "vision_tower.layers.mlp.fc1.lora_A", Category: Adapters, DType: dt, Shape: []int64{r, Dv}, Repeat: L},
			Buffer{Name: "vision_tower.layers.mlp.fc1.lora_B", Category: Adapters, DType: dt, Shape: []int64{I, r}, Repeat: L},
			Buffer{Name: "vision_tower.layers.mlp.fc2.lora_A", Category: Adapters, DType: dt, Shape: []int64{r, I}, Repeat: L},
			Buffer{Name: "vision_tower.layers.mlp.fc2.lora_B", Category: Adapters, DType: dt, Shape: []int64{Dv, r}, Repeat: L})
	}
	for _, b := range adapters {
		p.Buffers = append(p.Buffers, b)
		p.addTrainingState(b, dt == F32, 1)
	}

	// ---- activations (engine/gemma3_vision_acts.go) ------------------------
	n := int64(vo.Images)
	NP, NM := n*P, n*M
	add("vision.patches", Activations, dt, 1, NP, K)
	add("vision.pool_matrix", Activations, dt, 1, M, P)
	add("vision.patch_groups", Activations, I32, 1, NP)
	add("vision.image_starts", Activations, I32, 1, n+1)
	hidden, sets := 2, 1 // layer input and output; one layer's buffers, reused
	if vo.VisionLayers {
		hidden, sets = L+1, L // kept for the tower's backward
	}
	add("vision.hidden", Activations, dt, hidden, NP, Dv)
	add("vision.layer.h1_q_k_v_att_x2_h2", Activations, dt, 7*sets, NP, Dv)
	add("vision.layer.fc1_gelu", Activations, dt, 2*sets, NP, I)
	add("vision.layer.norm_stats", Activations, F32, 4*sets, NP)
	add("vision.layer.attention_lse", Activations, F32, sets, int64(vis.Heads), NP)
	add("vision.post_layernorm", Activations, dt, 1, NP, Dv)
	add("vision.post_layernorm_stats", Activations, F32, 2, NP)
	add("projector.pooled_normed", Activations, dt, 2, NM, Dv)
	add("projector.rstd", Activations, F32, 1, NM)
	add("projector.norm_weight", Activations, dt, 1, Dv)
	add("projector.features", Activations, dt, 1, NM, Dt)
	add("backward.projector.features_grad", BackwardScratch, dt, 1, NM, Dt)
	add("backward.projector.normed_pooled_grad", BackwardScratch, dt, 2, NM, Dv)
	if vo.Projector {
		add("projector.lora_xa", Activations, dt, 1, NM, r)
		add("backward.projector.lora_dxa", BackwardScratch, dt, 1, NM, r)
	}
	if vo.VisionLayers {
		add("vision.lora_xa", Activations, dt, 1, NP, r)
		add("backward.vision.lora_dxa", BackwardScratch, dt, 1, NP, r)
		add("backward.vision.dx_dh_dq_dk_dv_datt_dy", BackwardScratch, dt, 7, NP, Dv)
		add("backward.vision.fc1_grad", BackwardScratch, dt, 1, NP, I)
	}
	add("lm.image_groups", Activations, I32, 1, p.Tokens)
	return p, nil
}
