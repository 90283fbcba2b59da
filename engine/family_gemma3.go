package engine

// Gemma 3 (text): the Gemma 2 block with a per-head q/k norm (1 + w) and
// no soft-caps by default; five of every six layers slide over a window
// and turn by rope_local_base_freq, the others are global and turn by
// rope_theta with the configured (linear) scaling.
var gemma3Family = &Family{
	ModelTypes:    []string{"gemma3_text"},
	Architectures: []string{"Gemma3ForCausalLM"},
	// Gemma3TextConfig defaults.
	Defaults: archDefaults{numKVHeads: 4, headDim: 256, maxPositions: 131072, rmsNormEps: 1e-6, ropeTheta: 1e6,
		bos: 2, eos: []int{1}, slidingWindow: 4096, tied: true},
	Activation:      GELUTanh,
	ActivationField: "hidden_activation", ActivationDefault: "gelu_pytorch_tanh",
	NormOffset:    1,
	SandwichNorms: true,
	QKNorm:        true,
	EmbedScale:    true,
	Names:         withQKNorm(gemmaNames),
	parse: func(j jsonObject, c *ModelConfig, def archDefaults) error {
		pattern, err := j.intDefault("sliding_window_pattern", 6)
		if err != nil {
			return err
		}
		if pattern <= 0 {
			return j.fieldErr("sliding_window_pattern", "%d must be positive", pattern)
		}
		if err := parseGemmaAttention(j, c, def, pattern); err != nil {
			return err
		}
		if c.RopeLocalTheta, err = j.floatDefault("rope_local_base_freq", 10000); err != nil {
			return err
		}
		if c.AttnSoftCap, err = softCap(j, "attn_logit_softcapping", 0); err != nil {
			return err
		}
		c.FinalSoftCap, err = softCap(j, "final_logit_softcapping", 0)
		return err
	},
}

// gemma3Multimodal is the text part of Gemma 3 4B, 12B and 27B
// (Gemma3ForConditionalGeneration): the same decoder, its settings in
// text_config and its tensors under language_model.model. (transformers 4)
// or model.language_model. (transformers 5). The vision tower is not
// loaded.
var gemma3Multimodal = func() *Family {
	f := *gemma3Family
	f.ModelTypes = []string{"gemma3"}
	f.Architectures = []string{"Gemma3ForConditionalGeneration"}
	f.TextConfig = true
	f.WeightAliases = []string{"language_model.model.", "model.language_model."}
	// Gemma3TextConfig's defaults for the sizes the 4B/12B text_config
	// leaves out.
	f.Defaults.sizes = map[string]int{"vocab_size": 262208, "num_attention_heads": 8}
	return &f
}()
