package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"whet/datasets"
	"whet/engine"
	"whet/engine/memplan"
	"whet/engine/reward"
	"whet/engine/units"
	"whet/presets"
)

func init() {
	register("bench", "training throughput on random weights: whet bench --model llama-3.2-1b --method lora --batch 4 --seq 2048", runBench)
}

// benchResult is one workload's measurement, printed as a line or JSON.
type benchResult struct {
	Model         string `json:"model"`
	Method        string `json:"method"`
	Backend       string `json:"backend"`
	Batch         int    `json:"batch"`
	Seq           int    `json:"seq"`
	Checkpointing bool   `json:"checkpointing"`
	// MasterWeights is train.master_weights (fp32 or bf16) for full
	// fine-tuning; empty for the adapter methods.
	MasterWeights string `json:"master_weights,omitempty"`
	// LoRAFused: the adapters of q, k, v and of gate, up were stacked
	// (the default; engine.LoRAFusedEnv=0 turns it off; adapter methods only).
	LoRAFused bool `json:"lora_fused,omitempty"`
	// GEMMTuned: the CUDA backend timed cuBLASLt's candidate algorithms
	// per product and kept the fastest (the default; WHET_GEMM_TUNE=0 turns it off).
	GEMMTuned bool `json:"gemm_tuned,omitempty"`
	// AttnBwdFused: attention backwards of the run (warm-up included)
	// that took the CUDA backend's fused Hopper kernel (WHET_ATTN_BWD_FUSED,
	// WHET_NVRTC_DEFINES=HOP_BWD_FUSED=1); 0 with the split kernels.
	AttnBwdFused int     `json:"attn_bwd_fused,omitempty"`
	Params       int64   `json:"params"`
	TokensPerSec float64 `json:"tokens_per_sec"`
	StepSeconds  float64 `json:"step_s"`
	TFLOPs       float64 `json:"tflops"`
	MFU          float64 `json:"mfu"`
	PeakTFLOPs   float64 `json:"peak_tflops"`
	PeakBytes    int64   `json:"peak_bytes"`
	PlanBytes    int64   `json:"plan_bytes"` // memplan's peak for the same run`
	// The row tiles the step ran with (engine.LogitsChunk, engine.MLPRowChunk).
	LogitsChunk int `json:"logits_chunk,omitempty"`
	MLPChunk    int `json:"mlp_chunk,omitempty"`
	// Offload: the activation checkpoints went to pinned host memory
	// (--offload); HostBytes is what the backend pinned for them and
	// PlanHostBytes the plan's count.
	Offload       bool    `json:"offload_checkpoints"`
	HostBytes     int64   `json:"host_bytes"`
	PlanHostBytes int64   `json:"plan_host_bytes"`
	Loss          float64 `json:"loss"`
	// Losses is every step's loss in order, warm-up steps first, and
	// StepTimes their seconds (each until the backend is idle);
	// SetupSeconds is what came before the first step: the random model,
	// its adapters and optimizer state, the activations (and the pinned
	// host memory of offloaded checkpoints).
	Losses       []float64 `json:"losses"`
	StepTimes    []float64 `json:"step_times_s"`
	SetupSeconds float64   `json:"setup_s"`
	// PrefixLoss (--loss-prefix N) is the first step's mean token loss
	// over positions 0..N-1 of the first sequence, before any update. The
	// model is causal and the random tokens of a shorter --seq are this
	// run's first ones (the same seeds), so a run of --seq N+1 or more
	// must give the same number up to the backend's rounding: the long
	// context changes nothing about the prefix.
	PrefixTokens int      `json:"prefix_tokens,omitempty"`
	PrefixLoss   *float64 `json:"prefix_loss,omitempty"`
	// Data parallelism (--gpus, --ranks): Batch is per rank, the job's
	// global batch Batch×Ranks rows; TokensPerSec is the job's rate,
	// TFLOPs the job's, MFU per GPU (TFLOPs over Ranks×PeakTFLOPs).
	// Efficiency is the rank's rate over the one-rank run's of the same
	// invocation (absent without one).
	Ranks       int      `json:"ranks"`
	Collective  string   `json:"collective,omitempty"`
	GlobalBatch int      `json:"global_batch"`
	PerRankTPS  float64  `json:"tokens_per_sec_per_rank"`
	Efficiency  *float64 `json:"scaling_efficiency,omitempty"`
}

