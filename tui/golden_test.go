package tui_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"whet/engine"
	"whet/tui"
	"whet/tui/components/form"
	"whet/tui/components/lossplot"
	"whet/tui/components/stackbar"
	"whet/tui/fake"
)

var sizes = []struct{ w, h int }{{80, 24}, {120, 40}}

// TestGoldenWizardPages renders every wizard page at both sizes.
func TestGoldenWizardPages(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			d := newDriver(t, testOptions(&fake.Engine{}), sz.w, sz.h)
			shot := func(name string) {
				t.Helper()
				checkSize(t, d.view(), sz.w, sz.h)
				golden(t, fmt.Sprintf("wizard_%s_%dx%d", name, sz.w, sz.h), d.view())
			}
			shot("1model")
			d.keys("down", "down", "down", "enter")
			shot("2method")
			for i := 0; i < 5; i++ {
				d.keys("down")
			}
			d.keys("enter") // open the advanced section
			shot("2method_advanced")
			d.keys("up", "up", "up", "up", "up") // back to the method row
			d.keys("enter")
			d.keys("enter")
			d.waitScreen("format messages")
			shot("3data")
			d.keys("enter")
			shot("4settings")
			d.keys("enter")
			d.waitScreen("Fits:")
			shot("5fit")
			d.keys("enter")
			shot("6review")
		})
	}
}

func goldenRun() engine.RunConfig {
	return engine.RunConfig{Name: "persona-lora", Model: "qwen2.5-0.5b-instruct", Method: "lora", RunsDir: "runs"}
}

// goldenEvents is a fixed run: 60 steps of a falling loss with evals,
// a sample, a checkpoint and a log line.
func goldenEvents(stop bool) []engine.Event {
	var evs []engine.Event
	evs = append(evs, engine.LogEvent{Text: "data: 120 rows, 14.2k tokens; backend cuda (sm_90)"})
	for i := 1; i <= 60; i++ {
		loss := 0.9 + 1.8/(1+float64(i)/8) + 0.05*float64((i*7)%5-2)/2
		evs = append(evs, engine.StepEvent{Step: i, TotalSteps: 200, Epoch: float64(i) / 40, Loss: loss,
			LR: 2e-4 * float64(200-i) / 200, GradNorm: 0.3 + 1/float64(i), Tokens: 4096, TokensPerSec: 11850,
			Elapsed: time.Duration(i) * 350 * time.Millisecond})
		if i%15 == 0 {
			evs = append(evs, engine.EvalEvent{Step: i, Loss: loss + 0.12})
		}
		if i == 50 {
			evs = append(evs, engine.SampleEvent{Step: 50, Prompt: "Explain gradient descent to a child.",
				Text: "Imagine you are on a foggy hill and want the valley. You feel which way the ground slopes and take a small step down, again and again. What would happen if your steps were huge?"})
			evs = append(evs, engine.CheckpointEvent{Step: 50, Path: "runs/persona-lora/checkpoints/step-000050"})
		}
	}
	if stop {
		evs = append(evs, engine.CheckpointEvent{Step: 60, Path: "runs/persona-lora/checkpoints/step-000060"},
			engine.DoneEvent{Step: 60, Stopped: true, Elapsed: 21 * time.Second, FinalDir: "runs/persona-lora"})
	}
	return evs
}

