package engine_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine"
	"whet/engine/cpu"
)

// TestSamplerBatchedMatchesOneByOne: the samples shown during training
// are generated in one batched call (every prompt a lane of a paged
// cache); each answer is, token for token, what the one-sequence
// generator gives that prompt alone: on the shipped demo model with its
// chat template, prompts of different lengths, some ending on the
// template's stop token before the limit and some at it. A second run
// reuses the generator and gives the same answers; WHET_SAMPLES_BATCH=0,
// and a single prompt, go one prompt after another with the same answers.
func TestSamplerBatchedMatchesOneByOne(t *testing.T) {
	dir := filepath.Join("..", "presets", "demo", "model")
	m, err := engine.LoadModel(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tpl, ok := datasets.LookupTemplate("chatml")
	if !ok {
		t.Fatal("no chatml template")
	}
	prompts := []string{"Hi", "What is the capital of France?", "Tell me something about the sea and the ships that sail on it, please.", "Why?"}
	const maxTokens = 12
	s := &engine.Sampler{Model: m, Tok: tok, Template: tpl, Prompts: prompts, MaxTokens: maxTokens}
	defer s.Free()
	got, err := s.Run(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(prompts) {
		t.Fatalf("%d samples for %d prompts", len(got), len(prompts))
	}
	stop := engine.StopIDs(tok, tpl)
	one, err := m.NewGenerator(128)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Free()
	one.Mode = engine.DecodePlain
	var lengths []int
	stopped := 0
	for i, p := range prompts {
		ids, err := engine.EncodeChat(tok, tpl, []datasets.Message{{Role: "user", Content: p}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := one.Generate(context.Background(), ids, engine.Greedy(maxTokens, stop), nil)
		if err != nil {
			t.Fatal(err)
		}
		lengths = append(lengths, len(out))
		if slices.Contains(stop, out[len(out)-1]) {
			stopped++
		}
		ints := make([]int, len(out))
		for j, id := range out {
			ints[j] = int(id)
		}
		text := tok.Decode(ints, true)
		for _, ss := range tpl.StopStrings {
			if k := strings.Index(text, ss); k >= 0 {
				text = text[:k]
			}
		}
		want := strings.TrimSpace(text)
		if got[i].Prompt != p || got[i].Text != want || got[i].Step != 3 {
			t.Errorf("prompt %d: batched %+v, alone %q", i, got[i], want)
		}
	}
	if stopped == 0 || stopped == len(prompts) {
		t.Errorf("%d of %d answers ended on a stop token before the limit (lengths %v): the test wants both kinds", stopped, len(prompts), lengths)
	}
	if !s.RanBatched() {
		t.Error("four prompts were not generated in one batch")
	}
	again, err := s.Run(context.Background(), 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if again[i].Text != got[i].Text {
			t.Errorf("prompt %d: second run %q, first %q", i, again[i].Text, got[i].Text)
		}
	}
	// WHET_SAMPLES_BATCH=0 goes one prompt after another, as one prompt
	// always does: the same answers.
	t.Setenv(engine.SamplesBatchEnv, "0")
	seq, err := s.Run(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if s.RanBatched() {
		t.Errorf("%s=0: the samples ran batched", engine.SamplesBatchEnv)
	}
	for i := range seq {
		if seq[i].Text != got[i].Text {
			t.Errorf("prompt %d: one by one %q, batched %q", i, seq[i].Text, got[i].Text)
		}
	}
	t.Setenv(engine.SamplesBatchEnv, "")
	single := &engine.Sampler{Model: m, Tok: tok, Template: tpl, Prompts: prompts[1:2], MaxTokens: maxTokens}
	defer single.Free()
	alone1, err := single.Run(context.Background(), 6)
	if err != nil {
		t.Fatal(err)
	}
	if single.RanBatched() || len(alone1) != 1 || alone1[0].Text != got[1].Text {
		t.Errorf("one prompt: batched %v, %+v, want %q one by one", single.RanBatched(), alone1, got[1].Text)
	}
}
