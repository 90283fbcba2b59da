package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"whet/engine/atomicfile"
)

// MetricLine is one line of metrics.jsonl: a training step (it has
// "loss") or an evaluation (it has "eval_loss"). Every number the trainer
// knew is written, zero included; a number that was NaN or infinite is
// written as JSON null and reads back as NaN, so a diverging run shows in
// its metrics instead of vanishing from them.
type MetricLine struct {
	Step   int
	Values map[string]float64 // by name: epoch, loss, lr, grad_norm, eval_loss, DPO's rewards/…
}

// Loss is the training loss of a step line.
func (l MetricLine) Loss() (float64, bool) { v, ok := l.Values["loss"]; return v, ok }

// HeadlineMetric is the one rule for which metrics.jsonl value tells how a
// run of method goes, the one the runs list (whet runs, the studio's and
// whet serve's runs page), the dashboard's chart and the summary show:
// GRPO's mean reward ("reward"), since its loss stays near 0 by
// construction and a list of "0.0000" said nothing; every other method's
// training loss ("loss").
func HeadlineMetric(method string) string {
	if method == "grpo" {
		return "reward"
	}
	return "loss"
}

// Headline is a step's value of HeadlineMetric(method); ok is false for a
// GRPO step that carries no reward.
func (ev StepEvent) Headline(method string) (float64, bool) {
	if name := HeadlineMetric(method); name != "loss" {
		v, ok := ev.Metrics[name]
		return v, ok
	}
	return ev.Loss, true
}

// EvalLoss is the loss of an evaluation line.
func (l MetricLine) EvalLoss() (float64, bool) { v, ok := l.Values["eval_loss"]; return v, ok }