// TestGoldenDashboardSeveralGPUs: a run on GPUs 0,2,3 of a four-GPU
// machine shows a line per GPU of the run (not GPU 1) and the job's step
// rate (59 steps in 20.65 s: 2.86 steps/s).
func TestGoldenDashboardSeveralGPUs(t *testing.T) {
	cfg := goldenRun()
	cfg.Parallel.GPUs = "0,2,3"
	var gpus []tui.GPUStats
	for i := 0; i < 4; i++ {
		gpus = append(gpus, tui.GPUStats{Name: "NVIDIA H100 80GB HBM3", Util: float64(90 + i), MemUsed: uint64(20+i) << 30, MemTotal: 80 << 30, TempC: 60, PowerW: float64(450 + 10*i), PowerCapW: 700})
	}
	gpus[1].Util, gpus[1].MemUsed, gpus[1].PowerW = 0, 1<<30, 70 // another job's GPU, idle
	for _, sz := range sizes {
		v := tui.RenderDashboardGPUs(cfg, sz.w, sz.h, goldenEvents(false), gpus)
		checkSize(t, v, sz.w, sz.h)
		golden(t, fmt.Sprintf("dashboard_gpus_%dx%d", sz.w, sz.h), v)
		if v := ansi.Strip(v); !strings.Contains(v, "steps/s   2.86") || !strings.Contains(v, "3× NVIDIA H100") || strings.Contains(v, "1 ░░░░░░") {
			t.Errorf("%dx%d: want 3 GPUs (0, 2, 3) and steps/s 2.86:\n%s", sz.w, sz.h, v)
		}
	}
}

func TestGoldenDashboard(t *testing.T) {
	gpu := &tui.GPUStats{Name: "NVIDIA H100 80GB HBM3", Util: 93, MemUsed: 21 << 30, MemTotal: 80 << 30, TempC: 64, PowerW: 455, PowerCapW: 700}
	for _, sz := range sizes {
		name := fmt.Sprintf("%dx%d", sz.w, sz.h)
		v := tui.RenderDashboard(goldenRun(), sz.w, sz.h, goldenEvents(false), gpu, nil)
		checkSize(t, v, sz.w, sz.h)
		golden(t, "dashboard_"+name, v)

		v = tui.RenderDashboard(goldenRun(), sz.w, sz.h, nil, nil, errors.New("NVML: library not found (no NVIDIA driver)"))
		checkSize(t, v, sz.w, sz.h)
		golden(t, "dashboard_empty_"+name, v)

		// A cold kernel cache: the wait for the first step says how far
		// the kernels' compile is (engine.KernelProgress).
		kernels := []engine.Event{engine.LogEvent{Text: "data: 120 rows, 14.2k tokens; backend cuda (sm_90)"},
			engine.LogEvent{Text: engine.KernelProgress{Arch: "sm_90 and sm_90a", Done: 7, Total: 23, CacheDir: "/nonexistent/.cache/whet/kernels"}.String()}}
		v = tui.RenderDashboard(goldenRun(), sz.w, sz.h, kernels, gpu, nil)
		checkSize(t, v, sz.w, sz.h)
		golden(t, "dashboard_kernels_"+name, v)
		// The whole line, count and all, at every size (80 columns too).
		if !strings.Contains(ansi.Strip(v), "\ncompiling CUDA kernels for sm_90 and sm_90a: 7 of 23 files (once, then cached)\n") || strings.Contains(ansi.Strip(v), "waiting for the first step") {
			t.Errorf("%s: the wait for the first step does not show the kernels' progress whole:\n%s", name, ansi.Strip(v))
		}

		v = tui.RenderDashboard(goldenRun(), sz.w, sz.h, goldenEvents(true), gpu, nil)
		checkSize(t, v, sz.w, sz.h)
		golden(t, "summary_stopped_"+name, v)

		failed := append(goldenEvents(false), engine.DoneEvent{Step: 60, Err: errors.New("cuda: out of memory allocating 2.0 GiB for activations"), Elapsed: 21 * time.Second})
		v = tui.RenderDashboard(goldenRun(), sz.w, sz.h, failed, gpu, nil)
		checkSize(t, v, sz.w, sz.h)
		golden(t, "summary_failed_"+name, v)
	}
}

