package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/chat"
	"whet/engine/cuda"
	"whet/engine/export"
	"whet/engine/gpuinfo"
	"whet/engine/hub"
	"whet/engine/memplan"
	"whet/engine/units"
	"whet/presets"
	"whet/tui"
)

// The studio's real dependencies: the engine, the catalog and method
// presets, the memory plan with NVML, the data pipeline and the GPU gauges.
func init() {
	newStudioEngine = func() (tui.Engine, error) { return studioEngine{}, nil }
	newStudioCatalog = func() tui.Catalog { return studioCatalog{} }
	newStudioPresets = func() tui.Presets { return studioPresets{} }
	newStudioFit = func() tui.FitChecker { return studioFit{} }
	newStudioPreviewer = func() tui.DataPreviewer { return studioPreviewer{} }
	newStudioChat = func() tui.Chatter { return studioChatter{} }
	newStudioExporter = func() tui.Exporter { return newStudioExport() }
	newStudioHub = func() (tui.Hub, error) {
		c, err := hub.FromEnv()
		if err != nil {
			return nil, err
		}
		return tui.HubClient{Client: c}, nil
	}
	newStudioGPU = func() tui.GPUSampler {
		m, err := gpuinfo.Open()
		if err != nil {
			return nil
		}
		names := []string{"GPU 0"}
		if r, err := gpuinfo.Detect(); err == nil && len(r.GPUs) > 0 {
			names = names[:0]
			for _, g := range r.GPUs {
				names = append(names, strings.TrimSpace(g.Name))
			}
		}
		return studioGPU{m, names}
	}
}

// modelDir resolves what the wizard put in RunConfig.Model: a folder as
// is; a Hub id (ORG/NAME[@REVISION]) to its snapshot in the cache; or a
// catalog name, found in ~/models or, by its repo id, in the cache.
func modelDir(name string) (string, error) {
	if st, err := os.Stat(name); err == nil && st.IsDir() {
		return name, nil
	}
	if hub.LooksLikeRef(name) {
		return hubModelDir(name)
	}
	e, err := presets.Lookup(name)
	if err != nil {
		return "", fmt.Errorf("model %q: not a folder and %v", name, err)
	}
	home, _ := os.UserHomeDir()
	for _, cand := range []string{filepath.Join(home, "models", e.Name), filepath.Join(home, "models", filepath.Base(e.Repo))} {
		if _, err := os.Stat(filepath.Join(cand, "config.json")); err == nil {
			return cand, nil
		}
	}
	if dir, err := cachedModelDir(e.Repo); err == nil {
		return dir, nil
	}
	return "", fmt.Errorf("%s has no weights on this machine: choose it on the model page to download %s, or run whet pull %s", e.Name, e.Repo, e.Repo)
}

// hubModelDir is the snapshot folder of a Hub id: the cached one when it
// holds what a run needs (the model page has just pulled it, so the data
// preview and the fit check ask nothing of the network), else the one
// engine.ModelFolder pulls, as training will.
func hubModelDir(id string) (string, error) {
	if dir, err := cachedModelDir(id); err == nil {
		return dir, nil
	}
	dir, _, err := engine.ModelFolder(context.Background(), id, hub.PullOptions{})
	return dir, err
}

// cachedModelDir finds a Hub id in the cache alone: a pull in offline
// mode, which checks the snapshot has the config and every weight shard.
func cachedModelDir(id string) (string, error) {
	ref, err := hub.ParseRef(id)
	if err != nil {
		return "", err
	}
	c, err := hub.FromEnv()
	if err != nil {
		return "", err
	}
	c.Offline = true
	snap, err := c.Pull(context.Background(), ref, hub.PullOptions{})
	if err != nil {
		return "", err
	}
	return snap.Dir, nil
}

type studioEngine struct{}

var (
	_ tui.NameClaimer   = studioEngine{}
	_ tui.ModelResolver = studioEngine{}
)

// ClaimRunName makes the folder of the studio's proposed run name, or of
// the next free one (engine.ClaimRunName).
func (studioEngine) ClaimRunName(runsDir, base string) (string, error) {
	return engine.ClaimRunName(runsDir, base)
}

