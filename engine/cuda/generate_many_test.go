package cuda_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
)

// TestGenerateManyPagedMatchesCPU: batched generation over the paged KV
// cache on the GPU (engine/kv_paged.go: the lanes' keys and values in
// blocks of 16 tokens, attention through AttentionKV over a view or a
// gathered span) for four prompts of different lengths, one lane ending
// on a stop id. In float32 every lane gives the CPU's one-by-one tokens
// exactly. In bf16 the paged cache (blocks viewed in place, and gathered
// from a scattered pool) gives the contiguous group generator's tokens
// exactly (same rows into the same kernels); against one-by-one decoding
// on the GPU the first token (the same prefill) must agree and the rest
// is logged (a batched product may round differently from a one-row one).
func TestGenerateManyPagedMatchesCPU(t *testing.T) {
	f32 := newGPU(t, cuda.Options{ComputeF32: true})
	bf16 := newGPU(t, cuda.Options{})
	prompts := [][]int32{{5, 77, 310, 12, 499, 3, 250, 18}, {9, 40}, {300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319}, {7}}
	const newTokens = 24
	for _, name := range []string{"tiny-llama", "tiny-gemma2"} {
		dir := filepath.Join("..", "..", "testdata", name)
		oneByOne := func(b engine.Backend, opts []engine.SampleOptions) [][]int32 {
			m, err := engine.LoadModel(dir, b)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			g, err := m.NewGenerator(20 + newTokens)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Free()
			g.Mode = engine.DecodePlain
			var out [][]int32
			for i, p := range prompts {
				ids, err := g.Generate(context.Background(), p, opts[i], nil)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, ids)
			}
			return out
		}
		opts := make([]engine.SampleOptions, len(prompts))
		for i := range opts {
			opts[i] = engine.Greedy(newTokens-3*i, nil)
		}
		// Lane 1 stops at the token the CPU gives it fifth.
		cpuWant := oneByOne(cpu.New(), opts)
		opts[1].StopIDs = []int32{cpuWant[1][4]}
		cpuWant = oneByOne(cpu.New(), opts)
		for _, b := range []*cuda.Backend{f32, bf16} {
			what := fmt.Sprintf("%s %s", name, b.ComputeDType())
			m, err := engine.LoadModel(dir, b)
			if err != nil {
				t.Fatal(err)
			}
			run := func(paged, scattered bool) [][]int32 {
				var g *engine.GroupGenerator
				if paged {
					g, err = m.NewPagedGroupGenerator(len(prompts), 20+newTokens, 0, 32)
				} else {
					g, err = m.NewGroupGenerator(len(prompts), 20+newTokens)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer g.Free()
				if scattered {
					g.ScatterKVBlocks()
				}
				out, err := g.GenerateMany(context.Background(), prompts, opts, nil)
				if err != nil {
					t.Fatalf("%s paged=%v scattered=%v: %v", what, paged, scattered, err)
				}
				return out
			}
			paged, scattered, contiguous := run(true, false), run(true, true), run(false, false)
			m.Free()
			for i := range prompts {
				if !slices.Equal(paged[i], contiguous[i]) || !slices.Equal(scattered[i], contiguous[i]) {
					t.Errorf("%s lane %d: paged %v, scattered %v, contiguous %v", what, i, paged[i], scattered[i], contiguous[i])
				}
			}
			if b == f32 {
				for i := range prompts {
					if !slices.Equal(paged[i], cpuWant[i]) {
						t.Errorf("%s lane %d: GPU batched %v, CPU one by one %v", what, i, paged[i], cpuWant[i])
					}
				}
				continue
			}
			alone := oneByOne(b, opts)
			for i := range prompts {
				n := commonPrefix(paged[i], alone[i])
				t.Logf("%s lane %d: batched and one by one agree on %d of %d tokens", what, i, n, len(alone[i]))
				if n == 0 {
					t.Errorf("%s lane %d: the first token differs (same prefill): %v vs %v", what, i, paged[i], alone[i])
				}
			}
		}
	}
}
