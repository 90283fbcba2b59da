// Package fake provides scripted stand-ins for the studio's dependencies:
// an engine that replays events with controllable timing, a catalog, a
// fit checker, a data previewer and a GPU sampler. They back `whet studio
// --fake` demos and the studio's tests; nothing here trains a model.
package fake

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/units"
	"whet/tui"
)

// Step is one scripted event and how long to wait before sending it.
type Step struct {
	After time.Duration
	Event engine.Event
}

// Engine replays Script on each Start. It honours the RunControl: while
// paused it sends nothing, Checkpoint inserts a CheckpointEvent after the
// next step, and Stop sends a CheckpointEvent and then
// DoneEvent{Stopped: true}. If the script has no DoneEvent one is added.
type Engine struct {
	Script   []Step
	StartErr error

	mu      sync.Mutex
	configs []engine.RunConfig
	control *Control
}

// Started returns the configs Start received, in order.
func (e *Engine) Started() []engine.RunConfig {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]engine.RunConfig(nil), e.configs...)
}

// LastControl returns the control of the latest run (nil before Start).
func (e *Engine) LastControl() *Control {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.control
}

// Start implements tui.Engine.
func (e *Engine) Start(ctx context.Context, cfg engine.RunConfig) (<-chan engine.Event, engine.RunControl, error) {
	if e.StartErr != nil {
		return nil, nil, e.StartErr
	}
	ctl := &Control{resume: make(chan struct{}), runDir: cfg.RunsDir + "/" + cfg.Name}
	e.mu.Lock()
	e.configs = append(e.configs, cfg)
	e.control = ctl
	e.mu.Unlock()
	ch := make(chan engine.Event)
	go ctl.play(ctx, e.Script, ch)
	return ch, ctl, nil
}

// Control is the fake RunControl; it counts calls for tests (Counts).
type Control struct {
	mu                                  sync.Mutex
	paused                              bool
	resume                              chan struct{}
	wantCheckpoint, wantStop            bool
	pauses, resumes, checkpoints, stops int
	lastStep                            int
	runDir                              string
}

func (c *Control) Pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pauses++
	c.paused = true
}

func (c *Control) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resumes++
	if c.paused {
		c.paused = false
		close(c.resume)
		c.resume = make(chan struct{})
	}
}

func (c *Control) Checkpoint() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checkpoints++
	c.wantCheckpoint = true
}

func (c *Control) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stops++
	c.wantStop = true
	if c.paused { // a stop must not wait for a resume
		c.paused = false
		close(c.resume)
		c.resume = make(chan struct{})
	}
}

// Counts returns the call counts under the lock.
func (c *Control) Counts() (pauses, resumes, checkpoints, stops int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pauses, c.resumes, c.checkpoints, c.stops
}

func (c *Control) checkpointPath(step int) string {
	return fmt.Sprintf("%s/checkpoints/step-%06d", c.runDir, step)
}