// runModel is the model as a studio run's run.yaml records it (before
// engine.Start makes a folder absolute): a Hub id as it is, since the
// engine resolves one itself and keeps it in the run's config, so the run
// folder names the model as the user chose it; else the folder modelDir
// finds for a catalog name or a folder.
func runModel(model string) (string, error) {
	if hub.LooksLikeRef(model) {
		return model, nil
	}
	return modelDir(model)
}

// RunModel lets the review page show the model as run.yaml will hold it.
func (studioEngine) RunModel(model string) (string, error) { return runModel(model) }

func (studioEngine) Start(ctx context.Context, cfg engine.RunConfig) (<-chan engine.Event, engine.RunControl, error) {
	dir, err := runModel(cfg.Model)
	if err != nil {
		return nil, nil, err
	}
	cfg.Model = dir
	return engine.Start(ctx, cfg)
}

type studioCatalog struct{}

// Models lists the built-in demo first, then the catalog.
func (studioCatalog) Models() []tui.ModelInfo {
	var out []tui.ModelInfo
	if dir, ok := demoModelDir(); ok {
		out = append(out, tui.ModelInfo{Name: "whet-demo", Path: dir, Template: "chatml", Params: demoParams(dir),
			Dataset: filepath.Join(filepath.Dir(dir), "mentor.jsonl"),
			Note:    "built-in demo: a 4M-parameter model and a mentor persona; LoRA trains on the CPU in about two minutes"})
	}
	models, err := presets.Models()
	if err != nil {
		return out
	}
	for _, m := range models {
		// The licence's id alone ("llama3.2", "gemma") on the line under the
		// list read as a stray word in a new-user walk: it says what it is.
		info := tui.ModelInfo{Name: m.Name, Repo: m.Repo, Params: presets.CountParams(m.ToModelConfig()), Template: m.Template,
			Note: "licence " + m.Licence}
		if !m.Trainable() {
			// The dense formula does not describe it (experts, a vision
			// tower): show the publisher's count.
			info.Params = int64(m.Params)
			info.Note = "not trainable yet: " + m.NotTrainable
		}
		out = append(out, info)
	}
	return out
}

// demoModelDir finds the shipped demo model next to the working directory.
func demoModelDir() (string, bool) {
	for _, d := range []string{filepath.Join("presets", "demo", "model")} {
		if _, err := os.Stat(filepath.Join(d, "config.json")); err == nil {
			return d, true
		}
	}
	return "", false
}

// demoParams counts the demo model's parameters from its config.
func demoParams(dir string) int64 {
	cfg, err := engine.LoadModelConfig(dir)
	if err != nil {
		return 0
	}
	return presets.CountParams(cfg)
}

type studioPresets struct{}

// Defaults are the method preset, except for the demo model, whose run
// file holds settings tuned for it (a tiny model wants a higher rate) and
// the prompt its samples answer, which every method keeps.
func (studioPresets) Defaults(model, method string) (engine.RunConfig, error) {
	var demo engine.RunConfig
	isDemo := false
	if dir, ok := demoModelDir(); ok && filepath.Clean(model) == filepath.Clean(dir) {
		rc, err := engine.LoadRunConfig(filepath.Join(filepath.Dir(dir), "run.yaml"))
		if err != nil {
			return engine.RunConfig{}, fmt.Errorf("the demo's settings: %w", err)
		}
		rc.Name, rc.RunsDir = "", ""
		if method == rc.Method {
			return rc, nil
		}
		demo, isDemo = rc, true
	}
	m, err := presets.LookupMethod(method)
	if err != nil {
		return engine.RunConfig{}, err
	}
	var mc *engine.ModelConfig
	if model != "" {
		mc, _ = planConfig(model) // unknown: the method's max length
	}
	rc := m.RunConfigFor(mc)
	rc.Model = model
	if isDemo {
		rc.Train.SamplePrompts = demo.Train.SamplePrompts
		rc.Train.SampleEvery = demo.Train.SampleEvery
		rc.Train.SampleTokens = demo.Train.SampleTokens
	}
	return rc, nil
}

type studioFit struct{}

// planConfig is the architecture of the run's model: its config.json, or
// the catalog's numbers.
func planConfig(name string) (*engine.ModelConfig, error) {
	if st, err := os.Stat(name); err == nil && st.IsDir() {
		return engine.LoadModelConfig(name)
	}
	if hub.LooksLikeRef(name) {
		dir, err := hubModelDir(name)
		if err != nil {
			return nil, err
		}
		return engine.LoadModelConfig(dir)
	}
	e, err := presets.Lookup(name)
	if err != nil {
		return nil, err
	}
	return e.ToModelConfig(), nil
}

