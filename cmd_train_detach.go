package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"whet/engine"
	"whet/engine/atomicfile"
	"whet/engine/worker"
)

// workerExecutable is the binary a detached run re-executes: this one.
// Tests point it at their own binary (see TestMain).
var workerExecutable = os.Executable

// workerReadyTimeout bounds how long `whet train --detach` waits for its
// worker's control socket (a large model takes a while to load); the
// worker goes on regardless.
var workerReadyTimeout = 10 * time.Minute

// workerFailureLines is how much of a worker's log the error of a worker
// that ended before serving its socket quotes.
const workerFailureLines = 8

// startDetached starts the run in a worker process in a session of its
// own (no controlling terminal, so no SIGHUP when the terminal goes; the
// worker ignores SIGHUP too), with its output in the run folder's
// worker.log, waits until it serves its control socket and returns. The
// worker does not depend on this process: kill it and the run goes on.
func startDetached(ctx context.Context, cfg engine.RunConfig, configPath, backend string, resumeAnyway bool, stdout io.Writer, extra ...string) error {
	if cfg.Name == "" {
		// A default name takes the next free folder (-2, -3…) where a run
		// started in the same second has it; the worker gets the name
		// taken. A name the user gave is kept (the lock below refuses it
		// while that run trains).
		name, err := engine.ClaimRunName(cfg.RunsDir, engine.RunNameAt(time.Now()))
		if err != nil {
			return err
		}
		cfg.Name = name
	}
	rd, err := engine.RunDirOf(cfg)
	if err != nil {
		return err
	}
	if pid, held, _, err := rd.Holder(); err == nil && held {
		return fmt.Errorf("run %s is already training (pid %d); follow it with whet attach %s", rd.Path(), pid, cfg.Name)
	}
	if err := os.MkdirAll(rd.Path(), atomicfile.DirPerm); err != nil {
		return fmt.Errorf("run folder: %w (%s)", err, engine.RunsDirAdvice)
	}
	logPath := worker.Log(rd)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("worker log: %w", err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "%s%s\n", worker.SessionMarker, time.Now().UTC().Format(time.RFC3339))
	exe, err := workerExecutable()
	if err != nil {
		return fmt.Errorf("find the whet binary to start a worker: %w", err)
	}
	absConfig, err := filepath.Abs(configPath)
	if err != nil {
		return err
	}
	args := []string{"train", "-c", absConfig, "--worker", "--name", cfg.Name}
	if backend != "" {
		args = append(args, "--backend", backend)
	}
	if resumeAnyway {
		args = append(args, "--resume-anyway")
	}
	args = append(args, extra...) // --gpus, --ranks, --collective
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile // stdin: /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the worker: %w", err)
	}
	fmt.Fprintf(stdout, "worker pid %d trains run %s (log %s)\n", cmd.Process.Pid, cfg.Name, logPath)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(workerReadyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			// Done already (a tiny run), or failed to start: its exit
			// status says which. The run folder's status cannot: a
			// worker that refused to resume a stopped run leaves that
			// run's "stopped" there, which read as this run finishing.
			if err == nil {
				if st, serr := rd.ReadStatus(); serr == nil {
					fmt.Fprintf(stdout, "run %s finished (%s at step %d)\n", cfg.Name, st.State, st.Step)
				} else {
					fmt.Fprintf(stdout, "run %s finished\n", cfg.Name)
				}
				return nil
			}
			return fmt.Errorf("the worker for run %s ended (%v):\n%s", cfg.Name, err, worker.LastSessionLines(logPath, workerFailureLines))
		case <-ctx.Done():
			fmt.Fprintf(stdout, "the worker goes on; follow it with: whet attach %s\n", cfg.Name)
			return nil
		case <-tick.C:
		}
		if c, err := worker.Dial(rd); err == nil {
			c.Close()
			fmt.Fprintf(stdout, "follow it with: whet attach %s\n", cfg.Name)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the worker for run %s has not opened its control socket after %s; it may still be loading (see %s)", cfg.Name, workerReadyTimeout, logPath)
		}
	}
}

// serveWorker is the worker side of a detached run: it trains, prints
// every event to its log, and serves the control socket until the run
// ends.
func serveWorker(ctx context.Context, cfg engine.RunConfig, stdout io.Writer, asJSON bool) error {
	signal.Ignore(syscall.SIGHUP)
	events, ctl, err := engine.Start(ctx, cfg)
	if err != nil {
		return err
	}
	rd, err := engine.RunDirOf(cfg)
	if err != nil {
		return err
	}
	srv, err := worker.Listen(rd, ctl)
	if err != nil {
		// The run trains on without viewers rather than being lost.
		fmt.Fprintf(stdout, "no control socket: %v\n", err)
	}
	var runErr error
	for ev := range events {
		if srv != nil {
			srv.Broadcast(ev)
		}
		if asJSON {
			writeEventJSON(stdout, ev)
		} else {
			writeEventText(stdout, ev)
		}
		if d, ok := ev.(engine.DoneEvent); ok && d.Err != nil {
			runErr = d.Err
		}
	}
	if srv != nil {
		srv.Close()
	}
	return runErr
}
