package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/engine/hub"
	"whet/tui"
	"whet/tui/components/imageview"
	"whet/tui/fake"
)

// The studio's real dependencies are set by the packages that provide
// them (the engine, the preset catalog, the memory planner, the dataset
// loader, NVML). Until one is wired in, the studio shows that part as
// not available instead of failing.
var (
	newStudioEngine = func() (tui.Engine, error) {
		return nil, errors.New("training engine not available")
	}
	newStudioCatalog   = func() tui.Catalog { return nil }
	newStudioPresets   = func() tui.Presets { return nil }
	newStudioFit       = func() tui.FitChecker { return nil }
	newStudioPreviewer = func() tui.DataPreviewer { return nil }
	newStudioGPU       = func() tui.GPUSampler { return nil }
	newStudioChat      = func() tui.Chatter { return nil }
	newStudioExporter  = func() tui.Exporter { return nil }
	newStudioHub       = func() (tui.Hub, error) { return nil, nil }
)

func init() {
	register("studio", "open the terminal studio: wizard, live dashboard (the default command)", runStudio)
}

// unavailableHub is a Hub whose settings could not be read (a malformed
// HF_ENDPOINT): the model page says why where it lists the cache, and a
// download fails with the same reason.
type unavailableHub struct{ err error }

func (u unavailableHub) Settings() hub.Settings { return hub.Settings{} }
func (u unavailableHub) Cached() ([]hub.CachedModel, error) {
	return nil, fmt.Errorf("Hugging Face Hub: %w", u.err)
}
func (u unavailableHub) Pull(context.Context, hub.Ref, func(hub.Progress)) (*hub.Snapshot, error) {
	return nil, fmt.Errorf("Hugging Face Hub: %w", u.err)
}

var _ tui.Hub = unavailableHub{}

// fillStudioDeps wires the studio to the real engine, catalog, checks,
// Hub and runs folder (whet and every whet serve session); opts.RunsDir
// is set first.
func fillStudioDeps(opts *tui.Options) {
	eng, err := newStudioEngine()
	if err != nil {
		eng = unavailableEngine{err: err}
	} else {
		// A studio run is a detached run: it trains in a worker process
		// of its own and goes on when the studio quits or the connection
		// drops; the studio (or another, or whet attach) follows it.
		eng = detachedStudioEngine{}
	}
	opts.Engine = eng
	opts.Runs = studioRuns{dir: opts.RunsDir}
	opts.Catalog = newStudioCatalog()
	opts.Presets = newStudioPresets()
	opts.Fit = newStudioFit()
	opts.Data = newStudioPreviewer()
	opts.GPU = newStudioGPU()
	opts.Chat = newStudioChat()
	opts.Exporter = newStudioExporter()
	if h, err := newStudioHub(); err != nil {
		opts.Hub = unavailableHub{err: err}
	} else if h != nil {
		opts.Hub = h
	}
}

// unavailableEngine reports why no engine could be built when the user
// starts a run, so the wizard still opens.
type unavailableEngine struct{ err error }

func (u unavailableEngine) Start(context.Context, engine.RunConfig) (<-chan engine.Event, engine.RunControl, error) {
	return nil, nil, u.err
}

func runStudio(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("studio", flag.ContinueOnError)
	fs.SetOutput(stderr)
	home, _ := os.UserHomeDir()
	defModels := ""
	if home != "" {
		defModels = filepath.Join(home, "models")
	}
	modelsDir := fs.String("models-dir", defModels, "folder scanned for local Hugging Face models")
	runsDir := fs.String("runs", "runs", "folder that holds the run directories")
	dataDirs := fs.String("data-dirs", ".,testdata", "comma-separated folders scanned for dataset files")
	useFake := fs.Bool("fake", false, "demo and test mode: a scripted fake engine, catalog, fit check and GPU (nothing trains)")
	fakeSteps := fs.Int("fake-steps", 300, "with --fake: steps in the scripted run")
	fakeDelay := fs.Duration("fake-delay", 60*time.Millisecond, "with --fake: time between scripted steps")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	images, _ := imageview.Detect(os.Getenv)
	opts := tui.Options{
		Images:    images,
		ModelsDir: *modelsDir,
		RunsDir:   *runsDir,
		DataDirs:  strings.Split(*dataDirs, ","),
	}
	if *useFake {
		opts.Engine = &fake.Engine{Script: fake.Demo(*fakeSteps, *fakeDelay, 1)}
		opts.Catalog = fake.DemoCatalog
		opts.Fit = fake.FitChecker{Device: "NVIDIA H100 80GB HBM3 (fake)", Free: 79 << 30, Total: 80 << 30, Params: fake.DemoCatalog.Params}
		opts.Data = fake.Previewer{Preview0: fake.DemoPreview}
		opts.GPU = fake.DemoGPU
		opts.Chat = fake.DemoChat()
		opts.Exporter = &fake.Exporter{Delay: 80 * time.Millisecond}
		opts.Hub = fake.DemoHub()
	} else {
		fillStudioDeps(&opts)
	}

	m := tui.New(opts)
	var popts []tea.ProgramOption
	if stdin != os.Stdin {
		popts = append(popts, tea.WithInput(stdin))
	}
	if stdout != os.Stdout {
		popts = append(popts, tea.WithOutput(stdout))
	}
	p := tea.NewProgram(m, popts...)

	// A closed SSH session sends SIGHUP, which would kill the process
	// mid-run; turn it into a quit so the run is stopped with a
	// checkpoint below.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		if _, ok := <-hup; ok {
			p.Quit()
		}
	}()
	_, err := p.Run()
	defer m.Close()
	signal.Stop(hup)
	close(hup)

	if events, ctl := m.Running(); events != nil {
		if serr := stopAndDrain(events, ctl, stderr); serr != nil && err == nil {
			err = serr
		}
	}
	if line := m.Outcome(); line != "" {
		fmt.Fprintln(stdout, "whet: "+line)
	}
	if err != nil && !errors.Is(err, tea.ErrInterrupted) {
		return terminalErr(err, "run whet in a terminal (ssh -t for one on another machine), or train headless: whet train -c run.yaml")
	}
	return nil
}

// stopAndDrain stops a run the studio left running and waits for its
// checkpoint, ignoring further signals meanwhile so the checkpoint is not
// cut short.
func stopAndDrain(events <-chan engine.Event, ctl engine.RunControl, stderr io.Writer) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	fmt.Fprintln(stderr, "whet: stopping the run; writing a checkpoint first…")
	ctl.Stop()
	for {
		select {
		case <-sig:
			fmt.Fprintln(stderr, "whet: still writing the checkpoint; please wait")
		case ev, ok := <-events:
			if !ok {
				return errors.New("the engine ended without reporting the end of the run")
			}
			switch ev := ev.(type) {
			case engine.CheckpointEvent:
				fmt.Fprintf(stderr, "whet: checkpoint at step %d in %s\n", ev.Step, ev.Path)
			case engine.DoneEvent:
				if ev.Err != nil {
					return fmt.Errorf("run ended with an error: %w", ev.Err)
				}
				fmt.Fprintf(stderr, "whet: run stopped at step %d\n", ev.Step)
				return nil
			}
		}
	}
}