func (studioFit) Check(ctx context.Context, cfg engine.RunConfig) (tui.FitReport, error) {
	var rep tui.FitReport
	det, err := detectGPUs()
	if err != nil {
		return rep, err
	}
	var attention engine.AttnKernels // the CUDA device's attention kernels (none in CPU mode)
	if det.CPUMode {
		cfg.Backend = "cpu"
		rep.Device = "CPU (" + det.Reason + ")"
		rep.Free, rep.Total = uint64(det.RAMAvailable), uint64(det.RAMTotal)
	} else {
		g := det.GPUs[0]
		rep.Device = g.Name
		attention = cuda.AttnKernelsFor(engine.ArchName(g.ComputeMajor, g.ComputeMinor))
		// On a unified-memory GPU these are the system's MemAvailable and
		// MemTotal (gpuinfo marks it).
		rep.Free, rep.Total = uint64(g.MemoryFree), uint64(g.MemoryTotal)
		if g.Unified {
			rep.Unified = g.UnifiedReason
		}
		// The memory cap (WHET_MEMORY_LIMIT) is the card the run gets.
		limit, err := engine.MemoryLimit()
		if err != nil {
			return rep, err
		}
		if limit > 0 {
			rep.Free, rep.Total = min(rep.Free, uint64(limit)), min(rep.Total, uint64(limit))
			rep.Device += fmt.Sprintf(" (capped at %s by %s)", units.Bytes(limit), engine.MemoryLimitEnv)
		}
	}
	opts, err := memplan.FromRunConfig(&cfg)
	if err != nil {
		return rep, err
	}
	// On sm_90 the plan counts the fused attention backward's dq
	// accumulator, as the engine takes it; train.deterministic keeps the
	// split kernels (FromRunConfig read it).
	attention.Deterministic = attention.Deterministic || opts.Attention.Deterministic
	opts.Attention = attention
	// A vision run is planned as its engine runs it (studio_fit_vision.go).
	if plan, notes, ok, err := studioVisionPlan(cfg, opts); err != nil {
		return rep, err
	} else if ok {
		fitVerdict(&rep, plan)
		rep.Warnings = append(rep.Warnings, notes...)
		return rep, nil
	}
	mc, err := planConfig(cfg.Model)
	if err != nil {
		return rep, err
	}
	// train.offload_checkpoints auto: decided as the engine will, against
	// the memory free (per length for the longest context, from asked);
	// offloaded checkpoints pin host memory.
	asked := opts
	if opts, err = memplan.ResolveOffload(mc, opts, int64(rep.Free)); err != nil {
		return rep, err
	}
	var host int64
	if _, avail, err := hostMemory(); err == nil {
		host = avail
	}
	plan, err := memplan.Plan(mc, opts)
	if err != nil {
		return rep, err
	}
	fitVerdict(&rep, plan)
	peak := plan.Peak()
	if hp := plan.HostPeak(); hp > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("activation checkpoints offloaded to host memory: %s pinned, %s available", units.Bytes(hp), units.Bytes(host)))
		if host > 0 && hp > host {
			rep.Fits = false
			rep.Verdict = fmt.Sprintf("does not fit: the offloaded checkpoints need %s of host memory, %s available", units.Bytes(hp), units.Bytes(host))
		}
	}
	longest, err := memplan.MaxSeqLenHost(mc, asked, int64(rep.Free), host)
	if err != nil {
		return rep, err
	}
	// The wizard offers no max length beyond the positions the model was
	// trained for (whet fit --max-seq reports the plan's raw answer).
	rep.MaxSeq = longest.SeqLen
	if mp := mc.MaxPositions; mp > 0 && rep.MaxSeq > mp {
		rep.MaxSeq, rep.MaxPositions = mp, mp
	}
	advice, err := memplan.Advise(mc, opts, int64(rep.Free), fitAlternatives(fitModel{config: mc}))
	if err != nil {
		return rep, err
	}
	for _, a := range advice {
		a := a
		rep.Advice = append(rep.Advice, tui.Advice{Text: a.Summary, Saves: uint64(max(0, peak-a.Plan.Peak())),
			Apply: func(rc *engine.RunConfig) { applyAdvice(rc, a) }})
	}
	return rep, nil
}

