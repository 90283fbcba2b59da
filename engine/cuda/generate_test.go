package cuda_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
)

// TestGenerateMatchesCPU: greedy generation with the KV cache on the GPU
// gives the same 64 tokens as the CPU backend for both tiny reference
// models (bf16 on the GPU, float32 on the CPU).
func TestGenerateMatchesCPU(t *testing.T) {
	gpu, err := cuda.New(cuda.Options{})
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	defer gpu.Close()
	for _, name := range []string{"tiny-llama", "tiny-qwen2"} {
		dir := filepath.Join("..", "..", "testdata", name)
		prompt := []int32{5, 77, 310, 12, 499, 3, 250, 18}
		var outs [][]int32
		for _, b := range []engine.Backend{cpu.New(), gpu} {
			m, err := engine.LoadModel(dir, b)
			if err != nil {
				t.Fatal(err)
			}
			g, err := m.NewGenerator(len(prompt) + 64)
			if err != nil {
				t.Fatal(err)
			}
			out, err := g.Generate(context.Background(), prompt, engine.Greedy(64, nil), nil)
			if err != nil {
				t.Fatal(err)
			}
			g.Free()
			m.Free()
			outs = append(outs, out)
		}
		if fmt.Sprint(outs[0]) != fmt.Sprint(outs[1]) {
			t.Errorf("%s: greedy tokens differ\n cpu %v\n gpu %v", name, outs[0], outs[1])
		}
	}
}
