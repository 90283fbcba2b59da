// Package worker is the control channel of a detached run: a Unix socket
// in the run folder through which viewers (the studio, whet attach, SSH
// sessions) follow a run's live events and steer it. The worker process
// owns the run; viewers come and go.
package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"whet/engine"
)

// SocketName is the control socket's name inside the run folder.
const SocketName = "control.sock"

// LogName is the worker's log inside the run folder: its stdout and
// stderr, so a crashed worker's last words can be shown.
const LogName = "worker.log"

// maxLine bounds one message on the socket; a longer one is refused and
// its connection closed (there is no way to find the next line's start).
const maxLine = 64 << 10

// Commands a viewer may send, one JSON object a line: {"cmd":"pause"}.
const (
	CmdPause      = "pause"
	CmdResume     = "resume"
	CmdCheckpoint = "checkpoint"
	CmdStop       = "stop"
)

// Request is one line a viewer sends.
type Request struct {
	Cmd string `json:"cmd"`
}

// helloEvent is the first line the worker queues for a viewer, once the
// viewer is registered for broadcasts: every event broadcast after it
// reaches the viewer. Dial waits for it. A viewer from before it skips it
// as an event it does not know.
const helloEvent = "hello"

var helloLine = []byte(`{"event":"` + helloEvent + `"}` + "\n")

// Message is one line the worker sends: a reply to a request (Reply set,
// or Error), or an event (Event set).
type Message struct {
	Reply string `json:"reply,omitempty"`
	OK    bool   `json:"ok,omitempty"`
	Error string `json:"error,omitempty"`

	Event        string             `json:"event,omitempty"` // step | eval | sample | checkpoint | log | pause | done
	Step         int                `json:"step,omitempty"`
	TotalSteps   int                `json:"total_steps,omitempty"`
	Epoch        float64            `json:"epoch,omitempty"`
	Loss         *float64           `json:"loss,omitempty"` // null: NaN or ±Inf
	LR           float64            `json:"lr,omitempty"`
	GradNorm     *float64           `json:"grad_norm,omitempty"`
	Tokens       int                `json:"tokens,omitempty"`
	TokensPerSec float64            `json:"tokens_per_sec,omitempty"`
	ElapsedNS    int64              `json:"elapsed_ns,omitempty"`
	Metrics      map[string]float64 `json:"metrics,omitempty"`
	Prompt       string             `json:"prompt,omitempty"`
	Text         string             `json:"text,omitempty"`
	Path         string             `json:"path,omitempty"`
	Stopped      bool               `json:"stopped,omitempty"`
	RunErr       string             `json:"run_error,omitempty"`
	FromStep     int                `json:"from_step,omitempty"`    // done: the step the session resumed from
	Checkpointed bool               `json:"checkpointed,omitempty"` // done: the run folder holds a checkpoint
	Paused       bool               `json:"paused,omitempty"`       // pause: paused (false: resumed)
}

// finite is v, or nil for NaN and ±Inf (which JSON cannot carry).
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func orNaN(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// EncodeEvent is ev as one wire line (without the newline); ok is false
// for an event type the wire does not carry.
func EncodeEvent(ev engine.Event) (line []byte, ok bool) {
	var m Message
	switch e := ev.(type) {
	case engine.StepEvent:
		m = Message{Event: "step", Step: e.Step, TotalSteps: e.TotalSteps, Epoch: e.Epoch, Loss: finite(e.Loss),
			LR: e.LR, GradNorm: finite(e.GradNorm), Tokens: e.Tokens, TokensPerSec: e.TokensPerSec,
			ElapsedNS: int64(e.Elapsed), Metrics: e.Metrics}
	case engine.EvalEvent:
		m = Message{Event: "eval", Step: e.Step, Loss: finite(e.Loss)}
	case engine.SampleEvent:
		// A GRPO sample's rewards travel in metrics.
		m = Message{Event: "sample", Step: e.Step, Prompt: e.Prompt, Text: e.Text, Metrics: e.Rewards}
	case engine.CheckpointEvent:
		m = Message{Event: "checkpoint", Step: e.Step, Path: e.Path}
	case engine.LogEvent:
		m = Message{Event: "log", Text: e.Text}
	case engine.PauseEvent:
		m = Message{Event: "pause", Paused: e.Paused}
	case engine.DoneEvent:
		m = Message{Event: "done", Step: e.Step, Stopped: e.Stopped, ElapsedNS: int64(e.Elapsed), Path: e.FinalDir, FromStep: e.FromStep,
			Checkpointed: e.Checkpointed}
		if e.Err != nil {
			m.RunErr = e.Err.Error()
		}
	default:
		return nil, false
	}
	js, err := json.Marshal(m)
	if err != nil { // Metrics holding NaN: sent without them
		m.Metrics = nil
		js, _ = json.Marshal(m)
	}
	return js, true
}

// DecodeEvent is the engine event a wire line carries. A reply (or an
// error reply) is returned as an error naming what it says.
func DecodeEvent(line []byte) (engine.Event, error) {
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("control socket: malformed message: %w", err)
	}
	switch m.Event {
	case "step":
		return engine.StepEvent{Step: m.Step, TotalSteps: m.TotalSteps, Epoch: m.Epoch, Loss: orNaN(m.Loss), LR: m.LR,
			GradNorm: orNaN(m.GradNorm), Tokens: m.Tokens, TokensPerSec: m.TokensPerSec,
			Elapsed: time.Duration(m.ElapsedNS), Metrics: m.Metrics}, nil
	case "eval":
		return engine.EvalEvent{Step: m.Step, Loss: orNaN(m.Loss)}, nil
	case "sample":
		return engine.SampleEvent{Step: m.Step, Prompt: m.Prompt, Text: m.Text, Rewards: m.Metrics}, nil
	case "checkpoint":
		return engine.CheckpointEvent{Step: m.Step, Path: m.Path}, nil
	case "log":
		return engine.LogEvent{Text: m.Text}, nil
	case "pause":
		return engine.PauseEvent{Paused: m.Paused}, nil
	case "done":
		d := engine.DoneEvent{Step: m.Step, Stopped: m.Stopped, Elapsed: time.Duration(m.ElapsedNS), FinalDir: m.Path, FromStep: m.FromStep,
			Checkpointed: m.Checkpointed}
		if m.RunErr != "" {
			d.Err = errors.New(m.RunErr)
		}
		return d, nil
	case "":
		if m.Error != "" {
			return nil, fmt.Errorf("worker: %s", m.Error)
		}
		return nil, fmt.Errorf("worker reply: %s ok", m.Reply)
	}
	return nil, fmt.Errorf("control socket: unknown event %q", m.Event)
}