func runBench(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	models := fs.String("model", "llama-3.2-1b", "catalog names (or folders with a config.json), comma-separated")
	methods := fs.String("method", "lora", "lora, full or both comma-separated")
	batch := fs.Int("batch", 4, "sequences per step (per GPU or rank with --gpus, --ranks)")
	seq := fs.Int("seq", 2048, "tokens per sequence")
	steps := fs.Int("steps", 10, "timed steps")
	warmup := fs.Int("warmup", 2, "untimed steps first")
	ckpt := fs.Bool("checkpointing", false, "activation checkpointing")
	masters := fs.String("master-weights", engine.DefaultMasterWeights, "the trained weights' masters: fp32 or bf16 (train.master_weights)")
	logitsChunk := fs.Int("logits-chunk", 0, "rows the LM head and cross-entropy run at once (train.logits_chunk; 0: the engine's rule)")
	mlpChunk := fs.Int("mlp-chunk", 0, "rows the MLP runs at once (train.mlp_chunk; 0: the engine's rule)")
	offload := fs.String("offload", "off", "with --checkpointing, activation checkpoints in pinned host memory: auto (only when they do not fit the GPU) | on | off")
	rank := fs.Int("rank", 16, "LoRA rank (all linear layers)")
	backend := fs.String("backend", "auto", "auto, cpu or cuda")
	peak := fs.Float64("peak-tflops", 0, "bf16 matmul rate for MFU; 0 measures it with a 4096³ GEMM on the backend")
	asJSON := fs.Bool("json", false, "JSON lines")
	decode := fs.Int("decode", 0, "instead of training: greedy-decode this many tokens after a --seq token prompt and report decode tokens/s (the base model; --method qlora stores its linears in NF4; "+engine.DecodeModeEnv+"=plain|device|graph picks the decoding path, graph by default)")
	maxTime := fs.Duration("max-time", defaultBenchMaxTime, "refuse a workload estimated to run longer than this (0: no limit)")
	grpoG := fs.Int("grpo", 0, "instead of supervised steps: GRPO LoRA steps of this many completions per prompt (one prompt of --seq tokens a step) and report generation and update tokens/s")
	completion := fs.Int("completion", 256, "with --grpo: tokens per completion (random weights never stop early)")
	gpus := fs.String("gpus", "", "data-parallel GPU counts to measure, comma-separated (1,2,4,8): each runs --batch per GPU on GPUs 0..N-1; a count of 1 gives the others' scaling efficiency")
	ranks := fs.String("ranks", "", "as --gpus, for ranks on the CPU backend (--backend cpu, or auto on a machine without a GPU)")
	collective := fs.String("collective", "", "with --gpus or --ranks: nccl (default on GPUs) or ring (the Go ring, default on the CPU)")
	decodeBatch := fs.Int("decode-batch", 0, "with --decode: also time N prompts (lengths --seq down to about half of it) generated one after another with the one-sequence generator against all N in one batched call (engine.GroupGenerator.GenerateMany over a paged KV cache), each --decode tokens, and say whether their greedy tokens agree")
	lossPrefix := fs.Int("loss-prefix", 0, "report the first step's mean token loss over the first N positions of the first sequence (prefix_loss), which a run with a shorter --seq of at least N+1 must match: the model is causal and the random tokens are the same")
	lossPrefixOut := fs.String("loss-prefix-out", "", "with --loss-prefix: also write those N per-token losses to this file, one a line")
	decodeModes := fs.String("decode-modes", "", "with --decode: decoding paths to time one after another on the same model, comma-separated: plain, device or graph, each optionally +cublas (one-row products on cuBLASLt instead of the GEMV kernel, which device and graph turn on); default: the "+engine.DecodeModeEnv+" environment's")
	memLimit := addMemoryLimitFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, _, err := memLimit.apply(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *batch < 1 || *seq < 2 || *steps < 1 || *warmup < 0 {
		return fmt.Errorf("--batch %d --seq %d --steps %d --warmup %d: want a batch and steps of at least 1, a sequence of at least 2 tokens", *batch, *seq, *steps, *warmup)
	}
	if _, err := engine.MasterWeights(*masters); err != nil {
		return fmt.Errorf("--master-weights: %w", err)
	}
	counts, err := benchRankCounts(*gpus, *ranks, *backend)
	if err != nil {
		return err
	}
	if *lossPrefix < 0 || *lossPrefix > *seq-1 {
		return fmt.Errorf("--loss-prefix %d: want a number of positions from 1 to --seq − 1 = %d (the last position has no target)", *lossPrefix, *seq-1)
	}
	if *lossPrefixOut != "" && *lossPrefix == 0 {
		return errors.New("--loss-prefix-out: give --loss-prefix N too")
	}
	if *lossPrefix > 0 && (*decode > 0 || *grpoG > 0 || len(counts) > 1 || counts[0] > 1) {
		return errors.New("--loss-prefix: for supervised steps on one GPU or rank (not --decode, --grpo, --gpus or --ranks)")
	}
	if *lossPrefixOut != "" && (strings.Contains(*models, ",") || strings.Contains(*methods, ",")) {
		return errors.New("--loss-prefix-out: one --model and one --method (each workload would write the same file)")
	}
	if *decodeBatch < 0 || (*decodeBatch > 0 && *decode == 0) {
		return fmt.Errorf("--decode-batch %d: want a number of prompts, with --decode", *decodeBatch)
	}
	if (*grpoG > 0 || *decode > 0) && (len(counts) > 1 || counts[0] > 1) {
		return errors.New("--gpus and --ranks measure supervised training steps; --grpo and --decode run on one GPU")
	}
	b, notices, err := engine.OpenBackend(*backend)
	if err != nil {
		return err
	}
	onGPU := strings.HasPrefix(b.Name(), "cuda")
	if *gpus != "" && !onGPU {
		return fmt.Errorf("--gpus %s: the backend is %s; for data parallelism on the CPU use --backend cpu --ranks", *gpus, b.Name())
	}
	if *ranks != "" && onGPU {
		return fmt.Errorf("--ranks %s: CPU ranks need --backend cpu; on GPUs use --gpus", *ranks)
	}
	if *gpus != "" {
		// Refused before the one-GPU run: without this a count over the
		// GPUs present failed only after the smaller counts had run.
		found, known, err := engine.DeviceCount("cuda")
		if err != nil {
			return fmt.Errorf("--gpus %s: count GPUs: %w", *gpus, err)
		}
		if known {
			if err := benchGPULimit(*gpus, counts, found); err != nil {
				return err
			}
		}
	}
	if *collective == "" {
		*collective = "ring"
		if onGPU {
			*collective = "nccl"
		}
	}
	for _, n := range notices {
		fmt.Fprintln(stderr, n)
	}
	// A cold kernel cache compiling in the background says so.
	engine.ReportKernelCompiles(b, func(line string) { fmt.Fprintln(stderr, line) })
	if c, ok := b.(engine.Closer); ok {
		defer c.Close()
	}
	measured := *peak == 0
	if measured {
		if *peak, err = measureMatmul(b); err != nil {
			return err
		}
	}
	if *logitsChunk < 0 || *mlpChunk < 0 {
		return fmt.Errorf("--logits-chunk %d, --mlp-chunk %d: want 0 (the engine's rule) or a row count", *logitsChunk, *mlpChunk)
	}
	if _, err := engine.ParseOffloadMode(*offload); err != nil {
		return fmt.Errorf("--offload: %w", err)
	}
	env := benchEnv{backend: b, rate: *peak * 1e12, maxTime: *maxTime, log: stderr,
		tiling: engine.Tiling{MLPRows: *mlpChunk, LogitsRows: *logitsChunk}, offload: *offload,
		lossPrefix: *lossPrefix, lossPrefixOut: *lossPrefixOut}
	// The CPU takes seconds to minutes a step, and so does a long context
	// on a GPU: say where the run is.
	if b.Name() == "cpu" || *batch**seq >= longBenchTokens {
		env.progress = stderr
	}
	if b.Name() == "cpu" {
		if measured {
			fmt.Fprintf(stderr, "bench: the %s backend multiplies at %.3g GFLOP/s (512³ GEMM)\n", b.Name(), *peak*1e3)
		}
	}
	if *grpoG > 0 {
		for _, name := range strings.Split(*models, ",") {
			r, err := benchGRPO(env, name, *grpoG, *seq, *completion, *steps, *warmup, *rank)
			if err != nil {
				return fmt.Errorf("%s grpo: %w", name, err)
			}
			js, _ := json.Marshal(r)
			fmt.Fprintf(stdout, "%s\n", js)
		}
		return nil
	}
	if *decode > 0 {
		var modes []string
		if *decodeModes != "" {
			modes = strings.Split(*decodeModes, ",")
		}
		for _, name := range strings.Split(*models, ",") {
			for _, method := range strings.Split(*methods, ",") {
				rs, br, err := benchDecode(env, name, method, *seq, *decode, modes, *decodeBatch)
				for _, r := range rs {
					js, _ := json.Marshal(r)
					fmt.Fprintf(stdout, "%s\n", js)
				}
				if br != nil {
					js, _ := json.Marshal(br)
					fmt.Fprintf(stdout, "%s\n", js)
				}
				if err != nil {
					return fmt.Errorf("%s %s decode: %w", name, method, err)
				}
			}
		}
		return nil
	}
	for _, name := range strings.Split(*models, ",") {
		for _, method := range strings.Split(*methods, ",") {
			var one float64 // the one-rank rate, for the efficiency
			for _, n := range counts {
				r, err := benchOne(env, name, method, *batch, *seq, *steps, *warmup, *rank, *ckpt, *masters, n, *collective)
				if err != nil {
					return fmt.Errorf("%s %s on %d ranks: %w", name, method, n, err)
				}
				r.PeakTFLOPs = *peak
				r.MFU = r.TFLOPs / (float64(n) * *peak)
				if n == 1 {
					one = r.PerRankTPS
				}
				if one > 0 && len(counts) > 1 {
					e := r.PerRankTPS / one
					r.Efficiency = &e
				}
				if *asJSON {
					js, _ := json.Marshal(r)
					fmt.Fprintf(stdout, "%s\n", js)
					continue
				}
				par := ""
				if n > 1 {
					par = fmt.Sprintf(" ×%d ranks (%s, %.0f tok/s per rank", n, r.Collective, r.PerRankTPS)
					if r.Efficiency != nil {
						par += fmt.Sprintf(", scaling efficiency %.1f%%", 100**r.Efficiency)
					}
					par += ")"
				}
				if r.Offload {
					par += fmt.Sprintf(" (checkpoints offloaded: %s pinned, plan %s)", units.Bytes(r.HostBytes), units.Bytes(r.PlanHostBytes))
				}
				fmt.Fprintf(stdout, "%-14s %-5s %s b%d×%d%s ckpt=%v: %.0f tok/s, %.3f s/step, %.1f TFLOP/s, MFU %.1f%% (peak %.3g TFLOP/s), peak memory %s (plan %s), loss %.3f\n",
					r.Model, r.Method, r.Backend, r.Batch, r.Seq, par, r.Checkpointing, r.TokensPerSec, r.StepSeconds, r.TFLOPs,
					100*r.MFU, *peak, units.Bytes(r.PeakBytes), units.Bytes(r.PlanBytes), r.Loss)
				if r.PrefixLoss != nil {
					fmt.Fprintf(stdout, "%-14s first step's loss over the first %d positions: %.6f (the whole step's: %.6f)\n", r.Model, r.PrefixTokens, *r.PrefixLoss, r.Losses[0])
				}
			}
		}
	}
	return nil
}

// benchRankCounts reads --gpus or --ranks: distinct counts of at least 1,
// measured in increasing order so that the one-rank run (the scaling
// efficiency's base) comes first. Neither flag: one rank.
func benchRankCounts(gpus, ranks, backend string) ([]int, error) {
	flag, spec := "--gpus", gpus
	switch {
	case gpus != "" && ranks != "":
		return nil, errors.New("--gpus and --ranks cannot both be set (--ranks is for the CPU backend)")
	case ranks != "":
		flag, spec = "--ranks", ranks
		// Only a GPU backend named outright is refused here: "auto" on a
		// machine without a GPU is the CPU (whet train --ranks trains so),
		// and runBench refuses --ranks once auto has opened a GPU.
		if strings.HasPrefix(backend, "cuda") {
			return nil, fmt.Errorf("--ranks %s: CPU ranks need --backend cpu; on GPUs use --gpus", ranks)
		}
	case gpus == "":
		return []int{1}, nil
	}
	var out []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s %s: %q is not a count of at least 1 (for example 1,2,4,8)", flag, spec, f)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("%s %s: %d listed twice", flag, spec, n)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	if flag == "--ranks" {
		if limit := benchCPURankLimit(); out[len(out)-1] > limit {
			return nil, fmt.Errorf("%s %s: %d ranks asked for, at most %d here: CPU ranks share the machine's cores, one rank per CPU (each holds a whole copy of the model)",
				flag, spec, out[len(out)-1], limit)
		}
	}
	return out, nil
}

