package worker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"whet/engine"
	"whet/engine/atomicfile"
)

// Run is one run folder as `whet runs` and the studio's runs page list
// it. Whether a worker trains it is the run's lock (held by the process
// that trains it, dropped by the kernel when that process dies), not a
// guess from timestamps.
type Run struct {
	Name, Method, Model string
	// State is the status file's word (running, paused, done, stopped,
	// failed), "crashed" for a run that says running or paused while no
	// process holds its lock, "failed" too for one that wrote no
	// status.json before its process ended (NoStatus), "unreadable" or
	// "unknown".
	State string
	// NoStatus: the run's process ended before writing its first
	// status.json (a full disk, a write error); it is listed as failed.
	NoStatus bool
	// Live: a process holds the run's lock now (PID, when known).
	Live bool
	PID  int
	// Silent is how long a run that says running has written no metrics
	// line, once that is longer than StaleAfter (a run from before locks,
	// or a hung one); 0 otherwise.
	Silent      time.Duration
	Step, Total int
	// Last is the run's last value of engine.HeadlineMetric(Method): GRPO's
	// mean reward, every other method's training loss (NaN for one written
	// as null); HasLast is false before the first step.
	Last    float64
	HasLast bool
	// For a crashed or failed run: the last line of its worker's log (""
	// without one). For a crashed, stopped or failed run: the checkpoint
	// whet train resumes from ("" if none).
	LastWords, LastWordsFile string
	ResumeFrom               string
	ResumeStep               int
	// ResumeErr says why the checkpoints could not be listed.
	ResumeErr string
	// StatusErr says why status.json could not be read (State is then
	// "unreadable"): a crash can leave it empty.
	StatusErr string
	Config    string // the run's run.yaml
}

// Crash is what is known of a crashed run in one line: its worker's last
// words and the checkpoint a new `whet train` resumes from; "" for a run
// that did not crash.
func (r Run) Crash() string {
	if r.State != "crashed" {
		return ""
	}
	var parts []string
	if r.LastWordsFile != "" {
		parts = append(parts, "last words in "+r.LastWordsFile+": "+r.LastWords)
	}
	return strings.Join(append(parts, r.next()), "; ")
}

// Failure is what is known of a failed run in one line (Why) and what
// whet train does with it next; "" for a run that did not fail.
func (r Run) Failure() string {
	if r.State != "failed" {
		return ""
	}
	return r.Why() + "; " + r.next()
}

// Unreadable is, for a run whose status.json could not be read, why
// (StatusErr) and what whet train -c does with it next; "" for any other
// run.
func (r Run) Unreadable() string {
	if r.State != "unreadable" {
		return ""
	}
	return r.StatusErr + "; how it ended is not known; " + r.next()
}

// Why is what the folder tells of why a failed run failed: that it ended
// before its first status.json (NoStatus), and its worker's last words
// or, without a worker log (a run trained by whet train in a terminal),
// where its error went.
func (r Run) Why() string {
	var parts []string
	if r.NoStatus {
		parts = append(parts, "it ended before writing its first status.json")
	}
	if r.LastWordsFile != "" {
		parts = append(parts, "last words in "+r.LastWordsFile+": "+r.LastWords)
	} else {
		parts = append(parts, "no worker log: its error went to the terminal that trained it")
	}
	return strings.Join(parts, "; ")
}

// next is what a new whet train -c does with a run that ended: resume it
// from its checkpoint, or start it over.
func (r Run) next() string {
	switch {
	case r.ResumeErr != "":
		return r.ResumeErr
	case r.ResumeFrom == "":
		return "no checkpoint: whet train -c " + r.Config + " starts it over"
	}
	return fmt.Sprintf("whet train -c %s resumes from %s (step %d)", r.Config, r.ResumeFrom, r.ResumeStep)
}

// Steps is how far the run got: "40/500", "40" without a total, or
// "335 past 5" for a run resumed with fewer total steps than it had done
// (engine.PastTotal), which stopped where it was.
func (r Run) Steps() string {
	if engine.PastTotal(r.Step, r.Total) {
		return fmt.Sprintf("%d past %d", r.Step, r.Total)
	}
	if r.Total > 0 {
		return fmt.Sprintf("%d/%d", r.Step, r.Total)
	}
	return fmt.Sprint(r.Step)
}

