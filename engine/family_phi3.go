package engine

// Phi-3 and Phi-4-mini: the Llama block with q, k and v in one matrix
// (qkv_proj) and gate and up in another (gate_up_proj, gate first), RoPE on
// the first partial_rotary_factor of each head, LongRoPE scaling, and a
// window on every layer when sliding_window is set.
var phi3Family = &Family{
	ModelTypes: []string{"phi3"},
	// Phi3Config defaults.
	Defaults:        archDefaults{maxPositions: 4096, rmsNormEps: 1e-5, ropeTheta: 10000, bos: 1, eos: []int{32000}},
	Activation:      SiLU,
	ActivationField: "hidden_act", ActivationDefault: "silu",
	FusedQKV:    true,
	FusedGateUp: true,
	Names: LayerNames{
		AttnNorm: "input_layernorm", MLPNorm: "post_attention_layernorm",
		QKV: "self_attn.qkv_proj", O: "self_attn.o_proj",
		GateUp: "mlp.gate_up_proj", Down: "mlp.down_proj",
	},
	parse: func(j jsonObject, c *ModelConfig, _ archDefaults) error {
		for _, key := range []string{"attention_bias", "mlp_bias", "lm_head_bias"} {
			bias, err := j.boolDefault(key, false)
			if err != nil {
				return err
			}
			if bias {
				return j.fieldErr(key, "true is not supported")
			}
		}
		var err error
		if c.PartialRotaryFactor, err = j.floatDefault("partial_rotary_factor", 1); err != nil {
			return err
		}
		if j.isNull("sliding_window") {
			return nil
		}
		c.SlidingWindow, err = j.intDefault("sliding_window", 0)
		return err
	},
}
