package engine_test

import (
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
