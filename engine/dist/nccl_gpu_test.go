package dist_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/cuda"
	"whet/engine/dist"
	"whet/engine/gpuinfo"
	_ "whet/presets" // the method defaults FillDefaults reads
)

// TestNCCLAbsentIsExplained: without libnccl.so.2 every NCCL entry point
// says what it looked for and what to do instead.
func TestNCCLAbsentIsExplained(t *testing.T) {
	path, ver, err := dist.OpenNCCL()
	if err == nil {
		t.Skipf("NCCL %d is installed here (%s)", ver, path)
	}
	if !errors.Is(err, dist.ErrNoNCCL) || !strings.Contains(err.Error(), "libnccl.so.2") || !strings.Contains(err.Error(), "collective: ring") {
		t.Fatalf("error does not explain: %v", err)
	}
	if _, err := dist.NewUniqueID(); !errors.Is(err, dist.ErrNoNCCL) {
		t.Fatalf("NewUniqueID without NCCL: %v", err)
	}
}

// loopbackNCCL is a collective of one rank joined as nodes join: rank 0
// makes NCCL's unique id, serves it over TCP on loopback, a node fetches
// it through the rendezvous, and the communicator is made from the
// fetched copy (ncclCommInitRank, the multi-node path).
func loopbackNCCL(bs []engine.Backend) ([]engine.Collective, error) {
	if len(bs) != 1 {
		return nil, fmt.Errorf("loopback NCCL test collective: %d ranks, want 1", len(bs))
	}
	id, err := dist.NewUniqueID()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		_, err := dist.ServeOn(ctx, ln, 2, id[:], 0)
		served <- err
	}()
	roster, err := dist.Fetch(ctx, ln.Addr().String(), 1, 2, 0, 10*time.Millisecond)
	if err != nil {
		return nil, err
	}
	got := roster.Payload
	if err := <-served; err != nil {
		return nil, err
	}
	var fetched dist.UniqueID
	if copy(fetched[:], got) != len(fetched) {
		return nil, fmt.Errorf("rendezvous gave %d bytes, an NCCL id has %d", len(got), len(fetched))
	}
	c, err := dist.JoinNCCL(bs[0], fetched, 0, 1)
	if err != nil {
		return nil, err
	}
	return []engine.Collective{c}, nil
}

func init() { engine.RegisterCollective("nccl-loopback", loopbackNCCL) }

// TestNCCLTrainingEqualsSingleGPU (GPU and NCCL; skips without them):
// the data-parallel path with one rank through NCCL (ncclCommInitAll),
// with the buckets reduced in order on the compute stream
// (WHET_DP_NO_OVERLAP=1), trains LoRA and full fine-tuning (sharded:
// reduce-scatter, all-gather) to the same losses as the plain single-GPU
// run; so does the TCP rendezvous on loopback (ncclCommInitRank with the
// fetched id).
func TestNCCLTrainingEqualsSingleGPU(t *testing.T) {
	t.Setenv("WHET_DP_NO_OVERLAP", "1")
	ncclTraining(t, "nccl", "nccl-loopback")
}

// TestNCCLOverlappedTrainingEqualsSingleGPU is the same with the buckets
// reduced on a second stream beside the backward (the default).
func TestNCCLOverlappedTrainingEqualsSingleGPU(t *testing.T) {
	ncclTraining(t, "nccl", "nccl-loopback")
}

func ncclTraining(t *testing.T, collectives ...string) {
	ncclReady(t)
	for _, method := range []string{"lora", "full"} {
		base := ncclRun(t, method, func(c *engine.RunConfig) { c.Parallel.BucketMB = 0.05 })
		for _, name := range collectives {
			got := ncclRun(t, method, func(c *engine.RunConfig) { c.Parallel.Collective, c.Parallel.BucketMB = name, 0.05 })
			sameLossCurve(t, method+" "+name, got, base, 1e-3)
		}
	}
}

// The GPUs of a data-parallel run (parallel.gpus), as the whet program
// registers them.
func init() {
	engine.RegisterDevices("cuda", engine.DeviceBackends{
		Count: func() (int, error) {
			r, err := gpuinfo.Detect()
			return len(r.GPUs), err
		},
		Open: func(device int) (engine.Backend, error) { return cuda.New(cuda.Options{Device: device}) },
	})
}

