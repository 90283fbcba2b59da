package cuda_test

import (
	"errors"
	"os"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
	"whet/engine/testmodels"
)

// visionBackend is a backend and the kind name the plans know it by.
type visionBackend struct {
	kind string
	b    engine.Backend
}

// TestVisionComputeDTypeIsTheEngines: engine.VisionComputeDType, which
// whet fit and the studio's fit page plan with, says the dtype the vision
// engines really allocate their weights in: on the CPU backend, on a CPU
// backend that computes in bf16 as this backend does (bf16CPU), and on
// the GPU when there is one, by default (bf16) and with WHET_MLLAMA_BF16=0. Gemma
// 3's tower and language model follow the backend (bf16 there); the Mllama
// model, loaded as whet train loads it (engine.MllamaComputeDType), is
// float32 unless the switch is on over a bf16 backend.
func TestVisionComputeDTypeIsTheEngines(t *testing.T) {
	backends := []visionBackend{{"cpu", cpu.New()}, {"cuda", bf16CPU{cpu.New()}}}
	if gpu, err := cuda.New(cuda.Options{}); err == nil {
		t.Cleanup(func() { gpu.Close() })
		backends = append(backends, visionBackend{"cuda", gpu})
	} else if !errors.Is(err, cuda.ErrNoGPU) {
		t.Fatal(err)
	}
	mcfg, err := engine.ParseMllamaConfig("config.json", []byte(testmodels.TinyMllamaConfig))
	if err != nil {
		t.Fatal(err)
	}
	gtext, err := engine.ParseModelConfig("config.json", []byte(gpuTinyGemma3Vision))
	if err != nil {
		t.Fatal(err)
	}
	gvis, err := engine.ParseGemma3VisionConfig([]byte(gpuTinyGemma3Vision), gtext.HiddenSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, bf16 := range []string{"", "0"} {
		t.Setenv(engine.MllamaBF16Env, bf16)
		checkVisionComputeDTypes(t, backends, mcfg, gtext, gvis)
	}
}

func checkVisionComputeDTypes(t *testing.T, backends []visionBackend, mcfg *engine.MllamaConfig, gtext *engine.ModelConfig, gvis *engine.Gemma3VisionConfig) {
	for _, be := range backends {
		for _, qlora := range []bool{false, true} {
			// As newMllamaTrainer loads it.
			mm, err := engine.NewMllamaModelWith(*mcfg, be.b, engine.MllamaOptions{NF4Linears: qlora, Compute: engine.MllamaComputeDType(be.b)})
			if err != nil {
				t.Fatal(err)
			}
			want := engine.VisionComputeDType(engine.VisionMllama, be.kind)
			for _, p := range mm.Params() {
				if p.Quant == nil && p.W.DType() != want {
					t.Errorf("%s (planned as %s), %s=%q: Mllama (qlora %v) holds %s as %v, VisionComputeDType says %v", be.b.Name(), be.kind, engine.MllamaBF16Env, os.Getenv(engine.MllamaBF16Env), qlora, p.Name, p.W.DType(), want)
					break
				}
			}
			mm.Free()

			m, err := engine.NewModelWith(*gtext, be.b, engine.ModelOptions{NF4Linears: qlora})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.AttachGemma3Vision(gvis, nil); err != nil {
				t.Fatal(err)
			}
			want = engine.VisionComputeDType(engine.VisionGemma3, be.kind)
			if m.Compute != want {
				t.Errorf("%s (planned as %s): Gemma 3 vision (qlora %v) computes in %v, VisionComputeDType says %v", be.b.Name(), be.kind, qlora, m.Compute, want)
			}
			for _, p := range m.Params() {
				if p.Quant == nil && p.W.DType() != want {
					t.Errorf("%s (planned as %s): Gemma 3 vision (qlora %v) holds %s as %v, VisionComputeDType says %v", be.b.Name(), be.kind, qlora, p.Name, p.W.DType(), want)
					break
				}
			}
			m.Free()
		}
	}
}
