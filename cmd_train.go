package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"whet/datasets"
	"whet/engine"
)

func init() {
	register("train", "train headless from a run file: whet train -c run.yaml [--json]", runTrain)
}

func runTrain(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("c", "", "run file (YAML), as the wizard saves it")
	asJSON := fs.Bool("json", false, "print one JSON object per event instead of text lines")
	backend := fs.String("backend", "", "override the run file's backend: auto, cpu or cuda")
	resumeAnyway := fs.Bool("resume-anyway", false, "resume the run's checkpoints even though its data, model or settings changed since they were made")
	name := fs.String("name", "", "override the run file's name (the run's folder in the runs folder)")
	detach := fs.Bool("detach", false, "train in a worker process of its own that goes on when this terminal closes; follow it with whet attach NAME")
	asWorker := fs.Bool("worker", false, "be the worker that --detach starts: train, write worker.log, serve the run's control socket")
	memLimit := addMemoryLimitFlag(fs)
	gpus := fs.String("gpus", "", "train on several GPUs with data parallelism: all, a count N (the first N) or device indices such as 0,2,3 (overrides parallel.gpus)")
	ranks := fs.Int("ranks", 0, "data-parallel ranks on the CPU backend, for trying the multi-GPU logic without GPUs (overrides parallel.ranks)")
	collective := fs.String("collective", "", "how ranks combine gradients: nccl or ring (overrides parallel.collective)")
	nnodes := fs.Int("nnodes", 0, "machines in a multi-node run; each runs whet train with the same run file, its --node-rank and node 0's --master-addr")
	nodeRank := fs.Int("node-rank", 0, "this machine's place in a multi-node run, 0 to nnodes-1 (node 0 writes the run folder)")
	masterAddr := fs.String("master-addr", "", "HOST:PORT where node 0 listens for the other nodes of a multi-node run")
	deterministic := fs.Bool("deterministic", false, "keep the GPU's attention backward on kernels whose results do not vary from run to run, at some speed (sets train.deterministic)")
	hideFlags(fs, "worker")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// whet train run.yaml: the run file is -c's value.
		if a := fs.Arg(0); *config == "" && (strings.HasSuffix(a, ".yaml") || strings.HasSuffix(a, ".yml")) {
			return fmt.Errorf("unexpected argument %q: the run file goes after -c: whet train -c %s", a, a)
		}
		return fmt.Errorf("unexpected argument %q (flags come first; whet train --help lists them)", fs.Arg(0))
	}
	if _, _, err := memLimit.apply(); err != nil {
		return err
	}
	if *config == "" {
		return errors.New("-c run.yaml is required")
	}
	if st, err := os.Stat(*config); err == nil && st.IsDir() {
		// A run folder given for its run file (whet train -c runs/NAME).
		if _, err := os.Stat(filepath.Join(*config, "run.yaml")); err == nil {
			return fmt.Errorf("-c %s is a folder; its run file is -c %s", *config, filepath.Join(*config, "run.yaml"))
		}
		return fmt.Errorf("-c %s is a folder; -c takes a run file (YAML, docs/run-file.md)", *config)
	}
	cfg, err := engine.LoadRunConfig(*config)
	if err != nil {
		return err
	}
	if *backend != "" {
		cfg.Backend = *backend
	}
	cfg.ResumeAnyway = *resumeAnyway
	if *deterministic {
		cfg.Train.Deterministic = true
	}
	var parallelArgs []string
	if *gpus != "" {
		cfg.Parallel.GPUs = *gpus
		parallelArgs = append(parallelArgs, "--gpus", *gpus)
	}
	if *ranks != 0 {
		cfg.Parallel.Ranks = *ranks
		parallelArgs = append(parallelArgs, "--ranks", fmt.Sprint(*ranks))
	}
	if *collective != "" {
		cfg.Parallel.Collective = *collective
		parallelArgs = append(parallelArgs, "--collective", *collective)
	}
	if *nnodes > 1 || *nodeRank != 0 || *masterAddr != "" {
		cfg.Parallel.Nodes = engine.NodeConfig{NNodes: *nnodes, NodeRank: *nodeRank, MasterAddr: *masterAddr}
		parallelArgs = append(parallelArgs, "--nnodes", fmt.Sprint(*nnodes), "--node-rank", fmt.Sprint(*nodeRank), "--master-addr", *masterAddr)
	}
	if *nodeRank > 0 && (*detach || *asWorker) {
		// The run folder, its worker log and control socket are node 0's.
		return errors.New("--detach is for node 0 of a multi-node run: the other nodes only follow it (keep them running with nohup, tmux or the cluster's launcher)")
	}
	if len(parallelArgs) > 0 {
		// The run file was checked before the flags changed it.
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	if *name != "" {
		cfg.Name = *name
	}
	// The output may be a pipe (whet train ... | tee train.log, | head):
	// when its reader goes away (Ctrl-C ends tee with whet), a write would
	// otherwise kill whet with SIGPIPE in the middle of its stop checkpoint.
	// With SIGPIPE asked for, such writes fail with EPIPE instead, and a
	// closed output stops the run with a checkpoint, as Ctrl-C does.
	pipeSignals := make(chan os.Signal, 1)
	signal.Notify(pipeSignals, syscall.SIGPIPE)
	defer signal.Stop(pipeSignals)
	base, closeOutput := context.WithCancel(context.Background())
	defer closeOutput()
	out := &closableOutput{onClose: closeOutput}
	stdout, stderr = out.wrap(stdout), out.wrap(stderr)
	// A Hub id is pulled here, with progress; the run keeps the id. The
	// pull listens for Ctrl-C and SIGTERM itself (ending with an
	// interruptedError, exit 130 or 143), so the run's own listener starts
	// after it: two listeners would race to say which signal came.
	if _, err := pullModelArg(base, cfg.Model, nil, stderr); err != nil {
		return err
	}
	ctx, received, release := stopOnSignal(base)
	defer release()
	switch {
	case *detach:
		extra := parallelArgs
		if *deterministic {
			extra = append(extra, "--deterministic")
		}
		return startDetached(ctx, cfg, *config, *backend, *resumeAnyway, stdout, extra...)
	case *asWorker:
		return serveWorker(ctx, cfg, stdout, *asJSON)
	}
	// The data read (seconds for a large file) stops on Ctrl-C like the
	// run, and a terminal sees how far it has come.
	var report func(datasets.Progress)
	progress := newDataProgress(stderr, cfg.Data.Path, dataProgressNow)
	if progress != nil {
		report = progress.report
	}
	events, _, err := engine.StartContext(ctx, cfg, report)
	if progress != nil {
		progress.end()
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Stopped before the first step: nothing to checkpoint, and the
			// exit status must not say the run succeeded or failed on its own.
			sig := received()
			if sig == 0 && out.closed.Load() {
				sig = syscall.SIGPIPE
			}
			if sig != 0 {
				return interruptedRead(sig, *config)
			}
		}
		return err
	}
	finished, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			// The first signal asks the trainer to stop with a checkpoint;
			// stopOnSignal gave the signals back, so a second one ends the
			// process.
			// Each line fits 80 columns (see stopLine).
			switch {
			case out.closed.Load():
				fmt.Fprintln(stderr, stopClosedLine)
			case received() == syscall.SIGINT:
				fmt.Fprintln(stderr, stopLine+"\n"+stopAgainCtrlC)
			default:
				// SIGTERM comes from kill, a scheduler or docker stop, not
				// from a key: name what ends it at once.
				fmt.Fprintln(stderr, stopLine+"\n"+stopAgainSignal)
			}
		case <-finished:
		}
	}()
	done, err := printEvents(events, stdout, *asJSON)
	close(finished)
	<-watched
	if err != nil || !done.Stopped {
		return err
	}
	// Stopped with a checkpoint. Only a signal or a closed output stops a
	// foreground run (no control socket: that is the worker's), and the
	// run is not finished: the exit status must not say it succeeded.
	sig := received()
	if sig == 0 {
		if !out.closed.Load() {
			return nil
		}
		sig = syscall.SIGPIPE // what would have ended whet without its handler
	}
	runFile := *config
	if done.FinalDir != "" {
		runFile = engine.RunDir(done.FinalDir).Config()
	}
	return interruptedRun(sig, done.Step, done.Checkpointed, runFile)
}

