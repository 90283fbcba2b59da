package engine

import (
	"strings"
	"testing"
)

// namedBackend is a Backend that only answers Name: enough for the vision
// GPU switch, which looks at nothing else.
type namedBackend struct {
	Backend
	name string
}

func (b namedBackend) Name() string { return b.name }

// mllamaNamedBackend also claims the Mllama ops, so that checkVisionRun
// reaches the GPU switch for Llama 3.2 Vision.
type mllamaNamedBackend struct {
	namedBackend
	MllamaOps
}

// TestCUDAVisionOnByDefault: a GPU backend trains Gemma 3 vision and
// generates with Llama 3.2 Vision without WHET_CUDA_VISION (on by default
// since tools/gpu vtrain, vlayers, mllama-vtrain and mllama-gen passed on
// an H100); WHET_CUDA_VISION=0 refuses it, naming the variable; the CPU
// is never refused.
func TestCUDAVisionOnByDefault(t *testing.T) {
	gpu := namedBackend{name: "cuda"}
	mgpu := mllamaNamedBackend{namedBackend: gpu}
	run := RunConfig{Method: "lora"}
	for _, env := range []string{"", "1"} {
		t.Setenv(CUDAVisionEnv, env)
		if err := checkVisionRun(run, VisionGemma3, true, gpu); err != nil {
			t.Errorf("%s=%q: Gemma 3 vision training on cuda refused: %v", CUDAVisionEnv, env, err)
		}
		if err := checkVisionRun(run, VisionMllama, true, mgpu); err != nil {
			t.Errorf("%s=%q: Llama 3.2 Vision training on cuda refused: %v", CUDAVisionEnv, env, err)
		}
		if err := MllamaGenerationAllowed(gpu); err != nil {
			t.Errorf("%s=%q: Llama 3.2 Vision generation on cuda refused: %v", CUDAVisionEnv, env, err)
		}
	}
	t.Setenv(CUDAVisionEnv, "0")
	for what, err := range map[string]error{
		"Gemma 3 vision training":     checkVisionRun(run, VisionGemma3, true, gpu),
		"Llama 3.2 Vision training":   checkVisionRun(run, VisionMllama, true, mgpu),
		"Llama 3.2 Vision generation": MllamaGenerationAllowed(gpu),
	} {
		if err == nil || !strings.Contains(err.Error(), CUDAVisionEnv+"=0") {
			t.Errorf("%s=0: %s on cuda: %v, want a refusal naming %s=0", CUDAVisionEnv, what, err, CUDAVisionEnv)
		}
	}
	if err := MllamaGenerationAllowed(namedBackend{name: "cpu"}); err != nil {
		t.Errorf("%s=0 on the CPU: %v", CUDAVisionEnv, err)
	}
}