func (c *Control) play(ctx context.Context, script []Step, ch chan<- engine.Event) {
	defer close(ch)
	send := func(ev engine.Event) bool {
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	start := time.Now()
	for _, s := range script {
		// Wait while paused (a stop also wakes us).
		for {
			c.mu.Lock()
			paused, wake, stop := c.paused, c.resume, c.wantStop
			c.mu.Unlock()
			if stop || !paused {
				break
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
		c.mu.Lock()
		stop := c.wantStop
		c.mu.Unlock()
		if stop {
			path := c.checkpointPath(c.lastStep)
			if send(engine.CheckpointEvent{Step: c.lastStep, Path: path}) {
				send(engine.DoneEvent{Step: c.lastStep, Stopped: true, Elapsed: time.Since(start), FinalDir: path})
			}
			return
		}
		if s.After > 0 {
			select {
			case <-time.After(s.After):
			case <-ctx.Done():
				return
			}
		}
		ev := s.Event
		if ck, ok := ev.(engine.CheckpointEvent); ok && !strings.HasPrefix(ck.Path, "/") {
			ck.Path = c.runDir + "/" + ck.Path
			ev = ck
		}
		if !send(ev) {
			return
		}
		switch ev := s.Event.(type) {
		case engine.StepEvent:
			c.mu.Lock()
			c.lastStep = ev.Step
			want := c.wantCheckpoint
			c.wantCheckpoint = false
			c.mu.Unlock()
			if want && !send(engine.CheckpointEvent{Step: ev.Step, Path: c.checkpointPath(ev.Step)}) {
				return
			}
		case engine.DoneEvent:
			return
		}
	}
	send(engine.DoneEvent{Step: c.lastStep, Elapsed: time.Since(start), FinalDir: c.runDir})
}

// Demo builds a plausible script of steps steps: a loss falling from about
// 2.6 towards 0.9 with seeded noise, evals every evalEvery steps, a sample
// every sampleEvery steps, a checkpoint every saveEvery, each step after
// delay. The curve is made up; it only exercises the dashboard.
func Demo(steps int, delay time.Duration, seed uint64) []Step {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	evalEvery, sampleEvery, saveEvery := max(steps/10, 1), max(steps/5, 1), max(steps/4, 1)
	prompts := []string{"Explain gradient descent to a child.", "What is a hash table?"}
	var s []Step
	s = append(s, Step{Event: engine.LogEvent{Text: "fake engine: replaying a scripted run"}})
	elapsed := time.Duration(0)
	for i := 1; i <= steps; i++ {
		t := float64(i) / float64(steps)
		loss := 0.9 + 1.7*math.Exp(-4*t) + 0.08*rng.NormFloat64()
		lr := 2e-4 * math.Min(1, float64(i)/float64(max(steps/20, 1))) * 0.5 * (1 + math.Cos(math.Pi*t))
		tps := 11800 + 400*rng.NormFloat64()
		elapsed += time.Duration(float64(2048) / tps * float64(time.Second))
		s = append(s, Step{After: delay, Event: engine.StepEvent{
			Step: i, TotalSteps: steps, Epoch: 3 * t, Loss: loss, LR: lr,
			GradNorm: 0.4 + 0.6*math.Exp(-3*t) + 0.05*math.Abs(rng.NormFloat64()),
			Tokens:   2048, TokensPerSec: tps, Elapsed: elapsed,
		}})
		if i%evalEvery == 0 {
			s = append(s, Step{Event: engine.EvalEvent{Step: i, Loss: loss + 0.1 + 0.1*t}})
		}
		if i%sampleEvery == 0 {
			p := prompts[(i/sampleEvery)%len(prompts)]
			s = append(s, Step{Event: engine.SampleEvent{Step: i, Prompt: p,
				Text: fmt.Sprintf("(scripted sample at step %d) Think of it like a ball rolling downhill… what would happen if the hill moved?", i)}})
		}
		if i%saveEvery == 0 {
			s = append(s, Step{Event: engine.CheckpointEvent{Step: i, Path: fmt.Sprintf("checkpoints/step-%06d", i)}})
		}
	}
	s = append(s, Step{Event: engine.DoneEvent{Step: steps, Elapsed: elapsed, FinalDir: "adapter"}})
	return s
}

// Catalog is a fixed model list.
type Catalog []tui.ModelInfo

// Models implements tui.Catalog.
func (c Catalog) Models() []tui.ModelInfo { return c }

// DemoCatalog is a small list that looks like the real catalog.
var DemoCatalog = Catalog{
	{Name: "whet-demo-8m", Repo: "", Params: 8_000_000, Template: "chatml", Note: "built-in demo model (fake in this build)"},
	{Name: "qwen2.5-0.5b-instruct", Repo: "Qwen/Qwen2.5-0.5B-Instruct", Params: 494_000_000, Template: "qwen2"},
	{Name: "llama-3.2-1b-instruct", Repo: "meta-llama/Llama-3.2-1B-Instruct", Params: 1_236_000_000, Template: "llama3"},
	{Name: "qwen2.5-7b-instruct", Repo: "Qwen/Qwen2.5-7B-Instruct", Params: 7_616_000_000, Template: "qwen2"},
}

// FitChecker reports a plan computed from the parameter count with rough
// byte sizes; it is a stand-in with the real checker's shape.
type FitChecker struct {
	Device      string
	Free, Total uint64
	Unified     string // the report's Unified: a unified-memory device
	Params      func(model string) int64
	Err         error
	// MaxSeq, when set, makes the report carry the longest max length that
	// fits this stand-in plan (its activations grow linearly with it).
	MaxSeq bool
	// MaxPositions, when set, caps MaxSeq as the model's trained
	// positions do (the report's MaxPositions).
	MaxPositions int
	// Warnings are the report's warnings.
	Warnings []string
}

const gib = 1 << 30

// Check implements tui.FitChecker.
func (f FitChecker) Check(_ context.Context, cfg engine.RunConfig) (tui.FitReport, error) {
	if f.Err != nil {
		return tui.FitReport{}, f.Err
	}
	n := int64(1_000_000_000)
	if f.Params != nil {
		if p := f.Params(cfg.Model); p > 0 {
			n = p
		}
	}
	weightBytes := uint64(n) * 2
	if cfg.Method == "qlora" {
		weightBytes = uint64(n) / 2
	}
	parts := []tui.PlanPart{{Name: "weights", Bytes: weightBytes}}
	trainable := uint64(n) / 100
	if cfg.Method == "full" {
		trainable = uint64(n)
	}
	parts = append(parts,
		tui.PlanPart{Name: "trainable", Bytes: trainable * 4},
		tui.PlanPart{Name: "grads", Bytes: trainable * 4},
		tui.PlanPart{Name: "optimizer", Bytes: trainable * 8})
	act := uint64(cfg.Train.MicroBatch*cfg.Data.MaxLength) * 64 * 1024
	if cfg.Train.Checkpointing {
		act /= 4
	}
	parts = append(parts, tui.PlanPart{Name: "activations", Bytes: act}, tui.PlanPart{Name: "workspace", Bytes: gib / 4})
	var total uint64
	for _, p := range parts {
		total += p.Bytes
	}
	r := tui.FitReport{Device: f.Device, Free: f.Free, Total: f.Total, Parts: parts, Fits: total <= f.Free, Unified: f.Unified, Warnings: f.Warnings}
	if perToken := act / uint64(max(cfg.Data.MaxLength, 1)); f.MaxSeq && perToken > 0 && total-act < f.Free {
		r.MaxSeq = int((f.Free - (total - act)) / perToken)
	}
	if f.MaxPositions > 0 && r.MaxSeq > f.MaxPositions {
		r.MaxSeq, r.MaxPositions = f.MaxPositions, f.MaxPositions
	}
	if r.Fits {
		r.Verdict = fmt.Sprintf("Fits: %s planned, %s free.", units.Bytes(int64(total)), units.Bytes(int64(f.Free)))
	} else {
		r.Verdict = fmt.Sprintf("Does not fit: %s planned, only %s free.", units.Bytes(int64(total)), units.Bytes(int64(f.Free)))
	}
	if cfg.Method == "full" || cfg.Method == "lora" {
		r.Advice = append(r.Advice, tui.Advice{Text: "Use QLoRA (4-bit base weights)", Saves: weightBytes * 3 / 4,
			Apply: func(c *engine.RunConfig) { c.Method = "qlora" }})
	}
	if !cfg.Train.Checkpointing {
		r.Advice = append(r.Advice, tui.Advice{Text: "Turn on activation checkpointing", Saves: act * 3 / 4,
			Apply: func(c *engine.RunConfig) { c.Train.Checkpointing = true }})
	}
	if cfg.Train.MicroBatch > 1 {
		r.Advice = append(r.Advice, tui.Advice{Text: "Halve the micro-batch, double grad accumulation", Saves: act / 2,
			Apply: func(c *engine.RunConfig) {
				c.Train.MicroBatch /= 2
				c.Train.GradAccum = max(c.Train.GradAccum, 1) * 2
			}})
	}
	return r, nil
}

// Previewer returns a fixed preview for any path, or Err.
type Previewer struct {
	Preview0 tui.DataPreview
	Err      error
}

// Preview implements tui.DataPreviewer.
func (p Previewer) Preview(_ context.Context, cfg engine.RunConfig, _ func(datasets.Progress)) (tui.DataPreview, error) {
	if p.Err != nil {
		return tui.DataPreview{}, p.Err
	}
	if cfg.Data.Path == "" {
		return tui.DataPreview{}, errors.New("no dataset path")
	}
	return p.Preview0, nil
}

// DemoPreview is a messages-format preview with masked prompts.
var DemoPreview = tui.DataPreview{
	Format: "messages",
	Examples: [][]tui.Segment{
		{{Text: "<|user|>\nWhy is the sky blue?\n<|assistant|>\n", Masked: true}, {Text: "Sunlight is like a crowd of runners; the blue ones trip on air most often and scatter everywhere. What colour would the sky be with no air?<|end|>"}},
		{{Text: "<|user|>\nWhat is recursion?\n<|assistant|>\n", Masked: true}, {Text: "It is a set of nesting dolls: each opens to a smaller one until the last is solid. Where is the solid doll in your function?<|end|>"}},
		{{Text: "<|user|>\nHow do vaccines work?\n<|assistant|>\n", Masked: true}, {Text: "A vaccine is a wanted poster for a germ the body has not met yet. Who do you think reads the poster?<|end|>"}},
	},
	Stats: tui.DataStats{Rows: 120, Tokens: 14230, TrainTokens: 9120, MeanLen: 118.6, MaxLen: 301, Truncated: 0},
}

// GPU returns fixed stats, or Err (as on a machine without NVIDIA).
type GPU struct {
	Stats tui.GPUStats
	Err   error
}

// Sample implements tui.GPUSampler.
func (g GPU) Sample() (tui.GPUStats, error) { return g.Stats, g.Err }

// DemoGPU looks like a busy H100.
var DemoGPU = GPU{Stats: tui.GPUStats{Name: "NVIDIA H100 80GB HBM3 (fake)", Util: 87, MemUsed: 21 * gib, MemTotal: 80 * gib, TempC: 61, PowerW: 412, PowerCapW: 700}}

// Params returns the parameter count of a catalog model by name or by
// its repo id (what the model page records for a model from the Hub).
func (c Catalog) Params(name string) int64 {
	for _, m := range c {
		if m.Name == name || (m.Repo != "" && m.Repo == name) {
			return m.Params
		}
	}
	return 0
}

// Chat answers with canned text, word by word: Base for the base model
// and Tuned for the tuned one (a function of the last user turn). It
// records the turns and options of every request. Its session answers
// both sides together (tui.BothChat), a word of each per step, unless
// OneAtATime.
type Chat struct {
	Base, Tuned func(prompt string) string
	Delay       time.Duration // between words
	OpenErr     error
	NoTuned     bool
	OneAtATime  bool // the session has no GenerateBoth
	// HoldAfter > 0 stops an answer after that many words (of each side)
	// until its context is cancelled, like a long answer caught midway.
	HoldAfter int
	// CancelAsStop ends a cancelled answer as the engine's chat does:
	// Stop "cancelled" and no error (else the context's error).
	CancelAsStop bool
	// Vision makes the session look at images: CheckImage decodes the
	// file; without it CheckImage says the model has no vision tower.
	Vision bool
	// OpenGate, when set, holds OpenChat until it is closed (or sent
	// to), like models that take a while to load.
	OpenGate chan struct{}

	mu       sync.Mutex
	opens    int // sessions opened
	Requests []ChatRequest
	live     int // answers being generated
	closed   int
	// closedLive counts the sessions closed while an answer still ran.
	closedLive int
}

// Closed says how many sessions were closed, and how many of those while
// an answer was still being generated (the models freed under it).
func (c *Chat) Closed() (closed, whileAnswering int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.closedLive
}

// begin counts an answer in progress; the returned func ends it.
func (c *Chat) begin() func() {
	c.mu.Lock()
	c.live++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.live--
		c.mu.Unlock()
	}
}

// cancelled ends an answer cancelled after words.
func (c *Chat) cancelled(ctx context.Context, words []string) (tui.ChatReply, error) {
	r := tui.ChatReply{Text: strings.Join(words, "")}
	if c.CancelAsStop {
		r.Tokens, r.Stop = len(words), "cancelled"
		return r, nil
	}
	return r, ctx.Err()
}

// next waits before an answer's next word (the words-th): Delay, or
// until ctx ends when the answer is held there (HoldAfter). It reports
// false when ctx has ended.
func (c *Chat) next(ctx context.Context, words int) bool {
	if c.HoldAfter > 0 && words == c.HoldAfter {
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		return false
	}
	if c.Delay > 0 {
		select {
		case <-time.After(c.Delay):
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// ChatRequest is one side's request the fake received: a Generate call,
// or one side of a GenerateBoth call (Together; the base side first).
type ChatRequest struct {
	Turns    []tui.ChatTurn
	Opts     engine.SampleOptions
	Tuned    bool
	Together bool
}

// OpenChat implements tui.Chatter.
func (c *Chat) OpenChat(context.Context, string, engine.RunConfig) (tui.ChatSession, error) {
	if c.OpenGate != nil {
		<-c.OpenGate
	}
	if c.OpenErr != nil {
		return nil, c.OpenErr
	}
	c.mu.Lock()
	c.opens++
	c.mu.Unlock()
	if c.OneAtATime || c.NoTuned {
		return chatSession{c}, nil
	}
	return bothSession{chatSession{c}}, nil
}

// Opens says how many sessions OpenChat has opened.
func (c *Chat) Opens() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opens
}

// Recorded returns the requests so far.
func (c *Chat) Recorded() []ChatRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ChatRequest(nil), c.Requests...)
}

type chatSession struct{ c *Chat }

func (s chatSession) HasTuned() bool { return !s.c.NoTuned }

// CheckImage implements tui.ImageChat.
func (s chatSession) CheckImage(path string) error {
	if !s.c.Vision {
		return errors.New("model fake-text has no vision tower: it cannot look at images")
	}
	_, err := vision.DecodeFile(path)
	return err
}
func (s chatSession) Close() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.closed++
	if s.c.live > 0 {
		s.c.closedLive++
	}
}

// answer records a request and returns its answer's words.
func (s chatSession) answer(turns []tui.ChatTurn, o engine.SampleOptions, tuned, together bool) []string {
	s.c.mu.Lock()
	s.c.Requests = append(s.c.Requests, ChatRequest{Turns: append([]tui.ChatTurn(nil), turns...), Opts: o, Tuned: tuned, Together: together})
	s.c.mu.Unlock()
	prompt := ""
	if n := len(turns); n > 0 {
		prompt = turns[n-1].Content
	}
	answer := s.c.Base
	if tuned {
		answer = s.c.Tuned
	}
	return strings.SplitAfter(answer(prompt), " ")
}

func (s chatSession) Generate(ctx context.Context, turns []tui.ChatTurn, o engine.SampleOptions, tuned bool, onText func(string)) (tui.ChatReply, error) {
	defer s.c.begin()()
	words := s.answer(turns, o, tuned, false)
	text := strings.Join(words, "")
	for i, w := range words {
		if !s.c.next(ctx, i) {
			return s.c.cancelled(ctx, words[:i])
		}
		onText(w)
	}
	return tui.ChatReply{Text: text, Tokens: len(words), TokensPerSec: 42, Stop: "eos"}, nil
}

// bothSession also answers both sides together, as the engine's batched
// generation does: each step gives the next word of every side still
// going (base first), a side that has no more words ends at once
// (onDone) while the other goes on; a cancel ends the sides still going
// with the context's error.
type bothSession struct{ chatSession }

var _ tui.BothChat = bothSession{}

func (s bothSession) GenerateBoth(ctx context.Context, base, tuned []tui.ChatTurn, o engine.SampleOptions, onText func(bool, string), onDone func(bool, tui.ChatReply)) (tui.ChatReply, tui.ChatReply, error) {
	defer s.c.begin()()
	words := [2][]string{s.answer(base, o, false, true), s.answer(tuned, o, true, true)}
	var replies [2]tui.ChatReply
	var ended [2]bool
	for step := 0; !ended[0] || !ended[1]; step++ {
		if !s.c.next(ctx, step) {
			var err error
			for i := range replies {
				if !ended[i] {
					replies[i], err = s.c.cancelled(ctx, words[i][:step])
				}
			}
			return replies[0], replies[1], err
		}
		for i := range words {
			if ended[i] {
				continue
			}
			onText(i == 1, words[i][step])
			if step+1 == len(words[i]) {
				ended[i] = true
				replies[i] = tui.ChatReply{Text: strings.Join(words[i], ""), Tokens: len(words[i]), TokensPerSec: 42, Stop: "eos"}
				onDone(i == 1, replies[i])
			}
		}
	}
	return replies[0], replies[1], nil
}

// DemoChat answers plainly as the base and as the mentor persona tuned.
func DemoChat() *Chat {
	return &Chat{
		Delay: 40 * time.Millisecond,
		Base:  func(p string) string { return "Here is some information about that topic. It is a common question." },
		Tuned: func(p string) string {
			return "Think of it like a garden: what you water grows. Which part of this would you water first?"
		},
	}
}

// Exporter pretends to export a run: it reports one progress step per
// tensor of a two-layer model (then the format's files) with Delay between
// steps, and returns the file names the real export writes. It writes
// nothing. With HoldAfter > 0 it stops after that many steps until its
// context is cancelled, like an export that takes a long time; Err makes
// it fail after the first step. It records each request.
type Exporter struct {
	Delay     time.Duration
	HoldAfter int
	Err       error
	// Cleanup is how long a cancelled export takes to remove what it
	// wrote before it returns (and counts as cancelled).
	Cleanup time.Duration

	mu        sync.Mutex
	requests  []ExportRequest
	cancelled int
}

// ExportRequest is one Export call the fake received.
type ExportRequest struct {
	RunDir, Format, Quant, OutDir string
}

// Requests returns the export requests so far.
func (e *Exporter) Requests() []ExportRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ExportRequest(nil), e.requests...)
}

