package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"whet/engine"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runMain(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// whet --help lists every command with its one line; whet CMD --help and
// whet help CMD print that line and the command's flags, on stdout, and
// exit 0.
func TestHelpForEveryCommand(t *testing.T) {
	code, out, errs := runCLI(t, "--help")
	if code != 0 || errs != "" {
		t.Fatalf("whet --help: exit %d, stderr %q", code, errs)
	}
	if len(commands) < 8 {
		t.Fatalf("only %d commands registered", len(commands))
	}
	for name, cmd := range commands {
		if cmd.summary == "" || strings.Contains(cmd.summary, "\n") {
			t.Errorf("%s: summary %q, want one line", name, cmd.summary)
		}
		if !strings.Contains(out, "  "+name+" ") || !strings.Contains(out, cmd.summary) {
			t.Errorf("whet --help lacks %s and its summary:\n%s", name, out)
		}
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {"help", name}} {
			code, out, errs := runCLI(t, args...)
			if code != 0 || errs != "" {
				t.Errorf("whet %s: exit %d, stderr %q; want exit 0 and nothing on stderr", strings.Join(args, " "), code, errs)
			}
			if first, _, _ := strings.Cut(out, "\n"); first != "whet "+name+": "+cmd.summary {
				t.Errorf("whet %s: first line %q, want the command's summary", strings.Join(args, " "), first)
			}
			if !strings.Contains(out, "usage: whet "+name) || !strings.Contains(out, "\n  -") {
				t.Errorf("whet %s: no usage line or flags:\n%s", strings.Join(args, " "), out)
			}
			// A flag line is "-name" or "-name TYPE": back-quoted words in a
			// flag's text become its TYPE (flag.UnquoteUsage), so a quoted
			// command there reads as the flag's argument.
			for _, line := range strings.Split(out, "\n") {
				if f, ok := strings.CutPrefix(line, "  -"); ok && strings.Count(f, " ") > 1 {
					t.Errorf("whet %s: flag line %q: its argument name has spaces (back quotes in the flag's text?)", strings.Join(args, " "), line)
				}
			}
			if strings.Contains(out, "Usage of") || strings.Contains(out, "help requested") {
				t.Errorf("whet %s: the flag package's own heading or error leaked:\n%s", strings.Join(args, " "), out)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		code, out, errs := runCLI(t, arg)
		if code != 0 || errs != "" || !strings.HasPrefix(out, "whet ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("whet %s: exit %d, stdout %q, stderr %q; want a version line", arg, code, out, errs)
		}
	}
	version = "v9.8.7"
	defer func() { version = "" }()
	if _, out, _ := runCLI(t, "--version"); !strings.HasPrefix(out, "whet v9.8.7") {
		t.Errorf("with -X main.version: %q", out)
	}
}

// A bad flag is reported once, on one line that names the command, the
// flag and where the flags are listed (not the flag package's message and
// the whole list), and exits 2; an error that already names the command is
// not prefixed twice.
func TestErrorsAreSaidOnce(t *testing.T) {
	for name := range commands {
		code, out, errs := runCLI(t, name, "--no-such-flag")
		want := "whet " + name + ": unknown flag --no-such-flag (whet " + name + " --help lists its flags)\n"
		if code != 2 || errs != want || out != "" {
			t.Errorf("whet %s --no-such-flag: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and %q", name, code, out, errs, want)
		}
	}
	code, _, errs := runCLI(t, "export", "--run", t.TempDir(), "--format", "gguf")
	if code != 1 || !strings.HasPrefix(errs, "whet export: ") || strings.Contains(errs, "export: export:") {
		t.Errorf("whet export of a non-run: exit %d, stderr %q", code, errs)
	}
	register("testfail", "fails", func([]string, io.Reader, io.Writer, io.Writer) error {
		return errors.New("testfail: disk full")
	})
	defer delete(commands, "testfail")
	if code, _, errs := runCLI(t, "testfail"); code != 1 || errs != "whet testfail: disk full\n" {
		t.Errorf("exit %d, stderr %q; want one prefix", code, errs)
	}
}

// On a machine without an NVIDIA GPU, a run on the default backend (auto)
// says nothing about CUDA; bench shows its progress on the CPU.
func TestBenchOnCPUWithoutCUDAWarning(t *testing.T) {
	if _, _, err := engine.OpenBackend("cuda"); !errors.Is(err, engine.ErrNoDevice) {
		t.Skipf("this machine has a CUDA device or a broken install (%v): the no-GPU path is tested in engine", err)
	}
	code, out, errs := runCLI(t, "bench", "--model", "testdata/tiny-llama", "--seq", "16", "--batch", "1", "--steps", "2", "--warmup", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if strings.Contains(strings.ToLower(errs), "cuda") {
		t.Errorf("a CPU run that never asked for CUDA warned about it:\n%s", errs)
	}
	for _, want := range []string{"step 1/3 (warm-up)", "step 2/3 (timed)", "step 3/3 (timed)"} {
		if !strings.Contains(errs, want) {
			t.Errorf("no progress line %q on the CPU:\n%s", want, errs)
		}
	}
	if !strings.Contains(out, "testdata/tiny-llama lora  cpu b1×16") {
		t.Errorf("result line:\n%s", out)
	}
}

// The default workload (a 1B model, 4×2048 tokens) takes seconds on a GPU
// and days on the CPU: bench refuses it at once, saying why and how to
// make it smaller.
func TestBenchRefusesHoursOnCPU(t *testing.T) {
	code, out, errs := runCLI(t, "bench", "--backend", "cpu")
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want a refusal", code, out, errs)
	}
	for _, want := range []string{"llama-3.2-1b lora", "would take about", "--max-time 0", "--seq"} {
		if !strings.Contains(errs, want) {
			t.Errorf("refusal lacks %q:\n%s", want, errs)
		}
	}
	if !strings.Contains(errs, " hours ") && !strings.Contains(errs, " days ") {
		t.Errorf("refusal gives no estimate in hours or days:\n%s", errs)
	}
	// Where the FLOP count underestimates (here a matmul rate given far too
	// high), the second step's measured time stops the run.
	code, _, errs = runCLI(t, "bench", "--backend", "cpu", "--model", "testdata/tiny-llama", "--seq", "16", "--batch", "1",
		"--steps", "10", "--warmup", "1", "--peak-tflops", "1e9", "--max-time", "1us")
	if code != 1 || !strings.Contains(errs, "the second step took") || strings.Contains(errs, "step 3/11") {
		t.Errorf("measured refusal: exit %d, stderr %q; want a stop after step 2", code, errs)
	}
	code, _, errs = runCLI(t, "bench", "--backend", "cpu", "--decode", "64", "--seq", "8192", "--max-time", "1s")
	if code != 1 || !strings.Contains(errs, "decode: 64 tokens after a 8192-token prompt would take about") {
		t.Errorf("decode refusal: exit %d, stderr %q", code, errs)
	}
}

// whet serve's sessions list the same local models as whet studio: both
// default to ~/models (serve said "models", a folder of the working one).
func TestServeAndStudioShareModelsDir(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home folder")
	}
	want := `(default "` + filepath.Join(home, "models") + `")`
	for _, args := range [][]string{{"studio", "--help"}, {"serve", "--help"}} {
		_, out, _ := runCLI(t, args...)
		if !strings.Contains(out, want) {
			t.Errorf("whet %s: no %s for the models folder:\n%s", strings.Join(args, " "), want, out)
		}
	}
}

// Flags whet passes to itself (train's --worker, which --detach uses) stay
// out of the help and out of the usage a flag error prints, and are still
// accepted.
func TestHelpHidesInternalFlags(t *testing.T) {
	for _, args := range [][]string{{"train", "--help"}, {"help", "train"}} {
		code, out, _ := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, "\n  -detach") || !strings.Contains(out, "\n  -c string") {
			t.Fatalf("whet %s: exit %d, want the flags listed:\n%s", strings.Join(args, " "), code, out)
		}
		if strings.Contains(out, "-worker") {
			t.Errorf("whet %s lists the internal --worker flag:\n%s", strings.Join(args, " "), out)
		}
	}
	// A misspelt flag is pointed to the nearest visible one, never to
	// --worker.
	code, _, errs := runCLI(t, "train", "--worke")
	if code != 2 || !strings.Contains(errs, "unknown flag --worke") || strings.Contains(errs, "-worker") {
		t.Fatalf("whet train --worke: exit %d, stderr %q; want the error without --worker", code, errs)
	}
	// Still a flag: the error is about the missing run file, not the flag.
	code, _, errs = runCLI(t, "train", "--worker")
	if code != 1 || !strings.Contains(errs, "-c run.yaml is required") {
		t.Errorf("whet train --worker: exit %d, stderr %q; want it accepted (then -c missing)", code, errs)
	}
}

