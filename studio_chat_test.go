package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"whet/engine"
	"whet/engine/chat"
	"whet/engine/cpu"
	"whet/tui"
)

// adapterRun writes a run folder for testdata/tiny-llama whose adapter
// (r 4 on q, v and down) has B drawn at random, not zero, so that the
// tuned model answers otherwise than the base. It returns the folder and
// its config.
func adapterRun(t *testing.T) (string, engine.RunConfig) {
	t.Helper()
	base, err := filepath.Abs(filepath.Join("testdata", "tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
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
	run := t.TempDir()
	if err := engine.SaveAdapter(engine.RunDir(run).Adapter(), m, lo, base); err != nil {
		t.Fatal(err)
	}
	cfg := engine.RunConfig{Backend: "cpu", Method: "lora", Model: base}
	cfg.Data.Template = "chatml"
	return run, cfg
}

// TestStudioChatAnswersBothTogether: the studio's chat session answers
// the base and the tuned side in one batched generation, and each answer
// (text, tokens, stop reason, and the pieces streamed) is what its side
// gives alone through Generate, greedy: each side with its own history,
// over a real adapter on the CPU backend. Each side is reported once as it
// ends. A cancelled context stops both.
func TestStudioChatAnswersBothTogether(t *testing.T) {
	run, cfg := adapterRun(t)
	s, err := (studioChatter{}).OpenChat(context.Background(), run, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bc, ok := s.(tui.BothChat)
	if !ok || !s.HasTuned() {
		t.Fatalf("the studio's chat over an adapter run should answer both sides together (BothChat %v, tuned %v)", ok, s.HasTuned())
	}
	var baseTurns []tui.ChatTurn
	tunedTurns := []tui.ChatTurn{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}, {Role: "assistant", Content: "hello"}}
	// Four questions, each side going on from its own answers, so that
	// the later prompts run to hundreds of tokens (many cache blocks,
	// and the sides' prompts of different lengths).
	for round, q := range []string{"Why do leaves fall?", "Tell me more", "And in winter?", "Why?"} {
		baseTurns = append(baseTurns, tui.ChatTurn{Role: "user", Content: q})
		tunedTurns = append(tunedTurns, tui.ChatTurn{Role: "user", Content: q})
		o := engine.SampleOptions{MaxNewTokens: 20 + 60*round}
		var pieces [2]string
		var dones [2]int
		b, tu, err := bc.GenerateBoth(context.Background(), baseTurns, tunedTurns, o,
			func(tuned bool, p string) { pieces[map[bool]int{false: 0, true: 1}[tuned]] += p },
			func(tuned bool, r tui.ChatReply) { dones[map[bool]int{false: 0, true: 1}[tuned]]++ })
		if err != nil {
			t.Fatal(err)
		}
		if dones != [2]int{1, 1} {
			t.Errorf("round %d: each side should be reported once as it ends: %v", round, dones)
		}
		alone := func(turns []tui.ChatTurn, tuned bool) (tui.ChatReply, string) {
			var text string
			r, err := s.Generate(context.Background(), turns, o, tuned, func(p string) { text += p })
			if err != nil {
				t.Fatal(err)
			}
			return r, text
		}
		wantB, streamedB := alone(baseTurns, false)
		wantT, streamedT := alone(tunedTurns, true)
		for _, c := range []struct {
			side                string
			got, want           tui.ChatReply
			streamed, streamed1 string
		}{{"base", b, wantB, pieces[0], streamedB}, {"tuned", tu, wantT, pieces[1], streamedT}} {
			if c.got.Text != c.want.Text || c.got.Tokens != c.want.Tokens || c.got.Stop != c.want.Stop || c.streamed != c.streamed1 {
				t.Errorf("round %d, %s: together %q (%d tokens, %s, streamed %q); alone %q (%d tokens, %s, streamed %q)", round, c.side,
					c.got.Text, c.got.Tokens, c.got.Stop, c.streamed, c.want.Text, c.want.Tokens, c.want.Stop, c.streamed1)
			}
		}
		t.Logf("round %d: base %d tokens (%s), tuned %d tokens (%s)", round, b.Tokens, b.Stop, tu.Tokens, tu.Stop)
		baseTurns = append(baseTurns, tui.ChatTurn{Role: "assistant", Content: b.Text})
		tunedTurns = append(tunedTurns, tui.ChatTurn{Role: "assistant", Content: tu.Text})
	}
	baseTurns = baseTurns[:1]
	o := engine.SampleOptions{MaxNewTokens: 20}
	plainB, err1 := s.Generate(context.Background(), baseTurns, o, false, func(string) {})
	plainT, err2 := s.Generate(context.Background(), baseTurns, o, true, func(string) {})
	if err1 != nil || err2 != nil || plainT.Text == plainB.Text {
		t.Error("the adapter changes nothing: the test cannot tell base from tuned")
	}

	// WHET_CHAT_BATCH=0 (on any backend) gives a session that
	// answers one side at a time: the page asks the base, then the tuned.
	t.Setenv(chat.BothTogetherEnv, "0")
	one, err := (studioChatter{}).OpenChat(context.Background(), run, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, together := one.(tui.BothChat)
	_, images := one.(tui.ImageChat)
	one.Close()
	if together || !images || !one.HasTuned() {
		t.Errorf("%s=0: the session answers together %v (want false), takes images %v, has the tuned model %v", chat.BothTogetherEnv, together, images, one.HasTuned())
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b, tu, err := bc.GenerateBoth(ctx, baseTurns, tunedTurns, o, func(bool, string) {}, func(bool, tui.ChatReply) {})
	if err != nil || b.Stop != "cancelled" || tu.Stop != "cancelled" {
		t.Errorf("cancelled: base %+v, tuned %+v, %v; want both stopped as cancelled", b, tu, err)
	}
}

// whet chat --compare answers each prompt with both models in one batch
// and prints what each model prints alone (whet chat with and without the
// adapter), base first, the speeds aside; an interactive chat goes on
// after a compared answer.
func TestChatCompareAnswersBoth(t *testing.T) {
	run, cfg := adapterRun(t)
	adapter := engine.RunDir(run).Adapter()
	args := []string{"chat", "--model", cfg.Model, "--backend", "cpu", "--template", "chatml", "--max-new-tokens", "12", "--temperature", "0"}
	ask := func(extra ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, append(append([]string(nil), args...), extra...)...)
		if code != 0 {
			t.Fatalf("whet chat %v: exit %d: %s", extra, code, errs)
		}
		return regexp.MustCompile(`[0-9.]+ tok/s`).ReplaceAllString(out, "N tok/s")
	}
	q := []string{"--prompt", "Why do leaves fall?"}
	base := ask(q...)
	tuned := ask(append([]string{"--adapter", adapter}, q...)...)
	got := ask(append([]string{"--adapter", adapter, "--compare"}, q...)...)
	if want := "[base] " + base + "[tuned] " + tuned; got != want || base == tuned {
		t.Errorf("--compare printed\n%q\nwant the base alone then the tuned alone\n%q", got, want)
	}

	// One after the other (WHET_CHAT_BATCH=0) prints the same.
	t.Setenv(chat.BothTogetherEnv, "0")
	if seq := ask(append([]string{"--adapter", adapter, "--compare"}, q...)...); seq != got {
		t.Errorf("--compare one after the other printed\n%q\ntogether\n%q", seq, got)
	}
	t.Setenv(chat.BothTogetherEnv, "")

	in := strings.NewReader("Hi\nAnd then?\n\n")
	var o, e bytes.Buffer
	if code := runMain(append(append([]string(nil), args...), "--adapter", adapter, "--compare"), in, &o, &e); code != 0 || strings.Count(o.String(), "tok/s") != 4 {
		t.Errorf("two compared turns: exit %d, stderr %q\n%s", code, e.String(), o.String())
	}
}

// A run trained with a chat template other than its base's (data.template
// in its run.yaml: alpaca on a ChatML model) is chatted with in that
// template, by whet chat --run and by the studio's side-by-side chat,
// whatever config the studio held.
func TestChatUsesTheRunsTrainingTemplate(t *testing.T) {
	run, cfg := adapterRun(t)
	saved := cfg
	saved.Data.Template = "alpaca"
	saved.Data.Path = filepath.Join(run, "train.jsonl")
	if err := saved.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	js, err := yaml.Marshal(saved)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(engine.RunDir(run).Config(), js, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "chat", "--run", run, "--backend", "cpu")
	if code != 0 || !strings.Contains(out, "(template alpaca, adapter ") {
		t.Errorf("whet chat --run: exit %d, stdout %q, stderr %q; want template alpaca", code, out, errs)
	}
	s, err := (studioChatter{}).OpenChat(context.Background(), run, cfg) // cfg says chatml
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sc, ok := s.(*studioChat)
	if !ok {
		t.Fatalf("studio chat session %T", s)
	}
	if got := sc.s.Template.Name; got != "alpaca" {
		t.Errorf("the studio chats with template %s, want the run's alpaca", got)
	}
}
