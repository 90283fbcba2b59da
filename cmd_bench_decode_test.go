package main

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

// TestBenchDecode: whet bench --decode on the CPU reports one line per
// method with the decoding path taken (the CPU has no recorder, so graph
// falls back to device, saying why, and graph is the default; plain is
// asked for by name) and the weight bytes a token reads: NF4 linears
// (qlora) read far fewer than bf16 ones.
func TestBenchDecode(t *testing.T) {
	run := func(env string) []decodeResult {
		t.Setenv("WHET_DECODE", env)
		var out, errs bytes.Buffer
		args := []string{"--decode", "3", "--method", "lora,qlora", "--model", "testdata/tiny-llama", "--seq", "8", "--backend", "cpu", "--peak-tflops", "1", "--json"}
		if err := runBench(args, nil, &out, &errs); err != nil {
			t.Fatalf("whet bench: %v\n%s", err, errs.String())
		}
		var rs []decodeResult
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var r decodeResult
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%v: %q", err, line)
			}
			rs = append(rs, r)
		}
		if len(rs) != 2 || rs[0].Method != "lora" || rs[1].Method != "qlora" {
			t.Fatalf("lines %+v: want lora then qlora", rs)
		}
		for _, r := range rs {
			// The rate itself is noise on a tiny model (prefill timed
			// apart can exceed the difference on a loaded machine).
			if r.NewTokens != 3 || math.IsNaN(r.DecodePerSec) || r.WeightBytes <= 0 {
				t.Errorf("%+v: want 3 tokens, a rate and the weight bytes", r)
			}
		}
		if rs[1].WeightBytes >= rs[0].WeightBytes {
			t.Errorf("NF4 reads %d bytes a token, bf16 %d", rs[1].WeightBytes, rs[0].WeightBytes)
		}
		return rs
	}
	if rs := run("graph"); rs[0].Mode != "device" || !strings.Contains(rs[0].Fallback, "cannot record") {
		t.Errorf("WHET_DECODE=graph on the CPU: mode %q (%q), want device with the reason", rs[0].Mode, rs[0].Fallback)
	}
	// The default is graph (since the GPU call of 2026-12-07), which the
	// CPU runs as device; plain is asked for by name.
	if rs := run(""); rs[0].Mode != "device" || !strings.Contains(rs[0].Fallback, "cannot record") {
		t.Errorf("default: mode %q (%q), want graph falling back to device", rs[0].Mode, rs[0].Fallback)
	}
	plain := run("plain")
	if rs := plain; rs[0].Mode != "plain" || rs[0].Fallback != "" {
		t.Errorf("WHET_DECODE=plain: mode %q (%q), want plain", rs[0].Mode, rs[0].Fallback)
	}
	// The greedy tokens' hash and head: the same tokens on every path of
	// the CPU (the device ops give the plain path's exactly).
	device := run("device")
	for i := range plain {
		p, d := plain[i], device[i]
		if len(p.Greedy) != 16 || len(p.GreedyHead) != 3 || p.Greedy != d.Greedy || !slices.Equal(p.GreedyHead, d.GreedyHead) {
			t.Errorf("%s: greedy %q %v on the plain path, %q %v on the device path: want 16 hex digits, 3 ids, equal",
				p.Method, p.Greedy, p.GreedyHead, d.Greedy, d.GreedyHead)
		}
	}
	if plain[0].Greedy == plain[1].Greedy && !slices.Equal(plain[0].GreedyHead, plain[1].GreedyHead) {
		t.Errorf("bf16 and NF4 tokens differ (%v, %v) but hash alike %q", plain[0].GreedyHead, plain[1].GreedyHead, plain[0].Greedy)
	}
	// --decode-modes times several paths on one model, a line each.
	var out, errs bytes.Buffer
	args := []string{"--decode", "4", "--decode-modes", "plain,device", "--model", "testdata/tiny-llama", "--seq", "8", "--backend", "cpu", "--peak-tflops", "1", "--json"}
	if err := runBench(args, nil, &out, &errs); err != nil {
		t.Fatalf("whet bench: %v\n%s", err, errs.String())
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 ||
		!strings.Contains(lines[0], `"decode_mode":"plain"`) || !strings.Contains(lines[1], `"decode_mode":"device"`) {
		t.Errorf("--decode-modes plain,device: %q", out.String())
	}
	// +cublas needs a backend with a GEMV kernel.
	args[3] = "plain+cublas"
	if err := runBench(args, nil, &out, &errs); err == nil || !strings.Contains(err.Error(), "no GEMV kernel") {
		t.Errorf("plain+cublas on the CPU: %v", err)
	}
}

// TestBenchDecodeBatch: --decode-batch N adds a line comparing N prompts
// of different lengths generated one after another with the same N in
// one batched call; on the CPU their greedy tokens agree. Without
// --decode it is refused.
func TestBenchDecodeBatch(t *testing.T) {
	var out, errs bytes.Buffer
	args := []string{"--decode", "5", "--decode-modes", "plain", "--decode-batch", "3", "--model", "testdata/tiny-llama", "--seq", "12", "--backend", "cpu", "--peak-tflops", "1", "--json"}
	if err := runBench(args, nil, &out, &errs); err != nil {
		t.Fatalf("whet bench: %v\n%s", err, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want the decode line and the batch line: %q", len(lines), out.String())
	}
	var r decodeBatchResult
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil {
		t.Fatal(err)
	}
	if r.Batch != 3 || len(r.Prompts) != 3 || r.Prompts[0] != 12 || r.Prompts[2] >= r.Prompts[0] || r.NewTokens != 5 {
		t.Errorf("%+v: want 3 prompts from 12 tokens down, 5 new each", r)
	}
	if !r.GreedySame || r.Differ != "" {
		t.Errorf("batched and one-by-one greedy tokens differ on the CPU: %s", r.Differ)
	}
	if r.SequentialSec <= 0 || r.BatchedSec <= 0 || r.KVBlocks != 4 || r.SequentialMode != "plain" {
		t.Errorf("%+v: want times, 4 blocks of 16 (12+5 tokens take two, 10+5 and 8+5 one), the plain path", r)
	}
	if err := runBench([]string{"--decode-batch", "2", "--model", "testdata/tiny-llama", "--backend", "cpu"}, nil, &out, &errs); err == nil || !strings.Contains(err.Error(), "with --decode") {
		t.Errorf("--decode-batch without --decode: %v", err)
	}
}
