package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/engine"
	_ "whet/engine/dist" // the ring collective
	"whet/engine/safetensors"
)

// dpRun is what a data-parallel test compares of one run.
type dpRun struct {
	losses []float64
	dir    string
}

// trainRanks runs cfg to its end with ranks CPU ranks (1: no data
// parallelism at all, the reference).
func trainRanks(t *testing.T, cfg engine.RunConfig, ranks int) dpRun {
	t.Helper()
	if ranks > 1 {
		cfg.Parallel.Ranks = ranks
	}
	var r dpRun
	events, _, err := engine.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range events {
		switch e := ev.(type) {
		case engine.StepEvent:
			r.losses = append(r.losses, e.Loss)
		case engine.DoneEvent:
			if e.Err != nil {
				t.Fatalf("%d ranks: %v", ranks, e.Err)
			}
		}
	}
	r.dir = filepath.Join(cfg.RunsDir, cfg.Name)
	return r
}

// checkpointTensors reads a checkpoint's tensors by name.
func checkpointTensors(t *testing.T, dir string, step int) map[string][]float32 {
	t.Helper()
	path := filepath.Join(dir, "checkpoints", fmt.Sprintf("step-%08d", step), "trainable.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]float32{}
	for _, name := range f.Names() {
		if out[name], err = f.Float32(name); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// relDiff is |a-b|/|b| over a whole tensor (0 when both are 0).
func relDiff(a, b []float32) float64 {
	var d, n float64
	for i := range b {
		d += math.Pow(float64(a[i])-float64(b[i]), 2)
		n += math.Pow(float64(b[i]), 2)
	}
	if n == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / n)
}

// sameCheckpoints compares two runs' checkpoints of a step tensor by
// tensor within tol (relative): at step 1 exp_avg is (1-β1)·gradient, so
// this compares the first step's gradients; later, the weights.
func sameCheckpoints(t *testing.T, what string, got, want dpRun, step int, tol float64, suffixes ...string) {
	t.Helper()
	a, b := checkpointTensors(t, got.dir, step), checkpointTensors(t, want.dir, step)
	if len(a) != len(b) || len(b) == 0 {
		t.Fatalf("%s: step %d checkpoints hold %d and %d tensors", what, step, len(a), len(b))
	}
	for name, w := range b {
		if len(suffixes) > 0 && !slices.ContainsFunc(suffixes, func(s string) bool { return strings.HasSuffix(name, s) }) {
			continue
		}
		g, ok := a[name]
		if !ok {
			t.Fatalf("%s: step %d checkpoint lacks %s", what, step, name)
		}
		if d := relDiff(g, w); !(d <= tol) {
			t.Errorf("%s: step %d %s differs by %.3g relative (tolerance %g)", what, step, name, d, tol)
		}
	}
}

func sameLosses(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("%s: %d steps, want %d", what, len(got), len(want))
	}
	for i := range want {
		if d := math.Abs(got[i] - want[i]); !(d <= 1e-5) {
			t.Errorf("%s: step %d loss %.7f, one rank %.7f (differ by %.2g)", what, i+1, got[i], want[i], d)
		}
	}
}

// weightTol is how far weights and moments after an update may drift
// from the one-rank run's. Full fine-tuning updates every embedding row
// and bias, many with gradients near AdamW's eps where m/(√v+eps) turns a
// float32 rounding difference of the gradient sum (the ranks add in
// another order) into a relative difference of the update a thousand
// times larger; measured at most 7e-5 over three steps.
func weightTol(method string) float64 {
	if method == "full" {
		return 2e-4
	}
	return 1e-5
}

// dpConfig is a short run of the tiny Qwen2 (f32) that keeps every
// checkpoint, with small gradient buckets so that several are reduced
// while the backward goes on.
func dpConfig(t *testing.T, name, method string, micro, accum int) engine.RunConfig {
	cfg := engine.RunConfig{Name: name, Model: abs("../testdata/tiny-qwen2"), Method: method, Backend: "cpu", RunsDir: t.TempDir(),
		LoRA:     engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data:     engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 64, Packing: true, Seed: 1},
		Train:    engine.TrainConfig{MaxSteps: 3, MicroBatch: micro, GradAccum: accum, LR: 3e-3, Schedule: "linear", Seed: 7, MaxGradNorm: 1, SaveEvery: 1},
		Parallel: engine.ParallelConfig{BucketMB: 0.05}}
	if method == "dpo" {
		cfg.Data.Path = writePrefs(t, 16)
		cfg.DPO = engine.DPOConfig{Beta: 0.1}
	}
	cfg = withDefaults(t, cfg)
	cfg.Train.WarmupSteps, cfg.Train.WarmupRatio, cfg.Train.WeightDecay, cfg.Train.KeepCheckpoints = 0, 0, 0.01, 0
	return cfg
}

