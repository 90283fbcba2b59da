package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBenchLossPrefix: --loss-prefix reports the first step's loss over
// the first N positions, and a long QLoRA run of tiny-qwen2 (33 tokens, checkpoints offloaded)
// and a short one (9 tokens, no checkpointing) of the same random model
// give the same number and the same per-token losses (--loss-prefix-out):
// the model is causal and the short run's tokens are the long run's first.
// The prefix's loss is not the long step's, and bad flags are refused.
func TestBenchLossPrefix(t *testing.T) {
	dir := t.TempDir()
	run := func(seq string, extra ...string) (benchResult, []float64) {
		t.Helper()
		out := filepath.Join(dir, "seq"+seq+".txt")
		var stdout, stderr bytes.Buffer
		args := append([]string{"--model", "testdata/tiny-qwen2", "--method", "qlora", "--rank", "4", "--batch", "1", "--seq", seq, "--steps", "2", "--warmup", "0",
			"--backend", "cpu", "--peak-tflops", "1", "--json", "--loss-prefix", "8", "--loss-prefix-out", out}, extra...)
		if err := runBench(args, nil, &stdout, &stderr); err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
		var r benchResult
		if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &r); err != nil {
			t.Fatalf("%v: %s", err, stdout.String())
		}
		text, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var ls []float64
		for _, f := range strings.Fields(string(text)) {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			ls = append(ls, v)
		}
		if r.PrefixLoss == nil || r.PrefixTokens != 8 || len(ls) != 8 || len(r.Losses) != 2 || len(r.StepTimes) != 2 || r.SetupSeconds <= 0 {
			t.Fatalf("--seq %s: prefix_tokens %d, prefix_loss %v, %d losses in the file, losses %v, step times %v, setup %g s",
				seq, r.PrefixTokens, r.PrefixLoss, len(ls), r.Losses, r.StepTimes, r.SetupSeconds)
		}
		var sum float64
		for _, l := range ls {
			sum += l
		}
		if d := math.Abs(sum/8 - *r.PrefixLoss); d > 1e-6 {
			t.Fatalf("--seq %s: prefix_loss %g, the file's mean %g", seq, *r.PrefixLoss, sum/8)
		}
		return r, ls
	}
	long, lls := run("33", "--checkpointing", "--offload", "on")
	short, sls := run("9")
	if !long.Offload {
		t.Fatal("the long run did not offload its checkpoints")
	}
	for i := range lls {
		if d := math.Abs(lls[i] - sls[i]); d > 1e-5*math.Abs(sls[i]) {
			t.Errorf("position %d: token loss %g in the 33-token step, %g in the 9-token one", i, lls[i], sls[i])
		}
	}
	if d := math.Abs(*long.PrefixLoss - *short.PrefixLoss); d > 1e-5**short.PrefixLoss {
		t.Errorf("prefix loss %g at 33 tokens, %g at 9", *long.PrefixLoss, *short.PrefixLoss)
	}
	if math.Abs(long.Losses[0]-*long.PrefixLoss) < 1e-4 {
		t.Errorf("the 33-token step's loss %g equals its prefix's %g: the prefix is not told apart", long.Losses[0], *long.PrefixLoss)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--seq", "9", "--loss-prefix", "9"}, "--loss-prefix 9: want a number of positions from 1 to --seq − 1 = 8"},
		{[]string{"--seq", "9", "--loss-prefix-out", filepath.Join(dir, "x")}, "--loss-prefix-out: give --loss-prefix N too"},
		{[]string{"--seq", "9", "--loss-prefix", "4", "--decode", "4"}, "--loss-prefix: for supervised steps"},
		{[]string{"--seq", "9", "--loss-prefix", "4", "--method", "lora,full", "--loss-prefix-out", filepath.Join(dir, "x")}, "--loss-prefix-out: one --model and one --method"},
	} {
		var stdout, stderr bytes.Buffer
		err := runBench(append([]string{"--model", "testdata/tiny-llama", "--backend", "cpu", "--peak-tflops", "1"}, c.args...), nil, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}