// fitVerdict puts plan's lines and its verdict against rep.Free into rep.
func fitVerdict(rep *tui.FitReport, plan *memplan.MemPlan) {
	for _, l := range plan.Lines() {
		rep.Parts = append(rep.Parts, tui.PlanPart{Name: l.Label, Bytes: uint64(l.Bytes)})
	}
	peak := plan.Peak()
	rep.Fits = peak <= int64(rep.Free)
	if rep.Fits {
		rep.Verdict = fmt.Sprintf("fits: plan %s of %s free", units.Bytes(peak), units.Bytes(int64(rep.Free)))
	} else {
		rep.Verdict = fmt.Sprintf("does not fit: plan %s, %s free", units.Bytes(peak), units.Bytes(int64(rep.Free)))
	}
}

// applyAdvice writes an advice's options back into a run config.
func applyAdvice(rc *engine.RunConfig, a memplan.Advice) {
	o := a.Options
	rc.Train.Checkpointing = o.Checkpointing
	rc.Train.MicroBatch = o.MicroBatch
	rc.Train.GradAccum = o.GradAccum
	rc.Data.MaxLength = o.SeqLen
	switch a.Kind {
	case memplan.AdviseLoRA:
		rc.Method = "lora"
	case memplan.AdviseQLoRA:
		rc.Method = "qlora"
	case memplan.AdviseSmallerModel:
		// The model's chat template comes with it, as when the user picks
		// it on the model page ("" if the catalog has none: its tokenizer's).
		rc.Model, rc.Data.Template = a.Model, ""
		if e, err := presets.Lookup(a.Model); err == nil {
			rc.Data.Template = e.Template
		}
	}
}

type studioPreviewer struct{}

// Preview prepares the data exactly as training will and shows the first
// three examples with the masked (untrained) tokens marked. ctx stops the
// read (the data page's esc); progress hears how far it has come.
func (studioPreviewer) Preview(ctx context.Context, cfg engine.RunConfig, progress func(datasets.Progress)) (tui.DataPreview, error) {
	var pv tui.DataPreview
	dir, err := modelDir(cfg.Model)
	if err != nil {
		return pv, err
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return pv, err
	}
	if cfg.Data.MaxLength == 0 {
		cfg.Data.MaxLength = 2048
	}
	cfg.Model = dir
	opts := engine.DataOptions(cfg)
	// Images as the run will read them: a vision model's image tokens, or
	// the reason a text model (or DPO/GRPO) refuses them.
	if _, err := engine.VisionDataSettings(&opts, cfg.Method, dir); err != nil {
		return pv, err
	}
	if cfg.Method == "grpo" {
		return previewPrompts(ctx, opts, tok, progress)
	}
	p, err := datasets.PrepareContext(ctx, opts, tok, progress)
	if ctx.Err() != nil {
		return pv, fmt.Errorf("data: %s: %w", cfg.Data.Path, ctx.Err()) // stopped: not the image fallback's read either
	}
	if err != nil {
		// A file with images cannot be trained on yet, but its rows and
		// images can be looked at, with the loader's refusal above them.
		if ipv, ok := imagePreview(cfg.Data.Path, 3); ok {
			ipv.Unusable = err.Error()
			return ipv, nil
		}
		return pv, err
	}
	pv.Format = string(p.Format)
	seqs := p.Train
	labels := make([]string, len(seqs)) // what each sequence is: a pair's chosen or rejected answer
	for _, pr := range p.TrainPairs {
		seqs = append(seqs, pr.Chosen, pr.Rejected)
		labels = append(labels, "chosen", "rejected")
	}
	for i := 0; i < len(seqs) && i < 3; i++ {
		pv.Examples = append(pv.Examples, segments(tok, seqs[i]))
		if len(p.TrainPairs) > 0 {
			pv.Labels = append(pv.Labels, labels[i])
		}
		if len(seqs[i].Images) > 0 { // a vision run: the example's images
			for len(pv.Images) < i {
				pv.Images = append(pv.Images, nil)
			}
			var ims []tui.PreviewImage
			for _, b := range seqs[i].Images {
				ims = append(ims, batchPreviewImage(b))
			}
			pv.Images = append(pv.Images, ims)
		}
	}
	s := p.Stats
	pv.Stats = tui.DataStats{Rows: s.Rows, Skipped: s.BadRows + s.Dropped, Tokens: s.Train.Tokens + s.Eval.Tokens,
		TrainTokens: s.Train.TrainableTokens + s.Eval.TrainableTokens, MeanLen: s.Train.Lengths.Mean,
		MaxLen: s.LongestTokens, Truncated: s.Truncated}
	pv.Warnings = engine.StatsLines(s)[2:]
	return pv, nil
}

