package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"whet/engine"
	"whet/engine/cuda"
	"whet/engine/gpuinfo"
	"whet/engine/hub"
	"whet/engine/memplan"
	"whet/engine/units"
	"whet/presets"
)

func init() {
	register("fit", "plan a run's memory and check it fits the GPU or a hardware profile (exit status 1 when it does not)", runFit)
}

// fitModel is the model being planned: from the catalog or a folder.
type fitModel struct {
	label  string
	entry  *presets.Model // nil for a folder
	config *engine.ModelConfig
	// mllama is set for Llama 3.2 Vision (config is then its language
	// model): planned by memplan.PlanMllama, see fitMllama.
	mllama *engine.MllamaConfig
}

// fitTarget is the memory the plan is checked against.
type fitTarget struct {
	label     string
	available int64
	backend   memplan.Backend
	// unified, when set, explains that the memory is shared by CPU and GPU.
	unified string
	// tflops is a profile's dense bf16 rate (0: not known), for the
	// step-time floor.
	tflops float64
	name   string
	// host is the host memory offloaded checkpoints may pin (0: unknown,
	// not checked), described by hostLabel.
	host      int64
	hostLabel string
	// attention is the CUDA target's attention kernels
	// (cuda.AttnKernelsFor its architecture; zero for the CPU): on sm_90
	// the plan counts the fused attention backward's fp32 dq accumulator.
	attention engine.AttnKernels
}

// withHost sets the host memory from --host-memory, or else (planning
// for this machine, not a profile) its available RAM.
func (t fitTarget) withHost(flagValue string, profile bool) (fitTarget, error) {
	if flagValue != "" {
		n, err := units.ParseBytes(flagValue)
		if err != nil || n <= 0 {
			return t, fmt.Errorf("--host-memory %q: want a size such as 128GiB", flagValue)
		}
		t.host, t.hostLabel = n, "--host-memory"
		return t, nil
	}
	if profile {
		return t, nil // a profile is a card, not a machine: --host-memory says the host
	}
	if _, avail, err := hostMemory(); err == nil && avail > 0 {
		t.host, t.hostLabel = avail, "this machine's RAM available now (MemAvailable)"
	}
	return t, nil
}

// hostMemory reads this machine's RAM; tests replace it.
var hostMemory = gpuinfo.HostMemory

// fits reports whether plan fits the device and, for offloaded
// checkpoints, the host memory.
func (t fitTarget) fits(plan *memplan.MemPlan) bool {
	return plan.Peak() <= t.available && (t.host <= 0 || plan.HostPeak() <= t.host)
}

// detectGPUs reads this machine's GPUs; tests replace it with a fake
// device report.
var detectGPUs = gpuinfo.Detect

