package cuda_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"whet/engine"
	"whet/engine/cuda"
)

// TestDecodeSwitchesKeepTokens: at real widths (hidden 1024, heads of 64
// and of 128, intermediate 2048, two layers, random weights; the tiny test
// models' widths take none of the round-parallel kernels and heads of 16
// or 24 no v2 attention), the decoding switches that promise the same bits
// give exactly the tokens decoding without them gives on the same backend:
// the fused ops (WHET_DECODE_FUSE), the argmax in the head
// (WHET_DECODE_ARGMAX), the round-parallel GEMVs (WHET_DECODE_GEMV=rr), each
// and all, in bf16, in graph mode and run directly, with the base linears
// in bf16 and in NF4; the decode attention is whatever the environment
// picks for both (v2 unless WHET_DECODE_ATTN=v1). Greedy,
// 40 tokens.
func TestDecodeSwitchesKeepTokens(t *testing.T) {
	b := newGPU(t, cuda.Options{})
	cfg, err := engine.LoadModelConfig(filepath.Join("..", "..", "testdata", "tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	prompt := []int32{5, 77, 310, 12, 499, 3, 250, 18}
	for _, heads := range [][2]int{{16, 4}, {8, 2}} {
		for _, nf4 := range []bool{false, true} {
			c := *cfg
			c.HiddenSize, c.NumHeads, c.NumKVHeads, c.HeadDim = 1024, heads[0], heads[1], 1024/heads[0]
			c.IntermediateSize, c.NumLayers = 2048, 2
			m, err := engine.NewModelWith(c, b, engine.ModelOptions{NF4Linears: nf4})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.InitRandom(7, 0.05); err != nil {
				t.Fatal(err)
			}
			for _, mode := range []engine.DecodeMode{engine.DecodeDevice, engine.DecodeGraph} {
				var base []int32
				for _, sw := range []struct {
					name             string
					fuse, argmax, rr bool
				}{{"none", false, false, false}, {"fuse", true, false, false}, {"argmax", false, true, false}, {"rr", false, false, true}, {"all", true, true, true}} {
					what := fmt.Sprintf("D%d nf4=%v %s %s", c.HeadDim, nf4, mode, sw.name)
					rr := "0"
					if sw.rr {
						rr = "rr"
					}
					t.Setenv(cuda.DecodeGEMVEnv, rr)
					g, err := m.NewGenerator(len(prompt) + 48)
					if err != nil {
						t.Fatal(err)
					}
					g.Mode, g.Fuse, g.HeadArgmax = mode, sw.fuse, sw.argmax
					out, err := g.Generate(t.Context(), prompt, engine.Greedy(40, nil), nil)
					if err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					if g.Used != mode || g.Fallback != "" {
						t.Errorf("%s: used %s (%s)", what, g.Used, g.Fallback)
					}
					g.Free()
					if base == nil {
						base = out
						t.Logf("%s: %v", what, out)
						continue
					}
					if n := commonPrefix(out, base); n != 40 {
						t.Errorf("%s: %d of 40 tokens equal those without the switches\n got  %v\n want %v", what, n, out, base)
					}
				}
			}
			m.Free()
		}
	}
}