// previewPrompts shows prompt-only data as a GRPO run reads it
// (datasets.PreparePrompts, then engine.NewGRPORun's rendering): each of
// the first three prompts with the chat template and its generation prompt,
// left-truncated to max length as the run does, all of it untrained (the answers are generated while training), and its
// answer, when the file has one, beside the example's title. Before, the
// studio prepared GRPO data as supervised data, and every prompt file was
// refused with "none of the N rows has a token to train on".
func previewPrompts(ctx context.Context, opts datasets.Options, tok *tokenizer.Tokenizer, progress func(datasets.Progress)) (tui.DataPreview, error) {
	var pv tui.DataPreview
	ps, err := datasets.PreparePromptsContext(ctx, opts, tok, progress)
	if err != nil {
		return pv, err
	}
	s := ps.Stats
	pv.Format = string(datasets.FormatPrompt)
	rows := append(append([]datasets.Example(nil), ps.Train...), ps.Eval...)
	total, longest, cut := 0, 0, 0
	// The prompts are tokenized here, so the progress of this stage is
	// told here, in the steps PrepareContext tells it.
	told := datasets.Progress{Stage: datasets.StageTokenizing, TotalRows: len(rows)}
	tell := func(done int) {
		if progress != nil {
			told.Rows = done
			progress(told)
		}
	}
	tell(0)
	for i, ex := range rows {
		if i%datasets.TokenizedEvery == 0 && i > 0 {
			if err := ctx.Err(); err != nil {
				return pv, fmt.Errorf("data: tokenizing: %w", err)
			}
			tell(i)
		}
		ids, err := engine.EncodeChat(tok, ps.Template, ex.Messages)
		if err != nil {
			return pv, fmt.Errorf("%s: prompt: %w", ex.Loc, err)
		}
		total, longest = total+len(ids), max(longest, len(ids)) // as written
		if opts.MaxLength > 0 && len(ids) > opts.MaxLength {
			cut++
			ids = ids[len(ids)-opts.MaxLength:] // what the run keeps
		}
		if i < 3 && i < len(ps.Train) {
			shown := make([]int, len(ids))
			for j, id := range ids {
				shown[j] = int(id)
			}
			pv.Examples = append(pv.Examples, []tui.Segment{{Text: tok.Decode(shown, false), Masked: true}})
			label := ""
			if ex.Answer != "" {
				label = "answer: " + ex.Answer
			}
			pv.Labels = append(pv.Labels, label)
		}
	}
	tell(len(rows))
	pv.Stats = tui.DataStats{Rows: s.Rows, Skipped: s.BadRows + s.Dropped, Tokens: total,
		MeanLen: float64(total) / float64(max(len(rows), 1)), MaxLen: longest, Truncated: cut}
	pv.Warnings = engine.StatsLines(s)[2:]
	if cut > 0 {
		pv.Warnings = append(pv.Warnings, fmt.Sprintf("data: %d prompts longer than max_length keep their last %d tokens", cut, opts.MaxLength))
	}
	return pv, nil
}

// segments decodes a sequence in runs of trained and untrained tokens. In
// a sequence with images, a run of 8 or more of one token (Gemma 3's 256
// image tokens per image) shows as that token once and ×count.
func segments(tok *tokenizer.Tokenizer, s datasets.Sequence) []tui.Segment {
	var out []tui.Segment
	var run []int
	masked := false
	flush := func() {
		if len(run) == 0 {
			return
		}
		var b strings.Builder
		from := 0
		for i := 0; i <= len(run); i++ {
			if i < len(run) && run[i] == run[from] {
				continue
			}
			if n := i - from; n >= 8 && len(s.Images) > 0 {
				b.WriteString(tok.Decode(run[from:from+1], false) + fmt.Sprintf("×%d", n))
			} else {
				b.WriteString(tok.Decode(run[from:i], false))
			}
			from = i
		}
		out = append(out, tui.Segment{Text: b.String(), Masked: masked})
		run = run[:0]
	}
	for i, id := range s.Tokens {
		m := s.Labels[i] == datasets.IgnoreIndex
		if m != masked {
			flush()
			masked = m
		}
		run = append(run, int(id))
	}
	flush()
	return out
}