// Flag errors name the flag as whet's help writes it and say what to do:
// the nearest flag for a misspelt one, the kind of value for a bad value,
// and for flags given without a command (the studio's), where both the
// commands and the studio's flags are listed. Arguments a command does not
// take are refused rather than ignored, and counts below their least are
// refused rather than replaced by a default.
func TestFlagErrorsNameTheFlagAndTheFix(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--runz", "x"}, 2, "whet: unknown flag --runz; did you mean --runs? (whet --help lists the commands, whet studio --help the studio's flags)\n"},
		{[]string{"studio", "--model-dir", "x"}, 2, "whet studio: unknown flag --model-dir; did you mean --models-dir? (whet studio --help lists its flags)\n"},
		{[]string{"train", "-c"}, 2, "whet train: flag -c needs a value: -c VALUE (whet train --help lists its flags)\n"},
		{[]string{"fit", "--batch", "two"}, 2, "whet fit: --batch \"two\": want a whole number (whet fit --help lists its flags)\n"},
		{[]string{"bench", "--max-time", "5"}, 2, "whet bench: --max-time \"5\": want a duration such as 90s, 30m or 1h (whet bench --help lists its flags)\n"},
		{[]string{"train", "--json=maybe"}, 2, "whet train: --json=maybe: want --json, --json=true or --json=false (whet train --help lists its flags)\n"},
		{[]string{"train", "run.yaml"}, 1, "whet train: unexpected argument \"run.yaml\": the run file goes after -c: whet train -c run.yaml\n"},
		{[]string{"train", "-c", "run.yaml", "extra"}, 1, "whet train: unexpected argument \"extra\" (flags come first; whet train --help lists them)\n"},
		{[]string{"chat", "--model", "testdata/tiny-llama", "hello"}, 1, "whet chat: unexpected argument \"hello\" (prompts are read from stdin, or give one with --prompt TEXT)\n"},
		{[]string{"fit", "--model", "testdata/tiny-llama", "--batch", "0"}, 1, "whet fit: --batch 0: want 1 or more\n"},
		{[]string{"fit", "--model", "testdata/tiny-llama", "--rank", "0"}, 1, "whet fit: --rank 0: want 1 or more\n"},
		{[]string{"fit", "--model", "testdata/tiny-llama", "--seq", "-5"}, 1, "whet fit: --seq -5: want 1 or more\n"},
		{[]string{"fit", "--model", "testdata/tiny-llama", "--grad-accum", "0"}, 1, "whet fit: --grad-accum 0: want 1 or more\n"},
		{[]string{"export"}, 1, "whet export: --run and --format are required: whet export --run runs/NAME --format peft|merged|gguf (whet runs lists the runs)\n"},
		{[]string{"images"}, 1, "whet images: want the data file to check: whet images DATA.jsonl (or .json, .parquet)\n"},
		{[]string{"pull", "a/b", "c/d"}, 1, "whet pull: want one repo id, got 2 (a/b, c/d): pull them one at a time\n"},
		{[]string{"train", "-c", "testdata"}, 1, "whet train: -c testdata is a folder; -c takes a run file (YAML, docs/run-file.md)\n"},
	} {
		code, out, errs := runCLI(t, c.args...)
		if code != c.code || errs != c.want || out != "" {
			t.Errorf("whet %s: exit %d, stdout %q, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, out, errs, c.code, c.want)
		}
	}
}

// Without a terminal the studio and whet attach say so in words and what
// to do instead, not bubbletea's "could not open TTY"; other terminal
// errors keep theirs.
func TestTerminalErrSaysWhatToDo(t *testing.T) {
	tty := errors.New("bubbletea: error opening TTY: bubbletea: could not open TTY: open /dev/tty: no such device or address")
	got := terminalErr(tty, "train headless: whet train -c run.yaml").Error()
	if want := "needs a terminal, and none is attached here (/dev/tty cannot be opened); train headless: whet train -c run.yaml"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	other := errors.New("read /dev/tty: input/output error")
	if got := terminalErr(other, "x"); !errors.Is(got, other) || got.Error() != "terminal: read /dev/tty: input/output error" {
		t.Errorf("another error: %v", got)
	}
}

// whet train -c RUN (the run's folder, not its run.yaml) names the file.
func TestTrainConfigIsARunFolder(t *testing.T) {
	run := filepath.Join(t.TempDir(), "myrun")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "run.yaml"), []byte("name: myrun\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "train", "-c", run)
	if want := "whet train: -c " + run + " is a folder; its run file is -c " + filepath.Join(run, "run.yaml") + "\n"; code != 1 || errs != want {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, errs, want)
	}
}

// A runs folder that cannot be made says where it is set (as root, a
// read-only folder is writable: a path under a file stands in for it).
func TestTrainRunsDirCannotBeMade(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	cfg := filepath.Join(dir, "run.yaml")
	body := "name: r\nmodel: " + abs("testdata/tiny-llama") + "\nbackend: cpu\nruns_dir: " + filepath.Join(blocker, "runs") +
		"\ndata: {path: " + abs("testdata/datasets/tiny-chat.jsonl") + "}\ntrain: {max_steps: 1}\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "train", "-c", cfg)
	if code != 1 || !strings.Contains(errs, "run directory: mkdir "+blocker+": not a directory") || !strings.Contains(errs, "("+engine.RunsDirAdvice+")") {
		t.Errorf("exit %d, stderr %q; want the folder and where the runs folder is set", code, errs)
	}
}