// Components at the two sizes: the loss plot fills the area, the stack
// bar and the form take the width.
func TestGoldenComponents(t *testing.T) {
	var train, eval []lossplot.Point
	for _, ev := range goldenEvents(false) {
		switch ev := ev.(type) {
		case engine.StepEvent:
			train = append(train, lossplot.Point{X: float64(ev.Step), Y: ev.Loss})
		case engine.EvalEvent:
			eval = append(eval, lossplot.Point{X: float64(ev.Step), Y: ev.Loss})
		}
	}
	for _, sz := range sizes {
		name := fmt.Sprintf("%dx%d", sz.w, sz.h)
		chart := lossplot.Chart{Series: []lossplot.Series{
			{Name: "train", Points: train}, {Name: "eval", Points: eval, Marker: '◆'}}}
		chart.SetSize(sz.w, sz.h)
		golden(t, "lossplot_"+name, chart.View())

		bar := stackbar.Bar{Capacity: 23 << 30, CapacityLabel: "free", Parts: []stackbar.Part{
			{Name: "weights", Bytes: 14 << 30}, {Name: "lora", Bytes: 80 << 20}, {Name: "grads", Bytes: 80 << 20},
			{Name: "optimizer", Bytes: 160 << 20}, {Name: "activations", Bytes: 9 << 30}, {Name: "workspace", Bytes: 1 << 30}}}
		bar.SetSize(sz.w, sz.h)
		golden(t, "stackbar_over_"+name, bar.View())

		f := form.New([]form.Field{
			{Key: "name", Label: "Run name", Kind: form.Text, Value: "persona-lora", Hint: "the run's folder"},
			{Key: "by", Label: "Length in", Kind: form.Choice, Value: "steps", Options: []string{"epochs", "steps"}},
			{Key: "lr", Label: "Learning rate", Kind: form.Float, Value: "2e-4"},
			{Key: "pack", Label: "Packing", Kind: form.Bool, Value: "yes", Advanced: true},
		}, form.Styles{Focused: lipgloss.NewStyle().Bold(true)})
		f.SetSize(sz.w, sz.h)
		golden(t, "form_"+name, f.View())
	}
}

// A run whose engine says it makes no samples though train.sample_every
// is set (a Llama 3.2 Vision run: engine.NoSamplesNote) shows that where
// the samples would be, not "samples appear here as the trainer generates
// them".
func TestGoldenDashboardNoSamples(t *testing.T) {
	cfg := goldenRun()
	cfg.Model, cfg.Train.SampleEvery = "Llama-3.2-11B-Vision-Instruct", 20
	note := engine.NoSamplesNote + "Llama 3.2 Vision runs generate none while they train; train.sample_every is not used"
	evs := []engine.Event{engine.LogEvent{Text: note}}
	for _, ev := range goldenEvents(false) {
		if _, ok := ev.(engine.SampleEvent); !ok {
			evs = append(evs, ev)
		}
	}
	for _, sz := range sizes {
		v := tui.RenderDashboard(cfg, sz.w, sz.h, evs, nil, errors.New("NVML: library not found (no NVIDIA driver)"))
		checkSize(t, v, sz.w, sz.h)
		golden(t, fmt.Sprintf("dashboard_nosamples_%dx%d", sz.w, sz.h), v)
		if v := ansi.Strip(v); strings.Contains(v, "samples appear here") || !strings.Contains(v, "no samples: Llama 3.2 Vision runs generate none") {
			t.Errorf("%dx%d: want the engine's no-samples notice instead of the promise of samples:\n%s", sz.w, sz.h, v)
		}
	}
}

// The dashboard lists only the checkpoints the run still has: the trainer
// keeps the newest train.keep_checkpoints by step and removes the rest. It
// listed every checkpoint written (steps 100, 80, 60, 40 with only 80 and
// 100 on disk), so a user could pick one that was gone. A step written
// twice (a resume redoing it) is listed once; keep 0 keeps all.
func TestDashboardListsKeptCheckpoints(t *testing.T) {
	var evs []engine.Event
	for i := 1; i <= 100; i++ {
		evs = append(evs, engine.StepEvent{Step: i, TotalSteps: 200, Loss: 2 - float64(i)/100, Tokens: 64, TokensPerSec: 1000})
		if i%20 == 0 {
			evs = append(evs, engine.CheckpointEvent{Step: i, Path: fmt.Sprintf("runs/persona-lora/checkpoints/step-%08d", i)})
		}
	}
	evs = append(evs, engine.CheckpointEvent{Step: 100, Path: "runs/persona-lora/checkpoints/step-00000100"})
	listed := func(v string) []string {
		var out []string
		for _, l := range strings.Split(ansi.Strip(v), "\n") {
			if _, after, ok := strings.Cut(l, "│  step "); ok {
				out = append(out, strings.Fields(after)[0])
			}
		}
		return out
	}
	for _, c := range []struct {
		keep int
		want []string
	}{{2, []string{"100", "80"}}, {0, []string{"100", "80", "60", "40", "20"}}} {
		cfg := goldenRun()
		cfg.Train.KeepCheckpoints = c.keep
		v := tui.RenderDashboard(cfg, 120, 40, evs, nil, nil)
		if got := listed(v); !reflect.DeepEqual(got, c.want) {
			t.Errorf("keep_checkpoints %d: the dashboard lists steps %v, want %v:\n%s", c.keep, got, c.want, ansi.Strip(v))
		}
	}
}

