package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
)

// TestBenchPeakPerWorkload: with several models in one whet bench, each
// line's peak_bytes is that workload's own peak, the same as when it runs
// alone, not the largest peak of the workloads before it.
func TestBenchPeakPerWorkload(t *testing.T) {
	peaks := func(models string) map[string]int64 {
		t.Helper()
		var out, errs bytes.Buffer
		err := runBench([]string{"--model", models, "--batch", "1", "--seq", "16", "--steps", "1", "--warmup", "0",
			"--backend", "cpu", "--peak-tflops", "1", "--json"}, nil, &out, &errs)
		if err != nil {
			t.Fatalf("%v\n%s", err, errs.String())
		}
		got := map[string]int64{}
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			var r benchResult
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%v: %s", err, sc.Text())
			}
			got[r.Model] = r.PeakBytes
		}
		return got
	}
	const big, small = "testdata/tiny-gemma3", "testdata/tiny-llama"
	alone := peaks(small)[small]
	if big := peaks(big)[big]; !(big > alone) {
		t.Fatalf("%s peaks at %d bytes, %s at %d: the test needs the first larger", "tiny-gemma3", big, small, alone)
	}
	if after := peaks(big + "," + small)[small]; after != alone {
		t.Errorf("%s after %s peaks at %d bytes, alone at %d", small, big, after, alone)
	}
}