// closableOutput notices that whet train's output was closed (a write
// failed with EPIPE: the reader of its pipe is gone) and calls onClose
// once.
type closableOutput struct {
	closed  atomic.Bool
	onClose func()
}

func (c *closableOutput) wrap(w io.Writer) io.Writer { return pipeWriter{w: w, c: c} }

type pipeWriter struct {
	w io.Writer
	c *closableOutput
}

func (p pipeWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if errors.Is(err, syscall.EPIPE) && !p.c.closed.Swap(true) {
		p.c.onClose()
	}
	return n, err
}

// Unwrap is the writer underneath (a pull's and the data read's progress
// check for a terminal).
func (p pipeWriter) Unwrap() io.Writer { return p.w }

// printEvents writes one line per event and returns the run's last
// DoneEvent and its error.
func printEvents(events <-chan engine.Event, w io.Writer, asJSON bool) (engine.DoneEvent, error) {
	var (
		done   engine.DoneEvent
		runErr error
	)
	for ev := range events {
		if asJSON {
			writeEventJSON(w, ev)
		} else {
			writeEventText(w, ev)
		}
		if d, ok := ev.(engine.DoneEvent); ok {
			done = d
			if d.Err != nil {
				runErr = d.Err
			}
		}
	}
	return done, runErr
}

