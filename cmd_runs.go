package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"whet/engine"
	"whet/engine/atomicfile"
	"whet/engine/worker"
)

func init() {
	register("runs", "list the runs directory: status, steps and last loss of each run", runRuns)
}

// runSummary is one row of `whet runs`.
type runSummary struct {
	name, state, method, model string
	step, total                int
	lastLoss                   float64
	hasLoss                    bool
	// crash says, for a crashed run, its worker's last words and the
	// checkpoint a new `whet train` resumes from.
	crash string
}

func runRuns(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("runs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "runs", "the runs directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	runs, warnings, err := listRuns(*dir)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "whet runs: "+w)
	}
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		fmt.Fprintf(stdout, "no runs in %s (start one with whet, or whet train -c run.yaml)\n", *dir)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tSTEPS\tLAST LOSS\tMETHOD\tMODEL")
	for _, r := range runs {
		steps := strconv.Itoa(r.step)
		if r.total > 0 {
			steps = fmt.Sprintf("%d/%d", r.step, r.total)
		}
		loss := "–"
		if r.hasLoss {
			loss = fmt.Sprintf("%.4f", r.lastLoss)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.state, steps, loss, orDash(r.method), orDash(r.model))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range runs {
		if r.crash != "" {
			fmt.Fprintf(stdout, "%s crashed: %s\n", r.name, r.crash)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// listRuns reads every run folder under dir. A folder counts as a run if
// it holds run.yaml, status.json or metrics.jsonl. Problems with one run
// become warnings naming the file, so one damaged run does not hide the
// others.
func listRuns(dir string) ([]runSummary, []string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading runs directory %s: %w", dir, err)
	}
	var runs []runSummary
	var warnings []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		r, ok, warn := readRun(engine.RunDir(filepath.Join(dir, e.Name())))
		warnings = append(warnings, warn...)
		if ok {
			r.name = e.Name()
			runs = append(runs, r)
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].name < runs[j].name })
	return runs, warnings, nil
}

func readRun(run engine.RunDir) (r runSummary, isRun bool, warnings []string) {
	r.state = "unknown"
	if raw, err := atomicfile.ReadFile(run.Config()); err == nil {
		isRun = true
		var cfg engine.RunConfig
		if err := yaml.Unmarshal(raw, &cfg); err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: %v", run.Config(), err))
		} else {
			r.method, r.model = cfg.Method, cfg.Model
		}
	}
	if st, err := run.ReadStatus(); !errors.Is(err, fs.ErrNotExist) {
		isRun = true
		if err != nil {
			r.state = "unreadable"
			warnings = append(warnings, err.Error())
		} else {
			r.state, r.step, r.total = st.State, st.Step, st.Total
			if st.LastLoss != 0 {
				r.lastLoss, r.hasLoss = st.LastLoss, true
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
	if active := r.state == "running" || r.state == "paused"; active && known && !held {
		r.state = "crashed"
		r.crash = crashReport(run)
	} else if held && pid > 0 {
		r.state += fmt.Sprintf(" (pid %d)", pid)
	}
	metricsPath := run.Metrics()
	if st, err := os.Stat(metricsPath); err == nil {
		// A run from before locks, or one whose process hangs: a long
		// silence in its metrics gives it away.
		if idle := runsNow().Sub(st.ModTime()); strings.HasPrefix(r.state, "running") && idle > staleAfter {
			r.state = fmt.Sprintf("running? (no step for %dh%02dm)", int(idle.Hours()), int(idle.Minutes())%60)
		}
		isRun = true
		step, loss, ok, err := lastMetric(metricsPath)
		if err != nil {
			warnings = append(warnings, err.Error())
		} else if ok {
			// metrics.jsonl is appended every step, so it is at least as
			// fresh as status.json.
			r.step = max(r.step, step)
			r.lastLoss, r.hasLoss = loss, true
		}
	}
	return r, isRun, warnings
}

// staleAfter is how long a "running" run may go without a metrics line
// before `whet runs` doubts it; runsNow is the clock.
var (
	staleAfter = 15 * time.Minute
	runsNow    = time.Now
)

// metricsTail is how much of the end of metrics.jsonl is read: far more
// than one line, so a long run's file is not read whole.
const metricsTail = 64 << 10

// lastMetric returns the step and loss of the last training line of a
// metrics.jsonl (eval lines carry eval_loss and no loss). A torn last line
// from a run killed mid-write is skipped; a loss written as null (the run
// diverged) is NaN.
func lastMetric(path string) (step int, loss float64, ok bool, err error) {
	f, err := atomicfile.Open(path)
	if err != nil {
		return 0, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	off := max(st.Size()-metricsTail, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	if off > 0 { // drop the partial first line
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(buf))
	sc.Buffer(make([]byte, 0, 64<<10), metricsTail)
	for sc.Scan() {
		m, err := engine.ParseMetricLine(sc.Bytes())
		if err != nil {
			continue
		}
		if l, isStep := m.Loss(); isStep { // null (a NaN loss) reads as NaN
			step, loss, ok = m.Step, l, true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	return step, loss, ok, nil
}

// crashReport is what is known of a crashed run: the last line of its
// worker's log (a detached run has one) and the checkpoint to resume from.
func crashReport(run engine.RunDir) string {
	var parts []string
	if _, err := os.Stat(worker.Log(run)); err == nil {
		parts = append(parts, "last words in "+worker.Log(run)+": "+lastLogLine(worker.Log(run)))
	}
	cps, err := engine.ListCheckpoints(run.Checkpoints())
	switch {
	case err != nil:
		parts = append(parts, err.Error())
	case len(cps) == 0:
		parts = append(parts, "no checkpoint: whet train -c "+run.Config()+" starts it over")
	default:
		parts = append(parts, fmt.Sprintf("whet train -c %s resumes from %s (step %d)", run.Config(), cps[len(cps)-1].Path, cps[len(cps)-1].Step))
	}
	return strings.Join(parts, "; ")
}
