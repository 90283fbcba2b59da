package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// TestBenchDecode: whet bench --decode on the CPU reports one line per
// method with the decoding path taken (the CPU has no recorder, so graph
// falls back to device, saying why; by default the plain path) and the weight bytes a token reads: NF4 linears (qlora) read far
// fewer than bf16 ones.
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
	if rs := run(""); rs[0].Mode != "plain" || rs[0].Fallback != "" {
		t.Errorf("default: mode %q (%q), want plain", rs[0].Mode, rs[0].Fallback)
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