// benchCPURankLimit is the most CPU ranks whet bench --ranks measures:
// one per CPU. The ranks are goroutines sharing the cores, so past one a
// CPU they only take turns (the scaling measured says nothing) while each
// still builds a whole model copy: --ranks 100000 tried to build 100000
// models. Two at least, so that a one-CPU machine can still run the
// data-parallel path (--ranks 1,2, as TestBenchDataParallel does). A
// run's parallel.ranks checks the data-parallel arithmetic, not its speed,
// and has no such limit.
func benchCPURankLimit() int { return max(2, runtime.NumCPU()) }

// benchGPULimit refuses --gpus counts over the found GPUs present.
func benchGPULimit(spec string, counts []int, found int) error {
	if n := counts[len(counts)-1]; n > found {
		return fmt.Errorf("--gpus %s: %d GPUs asked for, %d found", spec, n, found)
	}
	return nil
}

// defaultBenchMaxTime bounds what whet bench starts without being told:
// the default workload (a 1B model, 4×2048 tokens, 12 steps) takes seconds
// on a GPU and days on the CPU.
const defaultBenchMaxTime = 30 * time.Minute

// benchEnv is what every workload of one whet bench shares.
type benchEnv struct {
	backend  engine.Backend
	rate     float64       // measured (or given) matmul FLOP/s, for the time estimate
	maxTime  time.Duration // 0: no limit
	progress io.Writer     // per-step lines; nil on fast backends
	log      io.Writer     // notices and the CUDA profile (stderr)
	tiling   engine.Tiling // --mlp-chunk, --logits-chunk
	offload  string        // --offload: train.offload_checkpoints
	// --loss-prefix, --loss-prefix-out
	lossPrefix    int
	lossPrefixOut string
}

// longBenchTokens is the step size from which whet bench reports each
// step's time and loss and the setup's on stderr, as it does on the CPU.
const longBenchTokens = 65536

// checkTime refuses a workload whose estimate passes the limit, saying how
// the estimate was made and what to change.
func (e benchEnv) checkTime(what string, estimate time.Duration, basis string) error {
	if e.maxTime <= 0 || estimate <= e.maxTime {
		return nil
	}
	return fmt.Errorf("%s would take about %s on the %s backend (%s), over --max-time %s; "+
		"make it smaller (--seq, --batch, --steps, a smaller --model) or pass --max-time 0 to run it anyway",
		what, units.Approx(estimate), e.backend.Name(), basis, e.maxTime)
}

// benchModel resolves a catalog name, or a folder with a config.json.
func benchModel(name string) (*engine.ModelConfig, error) {
	if st, err := os.Stat(name); err == nil && st.IsDir() {
		return engine.LoadModelConfig(name)
	}
	entry, err := presets.Lookup(name)
	if err != nil {
		return nil, err
	}
	return entry.ToModelConfig(), nil
}

