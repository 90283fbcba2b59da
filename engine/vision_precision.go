package engine

import "whet/engine/envswitch"

// What the vision engines hold, for the memory plans that whet fit and
// the studio's fit page show: they must plan what the engine does, not
// what a GPU run of a text model would do.

// VisionComputeDType is the dtype in which the engine of a vision model of
// kind (VisionGemma3, VisionMllama) holds its weights and activations on
// a backend of the named kind ("cuda" or "cpu", as RunConfig.Backend and
// memplan's Backend name them; "" and "auto" are cuda):
//
//   - Gemma 3 trains through the text engine's Model, in the backend's
//     compute dtype: bf16 on CUDA, float32 on the CPU.
//   - Llama 3.2 Vision computes in bf16 on CUDA too (its QLoRA holds the
//     language model's linears in NF4), unless WHET_MLLAMA_BF16=0 keeps
//     it in float32, and in float32 on the CPU: MllamaComputeDType, which
//     newMllamaTrainer and the chat load the model with.
//
// The plans follow this answer, so it must stay MllamaComputeDType's for
// the backend of that kind (TestVisionComputeDTypeIsTheEngines).
func VisionComputeDType(kind, backend string) DType {
	if backend == "cpu" {
		return F32
	}
	if kind == VisionMllama && !envswitch.On(MllamaBF16Env) {
		return F32
	}
	return BF16
}
