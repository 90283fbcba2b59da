package engine_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// nf4CPU is the CPU backend with the NF4 mat-vec interfaces, each product
// computed by expanding the weight (DequantizeNF4) and MatMul, counting
// the shared-input calls; on is what NF4MatVecsOn answers.
type nf4CPU struct {
	*cpu.Backend
	on              bool
	single, matVecs int
}

func (b *nf4CPU) NF4MatVecsOn() bool { return b.on }

func (b *nf4CPU) MatVecNF4(y, x, packed, absmax engine.Tensor, accumulate bool) error {
	b.single++
	w, err := b.Alloc(y.DType(), engine.Cols(y), engine.Cols(x))
	if err != nil {
		return err
	}
	defer b.Free(w)
	if err := b.DequantizeNF4(w, packed, absmax); err != nil {
		return err
	}
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	return b.MatMul(y, x, w, false, true, 1, beta)
}

func (b *nf4CPU) MatVecsNF4(ys []engine.Tensor, x engine.Tensor, packed, absmax []engine.Tensor, accumulate bool) (bool, error) {
	if !b.on {
		return false, nil
	}
	b.matVecs++
	for i := range ys {
		if err := b.MatVecNF4(ys[i], x, packed[i], absmax[i], accumulate); err != nil {
			return true, err
		}
	}
	b.single -= len(ys)
	return true, nil
}

// TestDecodeNF4SharedMatVecs: an NF4 model decodes q, k, v and gate, up
// through MatVecsNF4 while the backend has it on (two calls a layer a
// token, no single products left for them), one by one through MatVecNF4
// while it is off, and both give the tokens of expanding the weights
// (the plain path), greedy and sampled, in device and graph modes.
func TestDecodeNF4SharedMatVecs(t *testing.T) {
	m := newTiny(t, false, false)
	if err := m.QuantizeBase(); err != nil {
		t.Fatal(err)
	}
	nb := &nf4CPU{Backend: m.B.(*cpu.Backend)}
	m.B = nb
	prompt := []int32{3, 1, 4, 1}
	for _, o := range []engine.SampleOptions{engine.Greedy(10, nil), {MaxNewTokens: 10, Temperature: 0.9, TopK: 8, Seed: 7}} {
		nb.on, nb.single, nb.matVecs = true, 0, 0
		want, _ := decodeWith(t, m, engine.DecodePlain, prompt, o)
		if nb.single != 0 || nb.matVecs != 0 {
			t.Fatalf("the plain path took the mat-vecs: %d single, %d shared", nb.single, nb.matVecs)
		}
		var single, shared [2]int
		for i, on := range []bool{false, true} {
			nb.on, nb.single, nb.matVecs = on, 0, 0
			got, _ := decodeWith(t, m, engine.DecodeDevice, prompt, o)
			if !slices.Equal(got, want) {
				t.Errorf("%+v shared=%v: %v, plain %v", o, on, got, want)
			}
			single[i], shared[i] = nb.single, nb.matVecs
		}
		// Off: 7 single products a layer a step. On: q/k/v and gate/up
		// shared, o and down single.
		steps := single[0] / 7
		if steps == 0 || single[0] != 7*steps || shared[0] != 0 || single[1] != 2*steps || shared[1] != 2*steps {
			t.Errorf("%+v: off %d single, %d shared; on %d single, %d shared: want 7s, 0, 2s, 2s (s layer-steps)", o, single[0], shared[0], single[1], shared[1])
		}
	}
}

// fusedNF4CPU is nf4CPU with FusedNF4MatVecs made of its unfused ops,
// writing NaN into g and u, which the fused activation promises not to
// write (a pass reading them afterwards would decode other tokens).
// decline makes every call refuse its operands.
type fusedNF4CPU struct {
	*nf4CPU
	decline, declineNorm   bool
	adds, addNorms, swiglu int
}

// MatVecNF4AddNorm is MatVecNF4Add then RMSNorm into h; declineNorm
// refuses it alone.
func (f *fusedNF4CPU) MatVecNF4AddNorm(y, x, packed, absmax, r, h, normW engine.Tensor, eps float32) (bool, error) {
	if f.decline || f.declineNorm {
		return false, nil
	}
	if ok, err := f.MatVecNF4Add(y, x, packed, absmax, r); !ok || err != nil {
		return ok, err
	}
	f.adds--
	f.addNorms++
	rstd, err := f.Alloc(engine.F32, 1, 1)
	if err != nil {
		return true, err
	}
	defer f.Free(rstd)
	return true, f.RMSNorm(h, rstd, y, normW, eps)
}

var _ engine.FusedNF4MatVecs = (*fusedNF4CPU)(nil)

