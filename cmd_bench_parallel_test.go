package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

// benchLines runs whet bench with --json on the CPU and decodes its lines.
func benchLines(t *testing.T, args ...string) []benchResult {
	t.Helper()
	var out, errs bytes.Buffer
	args = append(args, "--model", "testdata/tiny-llama", "--seq", "16", "--backend", "cpu", "--peak-tflops", "1", "--json")
	if err := runBench(args, nil, &out, &errs); err != nil {
		t.Fatalf("whet bench %s: %v\n%s", strings.Join(args, " "), err, errs.String())
	}
	var rs []benchResult
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r benchResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		rs = append(rs, r)
	}
	return rs
}

// TestBenchDataParallel: whet bench --ranks 1,2 runs the workload on one
// rank, then data-parallel on 2 CPU ranks (the Go ring) with --batch rows
// per rank, and reports the job's and the rank's rates and the scaling
// efficiency against the one-rank line. The 2-rank run's first-step loss
// (mean over the global batch of 2×2 rows, summed across the ranks)
// equals that of one rank taking the same 4 rows (--batch 4), for LoRA and
// sharded full fine-tuning: a rank whose share were lost or counted twice
// would change it.
func TestBenchDataParallel(t *testing.T) {
	for _, method := range []string{"lora", "full"} {
		t.Run(method, func(t *testing.T) {
			rs := benchLines(t, "--method", method, "--ranks", "2,1", "--batch", "2", "--steps", "1", "--warmup", "0")
			if len(rs) != 2 {
				t.Fatalf("%d lines, want 2 (1 and 2 ranks): %+v", len(rs), rs)
			}
			one, two := rs[0], rs[1]
			if one.Ranks != 1 || one.GlobalBatch != 2 || one.Collective != "" || one.Efficiency == nil || *one.Efficiency != 1 {
				t.Errorf("one-rank line: %+v", one)
			}
			if two.Ranks != 2 || two.Batch != 2 || two.GlobalBatch != 4 || two.Collective != "ring" {
				t.Errorf("two-rank line: %+v", two)
			}
			if !(two.TokensPerSec > 0) || math.Abs(two.PerRankTPS-two.TokensPerSec/2) > 1e-9*two.TokensPerSec ||
				math.Abs(two.TokensPerSec-4*16/two.StepSeconds) > 1e-6*two.TokensPerSec {
				t.Errorf("two-rank rates: job %v tok/s, per rank %v, %v s a step of 4×16 tokens", two.TokensPerSec, two.PerRankTPS, two.StepSeconds)
			}
			if two.Efficiency == nil || math.Abs(*two.Efficiency-two.PerRankTPS/one.PerRankTPS) > 1e-12 {
				t.Errorf("scaling efficiency %v, want %v / %v", two.Efficiency, two.PerRankTPS, one.PerRankTPS)
			}
			ref := benchLines(t, "--method", method, "--batch", "4", "--steps", "1", "--warmup", "0")[0]
			if ref.Efficiency != nil || ref.GlobalBatch != 4 {
				t.Errorf("one rank without --ranks: %+v", ref)
			}
			if d := math.Abs(two.Loss - ref.Loss); !(d <= 1e-5*math.Abs(ref.Loss)) {
				t.Errorf("first-step loss on 2 ranks %.7f, on one rank with the same 4 rows %.7f", two.Loss, ref.Loss)
			}
			if d := math.Abs(one.Loss - ref.Loss); d < 1e-6 {
				t.Errorf("2 rows and 4 rows give the same loss %.7f: the comparison could not fail", ref.Loss)
			}
		})
	}
}

// TestBenchRankFlags: the data-parallel flags' mistakes are refused with
// the flag and value named, before any model is built.
func TestBenchRankFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ranks", "2,x", "--backend", "cpu"}, `--ranks 2,x: "x" is not a count`},
		{[]string{"--ranks", "0", "--backend", "cpu"}, `"0" is not a count of at least 1`},
		{[]string{"--ranks", "2,2", "--backend", "cpu"}, "2 listed twice"},
		{[]string{"--ranks", "1," + strconv.Itoa(benchCPURankLimit()+1), "--backend", "cpu"},
			fmt.Sprintf("--ranks 1,%d: %d ranks asked for, at most %d here", benchCPURankLimit()+1, benchCPURankLimit()+1, benchCPURankLimit())},
		{[]string{"--ranks", "100000", "--backend", "cpu"}, "--ranks 100000: 100000 ranks asked for"},
		{[]string{"--ranks", "2", "--backend", "cuda"}, "CPU ranks need --backend cpu"},
		// The default backend (auto) takes --ranks as whet train does: on a
		// machine without a GPU it is the CPU, so the count is what is judged.
		{[]string{"--ranks", "100000"}, "--ranks 100000: 100000 ranks asked for"},
		{[]string{"--gpus", "2", "--ranks", "2", "--backend", "cpu"}, "cannot both be set"},
		{[]string{"--gpus", "2", "--backend", "cpu"}, "--gpus 2: the backend is cpu"},
		{[]string{"--ranks", "2", "--backend", "cpu", "--decode", "8"}, "--grpo and --decode run on one GPU"},
		{[]string{"--ranks", "2", "--backend", "cpu", "--collective", "carrier-pigeon", "--model", "testdata/tiny-llama", "--seq", "8", "--peak-tflops", "1"}, "--collective carrier-pigeon"},
	} {
		var out, errs bytes.Buffer
		err := runBench(c.args, nil, &out, &errs)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("whet bench %s: error %v, want one containing %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestBenchGPULimit: --gpus counts over the GPUs found are refused with
// the flag, the count and the GPUs found named; counts up to them pass.
func TestBenchGPULimit(t *testing.T) {
	if err := benchGPULimit("1,2,4,8", []int{1, 2, 4, 8}, 8); err != nil {
		t.Errorf("8 GPUs of 8: %v", err)
	}
	err := benchGPULimit("1,16", []int{1, 16}, 8)
	if err == nil || err.Error() != "--gpus 1,16: 16 GPUs asked for, 8 found" {
		t.Errorf("16 GPUs of 8: %v", err)
	}
}