// Cancelled counts the exports that ended because their context was
// cancelled.
func (e *Exporter) Cancelled() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cancelled
}

// exportSteps are the steps of an export in the order the real one
// reports them: tensors, then the format's files.
func exportSteps(format string) (steps, files []string) {
	if format == "peft" {
		files = []string{"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"}
		return []string{"adapter_config.json", "adapter_model.safetensors", "tokenizer files"}, files
	}
	// GGUF names tensors its own way; merged keeps Hugging Face's names.
	names := map[bool][]string{
		true:  {"token_embd.weight", "blk.%d.attn_norm", "blk.%d.attn_q", "blk.%d.attn_k", "blk.%d.attn_v", "blk.%d.attn_output", "blk.%d.ffn_norm", "blk.%d.ffn_gate", "blk.%d.ffn_up", "blk.%d.ffn_down", "output_norm.weight"},
		false: {"model.embed_tokens.weight", "model.layers.%d.input_layernorm", "model.layers.%d.self_attn.q_proj", "model.layers.%d.self_attn.k_proj", "model.layers.%d.self_attn.v_proj", "model.layers.%d.self_attn.o_proj", "model.layers.%d.post_attention_layernorm", "model.layers.%d.mlp.gate_proj", "model.layers.%d.mlp.up_proj", "model.layers.%d.mlp.down_proj", "model.norm.weight"},
	}[format == "gguf"]
	steps = []string{names[0]}
	for l := 0; l < 2; l++ {
		for _, t := range names[1 : len(names)-1] {
			steps = append(steps, fmt.Sprintf(t, l)+".weight")
		}
	}
	steps = append(steps, names[len(names)-1])
	if format == "gguf" {
		return append(steps, "Modelfile"), []string{"model.gguf", "Modelfile"}
	}
	files = []string{"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}
	return append(steps, "model.safetensors", "config.json", "generation_config.json, tokenizer files"), files
}

// Export implements tui.Exporter.
func (e *Exporter) Export(ctx context.Context, runDir, format, quant, outDir string, progress func(done, total int, what string)) ([]string, error) {
	e.mu.Lock()
	e.requests = append(e.requests, ExportRequest{RunDir: runDir, Format: format, Quant: quant, OutDir: outDir})
	e.mu.Unlock()
	steps, files := exportSteps(format)
	// wait sleeps d (until cancelled when forever), and reports a
	// cancelled context as the real export would: an error wrapping it.
	wait := func(d time.Duration, forever bool) error {
		var after <-chan time.Time // nil: never fires
		if !forever {
			after = time.After(max(d, 0))
		}
		select {
		case <-ctx.Done():
			time.Sleep(e.Cleanup)
			e.mu.Lock()
			e.cancelled++
			e.mu.Unlock()
			return fmt.Errorf("export of %s cancelled: %w", runDir, ctx.Err())
		case <-after:
			return nil
		}
	}
	for i, s := range steps {
		if err := wait(e.Delay, false); err != nil {
			return nil, err
		}
		progress(i+1, len(steps), s)
		if e.Err != nil {
			return nil, e.Err
		}
		if e.HoldAfter > 0 && i+1 == e.HoldAfter {
			if err := wait(0, true); err != nil {
				return nil, err
			}
		}
	}
	return files, nil
}

// ShapeImage draws a w×h picture: a filled circle of colour fg on bg, the
// kind of picture the vision tests train on.
func ShapeImage(w, h int, fg, bg [3]uint8) *vision.RGB {
	img := &vision.RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	cx, cy, r := float64(w)/2, float64(h)/2, float64(min(w, h))*0.4
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := bg
			if dx, dy := float64(x)+0.5-cx, float64(y)+0.5-cy; dx*dx+dy*dy <= r*r {
				c = fg
			}
			copy(img.Pix[3*(y*w+x):], c[:])
		}
	}
	return img
}