// LastText is the run's last headline value with its name, as the runs
// lists show it: "reward 0.42" for a GRPO run, "loss 0.9123" for the other
// methods ("loss NaN" for a diverged run), "–" before the first step.
func (r Run) LastText() string {
	if !r.HasLast {
		return "–"
	}
	return MetricText(engine.HeadlineMetric(r.Method), r.Last)
}

// MetricText is a headline value with its name: a loss to four places, a
// reward to three significant digits (rewards have no fixed scale, and
// the runs page's column is narrow).
func MetricText(name string, v float64) string {
	if name == "loss" {
		return fmt.Sprintf("loss %.4f", v)
	}
	return fmt.Sprintf("%s %.3g", name, v)
}

// StaleAfter is how long a run that says running may go without a
// metrics line before it is doubted (Run.Silent).
const StaleAfter = 15 * time.Minute

// MetricsTail is how much of the end of metrics.jsonl is read: far more
// than one line, so a long run's file is not read whole.
const MetricsTail = 64 << 10

// List reads every run folder under dir, sorted by name. A folder counts
// as a run if it holds run.yaml, status.json or metrics.jsonl. Problems
// with one run become warnings naming the file, so one damaged run does
// not hide the others; a missing dir has no runs.
func List(dir string, now time.Time) ([]Run, []string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading runs directory %s: %w", dir, err)
	}
	var runs []Run
	var warnings []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		r, ok, warn := Read(engine.RunDir(filepath.Join(dir, e.Name())), now)
		warnings = append(warnings, warn...)
		if ok {
			r.Name = e.Name()
			runs = append(runs, r)
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Name < runs[j].Name })
	return runs, warnings, nil
}

// Read is one run folder's entry; isRun is false for a folder that holds
// none of a run's files.
func Read(run engine.RunDir, now time.Time) (r Run, isRun bool, warnings []string) {
	r.Name, r.State, r.Config = filepath.Base(run.Path()), "unknown", run.Config()
	if raw, err := atomicfile.ReadFile(run.Config()); err == nil {
		isRun = true
		// Decoded as written (no defaults filled in): the list shows what
		// the file says.
		var cfg engine.RunConfig
		if err := yaml.Unmarshal(raw, &cfg); err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: %v", run.Config(), err))
		} else {
			r.Method, r.Model = cfg.Method, cfg.Model
		}
	}
	headline := engine.HeadlineMetric(r.Method)
	st, err := run.ReadStatus()
	noStatus := errors.Is(err, fs.ErrNotExist)
	if !noStatus {
		isRun = true
		if err != nil {
			r.State, r.StatusErr = "unreadable", err.Error()
			warnings = append(warnings, err.Error())
		} else {
			r.State, r.Step, r.Total = st.State, st.Step, st.Total
			// status.json records the loss only: a GRPO run's reward
			// comes from metrics.jsonl.
			if st.LastLoss != 0 && headline == "loss" {
				r.Last, r.HasLast = st.LastLoss, true
			}
		}
	}
	// A run killed without a chance to write its status still says
	// "running" (or "paused"): the process that trains a run holds its
	// lock, and the kernel dropped a killed one's.
	pid, held, known, err := run.Holder()
	if err != nil {
		warnings = append(warnings, err.Error())
	}
	r.Live, r.PID = held, pid
	if active := r.State == "running" || r.State == "paused"; active && known && !held {
		r.State = "crashed"
		r.crashFacts(run)
	} else if r.State == "failed" {
		// Why, where its worker's log tells; whet train resumes it too.
		r.crashFacts(run)
	} else if r.State == "stopped" || r.State == "unreadable" {
		// whet train resumes these too: say from where.
		r.resumeFacts(run)
	}
	metricsPath := run.Metrics()
	if st, err := os.Stat(metricsPath); err == nil {
		// A run from before locks, or one whose process hangs: a long
		// silence in its metrics gives it away.
		if idle := now.Sub(st.ModTime()); r.State == "running" && idle > StaleAfter {
			r.Silent = idle
		}
		isRun = true
		step, v, ok, err := LastMetric(metricsPath, headline)
		if err != nil {
			warnings = append(warnings, err.Error())
		} else if ok {
			// metrics.jsonl is appended every step, so it is at least as
			// fresh as status.json.
			r.Step = max(r.Step, step)
			r.Last, r.HasLast = v, true
		}
	}
	if isRun && noStatus && known && !held {
		// Its process took the lock and ended without writing a status
		// (a full disk or a write error refused the first one): it
		// failed, and "unknown" would hide that.
		r.State, r.NoStatus = "failed", true
		r.crashFacts(run)
	}
	return r, isRun, warnings
}