// TestNCCLRanksEqualOneGPU (2+ GPUs and NCCL; skips without them): a run
// over 2, 4 and 8 GPUs (as many as the machine has; parallel.gpus, NCCL,
// buckets reduced beside the backward) takes the one-GPU run's global
// batch (grad_accum 8) and makes its loss curve over 50 steps (within 1%,
// the bar; the first step within 1e-3), for LoRA and sharded full
// fine-tuning.
func TestNCCLRanksEqualOneGPU(t *testing.T) {
	gpus := multiGPU(t)
	for _, method := range []string{"lora", "full"} {
		long := func(c *engine.RunConfig) { c.Train.MaxSteps, c.Train.GradAccum, c.Train.SaveEvery = 50, 8, 0 }
		base := ncclRun(t, method, long)
		for _, n := range []int{2, 4, 8} {
			if n > gpus {
				break
			}
			got := ncclRun(t, method, func(c *engine.RunConfig) {
				long(c)
				c.Parallel.GPUs, c.Parallel.BucketMB = strconv.Itoa(n), 0.05
			})
			what := fmt.Sprintf("%s on %d GPUs", method, n)
			sameLossCurve(t, what, got[:1], base[:1], 1e-3)
			sameLossCurve(t, what, got, base, 1e-2)
		}
	}
}

// TestNCCLCheckpointResumesOnOneGPU (2+ GPUs and NCCL): a checkpoint
// written by 2 GPUs (sharded full fine-tuning: the state gathered to rank
// 0) resumes on one GPU, and the resumed steps make the losses the 2-GPU
// run made.
func TestNCCLCheckpointResumesOnOneGPU(t *testing.T) {
	multiGPU(t)
	runs := t.TempDir()
	two := ncclRun(t, "full", func(c *engine.RunConfig) {
		c.RunsDir, c.Train.MaxSteps, c.Train.SaveEvery = runs, 4, 2
		c.Parallel.GPUs = "2"
	})
	// The run folder as it was after step 2 (the run is over: its folder
	// is free), resumed on one GPU.
	if err := os.RemoveAll(filepath.Join(runs, "r", "checkpoints", "step-00000004")); err != nil {
		t.Fatal(err)
	}
	one := ncclRun(t, "full", func(c *engine.RunConfig) { c.RunsDir, c.Train.MaxSteps, c.Train.SaveEvery = runs, 4, 2 })
	if len(one) != 2 {
		t.Fatalf("the resumed run made %d steps, want 2 (3 and 4)", len(one))
	}
	sameLossCurve(t, "resumed on one GPU", one, two[2:], 1e-3)
}

// multiGPU skips without NCCL and 2 GPUs; it returns the GPU count.
func multiGPU(t *testing.T) int {
	ncclReady(t)
	r, err := gpuinfo.Detect()
	if err != nil || len(r.GPUs) < 2 {
		t.Skipf("needs 2 GPUs or more: %d found (%v)", len(r.GPUs), err)
	}
	return len(r.GPUs)
}

// ncclReady skips without a GPU or NCCL.
func ncclReady(t *testing.T) {
	b, err := cuda.New(cuda.Options{})
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	b.Close()
	path, ver, err := dist.OpenNCCL()
	if err != nil {
		t.Logf("searched after the loader's path: %s", strings.Join(cuda.LibrarySearchDirs(), ", "))
		t.Skipf("no NCCL: %v", err)
	}
	t.Logf("NCCL %d from %s", ver, path)
}

// ncclRun trains tiny Qwen2 on the GPU (5 steps of 2 micro-batches, a
// checkpoint every 2, unless set changes them) and returns the losses.
func ncclRun(t *testing.T, method string, set func(*engine.RunConfig)) []float64 {
	t.Helper()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	cfg := engine.RunConfig{Name: "r", Model: abs("../../testdata/tiny-qwen2"), Method: method, Backend: "cuda", RunsDir: t.TempDir(),
		LoRA:  engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data:  engine.DataConfig{Path: abs("../../testdata/datasets/tiny-chat.jsonl"), MaxLength: 64, Packing: true, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 5, MicroBatch: 1, GradAccum: 2, LR: 1e-3, Schedule: "constant", Seed: 3, MaxGradNorm: 1, SaveEvery: 2}}
	set(&cfg)
	what := fmt.Sprintf("%s %+v", method, cfg.Parallel)
	if err := cfg.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	cfg.Train.WarmupSteps, cfg.Train.WarmupRatio = 0, 0
	events, _, err := engine.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var losses []float64
	for ev := range events {
		switch e := ev.(type) {
		case engine.StepEvent:
			losses = append(losses, e.Loss)
		case engine.LogEvent:
			t.Logf("%s: %s", what, e.Text)
		case engine.DoneEvent:
			if e.Err != nil {
				t.Fatalf("%s: %v", what, e.Err)
			}
		}
	}
	return losses
}

// sameLossCurve holds every step's loss within tol (relative) of the
// single-GPU run's.
func sameLossCurve(t *testing.T, what string, got, base []float64, tol float64) {
	t.Helper()
	if len(got) != len(base) {
		t.Fatalf("%s: %d steps, want %d", what, len(got), len(base))
	}
	for i := range base {
		if d := math.Abs(got[i]-base[i]) / base[i]; !(d <= tol) {
			t.Errorf("%s: step %d loss %.6f, single GPU %.6f", what, i+1, got[i], base[i])
		}
	}
	t.Logf("%s: losses %v, single GPU %v", what, got, base)
}
