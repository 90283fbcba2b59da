package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// headPass is what one pass over the head reports for the comparison:
// the loss, every per-token loss and every trainable gradient.
type headPass struct {
	loss   float64
	tokens []float32
	grads  [][]float32
}

// compareHeadPasses fails when got differs from want by more than 1e-6
// relative: the loss, each token's loss (relative to the largest) and
// each gradient (relative to its largest element).
func compareHeadPasses(t *testing.T, m *engine.Model, what string, got, want headPass) {
	t.Helper()
	if d := math.Abs(got.loss - want.loss); d > 1e-6*math.Abs(want.loss) || math.IsNaN(got.loss) {
		t.Errorf("%s: loss %v, untiled %v", what, got.loss, want.loss)
	}
	relClose := func(name string, g, w []float32) {
		scale := 0.0
		for _, v := range w {
			scale = max(scale, math.Abs(float64(v)))
		}
		if scale == 0 {
			t.Errorf("%s: %s is all zero untiled: the comparison would prove nothing", what, name)
			return
		}
		for j := range w {
			if d := math.Abs(float64(g[j] - w[j])); !(d <= 1e-6*scale) {
				t.Errorf("%s: %s[%d] = %v, untiled %v (max |untiled| %v)", what, name, j, g[j], w[j], scale)
				return
			}
		}
	}
	if want.tokens != nil {
		relClose("token losses", got.tokens, want.tokens)
	}
	params := m.TrainableParams()
	for i := range want.grads {
		relClose(params[i].Name+" grad", got.grads[i], want.grads[i])
	}
}

// TestTiledHeadMatchesUntiled: with the LM head and cross-entropy run
// over chunks of 5 rows (a 12-token batch in chunks of 5, 5 and 2) and of
// 1 row (where some chunks hold only ignored targets), the loss, every
// token's loss and every trainable gradient equal the one-chunk pass's
// within 1e-6 relative (the head's weight gradient is summed chunk by
// chunk), for an untied and a tied Llama head and Gemma 2 with its final
// soft-cap (cap 2, so the cap's derivative is far from 1), tied and
// untied, LoRA and full fine-tuning; and the same for a DPO pass (two
// pairs, 30 tokens, the gradient scaled per sequence) in chunks of 7 and 1.
func TestTiledHeadMatchesUntiled(t *testing.T) {
	models := map[string]func(t *testing.T) *engine.Model{
		"llama-untied": func(t *testing.T) *engine.Model { return newTiny(t, true, false) },
		"llama-tied":   func(t *testing.T) *engine.Model { return newTiny(t, false, true) },
		"gemma2-tied":  func(t *testing.T) *engine.Model { return newTinyFamily(t, "gemma2") },
		"gemma2-untied": func(t *testing.T) *engine.Model {
			return newTinyFamilyWith(t, "gemma2", func(c *engine.ModelConfig) { c.TieWordEmbeddings = false })
		},
	}
	for _, name := range []string{"llama-untied", "llama-tied", "gemma2-tied", "gemma2-untied"} {
		for _, method := range []string{"lora", "full"} {
			t.Run(fmt.Sprintf("%s/%s", name, method), func(t *testing.T) {
				m := models[name](t)
				if method == "lora" {
					if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 4}); err != nil {
						t.Fatal(err)
					}
					randomLoRAB(t, m, rand.New(rand.NewPCG(6, 6)))
				} else if err := m.MakeAllTrainable(); err != nil {
					t.Fatal(err)
				}
				if (name == "llama-untied" || name == "gemma2-untied") && method == "full" && !m.Head.W.Trainable {
					t.Fatal("the untied head is not trainable in full fine-tuning: its gradient would go untested")
				}
				b := tinyBatch(m.Cfg.VocabSize, 1)
				sft := func(rows int) headPass {
					a, err := m.NewActivationsTiled(len(b.Tokens), false, engine.Tiling{LogitsRows: rows})
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
					tok, err := a.TokenLosses()
					if err != nil {
						t.Fatal(err)
					}
					return headPass{r.LossSum, append([]float32(nil), tok...), trainableGrads(m)}
				}
				whole := sft(0) // 12 rows: one chunk
				for _, rows := range []int{5, 1} {
					compareHeadPasses(t, m, fmt.Sprintf("chunks of %d", rows), sft(rows), whole)
				}

				pairs := pairBatch(m.Cfg.VocabSize, 2, 3)
				d := engine.DPOLoss{Beta: 0.5}
				a, err := m.NewActivations(len(pairs.Tokens), false)
				if err != nil {
					t.Fatal(err)
				}
				ref, err := a.PairLogprobs(pairs, d)
				a.Free()
				if err != nil {
					t.Fatal(err)
				}
				for i := range ref { // a reference away from the policy
					ref[i].Chosen -= 0.3 * float64(i+1)
					ref[i].Rejected += 0.2
				}
				dpo := func(rows int) headPass {
					a, err := m.NewActivationsTiled(len(pairs.Tokens), false, engine.Tiling{LogitsRows: rows})
					if err != nil {
						t.Fatal(err)
					}
					defer a.Free()
					if err := m.ZeroGrads(); err != nil {
						t.Fatal(err)
					}
					r, err := a.DPOForwardBackward(pairs, ref, d, 1, 0)
					if err != nil {
						t.Fatal(err)
					}
					return headPass{loss: r.Loss, grads: trainableGrads(m)}
				}
				wholeDPO := dpo(0)
				for _, rows := range []int{7, 1} {
					compareHeadPasses(t, m, fmt.Sprintf("DPO in chunks of %d", rows), dpo(rows), wholeDPO)
				}
			})
		}
	}
}

