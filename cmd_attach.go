package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/engine/worker"
	"whet/tui"
)

func init() {
	register("attach", "watch and steer a detached run: its history, then live (q leaves, the run goes on): whet attach [RUN]", runAttach)
}

func runAttach(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("attach", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", engine.DefaultRunsDir, "the runs directory")
	fs.StringVar(dir, "runs", *dir, "the runs directory (the same as --dir; the studio's and whet serve's name for it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(1))
	}
	name := fs.Arg(0)
	if name == "" {
		var err error
		if name, err = liveRun(*dir); err != nil {
			return err
		}
	}
	rd, cfg, err := openRun(*dir, name)
	if err != nil {
		return err
	}
	events, ctl, warnings, err := worker.Attach(rd)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "whet attach: "+w)
	}
	opts := tui.Options{RunsDir: *dir, GPU: newStudioGPU(), Chat: newStudioChat(), Exporter: newStudioExporter(),
		Attach: &tui.AttachedRun{Config: cfg, Events: events, Control: ctl}}
	m := tui.New(opts)
	defer m.Close()
	var popts []tea.ProgramOption
	if stdin != os.Stdin {
		popts = append(popts, tea.WithInput(stdin))
	}
	if stdout != os.Stdout {
		popts = append(popts, tea.WithOutput(stdout))
	}
	// A closed terminal (SIGHUP) ends this viewer only: the worker trains on.
	if _, err := tea.NewProgram(m, popts...).Run(); err != nil && !errors.Is(err, tea.ErrInterrupted) {
		return terminalErr(err, fmt.Sprintf("run it in a terminal (ssh -t box whet attach %s), or read the run's progress with whet runs and its log with tail -f %s", name, worker.Log(rd)))
	}
	if line := m.Outcome(); line != "" {
		fmt.Fprintln(stdout, "whet: "+line)
	} else {
		fmt.Fprintln(stdout, "whet: "+tui.GoesOn(name))
	}
	return nil
}

// liveRun is the run to attach to when none is named: the one run a
// worker trains now, else the most recently changed run.
func liveRun(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("no runs to attach to: %w", err)
	}
	type cand struct {
		name string
		live bool
		mod  int64
	}
	var cs []cand
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rd := engine.RunDir(filepath.Join(dir, e.Name()))
		st, err := os.Stat(rd.Status())
		if err != nil {
			continue
		}
		_, held, _, _ := rd.Holder()
		cs = append(cs, cand{e.Name(), held, st.ModTime().UnixNano()})
	}
	if len(cs) == 0 {
		return "", fmt.Errorf("no runs in %s to attach to (start one with whet train -c run.yaml --detach)", dir)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].live != cs[j].live {
			return cs[i].live
		}
		return cs[i].mod > cs[j].mod
	})
	if cs[0].live && len(cs) > 1 && cs[1].live {
		return "", fmt.Errorf("several runs are training in %s (%s, %s, …): name one, whet attach RUN", dir, cs[0].name, cs[1].name)
	}
	return cs[0].name, nil
}