// measureMatmul times a 4096³ GEMM in the backend's compute dtype.
func measureMatmul(b engine.Backend) (float64, error) {
	const n = 4096
	dt := engine.F32
	if c, ok := b.(engine.ComputeDTyper); ok {
		dt = c.ComputeDType()
	}
	size := n
	if b.Name() == "cpu" {
		size = 512 // the oracle is slow; a smaller product still shows its rate
	}
	var ts []engine.Tensor
	for i := 0; i < 3; i++ {
		t, err := b.Alloc(dt, size, size)
		if err != nil {
			return 0, err
		}
		defer b.Free(t)
		b.Fill(t, 0.01)
		ts = append(ts, t)
	}
	run := func(k int) (time.Duration, error) {
		start := time.Now()
		for i := 0; i < k; i++ {
			if err := b.MatMul(ts[2], ts[0], ts[1], false, true, 1, 0); err != nil {
				return 0, err
			}
		}
		err := b.Sync()
		return time.Since(start), err
	}
	if _, err := run(2); err != nil {
		return 0, err
	}
	reps := 20
	if b.Name() == "cpu" {
		reps = 3
	}
	d, err := run(reps)
	if err != nil {
		return 0, err
	}
	return 2 * float64(size) * float64(size) * float64(size) * float64(reps) / d.Seconds() / 1e12, nil
}

// trainFLOPsPerToken counts the work of one training token: 6N for full
// fine-tuning (forward 2N, backward 4N), 4N with frozen weights (no weight
// gradients), plus causal attention's score and value products (forward
// 2·2·(S/2)·QDim per layer, backward twice that), and the recomputed
// forward (2N) with activation checkpointing.
func trainFLOPsPerToken(cfg *engine.ModelConfig, n int64, full bool, seq int, ckpt bool) float64 {
	f := 4 * float64(n)
	if full {
		f = 6 * float64(n)
	}
	if ckpt {
		f += 2 * float64(n)
	}
	attn := 2 * 2 * float64(seq) / 2 * float64(cfg.QDim()) * float64(cfg.NumLayers)
	f += 3 * attn
	return f
}

