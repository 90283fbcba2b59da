package cuda_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/chat"
	"whet/engine/cpu"
	"whet/engine/cuda"
)

// TestChatBothMatchesAlone: the side-by-side chat's batch on the GPU
// (chat.Session.GenerateBoth: one GenerateMany over the paged cache whose
// first row runs without the adapter and second with it, the adapter's B
// product on the tuned row only) against each side alone on the GPU
// (Generate, the default decode path), greedy, on tiny-llama with a LoRA
// adapter whose B is not zero, over two questions (the second with each
// side's own history, so the prompts differ in length). In float32 each
// side's text, token count and stop reason must equal its answer alone;
// in bf16 (a batched product may round otherwise than a one-row one) the
// agreement is logged and each side must answer. The CPU's answers are
// logged beside them. tools/gpu/chat-both runs it; since it passed on an
// H100 the chats answer both sides together on a GPU (chat.BothTogetherEnv).
func TestChatBothMatchesAlone(t *testing.T) {
	base := filepath.Join("..", "..", "testdata", "tiny-llama")
	f32 := newGPU(t, cuda.Options{ComputeF32: true})
	bf16 := newGPU(t, cuda.Options{})
	adapter := filepath.Join(t.TempDir(), "adapter")
	writeRandomAdapter(t, base, adapter)
	open := func(b engine.Backend) *chat.Session {
		s, err := chat.Open(b, chat.Options{ModelDir: base, AdapterDir: adapter, Template: "chatml", MaxLen: 256})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	ref := open(cpu.New())
	for _, c := range []struct {
		name  string
		b     *cuda.Backend
		exact bool
	}{{"f32", f32, true}, {"bf16", bf16, false}} {
		s := open(c.b)
		baseMsgs := []datasets.Message{}
		tunedMsgs := []datasets.Message{{Role: "system", Content: "Be brief."}}
		for round, q := range []string{"Why do leaves fall?", "Tell me more"} {
			baseMsgs = append(baseMsgs, datasets.Message{Role: "user", Content: q})
			tunedMsgs = append(tunedMsgs, datasets.Message{Role: "user", Content: q})
			o := engine.Greedy(40, nil)
			b, tu, err := s.GenerateBoth(context.Background(), baseMsgs, tunedMsgs, o, nil, nil)
			if err != nil {
				t.Fatalf("%s round %d: GenerateBoth: %v", c.name, round, err)
			}
			for _, side := range []struct {
				what string
				msgs []datasets.Message
				got  chat.Reply
			}{{"base", baseMsgs, b}, {"tuned", tunedMsgs, tu}} {
				tuned := side.what == "tuned"
				alone, err := s.Generate(context.Background(), side.msgs, o, tuned, nil)
				if err != nil {
					t.Fatal(err)
				}
				onCPU, err := ref.Generate(context.Background(), side.msgs, o, tuned, nil)
				if err != nil {
					t.Fatal(err)
				}
				same := side.got.Text == alone.Text && side.got.Tokens == alone.Tokens && side.got.Stop == alone.Stop
				t.Logf("%s round %d %s: together = alone on the GPU %v, = CPU %v (%d tokens, %s)", c.name, round, side.what, same, side.got.Text == onCPU.Text, side.got.Tokens, side.got.Stop)
				if side.got.Tokens == 0 {
					t.Errorf("%s round %d %s: no answer together", c.name, round, side.what)
				}
				if c.exact && !same {
					t.Errorf("%s round %d %s: together %q (%d tokens, %s), alone %q (%d tokens, %s)", c.name, round, side.what,
						side.got.Text, side.got.Tokens, side.got.Stop, alone.Text, alone.Tokens, alone.Stop)
				}
			}
			baseMsgs = append(baseMsgs, datasets.Message{Role: "assistant", Content: b.Text})
			tunedMsgs = append(tunedMsgs, datasets.Message{Role: "assistant", Content: tu.Text})
		}
	}
}

// writeRandomAdapter saves to dir a LoRA adapter (r 4 on q, v and down)
// for the model in base, with B drawn at random so that it matters.
func writeRandomAdapter(t *testing.T, base, dir string) {
	t.Helper()
	m, err := engine.LoadModel(base, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	lo := engine.LoRAOptions{Rank: 4, Alpha: 8, Targets: []string{"q", "v", "down"}, Seed: 1}
	if err := m.AddLoRA(lo); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for _, lin := range m.Linears() {
		if lin.LoRA == nil {
			continue
		}
		v := make([]float32, lin.LoRA.B.W.Len())
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.5)
		}
		if err := m.B.Upload(lin.LoRA.B.W, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := engine.SaveAdapter(dir, m, lo, base); err != nil {
		t.Fatal(err)
	}
}
