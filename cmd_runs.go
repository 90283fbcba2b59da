package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/charmbracelet/x/ansi"

	"whet/engine/units"
	"whet/engine/worker"
	"whet/tui"
)

func init() {
	register("runs", "list the runs directory: status, steps and last loss (a GRPO run's mean reward) of each run", runRuns)
}

// runSummary is one row of `whet runs`.
type runSummary struct {
	name, state, method, model string
	steps                      string
	// last is the run's last headline value with its name (worker.Run.LastText).
	last        string
	step, total int
	lastValue   float64
	hasLast     bool
	// crash says, for a crashed run, its worker's last words and the
	// checkpoint a new `whet train` resumes from; failure the same for a
	// failed run (worker.Run.Failure); unreadable why a run's status.json
	// could not be read, and the same (worker.Run.Unreadable).
	crash, failure, unreadable string
	statusErr                  string // worker.Run.StatusErr
}

func runRuns(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("runs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "runs", "the runs directory")
	fs.StringVar(dir, "runs", *dir, "the runs directory (the same as --dir; the studio's and whet serve's name for it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	runs, warnings, err := listRuns(*dir)
	listed := map[string]bool{} // a reason the listing shows is not said again on stderr
	for _, r := range runs {
		listed[r.statusErr] = r.statusErr != ""
	}
	for _, w := range warnings {
		if !listed[w] {
			fmt.Fprintln(stderr, "whet runs: "+w)
		}
	}
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		if _, err := os.Stat(*dir); os.IsNotExist(err) {
			// A relative --dir is the working folder's: say which folder
			// was looked for, since runs made elsewhere are not there.
			abs, _ := filepath.Abs(*dir)
			fmt.Fprintf(stdout, "no runs: there is no folder %s (runs go to ./runs of the folder whet starts in; --dir names another)\n", abs)
			return nil
		}
		fmt.Fprintf(stdout, "no runs in %s (start one with whet, or whet train -c run.yaml)\n", *dir)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tSTEPS\tLAST\tMETHOD\tMODEL")
	for _, r := range runs {
		// The model as the studio's runs page shows it: a run file holds a
		// local model's absolute folder, which alone took the table past
		// 80 columns for a model inside the working folder.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.state, r.steps, r.last, orDash(r.method), orDash(tui.DisplayPath(r.model)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeRunNotes(stdout, runs, termWidth(stdout))
}

// writeRunNotes writes, below the table, the note of each crashed, failed
// or unreadable run. A note names the run's files and the command that
// resumes it, so with a long runs path it runs well past 80 columns: on a
// terminal of known width (width > 0) it is wrapped at spaces, its further
// lines indented, so the terminal does not break it mid-word. Piped (width
// 0) each note stays one line, for grep and scripts that read a run's note
// by its name.
func writeRunNotes(w io.Writer, runs []runSummary, width int) error {
	for _, r := range runs {
		for _, n := range []struct{ what, text string }{{"crashed", r.crash}, {"failed", r.failure}, {"unreadable", r.unreadable}} {
			if n.text == "" {
				continue
			}
			if _, err := fmt.Fprintln(w, wrapNote(r.name+" "+n.what+": "+n.text, width)); err != nil {
				return err
			}
		}
	}
	return nil
}

// runNoteIndent starts each further line of a wrapped note, so that the
// next run's note (which starts at column 0) stands out.
const runNoteIndent = "    "

// wrapNote breaks s at spaces into lines of at most width cells, the
// further lines indented by runNoteIndent. A word longer than a line (a
// long path) is kept whole on a line of its own, so it can still be
// copied in one piece. width <= 0: s as it is.
func wrapNote(s string, width int) string {
	if width <= 0 || ansi.StringWidth(s) <= width {
		return s
	}
	var b strings.Builder
	line := 0 // cells on the current line
	for i, word := range strings.Fields(s) {
		ww := ansi.StringWidth(word)
		switch {
		case i == 0:
		case line+1+ww <= width:
			b.WriteByte(' ')
			line++
		default:
			b.WriteString("\n" + runNoteIndent)
			line = len(runNoteIndent)
		}
		b.WriteString(word)
		line += ww
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// listRuns reads every run folder under dir (worker.List) as rows of
// whet runs.
func listRuns(dir string) ([]runSummary, []string, error) {
	runs, warnings, err := worker.List(dir, runsNow())
	if err != nil {
		return nil, warnings, err
	}
	out := make([]runSummary, len(runs))
	for i, r := range runs {
		s := runSummary{name: r.Name, state: r.State, method: r.Method, model: r.Model, step: r.Step, total: r.Total,
			lastValue: r.Last, hasLast: r.HasLast, crash: r.Crash(), failure: r.Failure(), unreadable: r.Unreadable(), statusErr: r.StatusErr, steps: r.Steps(), last: r.LastText()}
		switch {
		case r.Silent > 0:
			s.state = "running? (no step for " + units.Duration(r.Silent) + ")"
		case r.Live && r.PID > 0:
			s.state += fmt.Sprintf(" (pid %d)", r.PID)
		}
		out[i] = s
	}
	return out, warnings, nil
}

// runsNow is the clock whet runs judges silences by.
var runsNow = time.Now
