package engine

// Llama, Mistral and Qwen2: the plain pre-norm block (RMSNorm with w,
// SwiGLU MLP, separate q/k/v projections), differing only in defaults,
// q/k/v biases (Qwen2) and the attention window (Mistral, Qwen2).

var llamaFamily = &Family{
	ModelTypes: []string{"llama"},
	// LlamaConfig: num_key_value_heads None -> num_attention_heads.
	Defaults:        archDefaults{maxPositions: 2048, rmsNormEps: 1e-6, ropeTheta: 10000, bos: 1, eos: []int{2}},
	Activation:      SiLU,
	ActivationField: "hidden_act", ActivationDefault: "silu",
	Names: llamaNames,
	parse: func(j jsonObject, c *ModelConfig, _ archDefaults) error {
		bias, err := j.boolDefault("attention_bias", false)
		if err != nil {
			return err
		}
		if bias {
			// Llama's attention_bias also puts a bias on o_proj, which
			// the decoder does not have.
			return j.fieldErr("attention_bias", "true is not supported yet (llama's attention_bias adds an o_proj bias)")
		}
		mlpBias, err := j.boolDefault("mlp_bias", false)
		if err != nil {
			return err
		}
		if mlpBias {
			return j.fieldErr("mlp_bias", "true is not supported yet")
		}
		return nil
	},
}

var mistralFamily = &Family{
	ModelTypes: []string{"mistral"},
	// MistralConfig: num_key_value_heads=8, sliding_window=4096.
	Defaults:        archDefaults{numKVHeads: 8, maxPositions: 4096 * 32, rmsNormEps: 1e-6, ropeTheta: 10000, bos: 1, eos: []int{2}, slidingWindow: 4096},
	Activation:      SiLU,
	ActivationField: "hidden_act", ActivationDefault: "silu",
	Names: llamaNames,
	parse: func(j jsonObject, c *ModelConfig, def archDefaults) error {
		if j.isNull("sliding_window") { // Mistral v0.2 on: full attention
			return nil
		}
		var err error
		c.SlidingWindow, err = j.intDefault("sliding_window", def.slidingWindow)
		return err
	},
}

var qwen2Family = &Family{
	ModelTypes: []string{"qwen2"},
	// Qwen2Config: num_key_value_heads=32, no BOS/EOS defaults.
	Defaults:        archDefaults{numKVHeads: 32, maxPositions: 32768, rmsNormEps: 1e-6, ropeTheta: 10000, bos: NoTokenID},
	Activation:      SiLU,
	ActivationField: "hidden_act", ActivationDefault: "silu",
	Names: llamaNames,
	parse: func(j jsonObject, c *ModelConfig, _ archDefaults) error {
		// Qwen2's attention always has q/k/v biases (and none on o_proj);
		// its config has no switch for them.
		c.AttentionBias = true
		return qwenSlidingWindow(j, c)
	},
}