// crashFacts fills what is known of a crashed or failed run: the last
// line of its worker's log (a detached run has one) and the checkpoint to
// resume from.
func (r *Run) crashFacts(run engine.RunDir) {
	if _, err := os.Stat(Log(run)); err == nil {
		r.LastWordsFile, r.LastWords = Log(run), LastLogLine(Log(run))
	}
	r.resumeFacts(run)
}

// resumeFacts fills the checkpoint whet train resumes the run from.
func (r *Run) resumeFacts(run engine.RunDir) {
	cps, err := engine.ListCheckpoints(run.Checkpoints())
	switch {
	case err != nil:
		r.ResumeErr = err.Error()
	case len(cps) > 0:
		// The newest checkpoint whose trainer state reads, as Resume
		// passes over a damaged one for the one before; when none reads,
		// the newest (Resume then says what is wrong with it).
		r.ResumeFrom, r.ResumeStep = cps[len(cps)-1].Path, cps[len(cps)-1].Step
		for i := len(cps) - 1; i >= 0; i-- {
			if _, err := engine.ReadCheckpointState(cps[i].Path); err == nil {
				r.ResumeFrom, r.ResumeStep = cps[i].Path, cps[i].Step
				break
			}
		}
	}
}

// LastMetric returns the step and the value called name ("loss", or
// "reward" for GRPO: engine.HeadlineMetric) of the last training line of a
// metrics.jsonl that has it (eval lines carry eval_loss and no loss),
// reading only its last MetricsTail bytes. A torn last line from a run killed mid-write is skipped; a value
// written as null (the run diverged) is NaN.
func LastMetric(path, name string) (step int, value float64, ok bool, err error) {
	f, err := atomicfile.Open(path)
	if err != nil {
		return 0, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	off := max(st.Size()-MetricsTail, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	if off > 0 { // drop the partial first line
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	// Lines are split here: a bufio.Scanner failed the whole read ("token
	// too long") on a tail with no newline in it (a long torn line), and
	// the run lost its step and loss.
	for len(buf) > 0 {
		line := buf
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line, buf = buf[:i], buf[i+1:]
		} else {
			buf = nil
		}
		m, err := engine.ParseMetricLine(line)
		if err != nil {
			continue
		}
		if _, isStep := m.Loss(); !isStep {
			continue
		}
		if v, has := m.Values[name]; has { // null (NaN) reads as NaN
			step, value, ok = m.Step, v, true
		}
	}
	return step, value, ok, nil
}

// LastLogLine is the last line of a worker's log that says something: a
// crashed worker's last words.
func LastLogLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "no worker log: " + err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(st.Size()-8<<10, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	last := ""
	sc := bufio.NewScanner(bytes.NewReader(buf))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	if last == "" {
		return "the worker log " + path + " is empty"
	}
	return last
}

// SessionMarker begins each worker's part of a run's worker.log (a run
// resumed several times has one per worker).
const SessionMarker = "--- worker started "

// LastSessionLines are the last n lines that say something of the newest
// worker's part of its log (after the last SessionMarker): a worker that
// refused to start says why over several lines (a resume with other
// settings lists each change), which LastLogLine would cut to its last.
func LastSessionLines(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "no worker log: " + err.Error()
	}
	if i := bytes.LastIndex(data, []byte(SessionMarker)); i >= 0 {
		data = data[i:]
		if j := bytes.IndexByte(data, '\n'); j >= 0 {
			data = data[j+1:]
		} else {
			data = nil
		}
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimRight(l, " \r"))
		}
	}
	if len(lines) == 0 {
		return "the worker wrote nothing to " + path
	}
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
