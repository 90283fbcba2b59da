package engine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// TestDecodeStepsPerReplay: with Generator.Steps > 1, graph decoding
// replays recordings of that many steps and gives the one-step tokens
// exactly: for token counts that are and are not a multiple of Steps, a
// stop id and an onToken refusal inside a chunk (nothing after them comes
// out), fused ops on or off, and families whose LongRoPE switch (phi3)
// keeps them step by step; sampling never takes the chunks.
func TestDecodeStepsPerReplay(t *testing.T) {
	for _, name := range []string{"llama", "qwen3", "gemma2", "phi3"} {
		t.Run(name, func(t *testing.T) {
			m := newTinyNamed(t, name, false)
			rb := &fusedCPU{replayCPU: &replayCPU{Backend: m.B.(*cpu.Backend)}}
			m.B = rb
			prompt := []int32{3, 1, 4, 1}
			gen := func(steps int, fuse bool, o engine.SampleOptions, onToken func(int32) bool) ([]int32, *engine.Generator) {
				t.Helper()
				g, err := m.NewGenerator(len(prompt) + 24)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(g.Free)
				g.Mode, g.Steps, g.Fuse = engine.DecodeGraph, steps, fuse
				out, err := g.Generate(context.Background(), prompt, o, onToken)
				if err != nil {
					t.Fatalf("steps %d: %v", steps, err)
				}
				if g.Used != engine.DecodeGraph || g.Fallback != "" {
					t.Errorf("steps %d: used %s (%s)", steps, g.Used, g.Fallback)
				}
				if onToken == nil { // a second call replays the same recordings
					again, err := g.Generate(context.Background(), prompt, o, nil)
					if err != nil || !slices.Equal(again, out) {
						t.Errorf("steps %d: a second generation gave %v (%v) after %v", steps, again, err, out)
					}
				}
				return out, g
			}
			for _, n := range []int{13, 17} {
				want, _ := gen(1, false, engine.Greedy(n, nil), nil)
				for _, steps := range []int{2, 4, 5} {
					for _, fuse := range []bool{false, true} {
						got, g := gen(steps, fuse, engine.Greedy(n, nil), nil)
						if !slices.Equal(got, want) {
							t.Errorf("%d tokens, %d steps a replay, fuse=%v: %v, one by one %v", n, steps, fuse, got, want)
						}
						// g has generated twice: the first new token comes from
						// the prefill, and (the kernels loaded by the first call's
						// direct step) whole chunks cover what they can of the rest.
						chunks := (n - 1) / steps
						if name == "phi3" {
							chunks = 0
						}
						if g.Chunks != chunks {
							t.Errorf("%d tokens, %d steps a replay: %d chunks, want %d", n, steps, g.Chunks, chunks)
						}
					}
				}
				// A stop id, and onToken refusing, inside a chunk.
				stop := want[7]
				wantStop := want[:slices.Index(want, stop)+1]
				if got, _ := gen(4, false, engine.Greedy(n, []int32{stop}), nil); !slices.Equal(got, wantStop) {
					t.Errorf("stop id %d: %v, want %v", stop, got, wantStop)
				}
				seen := 0
				got, _ := gen(4, false, engine.Greedy(n, nil), func(int32) bool { seen++; return seen < 6 })
				if !slices.Equal(got, want[:6]) || seen != 6 {
					t.Errorf("onToken stopping at 6: %v (%d seen), want %v", got, seen, want[:6])
				}
			}
			o := engine.SampleOptions{MaxNewTokens: 12, Temperature: 0.9, TopK: 8, Seed: 7}
			want, _ := gen(1, false, o, nil)
			if got, g := gen(4, false, o, nil); !slices.Equal(got, want) || g.Chunks != 0 {
				t.Errorf("sampling with 4 steps a replay: %v in %d chunks, want %v step by step", got, g.Chunks, want)
			}
		})
	}
}

// TestDecodeStepsRecordingFails: when the chunk cannot be recorded, the
// tokens come step by step, with the reason in Fallback.
func TestDecodeStepsRecordingFails(t *testing.T) {
	m := newTiny(t, false, false)
	rb := &chunkRefuser{replayCPU: &replayCPU{Backend: m.B.(*cpu.Backend)}}
	m.B = rb
	prompt := []int32{3, 1, 4, 1}
	g, err := m.NewGenerator(len(prompt) + 16)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	g.Mode = engine.DecodeGraph
	want, err := g.Generate(context.Background(), prompt, engine.Greedy(12, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	g.Steps = 4
	got, err := g.Generate(context.Background(), prompt, engine.Greedy(12, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	for call := 1; call <= 2; call++ { // the second call does not retry, and still says why
		if call == 2 {
			if got, err = g.Generate(context.Background(), prompt, engine.Greedy(12, nil), nil); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(got, want) || g.Chunks != 0 || g.Fallback == "" {
			t.Errorf("call %d: %v in %d chunks, fallback %q; want %v step by step with a reason", call, got, g.Chunks, g.Fallback, want)
		}
	}
}

// chunkRefuser fails any recording that copies ids (a chunk), as a
// backend whose capture refused one op would.
type chunkRefuser struct{ *replayCPU }

func (c *chunkRefuser) Copy(dst, src engine.Tensor) error {
	if c.queue != nil && dst.DType() == engine.I32 {
		return errors.New("no copies in a recording here")
	}
	return c.replayCPU.Copy(dst, src)
}

func (c *chunkRefuser) Record(f func() error) (engine.Recording, error) {
	return c.replayCPU.Record(f)
}

// TestDecodeStepsFromEnv: DecodeStepsEnv sets Generator.Steps, 1 when
// unset; anything but a whole number from 1 to 64 fails NewGenerator with
// the variable's name.
func TestDecodeStepsFromEnv(t *testing.T) {
	m := newTiny(t, false, false)
	for v, want := range map[string]int{"": 1, "1": 1, "8": 8, "64": 64, "0": 0, "65": 0, "x": 0, "-2": 0} {
		t.Setenv(engine.DecodeStepsEnv, v)
		g, err := m.NewGenerator(8)
		if want == 0 {
			if err == nil || !strings.Contains(err.Error(), engine.DecodeStepsEnv) {
				t.Errorf("%q: %v; want an error naming %s", v, err, engine.DecodeStepsEnv)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if g.Steps != want {
			t.Errorf("%q: Steps %d, want %d", v, g.Steps, want)
		}
		g.Free()
	}
}
