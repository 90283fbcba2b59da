package engine_test

import (
	"context"
	"slices"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// argmaxCPU is replayCPU with HeadArgmax made of the head's product and
// Argmax (so a recording queues them). decline makes every call refuse its
// operands, as a backend may; calls counts the fused calls taken.
type argmaxCPU struct {
	*replayCPU
	decline bool
	calls   int
}

var _ engine.HeadArgmax = (*argmaxCPU)(nil)

func (a *argmaxCPU) MatVecArgmax(ids, logits, h, w engine.Tensor) (bool, error) {
	if a.decline {
		return false, nil
	}
	a.calls++
	if err := a.MatMul(logits, h, w, false, true, 1, 0); err != nil {
		return true, err
	}
	return true, a.Argmax(ids, logits)
}

// TestDecodeHeadArgmax: with Generator.HeadArgmax the device and graph
// steps choose their token in the head's op (HeadArgmax) and decode the
// plain path's tokens exactly, greedy and sampled (sampling reads the
// logits the op must still write); a backend that declines gives them too,
// through the head and Argmax; the plain path never calls it.
func TestDecodeHeadArgmax(t *testing.T) {
	for _, name := range []string{"llama", "gemma2", "phi3"} {
		t.Run(name, func(t *testing.T) {
			m := newTinyNamed(t, name, false)
			ab := &argmaxCPU{replayCPU: &replayCPU{Backend: m.B.(*cpu.Backend)}}
			m.B = ab
			prompt := []int32{3, 1, 4, 1}
			for _, o := range []engine.SampleOptions{engine.Greedy(12, nil), {MaxNewTokens: 12, Temperature: 0.9, TopK: 8, Seed: 7}} {
				want, _ := decodeWith(t, m, engine.DecodePlain, prompt, o)
				for _, decline := range []bool{false, true} {
					for _, mode := range []engine.DecodeMode{engine.DecodePlain, engine.DecodeDevice, engine.DecodeGraph} {
						ab.decline, ab.calls = decline, 0
						g, err := m.NewGenerator(len(prompt) + o.MaxNewTokens + 2)
						if err != nil {
							t.Fatal(err)
						}
						g.Mode, g.HeadArgmax = mode, true
						got, err := g.Generate(context.Background(), prompt, o, nil)
						g.Free()
						if err != nil {
							t.Fatalf("%s decline=%v: %v", mode, decline, err)
						}
						if !slices.Equal(got, want) {
							t.Errorf("%+v %s decline=%v: head argmax %v, plain %v", o, mode, decline, got, want)
						}
						if wantCalls := mode != engine.DecodePlain && !decline; (ab.calls > 0) != wantCalls {
							t.Errorf("%s decline=%v: %d head argmax calls, want some: %v", mode, decline, ab.calls, wantCalls)
						}
					}
				}
			}
		})
	}
}

// TestDecodeHeadArgmaxRecordKey: a recording made without the fused head
// is not replayed once HeadArgmax is turned on (the key says which).
func TestDecodeHeadArgmaxRecordKey(t *testing.T) {
	m := newTiny(t, false, false)
	ab := &argmaxCPU{replayCPU: &replayCPU{Backend: m.B.(*cpu.Backend)}}
	m.B = ab
	prompt := []int32{3, 1, 4, 1}
	o := engine.Greedy(8, nil)
	g, err := m.NewGenerator(len(prompt) + o.MaxNewTokens + 2)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	g.Mode, g.HeadArgmax = engine.DecodeGraph, false // on by default since 2026-12-07
	first, err := g.Generate(context.Background(), prompt, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ab.calls != 0 {
		t.Fatalf("%d head argmax calls with HeadArgmax off", ab.calls)
	}
	g.HeadArgmax = true
	second, err := g.Generate(context.Background(), prompt, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ab.calls == 0 {
		t.Fatalf("HeadArgmax on after a recording without it: the old recording was replayed (no fused calls)")
	}
	if !slices.Equal(first, second) {
		t.Fatalf("tokens %v with the fused head, %v without", second, first)
	}
}