type studioGPU struct {
	m     *gpuinfo.Monitor
	names []string // by device index
}

var _ tui.MultiGPUSampler = studioGPU{}

func (g studioGPU) Sample() (tui.GPUStats, error) { return g.sample(0) }

func (g studioGPU) sample(i int) (tui.GPUStats, error) {
	s, err := g.m.Sample(i)
	if err != nil {
		return tui.GPUStats{}, err
	}
	return tui.GPUStats{Name: g.names[i], Util: float64(s.UtilGPU), MemUsed: uint64(s.MemoryUsed), MemTotal: uint64(s.MemoryTotal),
		TempC: float64(s.TemperatureC), PowerW: s.PowerW, PowerCapW: s.PowerLimitW}, nil
}

// SampleAll reads every GPU, for the dashboard of a run over several.
func (g studioGPU) SampleAll() ([]tui.GPUStats, error) {
	out := make([]tui.GPUStats, len(g.names))
	for i := range out {
		s, err := g.sample(i)
		if err != nil {
			return nil, fmt.Errorf("GPU %d: %w", i, err)
		}
		out[i] = s
	}
	return out, nil
}

type studioChatter struct{}

// OpenChat loads a finished run for the side-by-side chat: the base model
// with the run's adapter (switched on and off), or for full fine-tuning the
// run's model alone.
func (studioChatter) OpenChat(ctx context.Context, runDir string, cfg engine.RunConfig) (tui.ChatSession, error) {
	if saved, err := engine.LoadRunConfig(engine.RunDir(runDir).Config()); err == nil {
		cfg = saved // the engine's copy names the model folder it resolved
	}
	b, _, err := engine.OpenBackend(cfg.Backend)
	if err != nil {
		return nil, err
	}
	o := chat.Options{Template: cfg.Data.Template}
	if a, ok := chat.FindAdapter(runDir); ok {
		if o.ModelDir, err = modelDir(cfg.Model); err != nil {
			return nil, err
		}
		o.AdapterDir = a
		o.NF4Base = chat.QLoRABase(cfg.Method, a)
	} else {
		o.ModelDir = engine.RunDir(runDir).Model()
	}
	if chat.IsMllama(o.ModelDir) {
		// Llama 3.2 Vision has its own session (always with its tower).
		s, err := chat.OpenMllama(b, o)
		if err != nil {
			if c, ok := b.(engine.Closer); ok {
				c.Close()
			}
			return nil, err
		}
		return &studioMllamaChat{s: s, b: b}, nil
	}
	// A Gemma 3 folder with a vision tower is opened with it, so that
	// /image works; if the tower cannot be loaded the text model still
	// chats (and /image says there is no tower).
	o.Gemma3Vision = hasGemma3VisionConfig(o.ModelDir)
	s, err := chat.Open(b, o)
	if err != nil && o.Gemma3Vision {
		o.Gemma3Vision = false
		s, err = chat.Open(b, o)
	}
	if err != nil {
		if c, ok := b.(engine.Closer); ok {
			c.Close()
		}
		return nil, err
	}
	c := &studioChat{s: s, b: b, modelDir: o.ModelDir}
	if !s.BothTogether() {
		return oneAtATimeChat{c}, nil
	}
	return c, nil
}

// oneAtATimeChat is the studio's chat without GenerateBoth: the page asks
// the base model and then the tuned one (chat.BothTogetherEnv).
type oneAtATimeChat struct{ c *studioChat }

func (o oneAtATimeChat) HasTuned() bool               { return o.c.HasTuned() }
func (o oneAtATimeChat) CheckImage(path string) error { return o.c.CheckImage(path) }
func (o oneAtATimeChat) Close()                       { o.c.Close() }
func (o oneAtATimeChat) Generate(ctx context.Context, turns []tui.ChatTurn, opts engine.SampleOptions, tuned bool, onText func(string)) (tui.ChatReply, error) {
	return o.c.Generate(ctx, turns, opts, tuned, onText)
}

