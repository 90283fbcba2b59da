package engine

// MllamaOps are the operations Llama 3.2 Vision (Mllama) adds to the
// Llama set: the vision tower's LayerNorm (with bias, siglip_ops.go's
// LayerNormer) and exact GELU, and
// attention without the causal rule under an additive bias (the vision
// tower's tile mask, the text's cross-attention mask). Backends without
// them cannot run an Mllama model.
type MllamaOps interface {
	LayerNormer

	// GELU: out = x/2 * (1 + erf(x/sqrt 2)) (torch's exact "gelu").
	GELU(out, x Tensor) error
	// GELUBackward overwrites dx = dOut * gelu'(x).
	GELUBackward(dx, dOut, x Tensor) error

	// BiasAttention: every query of q [T, NHeads*HeadDim] sees every key
	// of k, v [S, NKVHeads*HeadDim] (GQA), the scaled score plus
	// bias[t, s] (F32 [T, S], shared by the heads; nil for none; -Inf
	// masks). lse (F32 [NHeads, T]) is saved for the backward. A row whose
	// every score is -Inf gets out 0. p.Window and p.SoftCap must be 0.
	BiasAttention(out, lse, q, k, v, bias Tensor, p AttnParams) error
	// BiasAttentionBackward overwrites dq, dk and dv.
	BiasAttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, bias Tensor, p AttnParams) error
}