func runFit(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", "", "catalog name, Hugging Face repo id, or a folder with config.json")
	method := fs.String("method", "lora", "lora | qlora | full | dpo | grpo")
	batch := fs.Int("batch", 1, "micro-batch size in sequences (DPO: preference pairs)")
	accum := fs.Int("grad-accum", 1, "gradient accumulation steps (kept when the advice shrinks the micro-batch)")
	seq := fs.Int("seq", 2048, "maximum sequence length in tokens (GRPO: prompt + completion)")
	gpu := fs.String("gpu", "", `plan for a hardware profile instead of this machine (e.g. "RTX 4090", "H100"; "list" shows them)`)
	device := fs.Int("device", 0, "which detected GPU to check against")
	ckpt := fs.Bool("checkpointing", false, "activation checkpointing")
	offload := fs.String("offload", "off", "with --checkpointing, keep the checkpoints in pinned host memory: auto (only when they do not fit the GPU) | on | off (train.offload_checkpoints; off by default until it has run on a GPU)")
	hostMem := fs.String("host-memory", "", "host memory the offloaded checkpoints may pin (e.g. 128GiB; default: this machine's available RAM)")
	rank := fs.Int("rank", 16, "LoRA rank r")
	targets := fs.String("targets", "q,k,v,o,gate,up,down", "LoRA target projections, comma-separated")
	chunk := fs.Int("chunk", 0, "tokens per LM-head logits chunk (train.logits_chunk; 0: the engine's rule, as many as 2^26 logits hold)")
	dpoBase := fs.String("dpo-base", "lora", "how DPO trains the policy: lora | qlora | full")
	generations := fs.Int("generations", 8, "GRPO: completions sampled together per prompt (one KV cache each)")
	dpoRef := fs.Bool("dpo-resident-reference", false, "full-weight DPO: keep a frozen reference copy on the GPU instead of caching its log-probs before training")
	gpus := fs.Int("gpus", 1, "plan per GPU for a data-parallel run on this many GPUs (full fine-tuning shards its fp32 masters and AdamW moments across them)")
	images := fs.Int("images", 1, "Llama 3.2 Vision: images per sequence; Gemma 3: setting it plans the vision tower with that many")
	visionLayers := fs.Bool("vision-layers", false, "Gemma 3 with --images: also LoRA on the vision tower's linear layers (lora.vision_layers: the tower keeps its activations)")
	maxSeq := fs.Bool("max-seq", false, "instead of checking --seq: find the longest sequence length that fits (binary search over the plan)")
	memLimit := addMemoryLimitFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags go before nothing else: whet fit --model NAME ...)", fs.Arg(0))
	}
	if *gpu == "list" {
		return listProfiles(stdout)
	}
	// A count below its least is refused here rather than replaced by
	// the planner's default, which would plan another run than the one asked.
	for _, c := range []struct {
		flag     string
		val, min int
	}{{"batch", *batch, 1}, {"grad-accum", *accum, 1}, {"seq", *seq, 1}, {"rank", *rank, 1},
		{"generations", *generations, 1}, {"gpus", *gpus, 1}, {"images", *images, 0}, {"chunk", *chunk, 0}, {"device", *device, 0}} {
		if c.val < c.min {
			return fmt.Errorf("--%s %d: want %d or more", c.flag, c.val, c.min)
		}
	}
	if *model == "" {
		return fmt.Errorf("--model is required (a catalog name such as llama-3.1-8b, or a folder with config.json)")
	}
	m, err := resolveFitModel(*model)
	if err != nil {
		return err
	}
	meth, err := memplan.ParseMethod(*method)
	if err != nil {
		return err
	}
	opts := memplan.Options{
		Method:             meth,
		MicroBatch:         *batch,
		GradAccum:          *accum,
		SeqLen:             *seq,
		LoRARank:           *rank,
		LoRATargets:        strings.Split(*targets, ","),
		Checkpointing:      *ckpt,
		OffloadCheckpoints: *offload,
		LogitsChunk:        *chunk,
		GPUs:               *gpus,
	}
	if meth == memplan.DPO {
		if opts.DPOBase, err = memplan.ParseMethod(*dpoBase); err != nil {
			return fmt.Errorf("--dpo-base: %w", err)
		}
		opts.DPOResidentReference = *dpoRef
	}
	if meth == memplan.GRPO {
		// The sampler's KV cache holds a whole prompt and completion.
		opts.GenerationTokens, opts.GenerationLanes = *seq, *generations
	}
	if opts.Base() == memplan.QLoRA {
		q, err := presets.LookupMethod("qlora")
		if err != nil {
			return err
		}
		opts.DoubleQuant = q.DoubleQuant
	}
	target, err := resolveFitTarget(*gpu, *device)
	if err != nil {
		return err
	}
	limit, source, err := memLimit.apply()
	if err != nil {
		return err
	}
	target = target.capped(limit, source)
	if target, err = target.withHost(*hostMem, *gpu != ""); err != nil {
		return err
	}
	opts.Backend = target.backend
	opts.Attention = target.attention
	if target.backend == memplan.BackendCPU {
		// The CPU backend is the float32 reference.
		opts.WeightDType = memplan.F32
	}

	if m.mllama != nil {
		if *maxSeq {
			return fmt.Errorf("--max-seq is not available for Llama 3.2 Vision yet")
		}
		return fitMllama(stdout, m, opts, target, *images)
	}
	if imagesSet := flagSet(fs, "images"); imagesSet && m.config.ModelType == "gemma3" {
		if *maxSeq {
			return fmt.Errorf("--max-seq is not available for Gemma 3 with images yet")
		}
		return fitGemma3Vision(stdout, m, opts, target, *images, *visionLayers)
	}
	if *visionLayers {
		return fmt.Errorf("--vision-layers: plans adapters on a Gemma 3 vision tower, with --images (the model %s, no --images given)", *model)
	}
	if *maxSeq {
		return fitMaxSeq(stdout, m, opts, target)
	}
	if opts, err = memplan.ResolveOffload(m.config, opts, target.available); err != nil {
		return err
	}
	plan, err := memplan.Plan(m.config, opts)
	if err != nil {
		return err
	}
	advice, err := memplan.Advise(m.config, opts, target.available, fitAlternatives(m))
	if err != nil {
		return err
	}
	printFit(stdout, m, plan, target, advice)
	if !target.fits(plan) {
		// The verdict and the advice are printed; scripts read the status
		// (whet fit ... && whet train ...).
		return exitStatus(1)
	}
	return nil
}

