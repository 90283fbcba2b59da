package chat

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"slices"
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
// afterwards. onDone receives each side's reply once, the one returned;
// a side that ends first (the base model's greedy answer, ended early by
// a stop id that only it samples) is reported while the other still
// streams. Without an adapter GenerateBoth is refused.
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
	// A stop id that ends the base side's greedy answer after 6 tokens
	// and that the tuned side does not sample in its first 12.
	greedyIDs := func(msgs []datasets.Message, tuned bool) []int32 {
		p, err := s.Encode(msgs)
		if err != nil {
			t.Fatal(err)
		}
		s.Model.SetLoRAEnabled(tuned)
		defer s.Model.SetLoRAEnabled(true)
		ids, err := s.gen.Generate(context.Background(), p, engine.Greedy(24, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	bIDs, tIDs := greedyIDs(baseMsgs, false), greedyIDs(tunedMsgs, true)
	early := bIDs[5]
	if slices.Contains(bIDs[:5], early) || slices.Contains(tIDs[:12], early) {
		t.Fatalf("pick another stop id: base %v, tuned %v", bIDs, tIDs)
	}
	differ := false
	for _, o := range []engine.SampleOptions{engine.Greedy(24, nil), {MaxNewTokens: 20, Temperature: 0.8, TopP: 0.9, Seed: 3}, engine.Greedy(24, []int32{early})} {
		var pieces [2]string
		var dones [2][]Reply
		var tunedAfterBase string // tuned text streamed after the base ended
		b, tu, err := s.GenerateBoth(context.Background(), baseMsgs, tunedMsgs, o, func(tuned bool, piece string) {
			if tuned {
				pieces[1] += piece
				if len(dones[0]) > 0 {
					tunedAfterBase += piece
				}
			} else {
				pieces[0] += piece
			}
		}, func(tuned bool, r Reply) {
			i := map[bool]int{false: 0, true: 1}[tuned]
			dones[i] = append(dones[i], r)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(dones[0]) != 1 || len(dones[1]) != 1 || dones[0][0] != b || dones[1][0] != tu {
			t.Errorf("%+v: onDone got %+v, want once each %+v and %+v", o, dones, b, tu)
		}
		if len(o.StopIDs) > 0 && (b.Tokens != 6 || b.Stop != "eos" || tu.Tokens != 24 || tunedAfterBase == "") {
			t.Errorf("%+v: the base side should end first (6 tokens, eos) while the tuned one streams on to 24: base %+v, tuned %+v, tuned text after the base ended %q",
				o, b, tu, tunedAfterBase)
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
	if _, _, err := plain.GenerateBoth(context.Background(), baseMsgs, baseMsgs, engine.Greedy(4, nil), nil, nil); err == nil {
		t.Error("GenerateBoth without an adapter was accepted")
	}
}

// namedBackend is a Backend that only answers Name.
type namedBackend struct {
	engine.Backend
	name string
}

func (b namedBackend) Name() string { return b.name }

// TestBothTogether: the side-by-side chats answer both sides together by
// default on the CPU and on a GPU (since tools/gpu/chat-both passed on an
// H100); WHET_CHAT_BATCH=0 answers one side at a time on either.
func TestBothTogether(t *testing.T) {
	s, err := Open(cpu.New(), Options{ModelDir: filepath.Join("..", "..", "testdata", "tiny-llama"), Template: "chatml", MaxLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gpu := &Session{Model: &engine.Model{B: namedBackend{name: "cuda"}}}
	for env, want := range map[string]bool{"": true, "0": false, "1": true} {
		t.Setenv(BothTogetherEnv, env)
		for _, s := range []*Session{s, gpu} {
			if got := s.BothTogether(); got != want {
				t.Errorf("%s=%q on %s: together %v, want %v", BothTogetherEnv, env, s.Model.B.Name(), got, want)
			}
		}
	}
}
