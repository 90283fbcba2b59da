package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestBenchGRPO runs whet bench's GRPO workload on the tiny Llama on the
// CPU: every step samples 2 completions of 8 tokens (random weights never
// stop early) and trains on them; both rates come out positive.
func TestBenchGRPO(t *testing.T) {
	var out, errs bytes.Buffer
	err := runBench([]string{"--grpo", "2", "--model", "testdata/tiny-llama", "--seq", "8", "--completion", "8", "--steps", "2", "--warmup", "1", "--backend", "cpu", "--peak-tflops", "1"}, nil, &out, &errs)
	if err != nil {
		t.Fatalf("%v\n%s", err, errs.String())
	}
	var r grpoBenchResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Generations != 2 || r.CompletionMean != 8 || !(r.GenPerSec > 0) || !(r.UpdatePerSec > 0) || !(r.GenShare > 0 && r.GenShare < 1) {
		t.Fatalf("%+v", r)
	}
}
