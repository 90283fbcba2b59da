package engine

// Gemma 2: embeddings scaled by sqrt(hidden), RMSNorm with (1 + w), four
// norms a block (before and after attention and MLP), a GELU-tanh gated
// MLP, attention scaled by query_pre_attn_scalar, sliding and global
// layers alternating, and tanh soft-caps on the attention scores and the
// final logits.
var gemma2Family = &Family{
	ModelTypes: []string{"gemma2"},
	// Gemma2Config: head_dim 256, 4 kv heads, soft-caps 50 and 30.
	Defaults: archDefaults{numKVHeads: 4, headDim: 256, maxPositions: 8192, rmsNormEps: 1e-6, ropeTheta: 10000,
		bos: 2, eos: []int{1}, slidingWindow: 4096, tied: true},
	Activation:      GELUTanh,
	ActivationField: "hidden_activation", ActivationDefault: "gelu_pytorch_tanh",
	NormOffset:    1,
	SandwichNorms: true,
	EmbedScale:    true,
	Names:         gemmaNames,
	parse: func(j jsonObject, c *ModelConfig, def archDefaults) error {
		if err := parseGemmaAttention(j, c, def, 2); err != nil {
			return err
		}
		var err error
		if c.AttnSoftCap, err = softCap(j, "attn_logit_softcapping", 50); err != nil {
			return err
		}
		c.FinalSoftCap, err = softCap(j, "final_logit_softcapping", 30)
		return err
	},
}

// gemmaNames is the block of Gemma 2 and 3: post_attention_layernorm is
// the norm on the attention output, pre_feedforward_layernorm the MLP's.
var gemmaNames = LayerNames{
	AttnNorm: "input_layernorm", AttnOutNorm: "post_attention_layernorm",
	MLPNorm: "pre_feedforward_layernorm", MLPOutNorm: "post_feedforward_layernorm",
	Q: "self_attn.q_proj", K: "self_attn.k_proj", V: "self_attn.v_proj", O: "self_attn.o_proj",
	Gate: "mlp.gate_proj", Up: "mlp.up_proj", Down: "mlp.down_proj",
}

// parseGemmaAttention reads what Gemma 2 and 3 share: no attention bias,
// query_pre_attn_scalar, the window and which layers use it (layer_types,
// or every pattern-th layer global when absent).
func parseGemmaAttention(j jsonObject, c *ModelConfig, def archDefaults, pattern int) error {
	bias, err := j.boolDefault("attention_bias", false)
	if err != nil {
		return err
	}
	if bias {
		return j.fieldErr("attention_bias", "true is not supported")
	}
	if c.QueryPreAttnScalar, err = j.floatDefault("query_pre_attn_scalar", 256); err != nil {
		return err
	}
	if !(c.QueryPreAttnScalar > 0) {
		return j.fieldErr("query_pre_attn_scalar", "%v must be positive", c.QueryPreAttnScalar)
	}
	if !j.isNull("sliding_window") {
		if c.SlidingWindow, err = j.intDefault("sliding_window", def.slidingWindow); err != nil {
			return err
		}
	}
	types, ok, err := parseLayerTypes(j, c.NumLayers)
	if err != nil || ok {
		c.LayerTypes = types
		return err
	}
	if c.NumLayers > maxLayerTypes {
		return j.fieldErr("num_hidden_layers", "%d layers is more than the %d the engine lays out", c.NumLayers, maxLayerTypes)
	}
	c.LayerTypes = make([]string, c.NumLayers)
	for i := range c.LayerTypes {
		c.LayerTypes[i] = SlidingAttention
		if (i+1)%pattern == 0 {
			c.LayerTypes[i] = FullAttention
		}
	}
	return nil
}

// softCap reads a soft-cap: absent takes the class default, null none.
func softCap(j jsonObject, key string, def float64) (float64, error) {
	if j.isNull(key) {
		return 0, nil
	}
	v, err := j.floatDefault(key, def)
	if err == nil && v < 0 {
		err = j.fieldErr(key, "%v must not be negative", v)
	}
	return v, err
}