// benchOne measures training steps on random weights with batch×seq
// tokens per rank. With ranks > 1 it runs the trainer's data-parallel path
// (engine.MakeTrainable, Trainer.TrainStep on rank 0 and Trainer.Follow on
// the others, each rank in its goroutine on its own backend, the
// collective named by collective): the step's global batch is batch×ranks
// rows, GradAccum micro-batches of batch rows dealt one per rank, as a
// one-rank run with --batch B and grad_accum N takes them.
func benchOne(env benchEnv, name, method string, batch, seq, steps, warmup, rank int, ckpt bool, masters string, ranks int, collective string) (_ benchResult, retErr error) {
	b := env.backend
	cfg, err := benchModel(name)
	if err != nil {
		return benchResult{}, err
	}
	switch method {
	case "lora", "qlora", "full":
	default:
		return benchResult{}, fmt.Errorf("unknown method %q (lora, qlora or full)", method)
	}
	// The plan gives the parameter count for the time estimate before a
	// single weight is allocated, and the planned peak for the report.
	kind := "cpu"
	if strings.HasPrefix(b.Name(), "cuda") {
		kind = "cuda"
	}
	rc := engine.RunConfig{Method: method, Backend: kind, LoRA: engine.LoRAConfig{Rank: rank},
		Data: engine.DataConfig{MaxLength: seq}, Train: engine.TrainConfig{MicroBatch: batch, GradAccum: 1, Checkpointing: ckpt, MasterWeights: masters,
			MLPChunk: env.tiling.MLPRows, LogitsChunk: env.tiling.LogitsRows}}
	// planOf is the plan with the checkpoints where the engine put them.
	planOf := func(offloaded bool) (device, host int64) {
		opts, err := memplan.FromRunConfig(&rc)
		if err != nil {
			return 0, 0
		}
		opts.SeqLen, opts.MicroBatch = seq, batch
		if k, ok := b.(engine.AttnKernelsReporter); ok {
			// The attention kernels the backend took (the fused Hopper
			// backward's dq accumulator on sm_90).
			opts.Attention = k.AttnKernels()
		}
		if ranks > 1 {
			opts.GPUs = ranks // the plan of one rank
		}
		opts.OffloadCheckpoints = engine.OffloadOff
		if offloaded {
			opts.OffloadCheckpoints = engine.OffloadOn
		}
		p, err := memplan.Plan(cfg, opts)
		if err != nil {
			return 0, 0
		}
		return p.Peak(), p.HostPeak()
	}
	flopsPerStep := float64(batch*seq) * trainFLOPsPerToken(cfg, memplan.ParamCount(cfg), method == "full", seq, ckpt)
	total := warmup + steps
	what := fmt.Sprintf("%d steps of %d×%d tokens", total, batch, seq)
	if ranks > 1 {
		what += fmt.Sprintf(" on each of %d ranks", ranks)
		if kind == "cpu" {
			flopsPerStep *= float64(ranks) // CPU ranks share the cores
		}
	}
	if env.rate > 0 {
		est := time.Duration(float64(total) * flopsPerStep / env.rate * float64(time.Second))
		if err := env.checkTime(what, est, fmt.Sprintf("%.3g TFLOP a step at the measured %.3g GFLOP/s", flopsPerStep/1e12, env.rate/1e9)); err != nil {
			return benchResult{}, err
		}
	}

	// Each workload's own peak, not the largest of those before it.
	if pr, ok := b.(engine.PeakResetter); ok {
		pr.ResetPeak()
	}
	setupStart := time.Now()
	rng := rand.New(rand.NewPCG(7, 7))
	rows := make([]datasets.Batch, batch*ranks)
	for r := range rows {
		bt := &rows[r]
		bt.SeqStarts = []int32{0, int32(seq)}
		for i := 0; i < seq; i++ {
			bt.Tokens = append(bt.Tokens, int32(rng.IntN(cfg.VocabSize)))
			bt.Positions = append(bt.Positions, int32(i))
		}
		bt.Targets = append(append(bt.Targets, bt.Tokens[1:]...), datasets.IgnoreIndex)
	}
	preset, err := presets.LookupMethod(method)
	if err != nil {
		return benchResult{}, err
	}
	backends := []engine.Backend{b}
	group := []engine.Collective{nil}
	if ranks > 1 {
		rest, err := engine.RankBackends(b, ranks)
		if err != nil {
			return benchResult{}, err
		}
		defer func() {
			for _, rb := range rest {
				if c, ok := rb.(engine.Closer); ok {
					c.Close()
				}
			}
		}()
		backends = append(backends, rest...)
		if group, err = engine.OpenGroup(collective, backends); err != nil {
			return benchResult{}, fmt.Errorf("--collective %s: %w", collective, err)
		}
	}
	// Every rank builds the same random model (the same seeds), as every
	// rank of a run loads the same weights.
	var trainers []*engine.Trainer
	defer func() {
		for _, t := range trainers {
			if t.Acts != nil {
				t.Acts.Free()
			}
			t.DP.Free()
			t.Model.Free()
		}
	}()
	for i, rb := range backends {
		d := preset.RunConfig().Train
		d.MLPChunk, d.LogitsChunk = env.tiling.MLPRows, env.tiling.LogitsRows
		t, err := benchTrainer(*cfg, rb, group[i], method, rank, engine.ActivationOptions{Checkpointing: ckpt, Offload: env.offload},
			masters, batch, seq, ranks, total, d, rows)
		if t != nil {
			trainers = append(trainers, t)
		}
		if err != nil {
			if i > 0 {
				err = fmt.Errorf("rank %d: %w", i, err)
			}
			return benchResult{}, err
		}
	}
	tr, m := trainers[0], trainers[0].Model
	followed := make(chan error, len(trainers)-1)
	if ranks > 1 {
		for _, f := range trainers[1:] {
			go func() { followed <- f.Follow() }()
		}
		end, err := tr.Lead()
		// However the steps end, the followers stop and are waited for
		// before anything is freed. When rank 0 failed, a follower's own
		// error (out of memory on its GPU, say) is the likelier cause
		// than rank 0's failed collective: both are told.
		defer func() {
			if end != nil {
				end()
			}
			for range trainers[1:] {
				if ferr := <-followed; ferr != nil && retErr != nil {
					retErr = errors.Join(retErr, ferr)
				}
			}
		}()
		if err != nil {
			return benchResult{}, err
		}
	}
	setup := time.Since(setupStart)
	if env.progress != nil {
		fmt.Fprintf(env.progress, "bench: %s %s setup (random weights, adapters, activations) %.1f s\n", name, method, setup.Seconds())
	}
	var loss float64
	var losses, times []float64
	var prefixLoss *float64
	done, started := 0, time.Now()
	step := func() error {
		t0 := time.Now()
		ev, err := tr.TrainStep()
		if err != nil {
			return err
		}
		loss = ev.Loss
		if err := b.Sync(); err != nil {
			return err
		}
		done++
		took := time.Since(t0)
		losses, times = append(losses, loss), append(times, took.Seconds())
		if done == 1 && env.lossPrefix > 0 {
			p, err := benchPrefixLoss(tr.Acts, env.lossPrefix, env.lossPrefixOut)
			if err != nil {
				return err
			}
			prefixLoss = &p
		}
		if env.progress != nil {
			phase := "timed"
			if done <= warmup {
				phase = "warm-up"
			}
			fmt.Fprintf(env.progress, "bench: %s %s step %d/%d (%s) %.1f s, loss %.3f\n", name, method, done, total, phase, took.Seconds(), loss)
		}
		if done == 2 && total > 2 {
			// A measured step is a better estimate than the FLOP count
			// (which assumes the GEMM rate throughout): stop now rather
			// than hours from now. The second step, because the first
			// also compiles the GPU kernels.
			est := time.Since(started) + time.Duration(total-2)*took
			if err := env.checkTime(what, est, fmt.Sprintf("the second step took %.1f s", took.Seconds())); err != nil {
				return err
			}
		}
		return nil
	}
	for i := 0; i < warmup; i++ {
		if err := step(); err != nil {
			return benchResult{}, err
		}
	}
	prof, profiling := b.(interface{ ProfileReport() (string, error) })
	if profiling {
		if _, err := prof.ProfileReport(); err != nil { // drop the warm-up's times
			return benchResult{}, err
		}
	}
	start := time.Now()
	for i := 0; i < steps; i++ {
		if err := step(); err != nil {
			return benchResult{}, err
		}
	}
	dt := time.Since(start).Seconds() / float64(steps)
	if profiling {
		// WHET_CUDA_PROFILE=1: device time per kernel over the timed steps.
		if rep, err := prof.ProfileReport(); err != nil {
			return benchResult{}, err
		} else if rep != "" {
			fmt.Fprintf(env.log, "profile of %d steps of %s %s:\n%s", steps, name, method, rep)
		}
	}
	n := m.NumParams()
	tps := float64(batch*seq*ranks) / dt
	offloaded := tr.Acts.OffloadsCheckpoints()
	planBytes, planHost := planOf(offloaded)
	r := benchResult{Model: name, Method: method, Backend: b.Name(), Batch: batch, Seq: seq, Checkpointing: ckpt,
		Params: n, TokensPerSec: tps, StepSeconds: dt, Loss: loss, PlanBytes: planBytes,
		Losses: losses, StepTimes: times, SetupSeconds: setup.Seconds(), PrefixLoss: prefixLoss,
		Offload: offloaded, HostBytes: tr.Acts.HostBytes(), PlanHostBytes: planHost,
		TFLOPs: tps * trainFLOPsPerToken(cfg, n, method == "full", seq, ckpt) / 1e12,
		Ranks:  ranks, GlobalBatch: batch * ranks, PerRankTPS: tps / float64(ranks)}
	if prefixLoss != nil {
		r.PrefixTokens = env.lossPrefix
	}
	r.LogitsChunk = engine.LogitsChunk(batch*seq, cfg.VocabSize, env.tiling.LogitsRows)
	r.MLPChunk = engine.MLPRowChunk(batch*seq, cfg.IntermediateSize, env.tiling.MLPRows)
	if ranks > 1 {
		r.Collective = collective
	}
	if method == "full" {
		r.MasterWeights = masters
	} else {
		r.LoRAFused = engine.LoRAFusedOn(false)
	}
	if t, ok := b.(interface{ GEMMTuned() bool }); ok {
		r.GEMMTuned = t.GEMMTuned()
	}
	if f, ok := b.(interface{ AttnBwdFusedRuns() int }); ok {
		r.AttnBwdFused = f.AttnBwdFusedRuns()
	}
	if mr, ok := b.(engine.MemoryReporter); ok {
		r.PeakBytes = mr.PeakBytes()
	}
	return r, nil
}

// benchPrefixLoss is the mean of the last pass's token losses over its
// first n positions (the first sequence's, all with a target), written to
// out one a line when out is set.
func benchPrefixLoss(a *engine.Activations, n int, out string) (float64, error) {
	ls, err := a.TokenLosses()
	if err != nil {
		return 0, fmt.Errorf("--loss-prefix: %w", err)
	}
	if n > len(ls) {
		return 0, fmt.Errorf("--loss-prefix %d: the step has %d positions", n, len(ls))
	}
	var sum float64
	var text strings.Builder
	for _, l := range ls[:n] {
		sum += float64(l)
		if out != "" {
			fmt.Fprintf(&text, "%.9g\n", l)
		}
	}
	if out != "" {
		if err := os.WriteFile(out, []byte(text.String()), 0o644); err != nil {
			return 0, fmt.Errorf("--loss-prefix-out: %w", err)
		}
	}
	return sum / float64(n), nil
}

