package demo_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"whet/datasets"
	"whet/engine"
	"whet/engine/chat"
	"whet/engine/cpu"
	"whet/presets/demo"
)

func init() {
	engine.RegisterBackend("cpu", func() (engine.Backend, error) { return cpu.New(), nil })
}

// TestPersonaShift trains the demo LoRA on the CPU exactly as
// presets/demo/run.yaml says, then asks base and tuned model the 20
// held-out questions (greedy) and counts the answers that end with a
// question, the persona's signature.
func TestPersonaShift(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model for about a minute")
	}
	cfg, err := engine.LoadRunConfig("run.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Backend = "cpu"
	cfg.RunsDir = t.TempDir()
	cfg.Train.SampleEvery = 0
	start := time.Now()
	events, _, err := engine.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var first, last float64
	for ev := range events {
		switch e := ev.(type) {
		case engine.StepEvent:
			if e.Step == 1 {
				first = e.Loss
			}
			last = e.Loss
		case engine.DoneEvent:
			if e.Err != nil {
				t.Fatal(e.Err)
			}
		}
	}
	t.Logf("trained in %s: loss %.3f -> %.3f", time.Since(start).Round(time.Second), first, last)

	s, err := chat.Open(cpu.New(), chat.Options{ModelDir: cfg.Model, AdapterDir: filepath.Join(cfg.RunsDir, cfg.Name, "adapter"), MaxLen: 192})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	held, err := demo.Conversations(demo.HeldoutFile)
	if err != nil {
		t.Fatal(err)
	}
	count := func(tuned bool) int {
		n := 0
		for _, ex := range held {
			var q []datasets.Message
			for _, m := range ex.Messages {
				if m.Role == "user" {
					q = append(q, m)
					break
				}
			}
			r, err := s.Generate(context.Background(), q, engine.Greedy(64, nil), tuned, nil)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(strings.TrimSpace(r.Text), "?") {
				n++
			}
			if tuned && n <= 2 {
				t.Logf("tuned: %q -> %q", q[0].Content, r.Text)
			}
		}
		return n
	}
	base, tuned := count(false), count(true)
	t.Logf("answers ending with a question: base %d/20, tuned %d/20", base, tuned)
	if tuned < base+6 {
		t.Fatalf("persona shift too small: base %d/20, tuned %d/20 answers end with a question", base, tuned)
	}
}
