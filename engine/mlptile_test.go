package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
)

// TestTiledMLPMatchesUntiled: with the MLP run over tiles of 5 rows (the
// 12-token batch in tiles of 5, 5 and 2, so a short last tile too) the
// loss and every trainable gradient equal the untiled pass's within 1e-6
// relative (the CPU sums the weight gradients tile by tile, so in another
// order), for Llama (separate gate/up, SwiGLU), Gemma 2 (GeGLU, sandwich
// norms) and Phi-3 (fused gate_up), LoRA and full, with and without
// activation checkpointing.
func TestTiledMLPMatchesUntiled(t *testing.T) {
	models := map[string]func(t *testing.T) *engine.Model{
		"llama":  func(t *testing.T) *engine.Model { return newTiny(t, true, false) },
		"gemma2": func(t *testing.T) *engine.Model { return newTinyFamily(t, "gemma2") },
		"phi3":   func(t *testing.T) *engine.Model { return newTinyFamily(t, "phi3") },
	}
	for _, name := range []string{"llama", "gemma2", "phi3"} {
		for _, method := range []string{"lora", "full"} {
			for _, ckpt := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/checkpointing=%v", name, method, ckpt), func(t *testing.T) {
					m := models[name](t)
					if method == "lora" {
						if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 4}); err != nil {
							t.Fatal(err)
						}
						randomLoRAB(t, m, rand.New(rand.NewPCG(6, 6)))
					} else if err := m.MakeAllTrainable(); err != nil {
						t.Fatal(err)
					}
					b := tinyBatch(m.Cfg.VocabSize, 1)
					run := func(chunk int) (float64, [][]float32) {
						a, err := m.NewActivationsTiled(len(b.Tokens), ckpt, engine.Tiling{MLPRows: chunk})
						if err != nil {
							t.Fatal(err)
						}
						defer a.Free()
						if err := m.ZeroGrads(); err != nil {
							t.Fatal(err)
						}
						r, err := a.ForwardBackward(b, float32(1/float64(b.NumTargets())), true, 7)
						if err != nil {
							t.Fatal(err)
						}
						return r.LossSum, trainableGrads(m)
					}
					loss0, g0 := run(0)
					loss1, g1 := run(5)
					if d := math.Abs(loss1 - loss0); d > 1e-6*math.Abs(loss0) {
						t.Errorf("loss sum tiled %v, untiled %v", loss1, loss0)
					}
					params := m.TrainableParams()
					for i := range g0 {
						scale := 0.0
						for _, v := range g0[i] {
							scale = max(scale, math.Abs(float64(v)))
						}
						for j := range g0[i] {
							if d := math.Abs(float64(g1[i][j] - g0[i][j])); d > 1e-6*scale {
								t.Errorf("%s grad[%d]: tiled %v, untiled %v (max |grad| %v)", params[i].Name, j, g1[i][j], g0[i][j], scale)
								break
							}
						}
					}
				})
			}
		}
	}
}

// TestMLPRowChunkRule: untiled while a [rows, I] buffer stays within 2^26
// values, 2^26/I rows past that, a request clipped to the batch.
func TestMLPRowChunkRule(t *testing.T) {
	for _, c := range []struct{ T, I, req, want int }{
		{4096, 14336, 0, 4096},   // 58.7M values: untiled
		{8192, 14336, 0, 4681},   // Llama 3 8B past 2^26
		{350000, 14336, 0, 4681}, // long context: the same tile
		{1000, 704, 0, 1000},
		{1000, 704, 128, 128},
		{100, 704, 4096, 100},
	} {
		if got := engine.MLPRowChunk(c.T, c.I, c.req); got != c.want {
			t.Errorf("MLPRowChunk(%d, %d, %d) = %d, want %d", c.T, c.I, c.req, got, c.want)
		}
	}
	m := newTiny(t, false, true)
	if _, err := m.NewActivationsTiled(12, false, engine.Tiling{MLPRows: -1}); err == nil {
		t.Error("a negative MLP chunk was accepted")
	}
}
