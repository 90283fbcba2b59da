package cuda_test

import (
	"errors"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
	"whet/engine/testmodels"
)

// TestVisionComputeDTypeIsTheEngines: engine.VisionComputeDType, which
// whet fit and the studio's fit page plan with, says the dtype the vision
// engines really allocate their weights in: on the CPU backend, on a CPU
// backend that computes in bf16 as this backend does (bf16CPU), and on
// the GPU when there is one. Gemma 3's tower and language model follow
// the backend (bf16 here); the Mllama model is float32 everywhere.
func TestVisionComputeDTypeIsTheEngines(t *testing.T) {
	type backend struct {
		kind string
		b    engine.Backend
	}
	backends := []backend{{"cpu", cpu.New()}, {"cuda", bf16CPU{cpu.New()}}}
	if gpu, err := cuda.New(cuda.Options{}); err == nil {
		t.Cleanup(func() { gpu.Close() })
		backends = append(backends, backend{"cuda", gpu})
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
	for _, be := range backends {
		for _, qlora := range []bool{false, true} {
			mm, err := engine.NewMllamaModelWith(*mcfg, be.b, engine.MllamaOptions{NF4Linears: qlora})
			if err != nil {
				t.Fatal(err)
			}
			want := engine.VisionComputeDType(engine.VisionMllama, be.kind)
			for _, p := range mm.Params() {
				if p.Quant == nil && p.W.DType() != want {
					t.Errorf("%s: Mllama (qlora %v) holds %s as %v, VisionComputeDType says %v", be.b.Name(), qlora, p.Name, p.W.DType(), want)
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
				t.Errorf("%s: Gemma 3 vision (qlora %v) computes in %v, VisionComputeDType says %v", be.b.Name(), qlora, m.Compute, want)
			}
			for _, p := range m.Params() {
				if p.Quant == nil && p.W.DType() != want {
					t.Errorf("%s: Gemma 3 vision (qlora %v) holds %s as %v, VisionComputeDType says %v", be.b.Name(), qlora, p.Name, p.W.DType(), want)
					break
				}
			}
			m.Free()
		}
	}
}