// benchTrainer builds one rank's random-weights model and trainer (c nil:
// the only rank); on error it returns what it made, for the caller to
// free. Each step is training's own (engine.Trainer.TrainStep: the
// checks, clipping and AdamW at the method's settings).
func benchTrainer(cfg engine.ModelConfig, b engine.Backend, c engine.Collective, method string, rank int, acts engine.ActivationOptions, masters string,
	batch, seq, ranks, total int, d engine.TrainConfig, rows []datasets.Batch) (*engine.Trainer, error) {
	m, err := engine.NewModelWith(cfg, b, engine.ModelOptions{NF4Linears: method == "qlora"})
	if err != nil {
		return nil, err
	}
	t := &engine.Trainer{Model: m, Train: rows, Seed: 1,
		Opt:   &engine.Optimizer{Beta1: d.Beta1, Beta2: d.Beta2, Eps: d.Eps, Seed: 1},
		Sched: engine.Schedule{Kind: "constant", Total: total},
		Cfg:   engine.TrainConfig{MaxSteps: total, MicroBatch: batch, GradAccum: ranks, LR: 1e-5, MaxGradNorm: 1}}
	if err := m.InitRandom(1, 0.02); err != nil {
		return t, err
	}
	if m.BF16Masters, err = engine.MasterWeights(masters); err != nil {
		return t, err
	}
	var lora *engine.LoRAOptions
	if method != "full" {
		lora = &engine.LoRAOptions{Rank: rank, Alpha: float64(rank), Seed: 1}
	}
	if t.DP, err = engine.MakeTrainable(m, lora, c, 0); err != nil {
		return t, err
	}
	acts.Tiling = d.Tiling()
	t.Acts, err = m.NewActivationsWith(batch*seq, acts)
	return t, err
}

// decodeResult is one greedy-decoding measurement.
type decodeResult struct {
	Model        string  `json:"model"`
	Method       string  `json:"method"`
	Backend      string  `json:"backend"`
	Prompt       int     `json:"prompt_tokens"`
	NewTokens    int     `json:"new_tokens"`
	PrefillSec   float64 `json:"prefill_s"`
	DecodePerSec float64 `json:"decode_tokens_per_sec"`
	// Mode is the decoding path taken (engine.DecodeMode), Fallback why
	// it is not the one asked for.
	Mode     string `json:"decode_mode"`
	Fallback string `json:"fallback,omitempty"`
	// GEMV says whether one-row products ran on the backend's GEMV kernel
	// (false: cuBLASLt); absent for a backend without one.
	GEMV *bool `json:"gemv_kernel,omitempty"`
	// WeightBytes is what one token reads of the weights: every linear
	// (NF4 codes and absmax for QLoRA), the norms and the LM head, but of
	// an untied embedding table only its one row. The memory-bandwidth
	// bound on tokens/s is the card's bandwidth over this.
	WeightBytes int64 `json:"weight_bytes_per_token"`
	// Greedy is the FNV-1a hash (64-bit, hex) of the timed run's token
	// ids and GreedyHead its first 8: the weights and prompt come from
	// fixed seeds, so runs with other decoding switches on the same card
	// and dtype must give the same ones.
	Greedy     string  `json:"greedy_fnv"`
	GreedyHead []int32 `json:"greedy_head"`
}

// greedyHash is decodeResult.Greedy of ids.
func greedyHash(ids []int32) string {
	h := fnv.New64a()
	for _, id := range ids {
		h.Write([]byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)})
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// decodeWeightBytes is the weight bytes one decoding step reads.
func decodeWeightBytes(m *engine.Model) int64 {
	var n int64
	for _, p := range m.Params() {
		if p == m.Embed && !m.Tied {
			continue // one row per token
		}
		if q := p.Quant; q != nil {
			n += int64(q.Packed.Len())*4 + int64(q.Absmax.Len())*4
			continue
		}
		if p.W != nil {
			n += int64(p.W.Len()) * int64(p.W.DType().Size())
		}
	}
	return n
}

// benchDecode times greedy decoding with the KV cache on random weights:
// the prefill of a prompt, then newTokens single-token steps. method
// qlora stores the decoder's linears in NF4 (no adapters: the base
// model's speed); lora and full keep them in the compute dtype.
func benchDecode(env benchEnv, name, method string, prompt, newTokens int, modes []string, batch int) ([]decodeResult, *decodeBatchResult, error) {
	b := env.backend
	cfg, err := benchModel(name)
	if err != nil {
		return nil, nil, err
	}
	// Three prompts are read (warm-up, prefill alone, prefill and
	// decoding) and 2N FLOPs spent per token; with a batch, each of its
	// prompts and tokens twice more (alone and together) and a warm-up.
	tokens := 3*prompt + 4 + 1 + newTokens + batch*(3*prompt+2*newTokens+4)
	flops := 2 * float64(memplan.ParamCount(cfg)) * float64(tokens)
	if env.rate > 0 {
		est := time.Duration(flops / env.rate * float64(time.Second))
		what := fmt.Sprintf("%d tokens after a %d-token prompt", newTokens, prompt)
		if err := env.checkTime(what, est, fmt.Sprintf("%.3g TFLOP at the measured %.3g GFLOP/s", flops/1e12, env.rate/1e9)); err != nil {
			return nil, nil, err
		}
	}
	say := func(format string, args ...any) {
		if env.progress != nil {
			fmt.Fprintf(env.progress, "bench: %s decode: "+format+"\n", append([]any{name}, args...)...)
		}
	}
	switch method {
	case "lora", "qlora", "full":
	default:
		return nil, nil, fmt.Errorf("unknown method %q (lora, qlora or full)", method)
	}
	m, err := engine.NewModelWith(*cfg, b, engine.ModelOptions{NF4Linears: method == "qlora"})
	if err != nil {
		return nil, nil, err
	}
	defer m.Free()
	say("random weights")
	if err := m.InitRandom(1, 0.02); err != nil {
		return nil, nil, err
	}
	rng := rand.New(rand.NewPCG(3, 3))
	ids := make([]int32, prompt)
	for i := range ids {
		ids[i] = int32(rng.IntN(cfg.VocabSize))
	}
	if len(modes) == 0 {
		modes = []string{""}
	}
	var rs []decodeResult
	for _, mode := range modes {
		r, err := benchDecodeMode(m, ids, newTokens, mode, say, env.log)
		if err != nil {
			return rs, nil, fmt.Errorf("decode mode %q: %w", mode, err)
		}
		r.Model, r.Method = name, method
		rs = append(rs, r)
	}
	if batch == 0 {
		return rs, nil, nil
	}
	br, err := benchDecodeBatch(m, rng, prompt, newTokens, batch, modes[0], say)
	if err != nil {
		return rs, nil, fmt.Errorf("decode batch of %d: %w", batch, err)
	}
	br.Model, br.Method = name, method
	return rs, br, nil
}

