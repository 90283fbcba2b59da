package cuda_test

import (
	"context"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
)

// greedy64 loads a tiny reference model on b and decodes 64 tokens on the
// default decoding path (the CPU has only the plain one).
func greedy64(t *testing.T, name string, b engine.Backend) []int32 {
	return greedy64Mode(t, name, b, "")
}

// greedy64Mode is greedy64 on the decoding path mode ("" for the default).
func greedy64Mode(t *testing.T, name string, b engine.Backend, mode engine.DecodeMode) []int32 {
	t.Helper()
	m, err := engine.LoadModel("../../testdata/"+name, b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	prompt := []int32{5, 77, 310, 12, 499, 3, 250, 18}
	g, err := m.NewGenerator(len(prompt) + 64)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	if mode != "" {
		g.Mode = mode
	}
	out, err := g.Generate(context.Background(), prompt, engine.Greedy(64, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func commonPrefix(a, b []int32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestGenerateMatchesCPU: greedy generation with the KV cache on the GPU in
// float32 gives the CPU backend's 64 tokens exactly, for both tiny
// reference models, on the plain path and on the default (graph) one. In
// bf16 the random models' near-tied logits may flip late; on the plain
// path, whose rounding points are the CPU's (bf16 after every op), the
// test requires the first 32 tokens equal and logs the rest. The graph
// path keeps q in float32 through its rotation and attention (one fused
// kernel), so its bf16 tokens part from the CPU's where the rounding
// differs: tiny-qwen2 after 6 tokens on an H200 (2026-12-07), while in
// float32 it gives the CPU's 64. Its bf16 logits are held to the CPU's
// model of the GPU's rounding by TestFamilyGenerateMatchesCPU instead;
// here they are logged.
func TestGenerateMatchesCPU(t *testing.T) {
	f32, err := cuda.New(cuda.Options{ComputeF32: true})
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	defer f32.Close()
	bf16, err := cuda.New(cuda.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bf16.Close()
	for _, name := range []string{"tiny-llama", "tiny-qwen2"} {
		want := greedy64(t, name, cpu.New())
		for _, mode := range []engine.DecodeMode{engine.DecodePlain, ""} {
			if got := greedy64Mode(t, name, f32, mode); commonPrefix(got, want) != 64 {
				t.Errorf("%s float32 (mode %q): GPU and CPU greedy tokens differ at %d\n cpu %v\n gpu %v", name, mode, commonPrefix(got, want), want, got)
			}
		}
		t.Logf("%s bf16 default path: first %d of 64 tokens equal the CPU's", name, commonPrefix(greedy64(t, name, bf16), want))
		got := greedy64Mode(t, name, bf16, engine.DecodePlain)
		n := commonPrefix(got, want)
		t.Logf("%s bf16 plain path: first %d of 64 tokens equal the CPU's", name, n)
		if n < 32 {
			t.Errorf("%s bf16: only %d tokens equal\n cpu %v\n gpu %v", name, n, want, got)
		}
	}
}