// resolveFitModel reads a folder's config.json, or looks the name up in
// the catalog.
func resolveFitModel(name string) (fitModel, error) {
	if st, err := os.Stat(name); err == nil && st.IsDir() {
		if raw, err := os.ReadFile(filepath.Join(name, "config.json")); err == nil && engine.IsMllamaConfig(raw) {
			cfg, err := engine.LoadMllamaConfig(name)
			if err != nil {
				return fitModel{}, err
			}
			return fitModel{label: name, config: &cfg.Text, mllama: cfg}, nil
		}
		cfg, err := engine.LoadModelConfig(name)
		if err != nil {
			return fitModel{}, err
		}
		return fitModel{label: name, config: cfg}, nil
	}
	if st, err := os.Stat(name); err == nil && !st.IsDir() {
		return fitModel{}, fmt.Errorf("model %s is a file; give the folder that holds its config.json", name)
	}
	e, err := presets.Lookup(name)
	if err != nil && !hub.LooksLikeRef(name) && (strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "~")) {
		// A path, not a catalog name: the catalog's list would not help.
		return fitModel{}, engine.NoModelFolder(name)
	}
	if err != nil && hub.LooksLikeRef(name) {
		// A repo the catalog does not know: its config.json alone.
		dir, err := pullModelArg(context.Background(), name, hub.ConfigOnly, io.Discard)
		if err != nil {
			return fitModel{}, err
		}
		cfg, err := engine.LoadModelConfig(dir)
		if err != nil {
			return fitModel{}, err
		}
		return fitModel{label: name, config: cfg}, nil
	}
	if err != nil {
		return fitModel{}, fmt.Errorf("%w; or pass a folder that holds a config.json, or a Hugging Face repo id", err)
	}
	if e.Arch.ModelType == "mllama" {
		// The catalog keeps the language model's fields; the vision tower
		// is the released one.
		text, err := json.Marshal(e.Arch)
		if err != nil {
			return fitModel{}, err
		}
		raw := fmt.Sprintf(`{"model_type": "mllama", "text_config": %s, "vision_config": %s}`, text, engine.MllamaReleasedVisionConfig)
		cfg, err := engine.ParseMllamaConfig(e.Name, []byte(raw))
		if err != nil {
			return fitModel{}, err
		}
		return fitModel{label: fmt.Sprintf("%s (%s)", e.Name, e.Repo), entry: e, config: &cfg.Text, mllama: cfg}, nil
	}
	if !e.Trainable() {
		return fitModel{}, fmt.Errorf("%s cannot be trained by whet yet: %s", e.Name, e.NotTrainable)
	}
	return fitModel{label: fmt.Sprintf("%s (%s)", e.Name, e.Repo), entry: e, config: e.ToModelConfig()}, nil
}

// fitMllama plans Llama 3.2 Vision (memplan.PlanMllama: vision tower
// frozen), prints it, and says how far whet trains it.
func fitMllama(w io.Writer, m fitModel, opts memplan.Options, target fitTarget, images int) error {
	// What the Mllama engine does (its compute dtype,
	// engine.VisionComputeDType), not what a text run on this backend would.
	opts, notes := memplan.ForVisionEngine(engine.VisionMllama, opts)
	plan, err := memplan.PlanMllama(m.mllama, opts, memplan.MllamaOptions{Images: images})
	if err != nil {
		return err
	}
	printFit(w, m, plan, target, nil)
	v := &m.mllama.Vision
	fmt.Fprintf(w, "vision    %d image(s) of %d tiles x %d positions (padded to %d), vision tower frozen; no advice for vision models yet\n",
		images, v.MaxTiles, v.Patches(), v.PaddedPatches())
	for _, n := range notes {
		fmt.Fprintf(w, "note      %s\n", n)
	}
	fmt.Fprintf(w, "note      whet trains Llama 3.2 Vision with lora or qlora (%s compute), on a GPU too\n", opts.WeightDType)
	if plan.Peak() > target.available {
		return exitStatus(1)
	}
	return nil
}

