package engine_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// Fuzz targets of the files whet writes into a run folder (status.json,
// metrics.jsonl, samples.jsonl) and of a checkpoint's trainer_state.json.
// Seeds are the files as the trainer writes them, plus what a crash or a
// hand edit leaves: empty files, torn last lines, wrong types.

// The targets read the files' bytes from memory, as the readers do once
// the file is open (the worker's FuzzRunFolder reads whole folders): a
// file written and read back for each input made the minimizer's
// thousands of candidates take all of a 60 s run, with no new input
// tried.

// A run folder's files, as the messages name them.
var fuzzRun = engine.RunDir(filepath.Join("runs", "r"))

// sameFloat is == that also holds for two NaNs.
func sameFloat(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func sameStatus(a, b engine.RunStatus) bool {
	return a.State == b.State && a.Step == b.Step && a.Total == b.Total && sameFloat(a.LastLoss, b.LastLoss)
}

func FuzzReadStatus(f *testing.F) {
	for _, st := range []engine.RunStatus{
		{State: "running", Step: 0, Total: 500},
		{State: "done", Step: 500, Total: 500, LastLoss: 1.25},
		{State: "failed", Step: 3, Total: 9, LastLoss: math.NaN()},
		{State: "stopped", Step: 335, Total: 5, LastLoss: 0.5},
	} {
		js, err := json.Marshal(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(js, st.State, st.LastLoss)
		f.Add(js[:len(js)/2], st.State, st.LastLoss) // torn
		// rewriteInPlace pads a shorter status with spaces.
		f.Add(append(js, "        "...), st.State, st.LastLoss)
	}
	f.Add([]byte{}, "", 0.0)
	f.Add([]byte("\n"), "\x00", math.Inf(1))
	f.Add([]byte("null"), "\a", 0.0)
	f.Add([]byte(`{"state":"running","step":1e99}`), "\xff", 0.0)
	f.Add([]byte(`{"state":7}`), "paused", -0.0)
	f.Add([]byte(`{"last_loss":"x"}`), "done", 1e308)
	f.Add([]byte(`{"last_loss":nul`), "done", 1e308)
	f.Add([]byte(`[]`), "done", 1e-320)
	path := fuzzRun.Status()
	f.Fuzz(func(t *testing.T, raw []byte, state string, loss float64) {
		st, err := engine.ParseStatus(path, raw)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("%q: the error does not name the file: %v", raw, err)
			}
			if len(bytes.TrimSpace(raw)) == 0 && !strings.Contains(err.Error(), "is empty") {
				t.Fatalf("an empty status.json: %v", err)
			}
		} else {
			// What reads writes back to what reads the same.
			js, err := json.Marshal(st)
			if err != nil {
				t.Fatalf("%q read as %+v, which does not write: %v", raw, st, err)
			}
			again, err := engine.ParseStatus(path, js)
			if err != nil || !sameStatus(st, again) {
				t.Fatalf("%q -> %+v -> %s -> %+v, %v", raw, st, js, again, err)
			}
		}
		// Whatever the trainer holds writes and reads back (the state is
		// one of its words; a string that is not UTF-8 cannot survive JSON).
		if state != "" && !strings.ContainsRune(strings.ToValidUTF8(state, "\uFFFD"), '\uFFFD') {
			want := engine.RunStatus{State: state, Step: len(raw), Total: len(state), LastLoss: loss}
			if math.IsInf(loss, 0) {
				want.LastLoss = math.NaN() // null, as the file says
			}
			js, err := json.Marshal(engine.RunStatus{State: state, Step: len(raw), Total: len(state), LastLoss: loss})
			if err != nil {
				t.Fatal(err)
			}
			got, err := engine.ParseStatus(path, js)
			if err != nil || !sameStatus(got, want) {
				t.Fatalf("%+v wrote %s, read back %+v, %v", want, js, got, err)
			}
		}
	})
}

// jsonlSeeds are lines of metrics.jsonl or samples.jsonl as the trainer
// writes them, followed by the same file damaged.
func jsonlSeeds(f *testing.F, lines ...string) {
	whole := strings.Join(lines, "\n") + "\n"
	f.Add([]byte(whole))
	f.Add([]byte(whole[:len(whole)-1]))                            // no newline at the end
	f.Add([]byte(whole + lines[0][:len(lines[0])/2]))              // a torn last line
	f.Add([]byte(lines[0][:len(lines[0])/2] + "\n" + whole))       // a torn line inside
	f.Add([]byte(strings.ReplaceAll(whole, "\n", "\r\n")))         // CRLF
	f.Add([]byte("\n\n  \n" + whole + "\x00\x00\x00\x00\n"))       // blank lines, a zeroed block
	f.Add([]byte(strings.Repeat(lines[0]+"\n", 3) + "not json\n")) // a line that is not JSON
	f.Add([]byte{})
}