// hasGemma3VisionConfig reports whether a model folder's config.json is a
// Gemma 3 multimodal one (model_type gemma3 with a vision_config).
func hasGemma3VisionConfig(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return false
	}
	var c struct {
		ModelType    string          `json:"model_type"`
		VisionConfig json.RawMessage `json:"vision_config"`
	}
	return json.Unmarshal(data, &c) == nil && c.ModelType == "gemma3" && len(c.VisionConfig) > 0 && string(c.VisionConfig) != "null"
}

type studioChat struct {
	s        *chat.Session
	b        engine.Backend
	modelDir string

	mu     sync.Mutex
	images map[string]*vision.Gemma3Output // processed, by path
}

var (
	_ tui.ImageChat = (*studioChat)(nil)
	_ tui.BothChat  = (*studioChat)(nil)
)

func (c *studioChat) HasTuned() bool { return c.s.HasAdapter }

// CheckImage runs the model's image processor on the file (/image in the
// studio's chat); a model without a vision tower says so.
func (c *studioChat) CheckImage(path string) error {
	_, err := c.image(path)
	return err
}

func (c *studioChat) image(path string) (*vision.Gemma3Output, error) {
	if c.s.Model.Gemma3Vision == nil {
		return nil, fmt.Errorf("model %s (%s) has no vision tower: it cannot look at images (/image needs a Gemma 3 vision or Llama 3.2 Vision model)", filepath.Base(c.modelDir), c.s.Model.Cfg.ModelType)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if im, ok := c.images[path]; ok {
		return im, nil
	}
	im, err := gemma3ChatImage(c.s, c.modelDir, path)
	if err != nil {
		return nil, err
	}
	if c.images == nil {
		c.images = map[string]*vision.Gemma3Output{}
	}
	c.images[path] = im
	return im, nil
}

// Generate answers the turns; a user turn's images come before its text,
// as whet chat's /image puts them.
func (c *studioChat) Generate(ctx context.Context, turns []tui.ChatTurn, o engine.SampleOptions, tuned bool, onText func(string)) (tui.ChatReply, error) {
	msgs, images, err := chatMessages(turns, c.image)
	if err != nil {
		return tui.ChatReply{}, err
	}
	var r chat.Reply
	if len(images) > 0 {
		r, err = c.s.GenerateWithImages(ctx, msgs, images, o, tuned, onText)
	} else {
		r, err = c.s.Generate(ctx, msgs, o, tuned, onText)
	}
	return tui.ChatReply{Text: r.Text, Tokens: r.Tokens, TokensPerSec: r.TokensPerSec, Stop: r.Stop}, err
}

// GenerateBoth answers the base and the tuned side of the studio's chat
// together: one batched generation over the shared base weights, the
// adapter on the tuned row only (chat.Session.GenerateBoth), so both
// stream at once. A conversation that carries images goes one side at a
// time (the batched generator has no image prefill): the base, then the
// tuned model unless the base was cancelled or failed.
func (c *studioChat) GenerateBoth(ctx context.Context, base, tuned []tui.ChatTurn, o engine.SampleOptions, onText func(bool, string), onDone func(bool, tui.ChatReply)) (tui.ChatReply, tui.ChatReply, error) {
	if hasImages(base) || hasImages(tuned) {
		var replies [2]tui.ChatReply
		for i, turns := range [][]tui.ChatTurn{base, tuned} {
			side := i == 1
			r, err := c.Generate(ctx, turns, o, side, func(piece string) { onText(side, piece) })
			if err != nil || r.Stop == "cancelled" {
				if side {
					replies[1] = r
				} else {
					replies[0], replies[1] = r, tui.ChatReply{Stop: "cancelled"}
				}
				return replies[0], replies[1], err
			}
			replies[i] = r
			onDone(side, r)
		}
		return replies[0], replies[1], nil
	}
	msgs := func(turns []tui.ChatTurn) []datasets.Message {
		out := make([]datasets.Message, len(turns))
		for i, t := range turns {
			out[i] = datasets.Message{Role: t.Role, Content: t.Content}
		}
		return out
	}
	reply := func(r chat.Reply) tui.ChatReply {
		return tui.ChatReply{Text: r.Text, Tokens: r.Tokens, TokensPerSec: r.TokensPerSec, Stop: r.Stop}
	}
	b, t, err := c.s.GenerateBoth(ctx, msgs(base), msgs(tuned), o, onText, func(side bool, r chat.Reply) { onDone(side, reply(r)) })
	return reply(b), reply(t), err
}

func hasImages(turns []tui.ChatTurn) bool {
	for _, t := range turns {
		if len(t.Images) > 0 {
			return true
		}
	}
	return false
}

func (c *studioChat) Close() {
	c.s.Close()
	if cl, ok := c.b.(engine.Closer); ok {
		cl.Close()
	}
}

// studioExport runs engine/export for the studio's export page.
//
// A cancelled export returns at once; the export itself stops at its next
// weight or write (export.RunContext; loading the model cannot be cut
// short), without reporting, and then the output folder is removed if this
// export created it. Exports run one at a time, so a new one never writes
// while a cancelled one is still finishing.
type studioExport struct {
	turn chan struct{} // holds a token while an export runs
}

func newStudioExport() *studioExport { return &studioExport{turn: make(chan struct{}, 1)} }

func (e *studioExport) Export(ctx context.Context, runDir, format, quant, outDir string, progress func(done, total int, what string)) ([]string, error) {
	o := export.Options{RunDir: runDir, Format: format, Quant: quant, OutDir: outDir}
	if err := o.Check(); err != nil {
		return nil, err
	}
	select {
	case e.turn <- struct{}{}:
	default:
		progress(0, 0, "waiting for a cancelled export to finish")
		select {
		case e.turn <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("export to %s cancelled: %w", outDir, ctx.Err())
		}
	}
	_, statErr := os.Stat(outDir)
	created := errors.Is(statErr, fs.ErrNotExist)
	// Files older than the start belong to an earlier export into the same
	// folder (whole seconds: some file systems keep no more).
	start := time.Now().Truncate(time.Second)
	var cancelled atomic.Bool
	result := make(chan error, 1)
	go func() {
		err := export.RunContext(ctx, o, func(done, total int, what string) {
			if !cancelled.Load() {
				progress(done, total, what)
			}
		})
		if cancelled.Load() && created {
			os.RemoveAll(outDir) // a partial export the user gave up on
		}
		<-e.turn
		result <- err
	}()
	select {
	case err := <-result:
		if err != nil {
			return nil, err
		}
		return writtenSince(outDir, start)
	case <-ctx.Done():
		cancelled.Store(true)
		return nil, fmt.Errorf("export to %s cancelled: %w", outDir, ctx.Err())
	}
}

// writtenSince lists the files in dir modified at or after start, skipping
// hidden ones (the writers' temporary files).
func writtenSince(dir string, start time.Time) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("export: listing what was written: %w", err)
	}
	var files []string
	for _, en := range entries {
		if !en.Type().IsRegular() || strings.HasPrefix(en.Name(), ".") {
			continue
		}
		info, err := en.Info()
		if err != nil {
			return nil, fmt.Errorf("export: %s: %w", filepath.Join(dir, en.Name()), err)
		}
		if !info.ModTime().Before(start) {
			files = append(files, en.Name())
		}
	}
	return files, nil
}

// chatMessages turns the studio's chat turns into messages, a user turn's
// images (loaded by load, in order) before its text, as whet chat's /image
// puts them; shared by the Gemma 3 and Llama 3.2 Vision chats.
func chatMessages[T any](turns []tui.ChatTurn, load func(string) (T, error)) ([]datasets.Message, []T, error) {
	msgs := make([]datasets.Message, len(turns))
	var images []T
	for i, t := range turns {
		msgs[i] = datasets.Message{Role: t.Role, Content: t.Content}
		if len(t.Images) == 0 {
			continue
		}
		for _, path := range t.Images {
			im, err := load(path)
			if err != nil {
				return nil, nil, err
			}
			images = append(images, im)
			msgs[i].Parts = append(msgs[i].Parts, datasets.ContentPart{Type: "image"})
		}
		msgs[i].Parts = append(msgs[i].Parts, datasets.ContentPart{Type: "text", Text: t.Content})
	}
	return msgs, images, nil
}