// TestDataParallelEqualsOneRank: 2 and 4 CPU ranks sharing each global
// batch give the one-rank run's losses (within 1e-5) and gradients and
// weights (within 1e-5 relative), for LoRA, full fine-tuning with sharded
// optimizer state and masters, and DPO; whole micro-batches dealt out
// (grad_accum 4) and rows of one micro-batch dealt out (grad_accum 1).
func TestDataParallelEqualsOneRank(t *testing.T) {
	for _, c := range []struct {
		method       string
		micro, accum int
	}{{"lora", 1, 4}, {"full", 1, 4}, {"dpo", 1, 4}, {"lora", 4, 1}, {"full", 2, 2}} {
		t.Run(fmt.Sprintf("%s-mb%d-ga%d", c.method, c.micro, c.accum), func(t *testing.T) {
			one := trainRanks(t, dpConfig(t, "one", c.method, c.micro, c.accum), 1)
			for _, n := range []int{2, 4} {
				got := trainRanks(t, dpConfig(t, fmt.Sprintf("ranks%d", n), c.method, c.micro, c.accum), n)
				what := fmt.Sprintf("%d ranks", n)
				sameLosses(t, what, got.losses, one.losses)
				// The first step's moments are the gradient and its
				// square, from the same weights: 1e-5.
				sameCheckpoints(t, what, got, one, 1, 1e-5, ".exp_avg", ".exp_avg_sq")
				for step := 1; step <= 3; step++ {
					sameCheckpoints(t, what, got, one, step, weightTol(c.method))
				}
			}
		})
	}
}

// TestDataParallelOneRankNamedCollective: naming a collective with one
// rank runs the data-parallel path (buckets, commands, the sharded step)
// on that rank, as the GPU test does with NCCL, and gives the plain run.
func TestDataParallelOneRankNamedCollective(t *testing.T) {
	for _, method := range []string{"lora", "full"} {
		one := trainRanks(t, dpConfig(t, "plain", method, 1, 2), 1)
		cfg := dpConfig(t, "ring1", method, 1, 2)
		cfg.Parallel.Collective = "ring"
		got := trainRanks(t, cfg, 1)
		sameLosses(t, method+" ring of one", got.losses, one.losses)
		sameCheckpoints(t, method+" ring of one", got, one, 3, weightTol(method))
	}
}

