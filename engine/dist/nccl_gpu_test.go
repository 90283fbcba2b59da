package dist_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
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
		base := ncclRun(t, method, engine.ParallelConfig{BucketMB: 0.05}, 2)
		for _, c := range collectives {
			got := ncclRun(t, method, engine.ParallelConfig{Collective: c, BucketMB: 0.05}, 2)
			sameLossCurve(t, method+" "+c, got, base)
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
// batch (grad_accum 8) and makes its losses, for LoRA and sharded full
// fine-tuning.
func TestNCCLRanksEqualOneGPU(t *testing.T) {
	ncclReady(t)
	r, err := gpuinfo.Detect()
	if err != nil || len(r.GPUs) < 2 {
		t.Skipf("needs 2 GPUs or more: %d found (%v)", len(r.GPUs), err)
	}
	for _, method := range []string{"lora", "full"} {
		base := ncclRun(t, method, engine.ParallelConfig{}, 8)
		for _, n := range []int{2, 4, 8} {
			if n > len(r.GPUs) {
				break
			}
			got := ncclRun(t, method, engine.ParallelConfig{GPUs: strconv.Itoa(n), BucketMB: 0.05}, 8)
			sameLossCurve(t, fmt.Sprintf("%s on %d GPUs", method, n), got, base)
		}
	}
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

// ncclRun trains tiny Qwen2 on the GPU for 5 steps of accum micro-batches
// with the parallel settings given and returns the losses.
func ncclRun(t *testing.T, method string, par engine.ParallelConfig, accum int) []float64 {
	t.Helper()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	what := fmt.Sprintf("%s %+v", method, par)
	cfg := engine.RunConfig{Name: "r", Model: abs("../../testdata/tiny-qwen2"), Method: method, Backend: "cuda", RunsDir: t.TempDir(),
		LoRA:     engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data:     engine.DataConfig{Path: abs("../../testdata/datasets/tiny-chat.jsonl"), MaxLength: 64, Packing: true, Seed: 1},
		Train:    engine.TrainConfig{MaxSteps: 5, MicroBatch: 1, GradAccum: accum, LR: 1e-3, Schedule: "constant", Seed: 3, MaxGradNorm: 1, SaveEvery: 2},
		Parallel: par}
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

// sameLossCurve holds every step's loss within 1e-3 (relative) of the
// single-GPU run's.
func sameLossCurve(t *testing.T, what string, got, base []float64) {
	t.Helper()
	if len(got) != len(base) {
		t.Fatalf("%s: %d steps, want %d", what, len(got), len(base))
	}
	for i := range base {
		if d := math.Abs(got[i]-base[i]) / base[i]; !(d <= 1e-3) {
			t.Errorf("%s: step %d loss %.6f, single GPU %.6f", what, i+1, got[i], base[i])
		}
	}
	t.Logf("%s: losses %v, single GPU %v", what, got, base)
}