// decodeBatchResult compares generating several prompts one after another
// with generating them in one batched call.
type decodeBatchResult struct {
	Model     string `json:"model"`
	Method    string `json:"method"`
	Backend   string `json:"backend"`
	Batch     int    `json:"decode_batch"`
	Prompts   []int  `json:"prompt_tokens"`
	NewTokens int    `json:"new_tokens_each"`
	// The rates are all prompts' new tokens over the time of the whole
	// round (prefills included), as samples during training cost.
	SequentialSec    float64 `json:"sequential_s"`
	SequentialPerSec float64 `json:"sequential_tokens_per_sec"`
	SequentialMode   string  `json:"sequential_decode_mode"`
	BatchedSec       float64 `json:"batched_s"`
	BatchedPerSec    float64 `json:"batched_tokens_per_sec"`
	Speedup          float64 `json:"speedup"`
	KVBlocks         int     `json:"kv_blocks"`
	KVBlockTokens    int     `json:"kv_block_tokens"`
	// GreedySame says whether every prompt's tokens agree; Differ, the
	// first prompt and step where they do not (rounding in a batched
	// product can differ from a one-row one on a GPU).
	GreedySame bool   `json:"greedy_same"`
	Differ     string `json:"differ,omitempty"`
}

// benchDecodeBatch times batch prompts of random ids, from prompt tokens
// down to about half, each greedy-decoded for newTokens: one after another
// on the one-sequence generator (decoding path mode, as benchDecodeMode
// names it without +cublas), then together in one GenerateMany call over
// a paged KV cache sized to their own lengths.
func benchDecodeBatch(m *engine.Model, rng *rand.Rand, prompt, newTokens, batch int, mode string, say func(string, ...any)) (*decodeBatchResult, error) {
	r := &decodeBatchResult{Backend: m.B.Name(), Batch: batch, NewTokens: newTokens, KVBlockTokens: engine.DefaultKVBlockTokens}
	prompts := make([][]int32, batch)
	longest := 0
	for i := range prompts {
		n := max(1, prompt-i*prompt/(2*batch))
		prompts[i] = make([]int32, n)
		for j := range prompts[i] {
			prompts[i][j] = int32(rng.IntN(m.Cfg.VocabSize))
		}
		r.Prompts = append(r.Prompts, n)
		r.KVBlocks += (n + newTokens + engine.DefaultKVBlockTokens - 1) / engine.DefaultKVBlockTokens
		longest = max(longest, n)
	}
	one, err := m.NewGenerator(longest + newTokens)
	if err != nil {
		return nil, err
	}
	defer one.Free()
	name, _ := strings.CutSuffix(mode, "+cublas")
	if name != "" {
		one.Mode = engine.DecodeMode(name)
	}
	group, err := m.NewPagedGroupGenerator(batch, longest+newTokens, engine.DefaultKVBlockTokens, r.KVBlocks)
	if err != nil {
		return nil, err
	}
	defer group.Free()
	ctx := context.Background()
	opts := make([]engine.SampleOptions, batch)
	for i := range opts {
		opts[i] = engine.Greedy(2, nil)
	}
	say("batch of %d: warm-up", batch)
	if _, err := one.Generate(ctx, prompts[0], opts[0], nil); err != nil {
		return nil, err
	}
	if _, err := group.GenerateMany(ctx, prompts, opts, nil); err != nil {
		return nil, err
	}
	say("batch of %d: one after another, %d tokens each", batch, newTokens)
	seq := make([][]int32, batch)
	t0 := time.Now()
	for i, p := range prompts {
		if seq[i], err = one.Generate(ctx, p, engine.Greedy(newTokens, nil), nil); err != nil {
			return nil, err
		}
	}
	r.SequentialSec = time.Since(t0).Seconds()
	r.SequentialMode = string(one.Used)
	for i := range opts {
		opts[i] = engine.Greedy(newTokens, nil)
	}
	say("batch of %d: together", batch)
	t1 := time.Now()
	got, err := group.GenerateMany(ctx, prompts, opts, nil)
	if err != nil {
		return nil, err
	}
	r.BatchedSec = time.Since(t1).Seconds()
	total := 0
	r.GreedySame = true
	for i := range got {
		total += len(got[i])
		if r.GreedySame {
			if k := slices.Compare(got[i], seq[i]); k != 0 {
				r.GreedySame = false
				step := 0
				for step < min(len(got[i]), len(seq[i])) && got[i][step] == seq[i][step] {
					step++
				}
				r.Differ = fmt.Sprintf("prompt %d, token %d", i, step)
			}
		}
	}
	r.SequentialPerSec = float64(total) / r.SequentialSec
	r.BatchedPerSec = float64(total) / r.BatchedSec
	r.Speedup = r.SequentialSec / r.BatchedSec
	return r, nil
}

// gemvSwitch is a backend whose one-row products can go to cuBLASLt
// instead of its GEMV kernel (engine/cuda).
type gemvSwitch interface {
	SetGEMV(on bool)
	GEMV() bool
}

// benchDecodeMode times one decoding path on m: mode is an
// engine.DecodeMode ("" for the environment's), "+cublas" after it sending
// one-row products to cuBLASLt instead of the GEMV kernel ("plain+cublas"
// is the path before graphs and GEMV kernels).
func benchDecodeMode(m *engine.Model, ids []int32, newTokens int, mode string, say func(string, ...any), log io.Writer) (decodeResult, error) {
	b := m.B
	name, cublas := strings.CutSuffix(mode, "+cublas")
	var gemv *bool
	if sw, ok := b.(gemvSwitch); ok {
		// A named path other than plain runs the GEMV kernels unless
		// +cublas says otherwise; plain and the environment's keep the
		// backend's setting (WHET_CUDA_GEMV).
		on := sw.GEMV()
		if name != "" && name != string(engine.DecodePlain) {
			on = true
		}
		if cublas {
			on = false
		}
		was := sw.GEMV()
		gemv = &on
		sw.SetGEMV(on)
		defer sw.SetGEMV(was)
	} else if cublas {
		return decodeResult{}, fmt.Errorf("backend %s has no GEMV kernel to turn off", b.Name())
	}
	steps, err := engine.DecodeStepsFromEnv()
	if err != nil {
		return decodeResult{}, err
	}
	// The warm-up decodes 4 tokens, and with several steps a replay
	// (engine.DecodeStepsEnv) enough more that it records a chunk of them.
	warm := 4
	if steps > 1 {
		warm = 2 + steps
	}
	g, err := m.NewGenerator(len(ids) + max(newTokens, warm))
	if err != nil {
		return decodeResult{}, err
	}
	defer g.Free()
	if name != "" {
		switch dm := engine.DecodeMode(name); dm {
		case engine.DecodePlain, engine.DecodeDevice, engine.DecodeGraph:
			g.Mode = dm
		default:
			return decodeResult{}, fmt.Errorf("unknown decoding path %q: want plain, device or graph, optionally with +cublas", mode)
		}
	}
	// Warm up (kernel compilation, allocations, the recording), then time
	// prefill alone and prefill plus decoding; the difference is the
	// decoding.
	say("%s warm-up", mode)
	if _, err := g.Generate(context.Background(), ids, engine.Greedy(warm, nil), nil); err != nil {
		return decodeResult{}, err
	}
	say("%s prefill of %d tokens", mode, len(ids))
	t0 := time.Now()
	if _, err := g.Generate(context.Background(), ids, engine.Greedy(1, nil), nil); err != nil {
		return decodeResult{}, err
	}
	prefill := time.Since(t0)
	say("%s prefill took %.1f s; decoding %d tokens", mode, prefill.Seconds(), newTokens)
	// WHET_CUDA_PROFILE=1 (device time per kernel, which no recording
	// allows: graph mode runs its steps directly): the report covers the
	// timed generation, its prefill and its decoding steps.
	prof, profiling := b.(interface{ ProfileReport() (string, error) })
	if profiling {
		if _, err := prof.ProfileReport(); err != nil { // drop the warm-up's times
			return decodeResult{}, err
		}
	}
	t1 := time.Now()
	out, err := g.Generate(context.Background(), ids, engine.Greedy(newTokens, nil), nil)
	if err != nil {
		return decodeResult{}, err
	}
	total := time.Since(t1)
	if profiling {
		if rep, err := prof.ProfileReport(); err != nil {
			return decodeResult{}, err
		} else if rep != "" && log != nil {
			fmt.Fprintf(log, "bench: %s decode profile (%s) of a prefill of %d tokens and %d decoding steps:\n%s", m.Cfg.ModelType, mode, len(ids), len(out)-1, rep)
		}
	}
	return decodeResult{Backend: b.Name(), Prompt: len(ids), NewTokens: len(out), PrefillSec: prefill.Seconds(),
		DecodePerSec: float64(len(out)-1) / (total - prefill).Seconds(), Mode: string(g.Used), GEMV: gemv, Fallback: g.Fallback,
		WeightBytes: decodeWeightBytes(m), Greedy: greedyHash(out), GreedyHead: out[:min(8, len(out))]}, nil
}

