package main

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// TestBenchLogitsChunk: whet bench --logits-chunk runs the step with the
// LM head in chunks of that many rows: the same loss, a peak lower by
// exactly the logits and final-norm rows it no longer holds (fp32 on the
// CPU backend), the plan lower by the same, and the chunk reported.
func TestBenchLogitsChunk(t *testing.T) {
	run := func(args ...string) benchResult {
		t.Helper()
		var out, errs bytes.Buffer
		err := runBench(append([]string{"--model", "testdata/tiny-llama", "--batch", "2", "--seq", "32", "--steps", "1", "--warmup", "0",
			"--backend", "cpu", "--peak-tflops", "1", "--json"}, args...), nil, &out, &errs)
		if err != nil {
			t.Fatalf("%v\n%s", err, errs.String())
		}
		var r benchResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		return r
	}
	whole, chunked := run(), run("--logits-chunk", "5")
	if whole.LogitsChunk != 64 || chunked.LogitsChunk != 5 {
		t.Fatalf("logits chunks %d and %d, want 64 (the batch) and 5", whole.LogitsChunk, chunked.LogitsChunk)
	}
	if math.Abs(whole.Loss-chunked.Loss) > 1e-6*math.Abs(whole.Loss) {
		t.Errorf("loss %v in chunks of 5, %v in one", chunked.Loss, whole.Loss)
	}
	cfg, err := benchModel("testdata/tiny-llama")
	if err != nil {
		t.Fatal(err)
	}
	// 59 fewer rows of fp32 logits [V] and of the fp32 norm output [D].
	want := int64(64-5) * int64(cfg.VocabSize+cfg.HiddenSize) * 4
	if got := whole.PeakBytes - chunked.PeakBytes; got != want {
		t.Errorf("the chunking saves %d bytes of peak, want %d", got, want)
	}
	if got := whole.PlanBytes - chunked.PlanBytes; math.Abs(float64(got-want)) > 2*256 {
		t.Errorf("the plan drops by %d bytes, want %d (to the 256-byte alignment of two buffers)", got, want)
	}
	var out, errs bytes.Buffer
	if err := runBench([]string{"--logits-chunk", "-1", "--backend", "cpu"}, nil, &out, &errs); err == nil {
		t.Error("a negative --logits-chunk was accepted")
	}
}
