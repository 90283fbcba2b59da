package engine

import "math"

// ModelConfig is what the engine needs of a Hugging Face config.json of any
// supported family (see families); the family's structure (norm placement,
// activation, tensor names) comes from its Family, the numbers from here.
// LoadModelConfig fills it and checks it.
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
	// RopeScaling is set for Llama 3.1/3.2 ("llama3"), Gemma 3's global
	// layers ("linear") and Phi-3/4 ("longrope"); nil otherwise.
	RopeScaling *RopeScaling `json:"rope_scaling,omitempty"`
	// LayerTypes gives each layer's attention, "sliding_attention" (with
	// SlidingWindow) or "full_attention"; nil means every layer uses
	// SlidingWindow (0: none).
	LayerTypes []string `json:"layer_types,omitempty"`
	// RopeLocalTheta is the rotary base of sliding layers (Gemma 3's
	// rope_local_base_freq); 0 means RopeTheta everywhere.
	RopeLocalTheta float64 `json:"rope_local_base_freq,omitempty"`
	// QueryPreAttnScalar sets the attention scale to its inverse square
	// root (Gemma); 0 means 1/sqrt(head_dim).
	QueryPreAttnScalar float64 `json:"query_pre_attn_scalar,omitempty"`
	// AttnSoftCap and FinalSoftCap cap the attention scores and the final
	// logits at cap*tanh(x/cap) (Gemma 2); 0 means none.
	AttnSoftCap  float64 `json:"attn_logit_softcapping,omitempty"`
	FinalSoftCap float64 `json:"final_logit_softcapping,omitempty"`
	// PartialRotaryFactor is the share of each head's dimensions that
	// RoPE turns (Phi-4-mini: 0.75); 0 means all of them.
	PartialRotaryFactor float64 `json:"partial_rotary_factor,omitempty"`

	BOSTokenID  int    `json:"bos_token_id"`
	EOSTokenIDs []int  `json:"eos_token_ids"`
	TorchDType  string `json:"torch_dtype"`
}

// RopeScaling holds a rope scaling: Llama 3's frequency-dependent one
// (Factor, Low/HighFreqFactor, OriginalMaxPositionEmbeddings), linear
// (Factor divides every frequency) or LongRoPE (one divisor per frequency,
// ShortFactor up to OriginalMaxPositionEmbeddings positions and LongFactor
// beyond, and cos/sin scaled by AttentionFactor).
type RopeScaling struct {
	Type                          string    `json:"rope_type"`
	Factor                        float64   `json:"factor"`
	LowFreqFactor                 float64   `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64   `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int       `json:"original_max_position_embeddings,omitempty"`
	ShortFactor                   []float64 `json:"short_factor,omitempty"`
	LongFactor                    []float64 `json:"long_factor,omitempty"`
	AttentionFactor               float64   `json:"attention_factor,omitempty"`
}

// KVDim is the width of the k and v projections.
func (c *ModelConfig) KVDim() int { return c.NumKVHeads * c.HeadDim }

// QDim is the width of the q projection.
func (c *ModelConfig) QDim() int { return c.NumHeads * c.HeadDim }

// Layer attention kinds, as config.json's layer_types spells them.
const (
	SlidingAttention = "sliding_attention"
	FullAttention    = "full_attention"
)

// LayerWindow is layer l's attention window in tokens (0: none).
func (c *ModelConfig) LayerWindow(l int) int {
	if c.LayerTypes != nil && c.LayerTypes[l] != SlidingAttention {
		return 0
	}
	return c.SlidingWindow
}

// LayerLocalRope reports whether layer l turns by RopeLocalTheta.
func (c *ModelConfig) LayerLocalRope(l int) bool {
	return c.RopeLocalTheta > 0 && c.LayerTypes != nil && c.LayerTypes[l] == SlidingAttention
}

// AttnScale multiplies q.k in attention.
func (c *ModelConfig) AttnScale() float64 {
	if c.QueryPreAttnScalar > 0 {
		return 1 / math.Sqrt(c.QueryPreAttnScalar)
	}
	return 1 / math.Sqrt(float64(c.HeadDim))
}

// RotaryDim is how many of a head's dimensions RoPE turns (the first ones,
// as transformers' partial rotary does).
func (c *ModelConfig) RotaryDim() int {
	if c.PartialRotaryFactor > 0 {
		return int(float64(c.HeadDim) * c.PartialRotaryFactor)
	}
	return c.HeadDim
}
