package engine

// ModelConfig is what the engine needs of a Hugging Face config.json for the
// Llama family of decoders (llama, qwen2, mistral). LoadModelConfig fills
// it and checks it.
type ModelConfig struct {
	ModelType         string  `json:"model_type"`
	VocabSize         int     `json:"vocab_size"`
	HiddenSize        int     `json:"hidden_size"`
	IntermediateSize  int     `json:"intermediate_size"`
	NumLayers         int     `json:"num_hidden_layers"`
	NumHeads          int     `json:"num_attention_heads"`
	NumKVHeads        int     `json:"num_key_value_heads"`
	HeadDim           int     `json:"head_dim"`
	RMSNormEps        float64 `json:"rms_norm_eps"`
	RopeTheta         float64 `json:"rope_theta"`
	MaxPositions      int     `json:"max_position_embeddings"`
	TieWordEmbeddings bool    `json:"tie_word_embeddings"`
	// AttentionBias is true for Qwen2 (bias on q, k and v projections).
	AttentionBias bool `json:"attention_bias"`
	// SlidingWindow is the attention window in tokens; 0 means none.
	SlidingWindow int `json:"sliding_window"`
	// RopeScaling is set for Llama 3.1/3.2 ("llama3" type); nil otherwise.
	RopeScaling *RopeScaling `json:"rope_scaling,omitempty"`

	BOSTokenID  int    `json:"bos_token_id"`
	EOSTokenIDs []int  `json:"eos_token_ids"`
	TorchDType  string `json:"torch_dtype"`
}

// RopeScaling holds Llama 3's frequency-dependent rope scaling.
type RopeScaling struct {
	Type                          string  `json:"rope_type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
}

// KVDim is the width of the k and v projections.
func (c *ModelConfig) KVDim() int { return c.NumKVHeads * c.HeadDim }

// QDim is the width of the q projection.
func (c *ModelConfig) QDim() int { return c.NumHeads * c.HeadDim }