// resolveFitTarget picks the memory to check against: a named profile, the
// detected GPU's free memory, or, with no GPU, the available RAM.
func resolveFitTarget(profile string, device int) (fitTarget, error) {
	if profile != "" {
		p, err := presets.LookupHardware(profile)
		if err != nil {
			return fitTarget{}, fmt.Errorf("--gpu: %w", err)
		}
		t := fitTarget{label: p.Name + " profile, whole card free", available: p.MemoryBytes(), backend: memplan.BackendCUDA,
			tflops: p.BF16TFLOPs, name: p.Name, attention: cuda.AttnKernelsFor(p.Arch())}
		if p.Unified {
			t.label = p.Name + " profile, the whole pool"
			t.unified = "CPU and GPU share this memory with the operating system and every other program; " +
				"on the machine itself whet fit plans against what the system has available (MemAvailable), less than this total"
		}
		return t, nil
	}
	r, err := detectGPUs()
	if err != nil {
		return fitTarget{}, fmt.Errorf("%w (plan for a profile instead with --gpu NAME)", err)
	}
	if r.CPUMode {
		if r.RAMAvailable <= 0 {
			return fitTarget{}, fmt.Errorf("no GPU (%s) and the available RAM is unknown; plan for a profile with --gpu NAME", r.Reason)
		}
		return fitTarget{
			label:     fmt.Sprintf("CPU mode, RAM available of %s (%s)", units.Bytes(r.RAMTotal), r.Reason),
			available: r.RAMAvailable, backend: memplan.BackendCPU,
		}, nil
	}
	if device < 0 || device >= len(r.GPUs) {
		return fitTarget{}, fmt.Errorf("--device %d: this machine has %d GPU(s)", device, len(r.GPUs))
	}
	g := r.GPUs[device]
	attention := cuda.AttnKernelsFor(engine.ArchName(g.ComputeMajor, g.ComputeMinor))
	if g.Unified {
		return fitTarget{
			label: fmt.Sprintf("GPU %d %s: unified memory available now, of %s (driver %s, CUDA %s)",
				g.Index, g.Name, units.Bytes(g.MemoryTotal), r.DriverVersion, r.CUDAVersion),
			available: g.MemoryFree, backend: memplan.BackendCUDA,
			unified: fmt.Sprintf("CPU and GPU share the system's memory (%s); the plan is checked against what the system "+
				"has available now (MemAvailable), which other programs change: close them to free more", g.UnifiedReason),
			attention: attention,
		}, nil
	}
	return fitTarget{
		label:     fmt.Sprintf("GPU %d %s free, of %s (driver %s, CUDA %s)", g.Index, g.Name, units.Bytes(g.MemoryTotal), r.DriverVersion, r.CUDAVersion),
		available: g.MemoryFree, backend: memplan.BackendCUDA, attention: attention,
	}, nil
}

// capped applies a memory cap to a GPU target: the card is taken to have
// no more than limit bytes (the CUDA backend refuses allocations past it).
// The CPU backend has no cap, so a CPU-mode target is left as it is.
func (t fitTarget) capped(limit int64, source string) fitTarget {
	if limit <= 0 || t.backend != memplan.BackendCUDA {
		return t
	}
	if limit < t.available {
		t.available = limit
	}
	t.label += fmt.Sprintf(", capped at %s by %s", units.Bytes(limit), source)
	return t
}

// fitMaxSeq prints the plan at the longest sequence length that fits the
// target (exit status 1 when not even one token does).
func fitMaxSeq(w io.Writer, m fitModel, opts memplan.Options, target fitTarget) error {
	res, err := memplan.MaxSeqLenHost(m.config, opts, target.available, target.host)
	if err != nil {
		return err
	}
	if res.SeqLen == 0 {
		printPlan(w, m, res.Next, target)
		fmt.Fprintf(w, "longest   none: even 1 token per sequence needs %s\n", target.shortfall(res.Next))
		return exitStatus(1)
	}
	printPlan(w, m, res.Plan, target)
	switch {
	case res.Capped:
		fmt.Fprintf(w, "longest   at least %s tokens per sequence (the search stops there)\n", units.Count(int64(res.SeqLen)))
	default:
		fmt.Fprintf(w, "longest   %d tokens per sequence (%d would need %s)\n",
			res.SeqLen, res.SeqLen+1, target.shortfall(res.Next))
	}
	if mp := m.config.MaxPositions; mp > 0 && res.SeqLen > mp {
		fmt.Fprintf(w, "          beyond the %d positions the model was trained for (max_position_embeddings)\n", mp)
	}
	return nil
}

