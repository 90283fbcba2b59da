package engine_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"whet/engine"
)

// greedyNoCache decodes by re-running the whole sequence for every token:
// the plain definition the cached generator must equal.
func greedyNoCache(t *testing.T, m *engine.Model, prompt []int32, n int) []int32 {
	seq := append([]int32(nil), prompt...)
	a, err := m.NewActivations(len(prompt)+n, false)
	if err != nil {
		t.Fatal(err)
	}
	V := m.Cfg.VocabSize
	var out []int32
	for i := 0; i < n; i++ {
		logits, err := a.Logits(tinyBatchOf(seq))
		if err != nil {
			t.Fatal(err)
		}
		last := logits[(len(seq)-1)*V:]
		best := 0
		for j, v := range last {
			if v > last[best] {
				best = j
			}
		}
		out = append(out, int32(best))
		seq = append(seq, int32(best))
	}
	return out
}

func TestGenerateCachedEqualsUncached(t *testing.T) {
	for _, tied := range []bool{false, true} {
		m := newTiny(t, true, tied)
		g, err := m.NewGenerator(40)
		if err != nil {
			t.Fatal(err)
		}
		prompt := []int32{3, 14, 15, 9, 26}
		got, err := g.Generate(context.Background(), prompt, engine.Greedy(20, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := greedyNoCache(t, m, prompt, 20)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("tied=%v token %d: cached %v, uncached %v", tied, i, got, want)
			}
		}
		// A second call reuses the cache from position 0.
		again, _ := g.Generate(context.Background(), prompt, engine.Greedy(20, nil), nil)
		for i := range want {
			if again[i] != want[i] {
				t.Fatalf("second generation differs: %v vs %v", again, want)
			}
		}
	}
}

func TestGenerateStopsOnStopToken(t *testing.T) {
	m := newTiny(t, false, false)
	g, _ := m.NewGenerator(40)
	prompt := []int32{1, 2, 3}
	free, _ := g.Generate(context.Background(), prompt, engine.Greedy(10, nil), nil)
	stop := free[3]
	got, _ := g.Generate(context.Background(), prompt, engine.Greedy(10, []int32{stop}), nil)
	// It stops at the first occurrence of the stop id, included.
	first := -1
	for i, id := range free {
		if id == stop {
			first = i
			break
		}
	}
	if len(got) != first+1 || got[len(got)-1] != stop {
		t.Fatalf("with stop %d: %v (free run %v)", stop, got, free)
	}
	// onToken returning false stops too.
	n := 0
	got, _ = g.Generate(context.Background(), prompt, engine.Greedy(10, nil), func(int32) bool { n++; return n < 2 })
	if len(got) != 2 {
		t.Fatalf("callback stop after 2 gave %d tokens", len(got))
	}
}

func TestSampleOptions(t *testing.T) {
	logits := func() []float32 { return []float32{2, 1, 0.5, 3, -1, 2.9} }
	rng := rand.New(rand.NewPCG(1, 1))
	count := func(o engine.SampleOptions, seen map[int32]bool) map[int32]int {
		c := map[int32]int{}
		for i := 0; i < 4000; i++ {
			c[engine.Sample(logits(), o, seen, rng)]++
		}
		return c
	}
	if id := engine.Sample(logits(), engine.SampleOptions{}, nil, rng); id != 3 {
		t.Fatalf("greedy picked %d, want 3", id)
	}
	// Repetition penalty turns greedy away from a seen token.
	if id := engine.Sample(logits(), engine.SampleOptions{RepetitionPenalty: 1.5}, map[int32]bool{3: true}, rng); id != 5 {
		t.Fatalf("greedy with penalty on 3 picked %d, want 5", id)
	}
	// top-k 2 only ever yields the two best.
	for id := range count(engine.SampleOptions{Temperature: 1, TopK: 2}, nil) {
		if id != 3 && id != 5 {
			t.Fatalf("top-k 2 sampled %d", id)
		}
	}
	// High temperature spreads mass to every token; low concentrates it.
	if c := count(engine.SampleOptions{Temperature: 5}, nil); len(c) != 6 {
		t.Fatalf("temperature 5 reached %d tokens, want all 6", len(c))
	}
	if c := count(engine.SampleOptions{Temperature: 0.05}, nil); c[3] < 3500 {
		t.Fatalf("temperature 0.05 picked the best only %d/4000 times", c[3])
	}
	// top-p 0.5 keeps the smallest set reaching half the mass: {3, 5}.
	for id := range count(engine.SampleOptions{Temperature: 1, TopP: 0.5}, nil) {
		if id != 3 && id != 5 {
			t.Fatalf("top-p 0.5 sampled %d", id)
		}
	}
	// min-p 0.5 keeps tokens at least half as likely as the best: 3, 5, 0.
	for id := range count(engine.SampleOptions{Temperature: 1, MinP: 0.5}, nil) {
		if id != 3 && id != 5 && id != 0 {
			t.Fatalf("min-p 0.5 sampled %d", id)
		}
	}
	// The same seed gives the same draws.
	a := engine.Sample(logits(), engine.SampleOptions{Temperature: 1}, nil, rand.New(rand.NewPCG(7, 0)))
	b := engine.Sample(logits(), engine.SampleOptions{Temperature: 1}, nil, rand.New(rand.NewPCG(7, 0)))
	if a != b {
		t.Fatal("same seed, different token")
	}
}
