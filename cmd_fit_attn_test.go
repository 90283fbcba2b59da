package main

import (
	"context"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cuda"
	"whet/engine/gpuinfo"
	"whet/engine/memplan"
	"whet/engine/units"
	"whet/presets"
)

// attnWorkspace is the attention workspace memplan plans for Llama-3.1-8B
// QLoRA r32 at seq tokens on a CUDA device whose attention kernels are k.
func attnWorkspace(t *testing.T, seq int, k engine.AttnKernels) int64 {
	t.Helper()
	e, err := presets.Lookup("llama-3.1-8b")
	if err != nil {
		t.Fatal(err)
	}
	p, err := memplan.Plan(e.ToModelConfig(), memplan.Options{Method: memplan.QLoRA, LoRARank: 32, SeqLen: seq, Checkpointing: true, Attention: k})
	if err != nil {
		t.Fatal(err)
	}
	return p.Bytes(memplan.AttentionWorkspace)
}

// whet fit plans the fused Hopper attention backward's dq accumulator
// (T·32·128·4 bytes for Llama-3.1-8B) on the sm_90 profiles (H100, H200)
// and on a detected sm_90 device, and not on the others (RTX 50,
// RTX PRO 6000 Blackwell, DGX Spark, B200, RTX 4090) nor with
// WHET_ATTN_BWD_FUSED=0 or WHET_DETERMINISTIC=1.
func TestFitPlansFusedAttentionAccumulatorOnHopper(t *testing.T) {
	t.Setenv(engine.MemoryLimitEnv, "")
	t.Setenv(cuda.AttnBwdFusedEnv, "")
	t.Setenv(cuda.DeterministicEnv, "")
	t.Setenv(cuda.AttnHopperEnv, "")
	t.Setenv("WHET_NVRTC_DEFINES", "")
	const seq = 16384
	with := attnWorkspace(t, seq, engine.AttnKernels{Arch: engine.HopperArch})
	without := attnWorkspace(t, seq, engine.AttnKernels{})
	if with-without != int64(seq)*32*128*4 {
		t.Fatalf("the plan's accumulator is %d bytes, want T·H·D·4 = %d", with-without, int64(seq)*32*128*4)
	}
	has := func(out string, n int64) bool {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "attention workspace") && strings.HasSuffix(strings.TrimSpace(l), units.Bytes(n)) {
				return true
			}
		}
		return false
	}
	args := []string{"--model", "llama-3.1-8b", "--method", "qlora", "--rank", "32", "--checkpointing", "--seq", "16384"}
	for gpu, hopper := range map[string]bool{"h100": true, "H200": true, "RTX 5090": false, "RTX PRO 6000": false,
		"DGX Spark": false, "B200": false, "RTX 4090": false} {
		_, out, errs := runFitCLI(t, append(args, "--gpu", gpu)...)
		want := without
		if hopper {
			want = with
		}
		if !has(out, want) {
			t.Errorf("--gpu %s: want the attention workspace %s (accumulator %v); stderr %q\n%s", gpu, units.Bytes(want), hopper, errs, out)
		}
	}
	for env, value := range map[string]string{cuda.AttnBwdFusedEnv: "0", cuda.DeterministicEnv: "1", cuda.AttnHopperEnv: "0"} {
		t.Setenv(env, value)
		if _, out, _ := runFitCLI(t, append(args, "--gpu", "h100")...); !has(out, without) {
			t.Errorf("%s=%s: the accumulator is still planned\n%s", env, value, out)
		}
		t.Setenv(env, "")
	}

	// A detected device: by its compute capability.
	old := detectGPUs
	t.Cleanup(func() { detectGPUs = old })
	for _, c := range []struct {
		major, minor int
		want         int64
	}{{9, 0, with}, {12, 0, without}, {8, 9, without}} {
		detectGPUs = func() (gpuinfo.Report, error) {
			return gpuinfo.Report{GPUs: []gpuinfo.GPU{{Name: "fake", ComputeMajor: c.major, ComputeMinor: c.minor, MemoryTotal: 80 << 30, MemoryFree: 79 << 30}}}, nil
		}
		if _, out, _ := runFitCLI(t, args...); !has(out, c.want) {
			t.Errorf("detected sm_%d%d: want the attention workspace %s\n%s", c.major, c.minor, units.Bytes(c.want), out)
		}
		// The studio's fit page plans the same; train.deterministic keeps
		// the split kernels.
		m, err := presets.LookupMethod("qlora")
		if err != nil {
			t.Fatal(err)
		}
		rc := m.RunConfig()
		rc.Model, rc.Data.Path, rc.Data.MaxLength, rc.LoRA.Rank = "llama-3.1-8b", "data.jsonl", seq, 32
		rc.Train.Checkpointing, rc.Train.MicroBatch = true, 1
		for _, det := range []bool{false, true} {
			rc.Train.Deterministic = det
			rep, err := studioFit{}.Check(context.Background(), rc)
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			if det {
				want = without
			}
			var got int64 = -1
			for _, p := range rep.Parts {
				if p.Name == "attention workspace" {
					got = int64(p.Bytes)
				}
			}
			if got != want {
				t.Errorf("studio, sm_%d%d, deterministic %v: attention workspace %d bytes, want %d", c.major, c.minor, det, got, want)
			}
		}
	}
}
