package engine_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"whet/engine"
)

// TestPagedGenerateManyMatchesContiguous: the batched generator over a
// paged cache (blocks of 3 tokens, so every prompt spans several, and
// the last one partly) gives each lane the tokens the contiguous cache
// gives, which are those of the one-sequence generator: prompts of
// different lengths, greedy and sampled, stop ids that end lanes at
// different passes; for a plain model and Gemma 2's window and soft-caps;
// once with the lanes' blocks consecutive (viewed in place) and once with
// the pool fragmented so that every span is gathered.
func TestPagedGenerateManyMatchesContiguous(t *testing.T) {
	for _, name := range []string{"llama", "gemma2"} {
		for _, fragmented := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "/consecutive", true: "/fragmented"}[fragmented], func(t *testing.T) {
				m, prompts, opts := generateManyCase(t, name)
				// A greedy lane that ends on a stop id before its limit:
				// lane 0's prompt and first token, stopping at what lane 0
				// samples third (it comes within two tokens).
				cont, err := m.NewGroupGenerator(4, 20)
				if err != nil {
					t.Fatal(err)
				}
				defer cont.Free()
				first, err := cont.GenerateMany(context.Background(), prompts[:1], opts[:1], nil)
				if err != nil {
					t.Fatal(err)
				}
				opts[3].StopIDs = []int32{first[0][2]}
				prompts[3] = append(slices.Clone(prompts[0]), first[0][:1]...)
				opts[3].MaxNewTokens = 9
				want, err := cont.GenerateMany(context.Background(), prompts, opts, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(want[3]) > 2 || len(want[0]) != 10 {
					t.Fatalf("the stop set-up did not end lane 3 early: %v (lane 0 %v)", want[3], want[0])
				}
				blocks := 2 * 20 // room to spare, and for fragmenting
				paged, err := m.NewPagedGroupGenerator(4, 20, 3, blocks)
				if err != nil {
					t.Fatal(err)
				}
				defer paged.Free()
				if fragmented {
					paged.ScatterKVBlocks()
				}
				for round := 0; round < 2; round++ { // the second reuses the pool
					got, err := paged.GenerateMany(context.Background(), prompts, opts, nil)
					if err != nil {
						t.Fatal(err)
					}
					for i := range prompts {
						if !slices.Equal(got[i], want[i]) {
							t.Errorf("round %d lane %d: paged %v, contiguous %v", round, i, got[i], want[i])
						}
					}
				}
				if g := paged.KVGathers(); fragmented && g == 0 {
					t.Error("the fragmented pool never gathered a span")
				} else if !fragmented && g != 0 {
					t.Errorf("consecutive blocks were gathered %d times", g)
				}
				for i, alone := range generateAlone(t, m, 20, prompts, opts) {
					if !slices.Equal(alone, want[i]) {
						t.Errorf("lane %d: batched %v, alone %v", i, want[i], alone)
					}
				}
			})
		}
	}
}