// The summary of a finished run says how to train again: the same run
// file resumes the finished run, which has nothing left to do ("run it
// again headless: whet train -c RUN/run.yaml" did just that), so a new
// name; a stopped run is resumed with the file as it is.
func TestSummarySaysHowToTrainAgain(t *testing.T) {
	done := append(goldenEvents(false), engine.DoneEvent{Step: 60, Elapsed: 21 * time.Second, FinalDir: "runs/persona-lora"})
	s := ansi.Strip(tui.RenderDashboard(goldenRun(), 80, 24, done, nil, nil))
	if !strings.Contains(s, "train again: whet train -c runs/persona-lora/run.yaml --name NEW") || strings.Contains(s, "resume it") {
		t.Errorf("finished run:\n%s", s)
	}
	s = ansi.Strip(tui.RenderDashboard(goldenRun(), 80, 24, goldenEvents(true), nil, nil))
	if !strings.Contains(s, "resume it: whet train -c runs/persona-lora/run.yaml") || strings.Contains(s, "--name NEW") {
		t.Errorf("stopped run:\n%s", s)
	}
}

// A run that failed before its first checkpoint has nothing to resume:
// whet train -c trains its folder again from step 0, so its summary and
// the line the studio leaves on the terminal say so instead of "resume
// it". One that failed with a checkpoint on disk (one this session wrote,
// or an earlier session's: DoneEvent.Checkpointed) is resumed.
func TestSummaryOffersResumeOnlyWithACheckpoint(t *testing.T) {
	steps := []engine.Event{
		engine.StepEvent{Step: 1, TotalSteps: 200, Loss: 2.5, Elapsed: time.Second},
		engine.StepEvent{Step: 2, TotalSteps: 200, Loss: 2.4, Elapsed: 2 * time.Second},
	}
	fail := errors.New("write runs/persona-lora/status.json: no space left on device")
	for _, c := range []struct {
		name   string
		evs    []engine.Event
		resume bool
	}{
		{"no checkpoint", append(slices.Clone(steps), engine.DoneEvent{Step: 2, Err: fail, FinalDir: "runs/persona-lora"}), false},
		{"an earlier session's checkpoint", append(slices.Clone(steps), engine.DoneEvent{Step: 2, Err: fail, FinalDir: "runs/persona-lora", Checkpointed: true}), true},
		{"a checkpoint this session", append(slices.Clone(steps), engine.CheckpointEvent{Step: 2, Path: "runs/persona-lora/checkpoints/step-00000002"},
			engine.DoneEvent{Step: 2, Err: fail, FinalDir: "runs/persona-lora"}), true},
	} {
		s := ansi.Strip(tui.RenderDashboard(goldenRun(), 80, 24, c.evs, nil, nil))
		resume := strings.Contains(s, "resume it: whet train -c runs/persona-lora/run.yaml")
		over := strings.Contains(s, "no checkpoint; start it over: whet train -c runs/persona-lora/run.yaml")
		if resume != c.resume || over == c.resume {
			t.Errorf("%s: resume offered %v, start over %v, want resume %v:\n%s", c.name, resume, over, c.resume, s)
		}
	}
}