// checkJSONL checks a read of a JSON-lines file of the run folder:
// no error for a file that is there, and one warning for each line but
// the last that is not blank and does not parse, naming the file and the
// line.
func checkJSONL(t *testing.T, path string, raw []byte, n int, warnings []string, err error, parses func([]byte) bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	var want []string
	parsed := 0
	lines := bytes.Split(raw, []byte("\n"))
	for i, l := range lines {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		ok := parses(l)
		switch {
		case ok:
			parsed++
		case i < len(lines)-1: // a bad last line without its newline is torn: silent
			want = append(want, fmt.Sprintf("%s:%d: ", path, i+1))
		}
	}
	if parsed != n {
		t.Fatalf("%q: read %d lines, %d parse", raw, n, parsed)
	}
	if len(warnings) != len(want) {
		t.Fatalf("%q: warnings %q, want %d", raw, warnings, len(want))
	}
	for i, w := range warnings {
		if !strings.HasPrefix(w, want[i]) {
			t.Fatalf("%q: warning %q, want it to start %q", raw, w, want[i])
		}
	}
}

func sameMetric(a, b engine.MetricLine) bool {
	if a.Step != b.Step || len(a.Values) != len(b.Values) {
		return false
	}
	for k, v := range a.Values {
		if w, ok := b.Values[k]; !ok || !sameFloat(v, w) {
			return false
		}
	}
	return true
}

func FuzzReadMetrics(f *testing.F) {
	var lines []string
	for _, l := range []engine.MetricLine{
		{Step: 1, Values: map[string]float64{"epoch": 0.01, "loss": 2.5, "lr": 2e-4, "grad_norm": 1.5, "tokens": 4096, "tokens_per_sec": 812.5, "elapsed_s": 5.04}},
		{Step: 2, Values: map[string]float64{"epoch": 0.02, "loss": math.NaN(), "lr": 0, "grad_norm": math.Inf(1), "tokens": 4096, "tokens_per_sec": 0, "elapsed_s": 10}},
		{Step: 2, Values: map[string]float64{"eval_loss": 2.7}},
		{Step: 3, Values: map[string]float64{"loss": 0.7, "rewards/chosen": -1.5, "completions/mean_length": 120}},
	} {
		js, err := json.Marshal(l)
		if err != nil {
			f.Fatal(err)
		}
		lines = append(lines, string(js))
	}
	jsonlSeeds(f, lines...)
	f.Add([]byte("{\"step\":1,\"loss\":\"high\"}\n{\"loss\":1}\n{\"step\":1.5}\n{\"step\":1,\"loss\":1e999}\n"))
	path := fuzzRun.Metrics()
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, warnings, err := engine.ReadMetricsFrom(path, bytes.NewReader(raw))
		checkJSONL(t, path, raw, len(got), warnings, err, func(l []byte) bool {
			_, err := engine.ParseMetricLine(l)
			return err == nil
		})
		// What was read writes back (as the trainer writes, one line
		// each) to a file that reads the same, with no warning; a torn
		// line after it loses none of it.
		var b bytes.Buffer
		for _, l := range got {
			js, err := json.Marshal(l)
			if err != nil {
				t.Fatalf("%+v: %v", l, err)
			}
			b.Write(js)
			b.WriteByte('\n')
		}
		torn, _, _ := bytes.Cut(raw, []byte("\n"))
		again, warnings, err := engine.ReadMetricsFrom(path, bytes.NewReader(append(b.Bytes(), torn...)))
		if err != nil || len(warnings) > 0 || len(again) < len(got) {
			t.Fatalf("%q rewritten as %q: %d lines of %d, %q, %v", raw, b.Bytes(), len(again), len(got), warnings, err)
		}
		for i := range got {
			if !sameMetric(got[i], again[i]) {
				t.Fatalf("line %d: %+v wrote %q, read back %+v", i+1, got[i], b.Bytes(), again[i])
			}
		}
	})
}

func sameSample(a, b engine.SampleEvent) bool {
	if a.Step != b.Step || a.Prompt != b.Prompt || a.Text != b.Text || len(a.Rewards) != len(b.Rewards) {
		return false
	}
	for k, v := range a.Rewards {
		if w, ok := b.Rewards[k]; !ok || v != w {
			return false
		}
	}
	return true
}

