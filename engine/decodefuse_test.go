package engine_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// fusedCPU is replayCPU with FusedMatVecs made of the unfused ops (so a
// recording queues them), writing NaN into the buffers the fused ops
// promise not to write (h of the norm, s of the activation): a pass that
// read them afterwards would decode other tokens. decline makes every
// call refuse its operands, as a backend may.
type fusedCPU struct {
	*replayCPU
	decline              bool
	adds, norms, swiglus int
}

var _ engine.FusedMatVecs = (*fusedCPU)(nil)

func (f *fusedCPU) spoil(t engine.Tensor) error { return f.Fill(t, float32(math.NaN())) }

func (f *fusedCPU) MatVecAdd(y, x, w, r engine.Tensor) (bool, error) {
	if f.decline {
		return false, nil
	}
	f.adds++
	if err := f.Copy(y, r); err != nil {
		return true, err
	}
	return true, f.MatMul(y, x, w, false, true, 1, 1)
}

func (f *fusedCPU) MatVecsNorm(ys []engine.Tensor, h, x, normW engine.Tensor, eps float32, ws []engine.Tensor) (bool, error) {
	if f.decline {
		return false, nil
	}
	f.norms++
	tmp, err := f.Alloc(h.DType(), 1, engine.Cols(h))
	if err != nil {
		return true, err
	}
	rstd, err := f.Alloc(engine.F32, 1, 1)
	if err != nil {
		return true, err
	}
	if err := f.RMSNorm(tmp, rstd, x, normW, eps); err != nil {
		return true, err
	}
	for i := range ws {
		if err := f.MatMul(ys[i], tmp, ws[i], false, true, 1, 0); err != nil {
			return true, err
		}
	}
	return true, f.spoil(h)
}

func (f *fusedCPU) MatVecSwiGLUAdd(y, s, g, u, w, r engine.Tensor) (bool, error) {
	if f.decline {
		return false, nil
	}
	f.swiglus++
	tmp, err := f.Alloc(s.DType(), 1, engine.Cols(s))
	if err != nil {
		return true, err
	}
	if err := f.SwiGLU(tmp, g, u); err != nil {
		return true, err
	}
	if err := f.Copy(y, r); err != nil {
		return true, err
	}
	if err := f.MatMul(y, tmp, w, false, true, 1, 1); err != nil {
		return true, err
	}
	return true, f.spoil(s)
}

// TestDecodeFusedMatchesUnfused: with Generator.Fuse, the one-token passes
// take the fused ops where the layer allows them (plain weights; the MLP
// and the residual ones not with sandwich norms or a GELU activation) and
// decode the unfused tokens exactly, in every decoding mode, greedy and
// sampled; a backend that declines the operands gives them too; linears
// with an adapter turned on, or a bias, stay unfused.
func TestDecodeFusedMatchesUnfused(t *testing.T) {
	for _, name := range []string{"llama", "llama-bias", "llama-lora", "qwen3", "gemma2", "phi3"} {
		t.Run(name, func(t *testing.T) {
			var m *engine.Model
			switch name {
			case "llama", "llama-lora":
				m = newTiny(t, false, false)
			case "llama-bias":
				m = newTiny(t, true, false)
			default:
				m = newTinyFamily(t, name)
			}
			if name == "llama-lora" {
				if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 3}); err != nil {
					t.Fatal(err)
				}
			}
			fb := &fusedCPU{replayCPU: &replayCPU{Backend: m.B.(*cpu.Backend)}}
			m.B = fb
			prompt := []int32{3, 1, 4, 1}
			for _, o := range []engine.SampleOptions{engine.Greedy(12, nil), {MaxNewTokens: 12, Temperature: 0.9, TopK: 8, Seed: 7}} {
				want, _ := decodeWith(t, m, engine.DecodePlain, prompt, o)
				for _, decline := range []bool{false, true} {
					for _, mode := range []engine.DecodeMode{engine.DecodePlain, engine.DecodeDevice, engine.DecodeGraph} {
						fb.decline = decline
						fb.adds, fb.norms, fb.swiglus = 0, 0, 0
						g, err := m.NewGenerator(len(prompt) + o.MaxNewTokens + 2)
						if err != nil {
							t.Fatal(err)
						}
						g.Mode, g.Fuse = mode, true
						got, err := g.Generate(context.Background(), prompt, o, nil)
						g.Free()
						if err != nil {
							t.Fatalf("%s decline=%v: %v", mode, decline, err)
						}
						if !slices.Equal(got, want) {
							t.Errorf("%+v %s decline=%v: fused %v, unfused %v", o, mode, decline, got, want)
						}
						var wantAdds, wantNorms, wantSwiGLU bool
						switch name {
						case "llama", "qwen3":
							wantAdds, wantNorms, wantSwiGLU = true, true, true
						case "llama-bias": // q/k/v have a bias: the norm stays out of them, not out of gate/up
							wantAdds, wantNorms, wantSwiGLU = true, true, true
						case "gemma2": // sandwich norms, GELU: only the q/k/v norm
							wantNorms = true
						case "phi3": // fused qkv and gate_up: only o's residual
							wantAdds = true
						}
						if decline || name == "llama-lora" {
							wantAdds, wantNorms, wantSwiGLU = false, false, false
						}
						if (fb.adds > 0) != wantAdds || (fb.norms > 0) != wantNorms || (fb.swiglus > 0) != wantSwiGLU {
							t.Errorf("%s decline=%v: %d residual, %d norm, %d SwiGLU fused calls; want some of each: %v %v %v",
								mode, decline, fb.adds, fb.norms, fb.swiglus, wantAdds, wantNorms, wantSwiGLU)
						}
					}
				}
			}
		})
	}
}