// ImagePreview is an image dataset as the studio previews one: a picture
// with its caption, a row whose image file is missing (its error, by
// row, field and file), a row with two pictures, and the loader's refusal
// of images for a text model.
func ImagePreview() tui.DataPreview {
	red, blue, green, white := [3]uint8{220, 40, 40}, [3]uint8{30, 60, 200}, [3]uint8{40, 180, 60}, [3]uint8{240, 240, 240}
	ask := func(q string) tui.Segment { return tui.Segment{Text: "user: [image] " + q + "\n", Masked: true} }
	return tui.DataPreview{
		Format: "messages",
		Examples: [][]tui.Segment{
			{ask("What is in the picture?"), {Text: "assistant: A red circle on a blue background."}},
			{ask("What is in the picture?"), {Text: "assistant: A green circle."}},
			{ask("Which two shapes are these?"), {Text: "assistant: A green circle, then a red one."}},
		},
		Images: [][]tui.PreviewImage{
			{{Info: "[image: shapes/red-circle.png 48×32 rgb]", Img: ShapeImage(48, 32, red, blue)}},
			{{Err: `shapes.jsonl:2: field "messages[0].content[0]": image shapes/missing.png: open shapes/missing.png: no such file or directory`}},
			{{Info: "[image: shapes/green.png 32×32 gray]", Img: ShapeImage(32, 32, green, white)},
				{Info: "[image: shapes/red.png 32×32 rgb]", Img: ShapeImage(32, 32, red, white)}},
		},
		Stats:    tui.DataStats{Rows: 3},
		Unusable: `shapes.jsonl:1: field "messages": the conversation holds an image: the model tiny-llama is a text model (whet trains on images with Gemma 3 vision and Llama 3.2 Vision models)`,
	}
}
