package chat

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
)

// TestGenerateBothMatchesEachAlone: the base and the tuned answer made
// together in one batch (GenerateBoth) are, text, token count and stop
// reason, what Generate gives each side alone: each side with its own
// history (prompts of different lengths), greedy and sampled, an adapter
// whose B is not zero (so base and tuned differ), and the adapter is on
// afterwards. Without an adapter GenerateBoth is refused.
func TestGenerateBothMatchesEachAlone(t *testing.T) {
	base := filepath.Join("..", "..", "testdata", "tiny-llama")
	trained, err := engine.LoadModel(base, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer trained.Free()
	lo := engine.LoRAOptions{Rank: 4, Alpha: 8, Targets: []string{"q", "v", "down"}, Seed: 1}
	if err := trained.AddLoRA(lo); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for _, lin := range trained.Linears() {
		if lin.LoRA == nil {
			continue
		}
		v := make([]float32, lin.LoRA.B.W.Len())
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.5)
		}
		if err := trained.B.Upload(lin.LoRA.B.W, v); err != nil {
			t.Fatal(err)
		}
	}
	adapter := filepath.Join(t.TempDir(), "adapter")
	if err := engine.SaveAdapter(adapter, trained, lo, base); err != nil {
		t.Fatal(err)
	}
	s, err := Open(cpu.New(), Options{ModelDir: base, AdapterDir: adapter, Template: "chatml", MaxLen: 160})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	baseMsgs := []datasets.Message{{Role: "user", Content: "hello there"}}
	tunedMsgs := []datasets.Message{{Role: "user", Content: "hello there"}, {Role: "assistant", Content: "an earlier tuned answer"}, {Role: "user", Content: "and again"}}
	differ := false
	for _, o := range []engine.SampleOptions{engine.Greedy(24, nil), {MaxNewTokens: 20, Temperature: 0.8, TopP: 0.9, Seed: 3}} {
		var pieces [2]string
		b, tu, err := s.GenerateBoth(context.Background(), baseMsgs, tunedMsgs, o, func(tuned bool, piece string) {
			if tuned {
				pieces[1] += piece
			} else {
				pieces[0] += piece
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, lin := range s.Model.Linears() {
			if lin.LoRA != nil && !lin.LoRA.Enabled {
				t.Fatalf("%s: the adapter is off after GenerateBoth", lin.Module)
			}
		}
		wantB, err := s.Generate(context.Background(), baseMsgs, o, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantT, err := s.Generate(context.Background(), tunedMsgs, o, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			what      string
			got, want Reply
			streamed  string
		}{{"base", b, wantB, pieces[0]}, {"tuned", tu, wantT, pieces[1]}} {
			if c.got.Text != c.want.Text || c.got.Tokens != c.want.Tokens || c.got.Stop != c.want.Stop || c.streamed != c.got.Text {
				t.Errorf("%+v %s: together %q (%d tokens, %s; streamed %q), alone %q (%d tokens, %s)", o, c.what,
					c.got.Text, c.got.Tokens, c.got.Stop, c.streamed, c.want.Text, c.want.Tokens, c.want.Stop)
			}
		}
		// The same history on both sides tells whether the adapter matters.
		wantTSame, err := s.Generate(context.Background(), baseMsgs, o, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		differ = differ || wantTSame.Text != wantB.Text
	}
	if !differ {
		t.Error("the adapter changes no answer: the test cannot tell base from tuned")
	}
	plain, err := Open(cpu.New(), Options{ModelDir: base, Template: "chatml", MaxLen: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, _, err := plain.GenerateBoth(context.Background(), baseMsgs, baseMsgs, engine.Greedy(4, nil), nil); err == nil {
		t.Error("GenerateBoth without an adapter was accepted")
	}
}