// shortfall says what plan needs beyond the target: device memory, or
// host memory for its offloaded checkpoints.
func (t fitTarget) shortfall(plan *memplan.MemPlan) string {
	if d := plan.Peak() - t.available; d > 0 {
		return units.Bytes(d) + " more than available"
	}
	return fmt.Sprintf("%s more host memory than available for its offloaded checkpoints", units.Bytes(plan.HostPeak()-t.host))
}

// familyGroup is the family without its version ("llama-3.1" → "llama",
// "qwen2.5-coder" → "qwen2.5"): the advice prefers a smaller model that
// shares tokenizer lineage and chat template.
func familyGroup(family string) string {
	g, _, _ := strings.Cut(family, "-")
	return g
}

// fitAlternatives lists trainable catalog models in the order the advice
// should try them: same family group first, then the same instruct flag,
// then the largest first (the first that fits is the least downgrade).
// Entries with identical numbers (base and instruct) appear once.
func fitAlternatives(m fitModel) []memplan.Alternative {
	models, err := presets.Models()
	if err != nil {
		return nil
	}
	group, instruct := "", false
	if m.entry != nil {
		group, instruct = familyGroup(m.entry.Family), m.entry.Instruct
	}
	var cands []presets.Model
	for _, c := range models {
		if c.Trainable() && (m.entry == nil || c.Name != m.entry.Name) {
			cands = append(cands, c)
		}
	}
	score := func(c presets.Model) (int, int) {
		g, i := 0, 0
		if group != "" && familyGroup(c.Family) == group {
			g = 1
		}
		if c.Instruct == instruct {
			i = 1
		}
		return g, i
	}
	sort.SliceStable(cands, func(a, b int) bool {
		ga, ia := score(cands[a])
		gb, ib := score(cands[b])
		if ga != gb {
			return ga > gb
		}
		if ia != ib {
			return ia > ib
		}
		return cands[a].Params > cands[b].Params
	})
	var out []memplan.Alternative
	for _, c := range cands {
		out = append(out, memplan.Alternative{Name: c.Name, Config: c.ToModelConfig()})
	}
	return out
}

func describeOptions(o memplan.Options) string {
	var parts []string
	switch o.Method {
	case memplan.DPO:
		parts = append(parts, "DPO ("+string(o.DPOBase)+" policy)")
	default:
		parts = append(parts, strings.ToUpper(string(o.Method)))
	}
	if o.LoRARank > 0 {
		parts = append(parts, fmt.Sprintf("r %d on %s", o.LoRARank, strings.Join(o.LoRATargets, ",")))
	}
	unit := "sequences"
	if o.Method == memplan.DPO {
		unit = "pairs"
	}
	parts = append(parts, fmt.Sprintf("micro-batch %d %s × %d tokens", o.MicroBatch, unit, o.SeqLen))
	if o.GradAccum > 1 {
		parts = append(parts, fmt.Sprintf("accumulation %d", o.GradAccum))
	}
	if o.Checkpointing {
		parts = append(parts, "checkpointing on")
	} else {
		parts = append(parts, "checkpointing off")
	}
	parts = append(parts, o.WeightDType.String())
	return strings.Join(parts, ", ")
}

