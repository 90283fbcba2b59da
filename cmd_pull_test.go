package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"
	"github.com/creack/pty"

	"whet/engine/hub"
	"whet/engine/hub/hubtest"
)

// pullEnv points the hub settings at a fake Hub and a fresh cache.
func pullEnv(t *testing.T) (*hubtest.Server, string) {
	t.Helper()
	srv := hubtest.New()
	t.Cleanup(srv.Close)
	if _, err := srv.AddDir("whet-test/tiny-llama", "testdata/tiny-llama"); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	for k, v := range map[string]string{
		"HF_ENDPOINT": srv.URL(), "HF_HOME": home, "HF_HUB_CACHE": "", "HUGGINGFACE_HUB_CACHE": "",
		"HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": "", "HF_TOKEN_PATH": "", "HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "",
	} {
		t.Setenv(k, v)
	}
	return srv, filepath.Join(home, "hub")
}

func pullCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runMain(append([]string{"pull"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestPullCommand(t *testing.T) {
	_, cache := pullEnv(t)
	code, stdout, stderr := pullCLI("whet-test/tiny-llama")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	dir := lines[len(lines)-1]
	if !strings.HasPrefix(dir, filepath.Join(cache, "models--whet-test--tiny-llama", "snapshots")+"/") {
		t.Fatalf("last line %q is not the snapshot folder; output:\n%s", dir, stdout)
	}
	for _, name := range []string{"config.json", "model.safetensors", "tokenizer.json"} {
		want, _ := os.ReadFile(filepath.Join("testdata/tiny-llama", name))
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s differs from the served file (%v)", name, err)
		}
		if !strings.Contains(stdout, name) {
			t.Errorf("output does not list %s:\n%s", name, stdout)
		}
	}

	// Offline, the cache answers.
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("HF_ENDPOINT", "http://127.0.0.1:1")
	if code, stdout, stderr := pullCLI("--json", "whet-test/tiny-llama"); code != 0 || !strings.Contains(stdout, `"dir":"`+dir+`"`) {
		t.Fatalf("offline: exit %d, %s%s", code, stdout, stderr)
	}
	code, stdout, _ = pullCLI("--list")
	if code != 0 || !strings.Contains(stdout, "whet-test/tiny-llama") || !strings.Contains(stdout, "KiB") {
		t.Fatalf("--list: %d\n%s", code, stdout)
	}
}

func TestPullCommandJSON(t *testing.T) {
	pullEnv(t)
	code, stdout, stderr := pullCLI("whet-test/tiny-llama", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var events []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		events = append(events, m)
	}
	first, last := events[0], events[len(events)-1]
	if first["event"] != "start" || first["total"].(float64) <= 0 || last["event"] != "snapshot" {
		t.Fatalf("events from %v to %v", first, last)
	}
	files := 0
	for _, e := range events {
		if e["event"] == "file-done" {
			files++
		}
	}
	if files != 5 {
		t.Fatalf("%d file-done events, want 5", files)
	}
}

func TestPullCommandErrors(t *testing.T) {
	srv, _ := pullEnv(t)
	srv.SetAccess("whet-test/tiny-llama", false, true, false)
	code, _, stderr := pullCLI("whet-test/tiny-llama")
	if code != 1 || !strings.Contains(stderr, "gated") || !strings.Contains(stderr, srv.URL()+"/whet-test/tiny-llama") || !strings.Contains(stderr, "HF_TOKEN") {
		t.Fatalf("gated: exit %d, %s", code, stderr)
	}
	code, stdout, _ := pullCLI("--json", "whet-test/tiny-llama")
	if code != 1 || !strings.Contains(stdout, `"kind":"gated"`) {
		t.Fatalf("gated --json: exit %d, %s", code, stdout)
	}
	if code, _, stderr := pullCLI("not-a-repo-id"); code != 1 || !strings.Contains(stderr, "ORG/NAME") || !strings.Contains(stderr, "catalog") {
		t.Fatalf("bad id: exit %d, %s", code, stderr)
	}
	// A catalog name stands for its repo (not on this fake Hub: not found).
	if code, _, stderr := pullCLI("llama-3.2-1b"); code != 1 || !strings.Contains(stderr, "meta-llama/Llama-3.2-1B") {
		t.Fatalf("catalog name: exit %d, %s", code, stderr)
	}
	t.Setenv("HF_HUB_OFFLINE", "1")
	if code, _, stderr := pullCLI("whet-test/tiny-llama"); code != 1 || !strings.Contains(stderr, "HF_HUB_OFFLINE") {
		t.Fatalf("offline, uncached: exit %d, %s", code, stderr)
	}
}

// fit, chat, train and export take a repo id wherever they take a folder.
func TestCommandsTakeRepoIDs(t *testing.T) {
	srv, _ := pullEnv(t)
	const id = "whet-test/tiny-llama"
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := runMain(args, strings.NewReader(""), &out, &errb); code != 0 {
			t.Fatalf("whet %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
		return out.String()
	}

	// fit needs config.json alone.
	out := run("fit", "--model", id, "--gpu", "H100", "--seq", "128")
	if !strings.Contains(out, id) {
		t.Fatalf("fit output does not name the model:\n%s", out)
	}
	if srv.Requests("GET", "storage", "model.safetensors")+srv.Requests("HEAD", "api", "tokenizer.json") != 0 {
		t.Fatal("fit fetched more than config.json")
	}

	out = run("chat", "--model", id, "--backend", "cpu", "--prompt", "hi", "--max-new-tokens", "2", "--temperature", "0")
	if !strings.Contains(out, "tokens") {
		t.Fatalf("chat output:\n%s", out)
	}
	if n := srv.Requests("GET", "storage", "model.safetensors"); n != 1 {
		t.Fatalf("chat downloaded the weights %d times", n)
	}

	dir := t.TempDir()
	runFile := filepath.Join(dir, "run.yaml")
	data, _ := filepath.Abs("testdata/datasets/tiny-chat.jsonl")
	os.WriteFile(runFile, []byte("name: byid\nmodel: "+id+"\nmethod: lora\nbackend: cpu\nruns_dir: "+dir+
		"\nlora: {r: 4, alpha: 8}\ndata: {path: "+data+", max_length: 128}\ntrain: {max_steps: 1, micro_batch: 2}\n"), 0o644)
	run("train", "-c", runFile)
	runDir := filepath.Join(dir, "byid")
	if b, _ := os.ReadFile(filepath.Join(runDir, "run.yaml")); !strings.Contains(string(b), "model: "+id) {
		t.Fatalf("run.yaml does not keep the repo id:\n%s", b)
	}
	// Offline from here: export finds the base model in the cache.
	t.Setenv("HF_HUB_OFFLINE", "1")
	run("export", "--run", runDir, "--format", "peft")
	var ac map[string]any
	b, err := os.ReadFile(filepath.Join(runDir, "export", "peft", "adapter_config.json"))
	if err != nil {
		matches, _ := filepath.Glob(filepath.Join(runDir, "export", "*", "adapter_config.json"))
		if len(matches) != 1 {
			t.Fatalf("no exported adapter_config.json: %v", err)
		}
		b, _ = os.ReadFile(matches[0])
	}
	if json.Unmarshal(b, &ac); ac["base_model_name_or_path"] != id {
		t.Fatalf("exported base_model_name_or_path = %v, want %s", ac["base_model_name_or_path"], id)
	}
	if n := srv.Requests("GET", "storage", "model.safetensors"); n != 1 {
		t.Fatalf("weights downloaded %d times in all", n)
	}
}

// On a terminal, a file finishing while another is still arriving prints
// its line and draws the other file's status line again: the status line
// of a big file that stalls must not vanish when a small file completes.
func TestPullPrinterKeepsStatusLine(t *testing.T) {
	var b strings.Builder
	p := &pullPrinter{w: &b, live: true, endpoint: "http://hub"}
	big := hub.Progress{Repo: "o/n", Commit: "abc", File: "model.safetensors", FileDone: 100 << 10, FileSize: 400 << 10, Done: 100 << 10, Total: 500 << 10, Files: 2}
	big.Phase = hub.PhaseBytes
	p.report(big)
	small := hub.Progress{Phase: hub.PhaseFileDone, File: "config.json", FileSize: 646}
	p.report(small)
	out := b.String()
	last := out[strings.LastIndex(out, "\n")+1:]
	if !strings.Contains(out, "config.json") || !strings.Contains(last, "model.safetensors 100 KiB/400 KiB") {
		t.Fatalf("after config.json finished, the screen's last line is %q, want model.safetensors's status (output %q)", last, out)
	}
	big.Phase, big.FileDone = hub.PhaseFileDone, big.FileSize
	p.report(big)
	p.report(hub.Progress{Phase: hub.PhaseFileDone, File: "tokenizer.json", FileSize: 10})
	out = b.String()
	if last := out[strings.LastIndex(out, "\n")+1:]; last != "" {
		t.Fatalf("after model.safetensors finished, a stale status line %q is drawn again", last)
	}
}

// The status line fits the terminal's width ("\r\x1b[K" erases only the
// last row of a wrapped line, so a wrapped status line left a stale row on
// screen at every redraw), and when the file it was about finishes, the
// line of another file still arriving is drawn again.
func TestPullPrinterStatusLineFits(t *testing.T) {
	var b strings.Builder
	p := &pullPrinter{w: &b, live: true, width: 80}
	shard1 := hub.Progress{Phase: hub.PhaseBytes, File: "model-00001-of-00004.safetensors", FileDone: 1 << 30, FileSize: 5 << 30, FileRate: 40 << 20, FileETA: 100e9, Done: 3 << 30, Total: 20 << 30, ETA: 400e9}
	shard2 := shard1
	shard2.File = "model-00002-of-00004.safetensors"
	p.report(shard1)
	p.report(shard2)
	for _, row := range strings.Split(strings.ReplaceAll(b.String(), "\r\x1b[K", "\n"), "\n") {
		if w := ansi.StringWidth(row); w >= 80 {
			t.Fatalf("a status row of %d cells on an 80-column terminal: %q", w, row)
		}
	}
	shard2.Phase = hub.PhaseFileDone
	p.report(shard2)
	out := b.String()
	if last := out[strings.LastIndex(out, "\n")+1:]; !strings.Contains(last, "model-00001-of-00004") {
		t.Fatalf("after shard 2 finished, the last line is %q, want shard 1's status", last)
	}
}

// main wraps every command's stderr in an echoRecorder, and whet train
// wraps it again; a pull started by whet chat or whet train (which print
// its progress on stderr) still sees the terminal under them and shows the
// live status line.
func TestPullSeesTerminalThroughStderrWrapper(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(tty, &pty.Winsize{Cols: 72, Rows: 24}); err != nil {
		t.Fatal(err)
	}
	for name, w := range map[string]io.Writer{
		"main's stderr": &echoRecorder{w: tty},
		"whet train's":  (&closableOutput{onClose: func() {}}).wrap(&echoRecorder{w: tty}),
	} {
		if !isTerminal(w) || termWidth(w) != 72 {
			t.Errorf("through %s wrapper: isTerminal %v, width %d; want true, 72", name, isTerminal(w), termWidth(w))
		}
	}
}

// A command that pulls a model by id (whet chat, whet train) and is
// interrupted says what was kept and how to resume, as whet pull does.
func TestPullModelArgCancelled(t *testing.T) {
	_, cache := pullEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var b strings.Builder
	_, err := pullModelArg(ctx, "whet-test/tiny-llama", nil, &b)
	if err == nil || !strings.Contains(err.Error(), "cancelled; what arrived is kept in "+cache) || !strings.Contains(err.Error(), "whet pull whet-test/tiny-llama") {
		t.Fatalf("pullModelArg with a cancelled context: %v, want what was kept and how to resume", err)
	}
}

// A model given as a path that is not there is named as a missing folder
// before anything reads it; before, whet chat and whet train said
// "tokenizer: open …/tokenizer.json: no such file or directory".
func TestPullModelArgMissingFolder(t *testing.T) {
	pullEnv(t)
	missing := filepath.Join(t.TempDir(), "models", "tiny")
	for _, m := range []string{missing, "./no/such/model"} {
		_, err := pullModelArg(context.Background(), m, nil, io.Discard)
		if err == nil || err.Error() != "model folder "+m+" does not exist" {
			t.Errorf("pullModelArg(%s): %v, want the missing folder named", m, err)
		}
	}
	// a/b/c is no folder and not a Hub id (ORG/NAME) either: both are said.
	if _, err := pullModelArg(context.Background(), "no/such/model", nil, io.Discard); err == nil || err.Error() != "model folder no/such/model does not exist, nor is it a Hub repo id (ORG/NAME)" {
		t.Errorf("pullModelArg(no/such/model): %v, want the missing folder and the bad Hub id named", err)
	}
	if dir, err := pullModelArg(context.Background(), "testdata/tiny-llama", nil, io.Discard); err != nil || dir != "testdata/tiny-llama" {
		t.Errorf("an existing folder: %q, %v", dir, err)
	}
}

// A kept partial file with corrupt bytes: whet pull says it starts the file
// again and finishes in the same run.
func TestPullCommandCorruptPartial(t *testing.T) {
	_, cache := pullEnv(t)
	data, err := os.ReadFile("testdata/tiny-llama/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	blobs := filepath.Join(cache, "models--whet-test--tiny-llama", "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	part := bytes.Clone(data[:len(data)/2])
	part[0] ^= 0xff
	if err := os.WriteFile(filepath.Join(blobs, hex.EncodeToString(sum[:])+".incomplete"), part, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := pullCLI("whet-test/tiny-llama")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "model.safetensors: the resumed bytes have SHA-256") || !strings.Contains(stdout, "downloading it again from the start") {
		t.Fatalf("output does not say the weights start again:\n%s", stdout)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if got, err := os.ReadFile(filepath.Join(lines[len(lines)-1], "model.safetensors")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("weights differ from the served file (%v)", err)
	}
}

// A file name longer than the terminal is wide is shortened in its middle:
// the status line keeps the file's bytes, rate and ETA and the whole
// pull's, which were cut off the row's end before (at 80 columns a 70-cell
// name left "7.88 M…" of them); the file's part shrinks to its percentage.
func TestPullPrinterLongFileNameKeepsNumbers(t *testing.T) {
	var b strings.Builder
	p := &pullPrinter{w: &b, live: true, width: 80}
	name := "extra-weights-with-a-rather-long-file-name-00001-of-00001.safetensors"
	p.report(hub.Progress{Phase: hub.PhaseBytes, File: name, FileDone: 78 << 20, FileSize: 300 << 20, FileRate: 10 << 20, FileETA: 22e9, Done: 91 << 20, Total: 308 << 20, Rate: 10 << 20, ETA: 22e9})
	line := strings.TrimPrefix(b.String(), "\r\x1b[K")
	if w := ansi.StringWidth(line); w >= 80 {
		t.Fatalf("status line of %d cells at 80 columns: %q", w, line)
	}
	for _, want := range []string{" 26% ", "all 91.0 MiB/308 MiB 10.0 MiB/s ETA 0m22s", "extra-", "00001-of-00001 "} {
		if !strings.Contains(line, want) {
			t.Errorf("status line %q lacks %q", line, want)
		}
	}
	b.Reset()
	p = &pullPrinter{w: &b, live: true, width: 80}
	p.report(hub.Progress{Phase: hub.PhaseBytes, File: "model-00001-of-00004.safetensors", FileDone: 1 << 30, FileSize: 5 << 30, FileRate: 40 << 20, FileETA: 100e9, Done: 3 << 30, Total: 20 << 30, Rate: 80 << 20, ETA: 400e9})
	line = strings.TrimPrefix(b.String(), "\r\x1b[K")
	if want := "  model-00001-of-00004 20% · all 3.00 GiB/20.0 GiB 80.0 MiB/s ETA 6m40s"; !strings.Contains(line, want) || ansi.StringWidth(line) >= 80 {
		t.Fatalf("status line %q, want %q within 79 cells", line, want)
	}
}

// After an interrupted pull, `whet pull` offline and a command that uses
// the model by id say how much of it the cache holds and that the pull
// resumes, not that the model is missing (nor that no folder has its name).
func TestPullOfflineAfterInterruptedPull(t *testing.T) {
	srv, cache := pullEnv(t)
	client, err := hub.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	ref := hub.Ref{Repo: "whet-test/tiny-llama", Revision: "main"}
	// whet fit pulled the config; then `whet pull` stopped in the weights.
	if _, err := client.Pull(context.Background(), ref, hub.PullOptions{Files: hub.ConfigOnly}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.DropAfter("model.safetensors", 4<<10)
	gets := 0
	srv.BeforeStorage = func(name string) {
		if gets++; name == "model.safetensors" && gets > 1 {
			cancel()
			<-ctx.Done()
		}
	}
	if _, err := client.Pull(ctx, ref, hub.PullOptions{}); err == nil {
		t.Fatal("the interrupted pull succeeded")
	}
	srv.BeforeStorage = nil
	partial := regexp.MustCompile(`\d of \d+ files downloaded \([^)]+ of [^)]+\); the pull resumes when the Hub can be reached`)

	t.Setenv("HF_HUB_OFFLINE", "1")
	code, _, stderr := pullCLI("whet-test/tiny-llama")
	if code != 1 || !partial.MatchString(stderr) || !strings.Contains(stderr, "partly in the cache "+cache) {
		t.Fatalf("whet pull offline after an interrupted pull: exit %d, stderr:\n%s\nwant what the cache holds and that the pull resumes", code, stderr)
	}
	_, err = pullModelArg(context.Background(), "whet-test/tiny-llama", nil, io.Discard)
	if err == nil || !partial.MatchString(err.Error()) || strings.Contains(err.Error(), "nor is there a folder") {
		t.Fatalf("using the model offline after an interrupted pull: %v", err)
	}

	// The Hub cannot be reached.
	t.Setenv("HF_HUB_OFFLINE", "")
	srv.Close()
	_, err = pullModelArg(context.Background(), "whet-test/tiny-llama", nil, io.Discard)
	if err == nil || !partial.MatchString(err.Error()) || strings.Contains(err.Error(), "nothing of it is cached") {
		t.Fatalf("using the model with the Hub unreachable after an interrupted pull: %v", err)
	}
}

// whet pull --list says how far an interrupted pull got in files and
// bytes (Cache.Unfinished), and, with a complete older snapshot of main
// in the cache, whet pull and a command using the model offline say they
// use that older snapshot and that the newer pull is partial.
func TestPullListAndOfflineWithANewerPartialPull(t *testing.T) {
	srv, _ := pullEnv(t)
	if code, _, stderr := pullCLI("whet-test/tiny-llama"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	client, err := hub.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	ref := hub.Ref{Repo: "whet-test/tiny-llama", Revision: "main"}
	old, err := client.Cache().Lookup(ref)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, name := range old.Files {
		data, err := os.ReadFile(filepath.Join(old.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
	files["model.safetensors"] = append(bytes.Clone(files["model.safetensors"]), make([]byte, 64<<10)...) // another blob
	newer := srv.AddFiles("whet-test/tiny-llama", files)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.DropAfter("model.safetensors", 4<<10)
	srv.BeforeStorage = func(name string) {
		if name == "model.safetensors" {
			cancel()
			<-ctx.Done()
		}
	}
	if _, err := client.Pull(ctx, ref, hub.PullOptions{}); err == nil {
		t.Fatal("the interrupted pull succeeded")
	}
	srv.BeforeStorage = nil
	progress := `\d of \d+ files downloaded \([^)]+ of [^)]+\)`

	code, stdout, _ := pullCLI("--list")
	if list := regexp.MustCompile(`whet-test/tiny-llama .*\(partial: ` + progress + `, whet pull resumes`); code != 0 || !list.MatchString(stdout) {
		t.Fatalf("--list: exit %d\n%s\nwant %s", code, stdout, list)
	}
	code, stdout, _ = pullCLI("--list", "--json")
	if code != 0 || !strings.Contains(stdout, `"partial_pull":{"commit":"`+newer+`"`) {
		t.Fatalf("--list --json: exit %d\n%s", code, stdout)
	}

	notice := regexp.MustCompile(`using the older complete snapshot ` + old.Commit[:12] + ` of whet-test/tiny-llama; a newer pull \(` +
		newer[:12] + `\) is partial: ` + progress + `, and whet pull resumes it`)
	t.Setenv("HF_HUB_OFFLINE", "1")
	code, stdout, stderr := pullCLI("whet-test/tiny-llama")
	if code != 0 || !notice.MatchString(stdout) || !strings.HasSuffix(stdout, old.Dir+"\n") {
		t.Fatalf("whet pull offline: exit %d\n%s%s\nwant %s", code, stdout, stderr, notice)
	}
	var w bytes.Buffer
	dir, err := pullModelArg(context.Background(), "whet-test/tiny-llama", nil, &w)
	if err != nil || dir != old.Dir || !notice.MatchString(w.String()) || !strings.Contains(w.String(), "HF_HUB_OFFLINE is set") {
		t.Fatalf("using the model offline: %s %v\n%s", dir, err, w.String())
	}

	// The Hub cannot be reached: the older snapshot too, saying so.
	t.Setenv("HF_HUB_OFFLINE", "")
	srv.Close()
	w.Reset()
	dir, err = pullModelArg(context.Background(), "whet-test/tiny-llama", nil, &w)
	if err != nil || dir != old.Dir || !notice.MatchString(w.String()) || !strings.Contains(w.String(), "the Hub is unreachable") {
		t.Fatalf("using the model with the Hub unreachable: %s %v\n%s", dir, err, w.String())
	}
}