// TestDataParallelCheckpointResumesOnOtherRankCounts: a checkpoint written
// by 4 ranks (sharded full fine-tuning) resumes with 2 ranks and with 1,
// and either run ends where the uninterrupted 4-rank run ended.
func TestDataParallelCheckpointResumesOnOtherRankCounts(t *testing.T) {
	cfg := dpConfig(t, "four", "full", 1, 4)
	cfg.Train.MaxSteps, cfg.Train.SaveEvery = 4, 2
	four := trainRanks(t, cfg, 4)
	for _, n := range []int{2, 1} {
		t.Run(fmt.Sprintf("resume-with-%d", n), func(t *testing.T) {
			// A copy of the 4-rank run folder as it was after step 2.
			c := cfg
			c.RunsDir = t.TempDir()
			copyDir(t, four.dir, filepath.Join(c.RunsDir, c.Name))
			os.RemoveAll(filepath.Join(c.RunsDir, c.Name, "checkpoints", "step-00000004"))
			resumed := trainRanks(t, c, n)
			if len(resumed.losses) != 2 {
				t.Fatalf("resumed run made %d steps, want 2 (3 and 4)", len(resumed.losses))
			}
			sameLosses(t, fmt.Sprintf("resumed with %d", n), resumed.losses, four.losses[2:])
			sameCheckpoints(t, fmt.Sprintf("resumed with %d", n), resumed, four, 4, weightTol("full"))
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDataParallelPauseCheckpointStop: a run of 2 CPU ranks (sharded full
// fine-tuning) obeys pause, checkpoint and stop through rank 0's control
// while the other rank follows: the stop writes a checkpoint of the last
// step and the run ends (no rank is left waiting).
func TestDataParallelPauseCheckpointStop(t *testing.T) {
	cfg := dpConfig(t, "stop", "full", 1, 2)
	cfg.Train.MaxSteps, cfg.Train.SaveEvery = 1000, 0
	cfg.Parallel.Ranks = 2
	events, ctl, err := engine.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var done engine.DoneEvent
	var ckpts []int
	steps := 0
	for ev := range events {
		switch e := ev.(type) {
		case engine.StepEvent:
			steps++
			switch steps {
			case 1:
				ctl.Pause()
				ctl.Checkpoint()
				ctl.Resume()
			case 3:
				ctl.Stop()
			}
		case engine.CheckpointEvent:
			ckpts = append(ckpts, e.Step)
		case engine.DoneEvent:
			done = e
		}
	}
	if done.Err != nil || !done.Stopped {
		t.Fatalf("run ended with %+v", done)
	}
	if len(ckpts) != 2 || ckpts[len(ckpts)-1] != done.Step {
		t.Fatalf("checkpoints at %v, stopped at step %d: want one asked for and one at the stop", ckpts, done.Step)
	}
	// The stop's checkpoint holds every tensor, gathered from both ranks.
	tensors := checkpointTensors(t, filepath.Join(cfg.RunsDir, cfg.Name), done.Step)
	for name, v := range tensors {
		if strings.HasSuffix(name, ".exp_avg_sq") && relDiff(v, make([]float32, len(v))) == 0 {
			t.Errorf("%s is all zero in the stop's checkpoint", name)
		}
	}
}

func TestParseGPUs(t *testing.T) {
	for _, c := range []struct {
		spec  string
		count int
		want  []int
		err   string
	}{
		{"", 4, []int{0}, ""},
		{"all", 3, []int{0, 1, 2}, ""},
		{"2", 4, []int{0, 1}, ""},
		{"3,0, 2", 4, []int{0, 2, 3}, ""},
		{"all", 0, nil, "no GPU found"},
		{"5", 4, nil, "5 asked for, 4 found"},
		{"0,4", 4, nil, "device 4 asked for, 4 found"},
		{"1,1", 4, nil, "device 1 listed twice"},
		{"two", 4, nil, "not all, a count"},
		{"0,-1", 4, nil, "not a device index"},
	} {
		got, err := engine.ParseGPUs(c.spec, c.count)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseGPUs(%q, %d) = %v, %v; want an error with %q", c.spec, c.count, got, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseGPUs(%q, %d) = %v, %v; want %v", c.spec, c.count, got, err, c.want)
		}
	}
}

func FuzzParseGPUs(f *testing.F) {
	for _, s := range []string{"", "all", "3", "0,2,3", "1,1", "-1", "0,,1"} {
		f.Add(s, 4)
	}
	f.Fuzz(func(t *testing.T, spec string, count int) {
		count %= 1024
		ids, err := engine.ParseGPUs(spec, count)
		if err != nil {
			return
		}
		seen := map[int]bool{}
		for i, id := range ids {
			if id < 0 || id >= count || seen[id] || (i > 0 && id < ids[i-1]) {
				t.Fatalf("ParseGPUs(%q, %d) = %v", spec, count, ids)
			}
			seen[id] = true
		}
	})
}

// TestDeviceCount: a registered kind's count comes back known, its error
// wrapped through; an unregistered kind is not known.
func TestDeviceCount(t *testing.T) {
	if n, known, err := engine.DeviceCount("no-such-kind"); known || n != 0 || err != nil {
		t.Errorf("unregistered: %d %v %v, want not known", n, known, err)
	}
	engine.RegisterDevices("test-devices-3", engine.DeviceBackends{Count: func() (int, error) { return 3, nil }})
	if n, known, err := engine.DeviceCount("test-devices-3"); !known || n != 3 || err != nil {
		t.Errorf("3 devices: %d %v %v", n, known, err)
	}
	engine.RegisterDevices("test-devices-broken", engine.DeviceBackends{Count: func() (int, error) { return 0, errors.New("no driver") }})
	if _, known, err := engine.DeviceCount("test-devices-broken"); !known || err == nil || err.Error() != "no driver" {
		t.Errorf("a failing count: %v %v", known, err)
	}
}