// printPlan prints the model, the run, the plan's lines, its peak and the
// memory available.
func printPlan(w io.Writer, m fitModel, plan *memplan.MemPlan, target fitTarget) {
	fmt.Fprintf(w, "model     %s, %s parameters (%s trainable)\n", m.label, units.Count(plan.Params), units.Count(plan.Trainable))
	fmt.Fprintf(w, "run       %s\n\n", describeOptions(plan.Options))
	for _, l := range plan.Lines() {
		fmt.Fprintf(w, "  %-32s %12s\n", l.Label, units.Bytes(l.Bytes))
	}
	fmt.Fprintf(w, "  %s\n", strings.Repeat("-", 45))
	fmt.Fprintf(w, "  %-32s %12s\n", "peak (total)", units.Bytes(plan.Peak()))
	fmt.Fprintf(w, "  %-32s %12s  %s\n\n", "available", units.Bytes(target.available), target.label)
	if hl := plan.HostLines(); len(hl) > 0 {
		fmt.Fprintln(w, "  host memory (pinned):")
		for _, l := range hl {
			fmt.Fprintf(w, "  %-32s %12s\n", l.Label, units.Bytes(l.Bytes))
		}
		if target.host > 0 {
			fmt.Fprintf(w, "  %-32s %12s  %s\n\n", "host available", units.Bytes(target.host), target.hostLabel)
		} else {
			fmt.Fprintf(w, "  %-32s %12s\n\n", "host available", "not checked (--host-memory SIZE checks it)")
		}
	}
	if target.unified != "" {
		fmt.Fprintf(w, "memory    unified: %s\n\n", target.unified)
	}
	if f, ok := stepFloor(m.config, plan, target); ok {
		fmt.Fprintf(w, "floor     a micro-batch of %d tokens takes at least %s at the %s's %.0f TFLOP/s dense bf16 (at most %s tokens/s; real runs reach a fraction of the rate)\n\n",
			plan.Tokens, f.Round(time.Millisecond), target.name, target.tflops, units.Count(int64(float64(plan.Tokens)/f.Seconds())))
	}
	if c := m.config; c != nil && c.MaxPositions > 0 && plan.Options.SeqLen > c.MaxPositions {
		fmt.Fprintf(w, "note      --seq %d is longer than the model's max_position_embeddings (%d): examples that long train on positions it was never trained for\n\n",
			plan.Options.SeqLen, c.MaxPositions)
	}
}

// stepFloor is the least time one micro-batch can take on a profile's
// card: its training FLOPs (trainFLOPsPerToken, the count whet bench uses)
// at the card's dense bf16 rate. Only for the methods whet bench measures
// (LoRA, QLoRA, full); DPO and GRPO add passes it does not count.
func stepFloor(cfg *engine.ModelConfig, plan *memplan.MemPlan, target fitTarget) (time.Duration, bool) {
	o := plan.Options
	if target.tflops <= 0 || cfg == nil || (o.Method != memplan.LoRA && o.Method != memplan.QLoRA && o.Method != memplan.Full) {
		return 0, false
	}
	flops := float64(plan.Tokens) * trainFLOPsPerToken(cfg, plan.Params, o.Method == memplan.Full, o.SeqLen, o.Checkpointing)
	return time.Duration(flops / (target.tflops * 1e12) * float64(time.Second)), true
}

func printFit(w io.Writer, m fitModel, plan *memplan.MemPlan, target fitTarget, advice []memplan.Advice) {
	printPlan(w, m, plan, target)
	peak := plan.Peak()
	if peak <= target.available && !target.fits(plan) {
		fmt.Fprintf(w, "verdict   does not fit: the offloaded checkpoints need %s of host memory, %s available (%s); "+
			"shorten the sequence or the micro-batch, or free host memory\n",
			units.Bytes(plan.HostPeak()), units.Bytes(target.host), target.hostLabel)
		return
	}
	if peak <= target.available {
		fmt.Fprintf(w, "verdict   fits (%s to spare)\n", units.Bytes(target.available-peak))
		return
	}
	fmt.Fprintf(w, "verdict   does not fit (short by %s)\n", units.Bytes(peak-target.available))
	if len(advice) == 0 {
		return
	}
	fmt.Fprintln(w, "\nadvice, least harm first (each includes the checkpointing and micro-batch steps before it):")
	for i, a := range advice {
		verdict := "does not fit"
		if a.Fits {
			verdict = "fits"
		}
		fmt.Fprintf(w, "  %d. %s\n     → peak %s: %s\n", i+1, a.Summary, units.Bytes(a.Plan.Peak()), verdict)
	}
}

// listProfiles prints the hardware profiles: memory, the dense bf16 rate
// and the memory bandwidth as the makers publish them, and the
// architecture.
func listProfiles(w io.Writer) error {
	profiles, err := presets.HardwareProfiles()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  %-24s %10s %11s %11s  %-7s\n", "profile", "memory", "bf16 dense", "bandwidth", "arch")
	for _, p := range profiles {
		note := ""
		if p.Unified {
			note = "  unified memory (CPU and GPU share it)"
		}
		fmt.Fprintf(w, "  %-24s %10s %7.0f TF/s %6.0f GB/s  %-7s%s\n", p.Name, units.Bytes(p.MemoryBytes()), p.BF16TFLOPs, p.BandwidthGBs,
			p.Arch(), note)
	}
	fmt.Fprintln(w, "\n  (whet fit --gpu NAME plans against a profile's whole memory; figures and sources in presets/hardware.yaml)")
	return nil
}