// TestPagedGroupGenerateMatchesContiguous: GRPO's group sampling (one
// prompt, its keys and values copied block by block into every lane)
// gives the same completions over the paged cache as over contiguous
// ones.
func TestPagedGroupGenerateMatchesContiguous(t *testing.T) {
	m := newTiny(t, true, false)
	prompt := []int32{3, 1, 4, 1, 5, 9, 2}
	opts := make([]engine.SampleOptions, 4)
	for i := range opts {
		opts[i] = engine.SampleOptions{MaxNewTokens: 8, Temperature: 1, TopK: 6, Seed: uint64(11 + i), StopIDs: []int32{7}}
	}
	cont, err := m.NewGroupGenerator(4, len(prompt)+8)
	if err != nil {
		t.Fatal(err)
	}
	defer cont.Free()
	want, err := cont.Generate(context.Background(), prompt, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	paged, err := m.NewPagedGroupGenerator(4, len(prompt)+8, 4, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer paged.Free()
	paged.ScatterKVBlocks() // 8 blocks left: 4 lanes of 15 tokens need 4 each
	if _, err := paged.Generate(context.Background(), prompt, opts, nil); err == nil || !strings.Contains(err.Error(), "kv pool exhausted") {
		t.Fatalf("4 lanes of 4 blocks fit 8 blocks: %v", err)
	}
	paged2, err := m.NewPagedGroupGenerator(4, len(prompt)+8, 4, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer paged2.Free()
	got, err := paged2.Generate(context.Background(), prompt, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("lane %d: paged %v, contiguous %v", i, got[i], want[i])
		}
	}
}

// TestPagedPoolExhausted: prompts whose own lengths need more blocks than
// the pool holds are refused before anything runs, with the numbers; the
// same pool serves prompts that fit, and a bad pool is refused.
func TestPagedPoolExhausted(t *testing.T) {
	m := newTiny(t, true, false)
	g, err := m.NewPagedGroupGenerator(3, 20, 4, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	// 3+5 and 6+5 tokens: 2 + 3 blocks of 4 = 5, fits; a third prompt
	// of 1+3 needs one more.
	prompts := [][]int32{{1, 2, 3}, {4, 5, 6, 7, 8, 9}, {2}}
	opts := []engine.SampleOptions{engine.Greedy(5, nil), engine.Greedy(5, nil), engine.Greedy(3, nil)}
	_, err = g.GenerateMany(context.Background(), prompts, opts, nil)
	if err == nil {
		t.Fatal("6 blocks fit a pool of 5")
	}
	for _, s := range []string{"kv pool exhausted", "need 6 blocks of 4 tokens", "the pool has 5"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	got, err := g.GenerateMany(context.Background(), prompts[:2], opts[:2], nil)
	if err != nil {
		t.Fatalf("5 blocks did not fit a pool of 5 after a refusal: %v", err)
	}
	if len(got[0]) != 5 || len(got[1]) != 5 {
		t.Errorf("lengths %d, %d, want 5, 5", len(got[0]), len(got[1]))
	}
	if _, err := m.NewPagedGroupGenerator(2, 20, 4, 0); err == nil {
		t.Error("a pool of 0 blocks was accepted")
	}
}

// TestGenerateManySharedPrompts: GRPO's rollout samples the completions
// of several prompts in one GenerateMany call, each prompt repeated once
// per completion; a repeated prompt is run once and copied, and every
// completion is the one the one-sequence generator samples for its
// prompt alone with the same seed (paged cache, prompts of different lengths).
func TestGenerateManySharedPrompts(t *testing.T) {
	m := newTiny(t, true, false)
	a, b := []int32{3, 1, 4, 1, 5}, []int32{2, 7}
	var prompts [][]int32
	var opts []engine.SampleOptions
	for i := 0; i < 6; i++ {
		p := a
		if i >= 3 {
			p = b
		}
		prompts = append(prompts, p)
		opts = append(opts, engine.SampleOptions{MaxNewTokens: 7, Temperature: 1, TopP: 0.95, Seed: uint64(100 + i), StopIDs: []int32{5}})
	}
	paged, err := m.NewPagedGroupGenerator(6, 12, 4, 18)
	if err != nil {
		t.Fatal(err)
	}
	defer paged.Free()
	got, err := paged.GenerateMany(context.Background(), prompts, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range generateAlone(t, m, 12, prompts, opts) {
		if !slices.Equal(got[i], want) {
			t.Errorf("completion %d: together %v, alone %v", i, got[i], want)
		}
	}
}

// TestGenerateManyBaseAndTuned: with TunedFrom the base and the tuned
// model answer in the same passes (the adapters' term added only to the
// tuned rows); each lane gives, token for token, what the one-sequence
// generator gives with the adapters off (base lanes) or on (tuned
// lanes): a prompt asked of both (not shared between the sides), prompts
// of different lengths, greedy and sampled, a lane ended by LaneToken.
// The adapters' switches are as before afterwards.
func TestGenerateManyBaseAndTuned(t *testing.T) {
	for _, name := range []string{"llama", "phi3"} {
		t.Run(name, func(t *testing.T) {
			m := newTinyNamed(t, name, true) // fused qkv and gate_up: adapter parts
			if err := m.AddLoRA(engine.LoRAOptions{Rank: 4, Alpha: 8, Seed: 2}); err != nil {
				t.Fatal(err)
			}
			randomLoRAB(t, m, rand.New(rand.NewPCG(4, 4)))
			a, b := []int32{3, 1, 4, 1, 5}, []int32{2, 7, 1}
			prompts := [][]int32{a, b, a, b}
			opts := []engine.SampleOptions{engine.Greedy(9, nil), {MaxNewTokens: 7, Temperature: 1, TopK: 10, Seed: 5}, engine.Greedy(9, nil), {MaxNewTokens: 7, Temperature: 1, TopK: 10, Seed: 5}}
			g, err := m.NewPagedGroupGenerator(4, 16, 4, 16)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Free()
			g.TunedFrom = 2
			seen := map[int]int{}
			g.LaneToken = func(lane int, id int32) bool {
				seen[lane]++
				return lane != 3 || seen[lane] < 4 // lane 3 ends at its fourth token
			}
			got, err := g.GenerateMany(context.Background(), prompts, opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, lin := range m.Linears() {
				if !lin.LoRA.Enabled {
					t.Fatalf("%s: the adapter is off after a side-by-side generation", lin.Module)
				}
			}
			one, err := m.NewGenerator(16)
			if err != nil {
				t.Fatal(err)
			}
			defer one.Free()
			one.Mode = engine.DecodePlain
			alone := make([][]int32, 4)
			for i := range prompts {
				m.SetLoRAEnabled(i >= 2)
				o := opts[i]
				if i == 3 {
					o.MaxNewTokens = 4
				}
				if alone[i], err = one.Generate(context.Background(), prompts[i], o, nil); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got[i], alone[i]) {
					t.Errorf("lane %d (tuned %v): together %v, alone %v", i, i >= 2, got[i], alone[i])
				}
			}
			m.SetLoRAEnabled(true)
			if slices.Equal(alone[0], alone[2]) && slices.Equal(alone[1][:4], alone[3]) {
				t.Errorf("the adapter changes nothing (%v, %v): the test cannot tell base from tuned", alone[0], alone[1])
			}
			if len(got[3]) != 4 || seen[3] != 4 {
				t.Errorf("lane 3: %v after %d calls, want LaneToken to end it at 4", got[3], seen[3])
			}
		})
	}
}
