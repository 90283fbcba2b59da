package engine_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"whet/engine"
)

// mllamaOracle decodes s step by step with the training forward (Run over
// the whole sequence for every token) and the text generator's sampler:
// the reference the cached MllamaGenerator must reproduce. It returns the
// tokens and every step's last-row logits.
func mllamaOracle(t *testing.T, m *engine.MllamaModel, s engine.MllamaSample, o engine.SampleOptions) ([]int32, [][]float32) {
	t.Helper()
	per := s.Images * m.Cfg.Vision.MaxTiles
	rng := rand.New(rand.NewPCG(o.Seed, 0x6e6))
	seen := map[int32]bool{}
	for _, id := range s.IDs {
		seen[id] = true
	}
	var out []int32
	var steps [][]float32
	V := m.Cfg.Text.VocabSize
	for len(out) < o.MaxNewTokens {
		T := len(s.IDs)
		cur := s
		cur.Targets = make([]int32, T)
		for i := range cur.Targets {
			cur.Targets[i] = -100
		}
		cur.Targets[T-1] = 0
		r, err := m.Run([]engine.MllamaSample{cur}, false, true)
		if err != nil {
			t.Fatal(err)
		}
		row := append([]float32(nil), r.Logits[0][(T-1)*V:T*V]...)
		steps = append(steps, append([]float32(nil), row...))
		id := engine.Sample(row, o, seen, rng)
		out = append(out, id)
		seen[id] = true
		s.IDs = append(slices.Clone(s.IDs), id)
		if per > 0 {
			s.CrossMask = append(slices.Clone(s.CrossMask), s.CrossMask[(T-1)*per:T*per]...)
		}
	}
	return out, steps
}

// generateMllama runs the cached generator and collects its logits.
func generateMllama(t *testing.T, g *engine.MllamaGenerator, s engine.MllamaSample, o engine.SampleOptions) ([]int32, [][]float32) {
	t.Helper()
	var steps [][]float32
	g.OnLogits = func(l []float32) { steps = append(steps, l) }
	defer func() { g.OnLogits = nil }()
	out, err := g.Generate(context.Background(), s, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out, steps
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// TestMllamaGeneratorMatchesGreedy: the cached generator (vision tower
// once, cross-attention keys/values once, a KV cache for the self
// layers) gives the tokens of the training forward rerun for every token
// (MllamaModel.Greedy and mllamaOracle), with every step's logits within
// 1e-4, for one image, two images, no image, with LoRA on the language
// model and the projector switched on (tuned) and off (base, equal to the
// model before the adapter), greedy and sampled.
func TestMllamaGeneratorMatchesGreedy(t *testing.T) {
	m, cfg := loadTinyMllama(t, 41)
	rng := rand.New(rand.NewPCG(7, 8))
	cases := map[string]engine.MllamaSample{
		"one image":  mllamaSample(cfg, rng, 9, []int{1}, [][2]int{{2, 2}}, 0),
		"two images": mllamaSample(cfg, rng, 11, []int{2, 6}, [][2]int{{1, 1}, {6, 4}}, 0),
		"no image":   mllamaSample(cfg, rng, 7, nil, nil, 0),
	}
	const n = 14
	g, err := m.NewGenerator(64)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	check := func(label string, s engine.MllamaSample, o engine.SampleOptions) []int32 {
		t.Helper()
		got, gotLogits := generateMllama(t, g, s, o)
		want, wantLogits := mllamaOracle(t, m, s, o)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: cached generator %v, training forward %v", label, got, want)
		}
		if len(gotLogits) != len(wantLogits) {
			t.Fatalf("%s: %d logit rows, want %d", label, len(gotLogits), len(wantLogits))
		}
		for i := range gotLogits {
			if d := maxDiff(gotLogits[i], wantLogits[i]); d > 1e-4 {
				t.Fatalf("%s: step %d logits differ by %g", label, i, d)
			}
		}
		if o.Temperature == 0 {
			greedy, err := m.Greedy(s, o.MaxNewTokens, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, greedy) {
				t.Fatalf("%s: cached generator %v, MllamaModel.Greedy %v", label, got, greedy)
			}
		}
		return got
	}
	sampled := engine.SampleOptions{MaxNewTokens: n, Temperature: 1.3, TopK: 40, TopP: 0.95, RepetitionPenalty: 1.1, Seed: 3}
	base := map[string][]int32{}
	for name, s := range cases {
		base[name] = check("base "+name, s, engine.Greedy(n, nil))
		check("base sampled "+name, s, sampled)
	}

	if err := m.AddLoRA(engine.MllamaLoRA{Rank: 4, Alpha: 8, Projector: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		if p.Trainable {
			uploadRandom(t, m, p, rng, 0.3)
		}
	}
	if !m.HasLoRA() {
		t.Fatal("HasLoRA false after AddLoRA")
	}
	changed := 0
	for name, s := range cases {
		tuned := check("tuned "+name, s, engine.Greedy(n, nil))
		check("tuned sampled "+name, s, sampled)
		if !slices.Equal(tuned, base[name]) {
			changed++
		}
		m.SetLoRAEnabled(false)
		off := check("adapter off "+name, s, engine.Greedy(n, nil))
		m.SetLoRAEnabled(true)
		if !slices.Equal(off, base[name]) {
			t.Fatalf("%s with the adapter off: %v, the base model gave %v", name, off, base[name])
		}
	}
	if changed == 0 {
		t.Fatal("the adapter changed no case's tokens: the test cannot tell tuned from base")
	}

	// The tower runs once per new image set: three replies to one image
	// after another image run it once.
	generateMllama(t, g, cases["two images"], engine.Greedy(2, nil))
	runs := g.VisionRuns
	s := cases["one image"]
	for range 3 {
		generateMllama(t, g, s, engine.Greedy(2, nil))
	}
	if g.VisionRuns != runs+1 {
		t.Errorf("three replies to the same image ran the vision tower %d times, want once", g.VisionRuns-runs)
	}
	// A stop id ends the reply with it; a prompt that does not fit is refused.
	full, _ := generateMllama(t, g, s, engine.Greedy(n, nil))
	stopped, err := g.Generate(context.Background(), s, engine.Greedy(n, []int32{full[3]}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.Index(full, full[3]); !slices.Equal(stopped, full[:i+1]) {
		t.Fatalf("stop at %d: %v, want %v", full[3], stopped, full[:i+1])
	}
	if _, err := g.Generate(context.Background(), s, engine.Greedy(64, nil), nil); err == nil {
		t.Fatal("a prompt of 9 tokens + 64 new fit a generator of 64")
	}
}