func FuzzReadSamples(f *testing.F) {
	var lines []string
	for _, s := range []engine.SampleEvent{
		{Step: 10, Prompt: "Name a colour.", Text: "Blue.\n\tAnd \"green\" <b>&</b> \u2028 é"},
		{Step: 10, Prompt: "", Text: ""},
		{Step: 20, Prompt: "2+2?", Text: "4", Rewards: map[string]float64{"accuracy": 1, "format": 0, "reward": 1.5}},
	} {
		js, err := engine.SampleLineJSON(s)
		if err != nil {
			f.Fatal(err)
		}
		lines = append(lines, string(js))
	}
	jsonlSeeds(f, lines...)
	f.Add([]byte("{\"step\":1,\"text\":7}\n{\"step\":1,\"rewards\":{\"a\":null}}\n{\"text\":\"\xff\"}\n"))
	path := fuzzRun.Samples()
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, warnings, err := engine.ReadSamplesFrom(path, bytes.NewReader(raw))
		checkJSONL(t, path, raw, len(got), warnings, err, func(l []byte) bool {
			var v struct {
				Step    int                `json:"step"`
				Prompt  string             `json:"prompt"`
				Text    string             `json:"text"`
				Rewards map[string]float64 `json:"rewards"`
			}
			return json.Unmarshal(l, &v) == nil
		})
		// Written back as the trainer writes them, they read the same.
		var b bytes.Buffer
		for _, s := range got {
			js, err := engine.SampleLineJSON(s)
			if err != nil {
				t.Fatalf("%+v: %v", s, err)
			}
			b.Write(js)
			b.WriteByte('\n')
		}
		torn, _, _ := bytes.Cut(raw, []byte("\n"))
		again, warnings, err := engine.ReadSamplesFrom(path, bytes.NewReader(append(b.Bytes(), torn...)))
		if err != nil || len(warnings) > 0 || len(again) < len(got) {
			t.Fatalf("%q rewritten as %q: %d samples of %d, %q, %v", raw, b.Bytes(), len(again), len(got), warnings, err)
		}
		for i := range got {
			if !sameSample(got[i], again[i]) {
				t.Fatalf("sample %d: %+v wrote %q, read back %+v", i+1, got[i], b.Bytes(), again[i])
			}
		}
	})
}

// marshalState is trainer_state.json as a checkpoint writes it.
func marshalState(t testing.TB, st engine.TrainerState) []byte {
	t.Helper()
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatalf("%+v: %v", st, err)
	}
	return js
}

func FuzzTrainerState(f *testing.F) {
	real := engine.TrainerState{Step: 40, Cursor: 160, Seed: 42, OptStep: 40, Epoch: 0.625, LastLoss: 1.375,
		ModelType: "llama", Params: 28, TensorsSHA256: strings.Repeat("ab", 32)}
	crashed := real
	crashed.Unwritten = map[string][]string{"metrics.jsonl": {`{"step":41,"loss":1.3}`}, "samples.jsonl": {`{"step":41,"prompt":"p","text":"t"}`}}
	diverged := real
	diverged.LastLoss, diverged.Epoch = math.NaN(), math.Inf(-1)
	for _, st := range []engine.TrainerState{real, crashed, diverged, {}} {
		js := marshalState(f, st)
		f.Add(js, st.LastLoss)
		f.Add(js[:len(js)*2/3], st.LastLoss) // torn
	}
	// Checkpoints from before the checksum and the unwritten lines.
	f.Add([]byte(`{"step":4,"cursor":16,"seed":1,"opt_step":4,"epoch":1,"last_loss":2,"model_type":"qwen2","params":2}`), 0.0)
	f.Add([]byte{}, 0.0)
	f.Add([]byte("   \n"), 0.0)
	f.Add([]byte(`{"step":-1}`), 0.0)
	f.Add([]byte(`{"cursor":-9223372036854775808}`), 0.0)
	f.Add([]byte(`{"unwritten":{"metrics.jsonl":["{\"step\":1}\n{\"step\":2}"]}}`), 0.0)
	f.Add([]byte(`{"last_loss":"x","epoch":null}`), math.NaN())
	f.Add([]byte(`{"seed":1e30}`), 0.0)
	path := filepath.Join(fuzzRun.Checkpoints(), "step-00000040", "trainer_state.json")
	f.Fuzz(func(t *testing.T, raw []byte, loss float64) {
		st, err := engine.ParseTrainerState(path, raw)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("%q: the error does not name the file: %v", raw, err)
			}
		} else {
			if st.Step < 0 || st.Cursor < 0 || st.OptStep < 0 || st.Params < 0 {
				t.Fatalf("%q read as %+v", raw, st)
			}
			// What reads writes back to the same state.
			js := marshalState(t, st)
			again, err := engine.ParseTrainerState(path, js)
			if err != nil || !bytes.Equal(marshalState(t, again), js) {
				t.Fatalf("%q -> %s -> %+v, %v", raw, js, again, err)
			}
		}
		// A state the trainer holds writes, whatever its loss (a run
		// that diverged), and reads back.
		// (A line of the trainer's is JSON, so UTF-8: []rune turns each
		// byte that is not into U+FFFD, as encoding/json would.)
		want := engine.TrainerState{Step: len(raw), LastLoss: loss, Epoch: loss, Unwritten: map[string][]string{"metrics.jsonl": {string([]rune(string(raw)))}}}
		if bytes.ContainsAny(raw, "\r\n") {
			want.Unwritten = nil
		}
		js := marshalState(t, want)
		got, err := engine.ParseTrainerState(path, js)
		if err != nil || !bytes.Equal(marshalState(t, got), js) || !sameFloat(got.LastLoss, loss) && !math.IsInf(loss, 0) {
			t.Fatalf("%+v wrote %s, read back %+v, %v", want, js, got, err)
		}
	})
}
