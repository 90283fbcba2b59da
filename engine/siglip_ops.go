package engine

// Backend ops of Gemma 3's vision side (the SigLIP tower, and the
// bidirectional attention among one image's tokens in the language model).
// Optional: a backend without them cannot run Gemma3ForConditionalGeneration
// with images, and says so by name.

// LayerNormer is LayerNorm with a bias (torch.nn.LayerNorm): per row,
// out = (x - mean) * rstd * weight + bias with rstd = 1/sqrt(var + eps),
// var the biased variance; mean and rstd (F32, one per row) are saved for
// the backward. The backward adds the input gradient into dx and the
// weight and bias gradients into dWeight and dBias, each of them nil when
// not wanted (frozen).
type LayerNormer interface {
	LayerNorm(out, mean, rstd, x, weight, bias Tensor, eps float32) error
	LayerNormBackward(dx, dWeight, dBias, dOut, x, weight, mean, rstd Tensor) error
}

// GELUTanhAct is the plain (ungated) gelu_pytorch_tanh of SigLIP's MLP:
// out = 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))). The backward
// overwrites dx = dOut * gelu'(x).
type GELUTanhAct interface {
	GELUTanh(out, x Tensor) error
	GELUTanhBackward(dx, dOut, x Tensor) error
}

// GroupAttention is Attention with bidirectional groups: groups (I32,
// one per token) marks the tokens of one image with the image's number
// and every other token with -1. Token i sees token j of its sequence
// when j <= i or groups[i] = groups[j] >= 0, and, when p.Window is set,
// j > i - p.Window: transformers 5's Gemma 3 mask (masking_utils'
// AND(sliding_window_overlay, OR(causal, blockwise_overlay)) on sliding
// layers, OR(causal, blockwise_overlay) on full ones). transformers 4 let
// the group reach past the window (its token_type_ids_mask_function was
// or-ed after the window); the two differ only when a window is shorter
// than an image's tokens, never in the released models (window 1024, 256
// tokens per image). A sequence whose tokens all share one group attends
// both ways throughout, which is the SigLIP encoder's unmasked attention.
// lse and the backward's outputs are as in Attention.
type GroupAttention interface {
	AttentionGroups(out, lse, q, k, v, groups Tensor, seqs SeqLayout, p AttnParams) error
	AttentionGroupsBackward(dq, dk, dv, dOut, q, k, v, out, lse, groups Tensor, seqs SeqLayout, p AttnParams) error
}
