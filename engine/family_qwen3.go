package engine

// Qwen3: the Qwen2 block without q/k/v biases, with a per-head RMSNorm on q
// and k before RoPE (q_norm, k_norm over head_dim), and a head_dim of its
// own (not hidden/heads).
var qwen3Family = &Family{
	ModelTypes: []string{"qwen3"},
	// Qwen3Config: num_key_value_heads=32, head_dim=128, no BOS default.
	Defaults:        archDefaults{numKVHeads: 32, headDim: 128, maxPositions: 32768, rmsNormEps: 1e-6, ropeTheta: 10000, bos: NoTokenID},
	Activation:      SiLU,
	ActivationField: "hidden_act", ActivationDefault: "silu",
	QKNorm: true,
	Names:  withQKNorm(llamaNames),
	parse: func(j jsonObject, c *ModelConfig, _ archDefaults) error {
		bias, err := j.boolDefault("attention_bias", false)
		if err != nil {
			return err
		}
		if bias {
			return j.fieldErr("attention_bias", "true is not supported yet (it adds q/k/v/o biases)")
		}
		return qwenSlidingWindow(j, c)
	},
}

// withQKNorm adds transformers' q_norm and k_norm names to a block.
func withQKNorm(n LayerNames) LayerNames {
	n.QNorm, n.KNorm = "self_attn.q_norm", "self_attn.k_norm"
	return n
}