// grpoBenchResult is one GRPO workload's measurement.
type grpoBenchResult struct {
	Model          string  `json:"model"`
	Backend        string  `json:"backend"`
	Generations    int     `json:"num_generations"`
	Prompt         int     `json:"prompt_tokens"`
	Completion     int     `json:"completion_tokens"`
	StepSeconds    float64 `json:"step_s"`
	GenPerSec      float64 `json:"generation_tokens_per_sec"`
	UpdatePerSec   float64 `json:"update_tokens_per_sec"`
	GenShare       float64 `json:"generation_share"`
	CompletionMean float64 `json:"completion_mean_tokens"`
}

// benchGRPO times GRPO LoRA steps on random weights: each step samples g
// completions of a random prompt (one at a time, with the KV cache), scores
// them with a length reward and trains on them (engine.Trainer.TrainStep).
// Generation tokens/s counts the sampled tokens over the sampling time;
// update tokens/s the trained tokens (prompt and completion of every
// sequence) over the rest of the step.
func benchGRPO(env benchEnv, name string, g, prompt, completion, steps, warmup, rank int) (grpoBenchResult, error) {
	b := env.backend
	cfg, err := benchModel(name)
	if err != nil {
		return grpoBenchResult{}, err
	}
	total := warmup + steps
	if env.rate > 0 {
		// Sampling: 2N FLOPs per token; the update: a LoRA step's 4N per token.
		n := float64(memplan.ParamCount(cfg))
		perStep := float64(g) * (2*n*float64(prompt+completion) + 4*n*float64(prompt+completion))
		est := time.Duration(float64(total) * perStep / env.rate * float64(time.Second))
		if err := env.checkTime(fmt.Sprintf("%d GRPO steps of %d×(%d+%d) tokens", total, g, prompt, completion), est, "at the measured matmul rate"); err != nil {
			return grpoBenchResult{}, err
		}
	}
	m, err := engine.NewModel(*cfg, b)
	if err != nil {
		return grpoBenchResult{}, err
	}
	defer m.Free()
	if err := m.InitRandom(1, 0.02); err != nil {
		return grpoBenchResult{}, err
	}
	if err := m.AddLoRA(engine.LoRAOptions{Rank: rank, Alpha: float64(rank), Seed: 1}); err != nil {
		return grpoBenchResult{}, err
	}
	preset, err := presets.LookupMethod("grpo")
	if err != nil {
		return grpoBenchResult{}, err
	}
	d := preset.RunConfig()
	gc := d.GRPO
	gc.NumGenerations, gc.MaxCompletionLength = g, completion
	gc.Rewards = []reward.Spec{{Type: "length", TargetLength: max(1, completion/2)}}
	rng := rand.New(rand.NewPCG(5, 5))
	prompts := make([][]int32, total)
	for i := range prompts {
		for k := 0; k < prompt; k++ {
			prompts[i] = append(prompts[i], int32(rng.IntN(cfg.VocabSize)))
		}
	}
	run, err := engine.NewGRPORunTokens(gc, prompts)
	if err != nil {
		return grpoBenchResult{}, err
	}
	defer run.Free()
	a, err := m.NewActivations(g*run.MaxSeqTokens(), false)
	if err != nil {
		return grpoBenchResult{}, err
	}
	defer a.Free()
	tr := &engine.Trainer{Model: m, Acts: a, Seed: 1, GRPO: run,
		Opt:   &engine.Optimizer{Beta1: d.Train.Beta1, Beta2: d.Train.Beta2, Eps: d.Train.Eps},
		Sched: engine.Schedule{Kind: "constant", Total: total},
		Cfg:   engine.TrainConfig{MaxSteps: total, MicroBatch: g, GradAccum: 1, LR: 1e-5, MaxGradNorm: 1}}
	var stepSec, genSec float64
	var genTok, trainTok int
	for i := 0; i < total; i++ {
		t0 := time.Now()
		ev, err := tr.TrainStep()
		if err != nil {
			return grpoBenchResult{}, err
		}
		if err := b.Sync(); err != nil {
			return grpoBenchResult{}, err
		}
		dt := time.Since(t0).Seconds()
		if env.progress != nil {
			fmt.Fprintf(env.progress, "bench: %s grpo step %d/%d: %.1f s (sampling %.1f s)\n", name, i+1, total, dt, run.GenSeconds)
		}
		if i < warmup {
			continue
		}
		stepSec += dt
		genSec += run.GenSeconds
		genTok += run.GenTokens
		trainTok += ev.Tokens
	}
	return grpoBenchResult{Model: name, Backend: b.Name(), Generations: g, Prompt: prompt, Completion: completion,
		StepSeconds: stepSec / float64(steps), GenPerSec: float64(genTok) / genSec, UpdatePerSec: float64(trainTok) / (stepSec - genSec),
		GenShare: genSec / stepSec, CompletionMean: float64(genTok) / float64(steps*g)}, nil
}