// MarshalJSON writes the step first, then the values by name.
func (l MetricLine) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"step":%d`, l.Step)
	names := make([]string, 0, len(l.Values))
	for k := range l.Values {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		name, _ := json.Marshal(k)
		b.WriteByte(',')
		b.Write(name)
		b.WriteByte(':')
		b.Write(jsonNumber(l.Values[k]))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jsonNumber is v in JSON, null when v has no JSON form (NaN, ±Inf).
func jsonNumber(v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null")
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64)
}

// ParseMetricLine reads one line of metrics.jsonl. A null value reads as
// NaN; a value that is not a number or null is an error naming it.
func ParseMetricLine(line []byte) (MetricLine, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return MetricLine{}, err
	}
	var l MetricLine
	step, ok := raw["step"]
	if !ok {
		return l, errors.New(`no "step"`)
	}
	if err := json.Unmarshal(step, &l.Step); err != nil {
		return l, fmt.Errorf("step: %w", err)
	}
	l.Values = make(map[string]float64, len(raw))
	for k, v := range raw {
		if k == "step" {
			continue
		}
		if string(bytes.TrimSpace(v)) == "null" {
			l.Values[k] = math.NaN()
			continue
		}
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			return l, fmt.Errorf("%s: not a number: %s", k, v)
		}
		l.Values[k] = f
	}
	return l, nil
}

// stepMetrics is the metrics.jsonl line of a training step.
func stepMetrics(ev StepEvent) MetricLine {
	v := map[string]float64{"epoch": ev.Epoch, "loss": ev.Loss, "lr": ev.LR, "grad_norm": ev.GradNorm,
		"tokens": float64(ev.Tokens), "tokens_per_sec": ev.TokensPerSec, "elapsed_s": ev.Elapsed.Seconds()}
	for k, x := range ev.Metrics {
		v[k] = x
	}
	return MetricLine{Step: ev.Step, Values: v}
}

// sampleLine is one line of samples.jsonl.
type sampleLine struct {
	Step    int                `json:"step"`
	Prompt  string             `json:"prompt"`
	Text    string             `json:"text"`
	Rewards map[string]float64 `json:"rewards,omitempty"`
}

// newSampleLine is the samples.jsonl line of a generation.
func newSampleLine(s SampleEvent) sampleLine {
	return sampleLine{Step: s.Step, Prompt: s.Prompt, Text: s.Text, Rewards: s.Rewards}
}

// jsonlWrite, when set (tests), stands in for the file's Write, so a test
// can write part of a line and fail the way a full disk does.
var jsonlWrite func(path string, f *os.File, b []byte) (int, error)

// appendLines appends whole lines to a JSON-lines file in a run folder
// (created if needed, never through a symlink), in one write. If the write
// fails part-way the file is cut back to where it was, so a later line is
// never spliced onto half of this one.
func appendLines(path string, lines [][]byte) error {
	if len(lines) == 0 {
		return nil
	}
	f, err := atomicfile.OpenAppend(path)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	var buf []byte
	for _, l := range lines {
		buf = append(append(buf, l...), '\n')
	}
	write := f.Write
	if jsonlWrite != nil {
		write = func(b []byte) (int, error) { return jsonlWrite(path, f, b) }
	}
	n, err := write(buf)
	if err == nil && n < len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		if n > 0 {
			if terr := f.Truncate(st.Size()); terr != nil {
				err = errors.Join(err, fmt.Errorf("cutting off the partial line: %w", terr))
			}
		}
		f.Close()
		return fileErr("write", path, err)
	}
	if err := f.Close(); err != nil {
		return fileErr("write", path, err)
	}
	return nil
}

// openRunFile opens a file of the run folder for reading; a missing file is
// no file and no error (a run writes its files as it goes), so both come
// back nil.
func openRunFile(path string) (*os.File, error) {
	f, err := atomicfile.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// trimAfterStep drops from a JSON-lines file of the run folder every line
// of a step after step, and a torn last line, so the steps a resume redoes
// are not written twice. Lines whose step cannot be read are kept. The
// file is replaced atomically, and only if something is dropped. It
// returns the lines of step itself that it kept.
func trimAfterStep(path string, step int) (map[string]bool, error) {
	f, err := openRunFile(path)
	if f == nil {
		return nil, err
	}
	defer f.Close()
	var keep bytes.Buffer
	dropped := false
	atStep := map[string]bool{}
	r := bufio.NewReaderSize(f, 1<<16)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			whole := line[len(line)-1] == '\n'
			var s struct {
				Step *int `json:"step"`
			}
			known := json.Unmarshal(line, &s) == nil && s.Step != nil
			switch {
			case !whole || known && *s.Step > step:
				dropped = true
			default:
				keep.Write(line)
				if known && *s.Step == step {
					atStep[string(line[:len(line)-1])] = true
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if !dropped {
		return atStep, nil
	}
	if err := writeFileAtomic(path, keep.Bytes()); err != nil {
		return nil, fmt.Errorf("trim %s to step %d: %w", filepath.Base(path), step, err)
	}
	return atStep, nil
}

// ReadStatus reads status.json. An error other than a missing file names
// the file; an empty one (a crash while it was rewritten in place, or a
// file system that lost its data) is said to be empty.
func (d RunDir) ReadStatus() (RunStatus, error) {
	raw, err := atomicfile.ReadFile(d.Status())
	if err != nil {
		return RunStatus{}, err // it names the file
	}
	return parseStatus(d.Status(), raw)
}

// parseStatus reads the bytes of status.json, at path.
func parseStatus(path string, raw []byte) (RunStatus, error) {
	var st RunStatus
	if len(bytes.TrimSpace(raw)) == 0 {
		return st, fmt.Errorf("%s is empty", path)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	if st.State == "" {
		// null, {} or a state of "": the listing would show no state.
		return st, fmt.Errorf("%s: no state", path)
	}
	return st, nil
}

// ReadMetrics reads metrics.jsonl whole, for a viewer that replays a run.
// A torn last line (a run killed mid-write) is left out silently; any
// other unreadable line is left out and named in a warning.
func (d RunDir) ReadMetrics() ([]MetricLine, []string, error) { return readMetrics(d.Metrics(), nil) }

// readMetrics reads metrics.jsonl, at path, from r (nil: the file).
func readMetrics(path string, r io.Reader) ([]MetricLine, []string, error) {
	var out []MetricLine
	warnings, err := readJSONL(path, r, func(line []byte) error {
		l, err := ParseMetricLine(line)
		if err == nil {
			out = append(out, l)
		}
		return err
	})
	return out, warnings, err
}

// ReadSamples reads samples.jsonl whole, like ReadMetrics.
func (d RunDir) ReadSamples() ([]SampleEvent, []string, error) { return readSamples(d.Samples(), nil) }

// readSamples reads samples.jsonl, at path, from r (nil: the file).
func readSamples(path string, r io.Reader) ([]SampleEvent, []string, error) {
	var out []SampleEvent
	warnings, err := readJSONL(path, r, func(line []byte) error {
		var s sampleLine
		if err := json.Unmarshal(line, &s); err != nil {
			return err
		}
		out = append(out, SampleEvent{Step: s.Step, Prompt: s.Prompt, Text: s.Text, Rewards: s.Rewards})
		return nil
	})
	return out, warnings, err
}

// Event is the event the line was made from: an EvalEvent for an
// evaluation line, else a StepEvent (values it lacks stay zero).
func (l MetricLine) Event() Event {
	v := l.Values
	if loss, ok := l.EvalLoss(); ok {
		return EvalEvent{Step: l.Step, Loss: loss}
	}
	ev := StepEvent{Step: l.Step, Epoch: v["epoch"], Loss: v["loss"], LR: v["lr"], GradNorm: v["grad_norm"],
		Tokens: int(v["tokens"]), TokensPerSec: v["tokens_per_sec"], Elapsed: time.Duration(v["elapsed_s"] * float64(time.Second))}
	for k, x := range v {
		switch k {
		case "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_sec", "elapsed_s":
		default:
			if ev.Metrics == nil {
				ev.Metrics = map[string]float64{}
			}
			ev.Metrics[k] = x
		}
	}
	return ev
}

// readJSONL calls parse on each line of a JSON-lines file of the run
// folder, read from in (nil: the file at path). A missing file is no
// lines.
func readJSONL(path string, in io.Reader, parse func([]byte) error) ([]string, error) {
	if in == nil {
		f, err := openRunFile(path)
		if f == nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	var warnings []string
	r := bufio.NewReaderSize(in, 1<<16)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			// A last line without its newline is read if it is whole; if
			// a kill tore it, it is dropped here and by the next resume.
			if len(bytes.TrimSpace(line)) > 0 {
				parse(line)
			}
			break
		}
		if err != nil {
			return warnings, fmt.Errorf("read %s: %w", path, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if perr := parse(line); perr != nil {
			warnings = append(warnings, fmt.Sprintf("%s:%d: %v", path, n, perr))
		}
	}
	return warnings, nil
}
