package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// stopSignals are the signals that stop a command the way Ctrl-C does: a
// run stops with a checkpoint, a download keeps its bytes and says how to
// resume. SIGTERM is what kill, systemd, docker stop and a job scheduler
// send; it deserves the same orderly end as Ctrl-C.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// interruptedError ends a command that a signal stopped in good order
// (whet train: after its stop checkpoint is written; whet pull, and a
// command pulling its model: with the bytes kept). main prints it and
// exits with 128 plus the signal's number, the status a shell gives a
// process that signal ended (130 for SIGINT, 143 for SIGTERM), so that
// `whet train -c run.yaml && whet export …` does not go on to export a
// half-trained run, as it did when an interrupted run exited 0.
type interruptedError struct {
	sig syscall.Signal
	msg string // what was kept and how to go on
}

func (e *interruptedError) Error() string { return e.msg }

// exitCode is the process's exit status.
func (e *interruptedError) exitCode() int { return 128 + int(e.sig) }

// signalName is how messages name a stop signal.
func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT (Ctrl-C)"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGPIPE:
		return "SIGPIPE (the output was closed)"
	}
	return s.String()
}

// stopOnSignal returns a context cancelled by the first of stopSignals and
// a function that says which one came (0 while none has). After the first
// signal the signals are given back to the runtime, so that a second one
// ends the process at once (whet train's "Ctrl-C again to quit").
// release stops listening; call it when the command ends.
func stopOnSignal(parent context.Context) (ctx context.Context, received func() syscall.Signal, release func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, stopSignals...)
	var (
		mu  sync.Mutex
		got syscall.Signal
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-sigs:
			signal.Stop(sigs)
			mu.Lock()
			if ss, ok := s.(syscall.Signal); ok {
				got = ss
			} else {
				got = syscall.SIGINT // os.Interrupt is a syscall.Signal on every platform whet builds for
			}
			mu.Unlock()
			cancel()
		case <-ctx.Done():
		}
	}()
	received = func() syscall.Signal {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
	release = func() {
		signal.Stop(sigs)
		cancel()
		<-done
	}
	return ctx, received, release
}

// interruptedRun is the error of a `whet train` that a signal stopped
// after its checkpoint: it says where the run stopped and the command
// that resumes it (or starts it over, when no checkpoint was written).
func interruptedRun(sig syscall.Signal, step int, checkpointed bool, runFile string) *interruptedError {
	if checkpointed {
		return &interruptedError{sig: sig, msg: fmt.Sprintf("stopped by %s at step %d with a checkpoint (exit status %d); resume: whet train -c %s",
			signalName(sig), step, 128+int(sig), runFile)}
	}
	return &interruptedError{sig: sig, msg: fmt.Sprintf("stopped by %s at step %d before its first checkpoint (exit status %d); start it over: whet train -c %s",
		signalName(sig), step, 128+int(sig), runFile)}
}

// interruptedRead is the error of a `whet train` that a signal stopped
// while it read its data, before the first step: there is nothing to
// checkpoint or resume.
func interruptedRead(sig syscall.Signal, runFile string) *interruptedError {
	return &interruptedError{sig: sig, msg: fmt.Sprintf("stopped by %s while reading the data, before the first step (exit status %d); nothing was trained: start it again with whet train -c %s",
		signalName(sig), 128+int(sig), runFile)}
}
