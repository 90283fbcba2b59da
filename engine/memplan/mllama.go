package memplan

import (
	"fmt"
	"strings"

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
// tower frozen, as whet trains it): the language model's weights,
// adapters, gradients and AdamW moments as Plan plans a Llama of all its
// layers (a cross-attention layer holds the same projections as a
// self-attention one), plus
//
//	vision tower weights    frozen, in the weight dtype (whet's NF4 covers the language model)
//	projector               [D, OutputDim] + bias in the weight dtype, LoRA when asked
//	vision activations      one image at a time, forward only: one encoder
//	                        layer's buffers over A·Pp rows (A tiles of Pp padded
//	                        patches) and the [A·Pp, A·Pp] fp32 mask (the kept
//	                        intermediate layers go to the host), and the
//	                        output of every image
//
// Without checkpointing the activations are what the Mllama engine
// allocates (mllamaEngineActivations): every forward tensor (the
// cross-attention layers' keys and values over the image tokens once per
// cross layer) and one layer's backward tensors, as the engine frees a
// layer's forward and backward tensors once its backward is done;
// TestPlanMllamaMatchesEngine (float32) and TestPlanMllamaBF16MatchesEngine
// (the engine's bf16 compute, its default on CUDA) hold this within 5% of the CPU
// engine's measured peak. With checkpointing (which
// the Mllama engine does not implement) the language model's activations
// are Plan's for a checkpointed Llama, plus per cross layer k (before and
// after its norm) and v over the K = images·A·P image tokens and their
// LoRA intermediates; once: the projected states and their gradient
// [K, D], the [N, K] fp32 bias. The LM head is Plan's in both:
// engine.LogitsChunk rows of logits at a time (Options.LogitsChunk, the
// engine's MllamaModel.LogitsRows).
//
// Every buffer counts for the whole step (as Plan assumes): the vision
// tower's forward buffers are freed before the language model runs, so
// the peak is an upper bound by at most their size.
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
	// QLoRA: Plan's NF4 codes and fp32 absmax of the language model's
	// linears are what engine.MllamaOptions.NF4Linears allocates; the
	// Mllama engine expands each weight into a buffer of its compute dtype
	// the size of the largest linear: fp32 when it computes in float32
	// (its default), bf16 with engine.MllamaOptions.Compute BF16.
	for i := range p.Buffers {
		if p.Buffers[i].Category == DequantWorkspace {
			p.Buffers[i].DType = p.Options.WeightDType
		}
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
			p.addTrainingState(b, dt == F32, 1)
		}
	}

	// ---- vision activations (one image at a time, no gradients) ----------
	// What visionImage holds inside an encoder layer, its largest stage:
	// the layer's input and output, both norms' outputs and statistics,
	// q/k/v, the attention output, its projection, fc2's output, the MLP
	// hidden state and the [A·Pp, A·Pp] mask (the kept intermediate
	// layers are copied to the host).
	n := A * Pp
	add("vision.hidden", Activations, dt, 2, n, hv)
	add("vision.norm_out", Activations, dt, 2, n, hv)
	add("vision.norm_stats", Activations, F32, 4, n)
	add("vision.qkv", Activations, dt, 3, n, hv)
	add("vision.attention_out", Activations, dt, 3, n, hv) // attention, o_proj, fc2
	add("vision.attention_lse", Activations, F32, 1, int64(v.Heads), n)
	add("vision.mlp_hidden", Activations, dt, 1, n, iv)
	add("vision.mask", Activations, F32, 1, n, n)
	kTok := int64(mo.Images) * A * P
	add("vision.output", Activations, dt, 1, kTok, out)

	mllamaEngineActivations(p, cfg, o, mo, kTok)
	return p, nil
}