func (f *fusedNF4CPU) MatVecNF4Add(y, x, packed, absmax, r engine.Tensor) (bool, error) {
	if f.decline {
		return false, nil
	}
	f.adds++
	if err := f.Copy(y, r); err != nil {
		return true, err
	}
	if err := f.MatVecNF4(y, x, packed, absmax, true); err != nil {
		return true, err
	}
	f.single--
	return true, nil
}

func (f *fusedNF4CPU) MatVecsNF4SwiGLU(s, g, u, x, pg, ag, pu, au engine.Tensor) (bool, error) {
	if f.decline {
		return false, nil
	}
	f.swiglu++
	tg, err := f.Alloc(g.DType(), 1, engine.Cols(g))
	if err != nil {
		return true, err
	}
	tu, err := f.Alloc(u.DType(), 1, engine.Cols(u))
	if err != nil {
		return true, err
	}
	defer f.Free(tg)
	defer f.Free(tu)
	for _, p := range [][3]engine.Tensor{{tg, pg, ag}, {tu, pu, au}} {
		if err := f.MatVecNF4(p[0], x, p[1], p[2], false); err != nil {
			return true, err
		}
		f.single--
	}
	if err := f.SwiGLU(s, tg, tu); err != nil {
		return true, err
	}
	for _, t := range []engine.Tensor{g, u} {
		if err := f.Fill(t, float32(math.NaN())); err != nil {
			return true, err
		}
	}
	return true, nil
}

// TestDecodeFusedNF4: with Generator.Fuse an NF4 model's one-token passes
// on the mat-vec path take the fused NF4 ops (o with its residual and the
// MLP's norm, down with its residual, gate/up with the activation: one
// each a layer a step; o with the residual alone when the norm is
// declined) and give
// the tokens of the unfused ops and of the plain path, greedy and sampled;
// a backend declining them gives them too; the plain path, an adapter
// turned on, or Fuse off take none.
func TestDecodeFusedNF4(t *testing.T) {
	for _, lora := range []bool{false, true} {
		m := newTiny(t, false, false)
		if lora {
			if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 3}); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.QuantizeBase(); err != nil {
			t.Fatal(err)
		}
		fb := &fusedNF4CPU{nf4CPU: &nf4CPU{Backend: m.B.(*cpu.Backend), on: true}}
		m.B = fb
		prompt := []int32{3, 1, 4, 1}
		for _, o := range []engine.SampleOptions{engine.Greedy(10, nil), {MaxNewTokens: 10, Temperature: 0.9, TopK: 8, Seed: 7}} {
			want, _ := decodeWith(t, m, engine.DecodePlain, prompt, o)
			for _, c := range []struct {
				mode                       engine.DecodeMode
				fuse, decline, declineNorm bool
			}{{engine.DecodePlain, true, false, false}, {engine.DecodeDevice, false, false, false}, {engine.DecodeDevice, true, false, false},
				{engine.DecodeDevice, true, false, true}, {engine.DecodeDevice, true, true, false}} {
				fb.decline, fb.declineNorm, fb.adds, fb.addNorms, fb.swiglu, fb.single, fb.matVecs = c.decline, c.declineNorm, 0, 0, 0, 0, 0
				g, err := m.NewGenerator(len(prompt) + o.MaxNewTokens + 2)
				if err != nil {
					t.Fatal(err)
				}
				g.Mode, g.Fuse = c.mode, c.fuse
				got, err := g.Generate(context.Background(), prompt, o, nil)
				g.Free()
				if err != nil {
					t.Fatalf("lora=%v %+v: %v", lora, c, err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("lora=%v %+v %+v: %v, plain %v", lora, o, c, got, want)
				}
				fused := c.mode != engine.DecodePlain && c.fuse && !c.decline && !lora
				if !fused {
					if fb.adds != 0 || fb.addNorms != 0 || fb.swiglu != 0 {
						t.Errorf("lora=%v %+v: %d residual, %d residual+norm and %d activation fused calls, want none", lora, c, fb.adds, fb.addNorms, fb.swiglu)
					}
					continue
				}
				// Per layer-step: q/k/v shared, o with the residual and the
				// MLP's norm (or the residual alone when that is declined),
				// down with the residual, gate/up with the activation.
				steps := fb.swiglu
				wantAdds, wantNorms := steps, steps
				if c.declineNorm {
					wantAdds, wantNorms = 2*steps, 0
				}
				if steps == 0 || fb.adds != wantAdds || fb.addNorms != wantNorms || fb.matVecs != steps || fb.single != 0 {
					t.Errorf("lora=%v %+v: %d residual, %d residual+norm, %d activation, %d shared, %d single calls: want %d, %d, s, s, 0 (s = %d)",
						lora, c, fb.adds, fb.addNorms, fb.swiglu, fb.matVecs, fb.single, wantAdds, wantNorms, steps)
				}
			}
		}
	}
}