func writeEventText(w io.Writer, ev engine.Event) {
	switch e := ev.(type) {
	case engine.StepEvent:
		extra := ""
		if r, ok := e.Metrics["reward"]; ok { // GRPO: the number to watch
			extra = fmt.Sprintf("  reward %.3f ±%.3f", r, e.Metrics["reward_std"])
		}
		fmt.Fprintf(w, "step %d/%d  epoch %.2f  loss %.4f  lr %.3g  grad_norm %.3f  %.0f tok/s%s\n",
			e.Step, e.TotalSteps, e.Epoch, e.Loss, e.LR, e.GradNorm, e.TokensPerSec, extra)
	case engine.EvalEvent:
		fmt.Fprintf(w, "eval  step %d  loss %.4f\n", e.Step, e.Loss)
	case engine.SampleEvent:
		reward := ""
		if r, ok := e.Rewards["reward"]; ok {
			reward = fmt.Sprintf("  reward %.3g", r)
		}
		fmt.Fprintf(w, "sample step %d  %q -> %q%s\n", e.Step, e.Prompt, e.Text, reward)
	case engine.CheckpointEvent:
		fmt.Fprintf(w, "checkpoint step %d  %s\n", e.Step, e.Path)
	case engine.LogEvent:
		fmt.Fprintf(w, "%s\n", e.Text)
	case engine.DoneEvent:
		switch {
		case e.Err != nil:
			fmt.Fprintf(w, "failed at step %d: %v\n", e.Step, e.Err)
		case e.Stopped:
			fmt.Fprintf(w, "stopped at step %d (checkpoint saved) in %s; run dir %s\n", e.Step, e.Elapsed.Round(1e7), e.FinalDir)
		default:
			fmt.Fprintf(w, "done: %d steps in %s; run dir %s\n", e.Step, e.Elapsed.Round(1e7), e.FinalDir)
		}
	}
}

func writeEventJSON(w io.Writer, ev engine.Event) {
	var obj map[string]any
	switch e := ev.(type) {
	case engine.StepEvent:
		obj = map[string]any{"event": "step", "step": e.Step, "total_steps": e.TotalSteps, "epoch": e.Epoch,
			"loss": e.Loss, "lr": e.LR, "grad_norm": e.GradNorm, "tokens": e.Tokens, "tokens_per_sec": e.TokensPerSec}
		for k, v := range e.Metrics {
			obj[k] = v
		}
	case engine.EvalEvent:
		obj = map[string]any{"event": "eval", "step": e.Step, "eval_loss": e.Loss}
	case engine.SampleEvent:
		obj = map[string]any{"event": "sample", "step": e.Step, "prompt": e.Prompt, "text": e.Text}
		if e.Rewards != nil {
			obj["rewards"] = e.Rewards
		}
	case engine.CheckpointEvent:
		obj = map[string]any{"event": "checkpoint", "step": e.Step, "path": e.Path}
	case engine.LogEvent:
		obj = map[string]any{"event": "log", "text": e.Text}
	case engine.DoneEvent:
		obj = map[string]any{"event": "done", "step": e.Step, "stopped": e.Stopped, "run_dir": e.FinalDir,
			"elapsed_s": e.Elapsed.Seconds()}
		if e.Err != nil {
			obj["error"] = e.Err.Error()
		}
	default:
		return
	}
	// JSON has no NaN or infinity: such values are written as null, as in
	// metrics.jsonl, never dropped (json.Marshal would fail the whole line).
	for k, v := range obj {
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			obj[k] = nil
		}
	}
	js, err := json.Marshal(obj)
	if err != nil {
		js, _ = json.Marshal(map[string]any{"event": "log", "text": "whet: an event could not be written as JSON: " + err.Error()})
	}
	fmt.Fprintf(w, "%s\n", js)
}

// What whet train says on stderr when asked to stop: each line within 80
// columns, so that none breaks mid-word in a terminal of that width.
const (
	stopLine        = "whet train: stopping after the current step, with a checkpoint"
	stopAgainCtrlC  = "whet train: Ctrl-C again quits at once, without the checkpoint"
	stopAgainSignal = "whet train: a second SIGTERM or Ctrl-C quits at once, without the checkpoint"
	stopClosedLine  = "whet train: output closed; stopping after the current step, with a checkpoint"
)