// mllamaEngineActivations replaces Plan's text activations with what the
// Mllama engine (engine/mllama_forward.go) allocates for one training pass
// without checkpointing. It runs the micro-batch's samples one at a time,
// each of SeqLen tokens; a layer's tensors, forward and backward, are
// freed once its backward is done, so its peak is in the last layer's
// backward: every forward tensor, the head's, and one layer's backward
// tensors. kTok is the sample's image tokens.
func mllamaEngineActivations(p *MemPlan, cfg *engine.MllamaConfig, o Options, mo MllamaOptions, kTok int64) {
	kept := p.Buffers[:0]
	for _, b := range p.Buffers {
		switch b.Category {
		case Activations, BackwardScratch, Logits, Inputs, AttentionWorkspace:
			if !strings.HasPrefix(b.Name, "vision.") {
				continue
			}
		}
		kept = append(kept, b)
	}
	p.Buffers = kept
	add := func(name string, c Category, d DType, repeat int, shape ...int64) {
		if repeat > 0 {
			p.Buffers = append(p.Buffers, Buffer{Name: name, Category: c, DType: d, Shape: shape, Repeat: repeat})
		}
	}
	text := &cfg.Text
	dt := o.WeightDType
	T := int64(o.SeqLen)
	D, I, V := int64(text.HiddenSize), int64(text.IntermediateSize), int64(text.VocabSize)
	qd, kv := int64(text.NumHeads*text.HeadDim), int64(text.KVDim())
	nh, nkvh := int64(text.NumHeads), int64(text.NumKVHeads)
	nc := len(cfg.CrossLayers)
	ns := text.NumLayers - nc
	r := int64(0)
	targets := map[string]bool{}
	if o.Method == LoRA || o.Method == QLoRA {
		r = int64(o.LoRARank)
		ts := o.LoRATargets
		if len(ts) == 0 {
			ts = []string{"q", "k", "v", "o", "gate", "up", "down"}
		}
		for _, t := range ts {
			targets[strings.TrimSuffix(t, "_proj")] = true
		}
	}
	// lora counts the adapted linears among names, n rows each, times repeat.
	lora := func(name string, c Category, repeat int, rows int64, names ...string) {
		k := 0
		for _, n := range names {
			if targets[n] {
				k++
			}
		}
		if r > 0 && k > 0 {
			add(name, c, dt, repeat*k, rows, r)
		}
	}

	// Inputs, the embedding and the image side.
	add("inputs.tokens_targets_positions", Inputs, I32, 1, 3, T)
	add("inputs.seq_starts", Inputs, I32, 1, 2)
	add("inputs.rope_tables", Inputs, F32, 1, 2, T, int64(text.HeadDim/2))
	add("loss.token_losses", Inputs, F32, 1, T)
	add("acts.embedding", Activations, dt, 1, T, D)
	images := kTok > 0 && nc > 0
	if images {
		add("cross.states", Activations, dt, 1, kTok, D) // the projector's output
		if mo.Projector {
			add("projector.lora_xa", Activations, dt, 1, kTok, r)
			add("backward.projector.lora_dxa", BackwardScratch, dt, 1, kTok, r)
		}
		add("cross.bias", Activations, F32, 1, T, kTok)
		add("backward.cross.states_grad", BackwardScratch, dt, 1, kTok, D)
	}
	if !images {
		nc = 0 // the cross-attention layers are skipped
	}

	// Every layer: the attention norm's output and statistics, the
	// residual copies (x_mid and the layer's output), the MLP norm, gate,
	// up, their SwiGLU, down's output, the attention output and its
	// log-sum-exp, q; LoRA's x·Aᵀ of q/o/gate/up/down over the text rows.
	// With checkpointing (engine.MllamaModel.Checkpointing) every layer's
	// output is kept and one layer's tensors exist at a time (the one whose
	// forward the backward reruns): the larger of a self layer's and a
	// cross layer's own tensors.
	L := ns + nc
	if o.Checkpointing {
		add("acts.layer_outputs", Activations, dt, L, T, D)
		loraKV := int64(0)
		for _, n := range []string{"k", "v"} {
			if r > 0 && targets[n] {
				loraKV += r
			}
		}
		// Bytes of a self layer's own tensors and of a cross layer's.
		sz := dt.Size(1)
		self := sz * (2*T*kv + T*loraKV)
		cross := sz*(T*qd+3*kTok*kv+kTok*loraKV) + 4*(T*nh+kTok*nkvh)
		L = 1
		if nc > 0 && (ns == 0 || cross >= self) {
			ns, nc = 0, 1
		} else {
			ns, nc = 1, 0
		}
	}
	add("acts.norm_out", Activations, dt, 2*L, T, D) // attention and MLP norms
	add("acts.norm_rstd", Activations, F32, 2*L, T)
	add("acts.residual", Activations, dt, 2*L, T, D) // x_mid and the layer's output
	add("acts.mlp_gate_up_swiglu", Activations, dt, 3*L, T, I)
	add("acts.mlp_down_out", Activations, dt, L, T, D)
	add("acts.attention_out", Activations, dt, L, T, qd)
	add("acts.attention_lse", Activations, F32, L, nh, T)
	add("acts.q", Activations, dt, L, T, qd)
	add("acts.o_proj_out", Activations, dt, L, T, D)
	lora("acts.lora_xa", Activations, L, T, "q", "o", "gate", "up", "down")
	// Self-attention layers: k and v over the text, their LoRA x·Aᵀ.
	add("acts.kv", Activations, dt, 2*ns, T, kv)
	lora("acts.lora_xa_kv", Activations, ns, T, "k", "v")
	// Cross-attention layers: q before its norm and the norm's statistics,
	// k before and after its norm, v, over the K image tokens, k's
	// statistics, their LoRA x·Aᵀ over the image tokens.
	add("cross.q_raw", Activations, dt, nc, T, qd)
	add("cross.q_rstd", Activations, F32, nc, T, nh)
	add("cross.k_raw", Activations, dt, nc, kTok, kv)
	add("cross.k", Activations, dt, nc, kTok, kv)
	add("cross.v", Activations, dt, nc, kTok, kv)
	add("cross.k_rstd", Activations, F32, nc, kTok, nkvh)
	lora("cross.lora_xa", Activations, nc, kTok, "k", "v")

	// The final norm and the LM head in chunks.
	chunk := int64(engine.LogitsChunk(int(T), int(V), o.LogitsChunk))
	add("acts.final_rstd", Activations, F32, 1, T)
	add("acts.final_norm_out", Activations, dt, 1, chunk, D)
	add("logits.f32", Logits, F32, 1, chunk, V)
	if dt != F32 {
		// bf16 compute: the logits' gradient goes through the head in bf16.
		add("logits.grad", Logits, dt, 1, chunk, V)
	}
	add("backward.final_norm_grad", BackwardScratch, dt, 1, T, D)

	// The backward: the residual gradient, then one layer's tensors at a
	// time (the engine frees a layer's forward and backward tensors once
	// its backward is done, and its peak is the last layer's backward,
	// every forward tensor still held): down's input gradient, gate's and
	// up's, the MLP norm's input gradient, the attention output's, q's,
	// the attention norm's input gradient, each adapted linear's dy·B;
	// then a self layer's k/v gradients over the text or a cross layer's
	// gated branches' scaled copies, q before its norm, k (before and
	// after its norm) and v over the image tokens, whichever is larger.
	add("backward.residual_grad", BackwardScratch, dt, 1, T, D)
	add("backward.mlp_grads", BackwardScratch, dt, 3, T, I)
	add("backward.norm_input_grads", BackwardScratch, dt, 2, T, D)
	add("backward.attention_q_grads", BackwardScratch, dt, 2, T, qd)
	lora("backward.lora_dxa", BackwardScratch, 1, T, "q", "o", "gate", "up", "down")
	loraKV := int64(0)
	for _, n := range []string{"k", "v"} {
		if r > 0 && targets[n] {
			loraKV += r
		}
	}
	selfExtra := 2*T*kv + T*loraKV // elements, all in dt
	crossExtra := 2*T*D + T*qd + 3*kTok*kv + kTok*loraKV
	if nc > 0 && (ns == 0 || crossExtra >= selfExtra) {
		add("backward.cross.gated_grads", BackwardScratch, dt, 2, T, D)
		add("backward.cross.q_raw_grad", BackwardScratch, dt, 1, T, qd)
		add("backward.cross.dk_dv_dkraw", BackwardScratch, dt, 3, kTok, kv)
		lora("backward.cross.lora_dxa", BackwardScratch, 1, kTok, "k", "v")
	} else if ns > 0 {
		add("backward.kv_grads", BackwardScratch, dt, 2, T, kv)
		lora("backward.lora_dxa_kv", BackwardScratch, 1, T, "k", "v")
	}
}