// TestTiledHeadGRPOMatchesUntiled: GRPO's per-token log-probs and its
// per-token gradient scales (the head runs over runs of rows with equal
// scale, each in chunks) give the same loss, log-probs and LoRA gradient
// in chunks of 4 and 1 as in one chunk.
func TestTiledHeadGRPOMatchesUntiled(t *testing.T) {
	lens := []int{3, 5, 2, 4}
	m, b, seqs := grpoFixture(t, lens)
	l := engine.GRPOLoss{Type: "grpo", Beta: 0.3, Epsilon: 0.2}
	ls, tokens := tokenCount(seqs)
	w := l.SeqWeights(ls, 1, tokens)
	run := func(rows int) headPass {
		a, err := m.NewActivationsTiled(len(b.Tokens), false, engine.Tiling{LogitsRows: rows})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Free()
		if err := m.ZeroGrads(); err != nil {
			t.Fatal(err)
		}
		r, err := a.GRPOForwardBackward(b, seqs, l, w, 0)
		if err != nil {
			t.Fatal(err)
		}
		var lp []float32
		for _, s := range r.Logps {
			for _, v := range s {
				lp = append(lp, float32(v))
			}
		}
		return headPass{r.Loss, lp, trainableGrads(m)}
	}
	whole := run(0)
	for _, rows := range []int{4, 1} {
		compareHeadPasses(t, m, fmt.Sprintf("chunks of %d", rows), run(rows), whole)
	}
}

// TestLogitsChunkRule: as many rows as 2^26 logits hold, a request
// clipped to the batch, never below one row; a negative request is
// refused.
func TestLogitsChunkRule(t *testing.T) {
	for _, c := range []struct{ T, V, req, want int }{
		{8192, 128256, 0, 523},  // Llama 3
		{16384, 151936, 0, 441}, // Qwen 2.5
		{16384, 256000, 0, 262}, // Gemma 2
		{100, 128256, 0, 100},   // a short batch: one chunk
		{8192, 128256, 64, 64},
		{10, 128256, 64, 10},
		{8192, 1 << 27, 0, 1}, // a vocabulary past 2^26: one row
	} {
		if got := engine.LogitsChunk(c.T, c.V, c.req); got != c.want {
			t.Errorf("LogitsChunk(%d, %d, %d) = %d, want %d", c.T, c.V, c.req, got, c.want)
		}
	}
	m := newTiny(t, false, true)
	if _, err := m.NewActivationsTiled(12, false, engine.Tiling{LogitsRows: -1}); err == nil {
		t.Error("a negative logits chunk was accepted")
	}
}

// unfusedCPU is the CPU backend declining the fused soft-capped
// cross-entropy, as CUDA does without WHET_FUSED_SOFTCAP_CE=1: the
// decoder then caps around the plain cross-entropy.
type unfusedCPU struct{ *cpu.Backend }

func (unfusedCPU) FusedSoftCap() bool { return false }

// TestSoftCapFusedMatchesUnfused: Gemma 2 (final cap 2) trained one pass
// with the cap fused into the cross-entropy and one with SoftCap, the
// plain cross-entropy and SoftCapBackward around it (the path CUDA takes
// by default) give the same loss and gradients within 1e-6 relative, in
// one chunk and in chunks of 5, LoRA and full.
func TestSoftCapFusedMatchesUnfused(t *testing.T) {
	cfg := *tinyFamilyConfig(t, "gemma2")
	for _, method := range []string{"lora", "full"} {
		pass := func(b engine.Backend, rows int) (*engine.Model, headPass) {
			m, err := engine.NewModel(cfg, b)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.InitRandom(3, 0.3); err != nil {
				t.Fatal(err)
			}
			if method == "lora" {
				if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 4}); err != nil {
					t.Fatal(err)
				}
				randomLoRAB(t, m, rand.New(rand.NewPCG(6, 6)))
			} else if err := m.MakeAllTrainable(); err != nil {
				t.Fatal(err)
			}
			bt := tinyBatch(m.Cfg.VocabSize, 1)
			a, err := m.NewActivationsTiled(len(bt.Tokens), false, engine.Tiling{LogitsRows: rows})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Free()
			r, err := a.ForwardBackward(bt, float32(1/float64(bt.NumTargets())), true, 7)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := a.TokenLosses()
			if err != nil {
				t.Fatal(err)
			}
			return m, headPass{r.LossSum, append([]float32(nil), tok...), trainableGrads(m)}
		}
		for _, rows := range []int{0, 5} {
			m, fused := pass(cpu.New(), rows)
			_, unfused := pass(unfusedCPU{cpu.New()}, rows)
			compareHeadPasses(t, m, fmt.Sprintf("%s, chunks of %d: fused vs unfused", method, rows), fused, unfused)
		}
	}
}
