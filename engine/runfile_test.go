package engine_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"whet/engine"
)

// writeTinyRunFile writes a run file naming the tiny model and chat set plus
// the given lines, and returns its path.
func writeTinyRunFile(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run.yaml")
	data := abs("../testdata/datasets/tiny-chat.jsonl")
	body := "model: " + abs("../testdata/tiny-llama") + "\n"
	if strings.Contains(extra, "data: {") {
		body += strings.Replace(extra, "data: {", "data: {path: "+data+", ", 1)
	} else {
		body += "data: {path: " + data + "}\n" + extra
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRunFileRejectsWhatCannotWork: a run file's 0, NaN, Inf or
// out-of-range value is an error naming the file and the field, never
// silently replaced by a default.
func TestRunFileRejectsWhatCannotWork(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"train: {micro_batch: 0}", "train.micro_batch: must be at least 1, got 0"},
		{"train: {grad_accum: 0}", "train.grad_accum: must be at least 1, got 0"},
		{"data: {max_length: 0}", "data.max_length: must be at least 2 tokens, got 0"},
		{"train: {lr: .nan}", "train.lr: must be a finite number, got NaN"},
		{"train: {lr: .inf}", "train.lr: must be a finite number, got +Inf"},
		{"train: {lr: 0}", "train.lr: must be positive, got 0"},
		{"train: {lr: -1e-4}", "train.lr: must be positive"},
		{"train: {beta1: 1.5}", "train.beta1: must be in [0, 1), got 1.5"},
		{"train: {beta2: 1}", "train.beta2: must be in [0, 1), got 1"},
		{"train: {beta1: -0.1}", "train.beta1"},
		{"train: {eps: 0}", "train.eps: must be in (0, 1], got 0"},
		{"train: {eps: .nan}", "train.eps: must be a finite number"},
		{"train: {weight_decay: -0.01}", "train.weight_decay"},
		{"train: {weight_decay: .inf}", "train.weight_decay: must be a finite number"},
		{"train: {warmup_ratio: 1.5}", "train.warmup_ratio: must be in [0, 1)"},
		{"train: {warmup_steps: -1}", "train.warmup_steps: must not be negative"},
		{"train: {warmup_steps: 3, warmup_ratio: 0.1}", "set one of them"},
		{"train: {max_grad_norm: -1}", "train.max_grad_norm: must not be negative"},
		{"train: {max_grad_norm: .nan}", "train.max_grad_norm: must be a finite number"},
		{"train: {epochs: .nan}", "train.epochs: must be a finite number"},
		{"train: {epochs: 0}", "train.epochs and train.max_steps are both 0"},
		{"train: {max_steps: -5}", "train.max_steps: must not be negative"},
		{"train: {log_every: 0}", "train.log_every: must be at least 1, got 0"},
		{"train: {sample_every: 5, sample_tokens: 0}", "train.sample_tokens: must be at least 1"},
		{"train: {save_every: -1}", "train.save_every: must not be negative"},
		{"lora: {dropout: .nan}", "lora.dropout: must be a finite number"},
		{"lora: {alpha: 0}", "lora.alpha: must be positive, got 0"},
		{"lora: {r: 0}", "lora.r: must be at least 1, got 0"},
		{"method: dpo\ndpo: {beta: .inf}", "dpo.beta: must be a finite number"},
		{"method: dpo\ndpo: {label_smoothing: .nan}", "dpo.label_smoothing: must be a finite number"},
		{"method: ppo", "method: unknown \"ppo\""},
		{"backend: tpu", "backend: unknown \"tpu\""},
		{"data: {train_on: everything}", "data.train_on: unknown \"everything\""},
		{"data: {eval_split: .nan}", "data.eval_split: must be a finite number"},
		{"train: {lr: 1e-4, lerning_rate: 1e-4}", "line 3: train.lerning_rate: unknown key; did you mean train.lr?"},
	} {
		path := writeTinyRunFile(t, tc.yaml+"\n")
		_, err := engine.LoadRunConfig(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("%s: error %v, want %s: …%s…", tc.yaml, err, path, tc.want)
		}
	}
}

// TestRunFileChoosesItsOwnWarmupAndLength: a run file that sets one way of
// counting warm-up or length replaces the method default's other one
// (LoRA's preset counts warm-up in steps and length in epochs).
func TestRunFileChoosesItsOwnWarmupAndLength(t *testing.T) {
	cfg, err := engine.LoadRunConfig(writeTinyRunFile(t, "train: {warmup_ratio: 0.1, max_steps: 30}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Train.WarmupSteps != 0 || cfg.Train.WarmupRatio != 0.1 || cfg.Train.Epochs != 0 || cfg.Train.MaxSteps != 30 {
		t.Errorf("train %+v, want warm-up ratio 0.1 alone and 30 steps", cfg.Train)
	}
	// Untouched settings keep the preset's values, explicit zeros stay zero.
	cfg, err = engine.LoadRunConfig(writeTinyRunFile(t, "train: {weight_decay: 0, max_grad_norm: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Train.WeightDecay != 0 || cfg.Train.MaxGradNorm != 0 || cfg.Train.WarmupSteps != 5 || cfg.Train.LR != 2e-4 {
		t.Errorf("train %+v, want weight decay and clipping off, the rest the lora preset's", cfg.Train)
	}
}

// TestFillDefaultsKeepsTheCallersWarmup: Go code that names a warm-up in
// steps gets no preset warmup_ratio beside it (full and dpo count warm-up
// as a ratio), and one that names a ratio gets no preset warmup_steps
// (lora); a caller naming both is still refused, naming both fields.
func TestFillDefaultsKeepsTheCallersWarmup(t *testing.T) {
	model, data := abs("../testdata/tiny-llama"), abs("../testdata/datasets/tiny-chat.jsonl")
	for _, method := range []string{"lora", "full", "dpo"} {
		for _, tc := range []engine.TrainConfig{{WarmupSteps: 2}, {WarmupRatio: 0.2}, {MaxSteps: 7}} {
			cfg := engine.RunConfig{Model: model, Method: method, Data: engine.DataConfig{Path: data}, Train: tc}
			if err := cfg.FillDefaults(); err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("%s with %+v: %v", method, tc, err)
			}
			got := cfg.Train
			if tc.WarmupSteps != 0 || tc.WarmupRatio != 0 {
				if got.WarmupSteps != tc.WarmupSteps || got.WarmupRatio != tc.WarmupRatio {
					t.Errorf("%s: warm-up %d steps, ratio %g; want the caller's %d, %g", method, got.WarmupSteps, got.WarmupRatio, tc.WarmupSteps, tc.WarmupRatio)
				}
			}
			if tc.MaxSteps != 0 && (got.MaxSteps != 7 || got.Epochs != 0) {
				t.Errorf("%s: %d steps, %g epochs; want the caller's 7 steps alone", method, got.MaxSteps, got.Epochs)
			}
		}
		cfg := engine.RunConfig{Model: model, Method: method, Data: engine.DataConfig{Path: data},
			Train: engine.TrainConfig{WarmupSteps: 2, WarmupRatio: 0.2}}
		if err := cfg.FillDefaults(); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "train.warmup_steps and train.warmup_ratio") {
			t.Errorf("%s with both warm-ups: error %v, want one naming both fields", method, err)
		}
	}
}

// TestSavedRunFileRoundTrips: what a run directory keeps as run.yaml reads
// back to the same settings, zeros included (a field the saved file left
// out would come back as the method's default).
func TestSavedRunFileRoundTrips(t *testing.T) {
	cfg, err := engine.LoadRunConfig(writeTinyRunFile(t, "train: {warmup_steps: 0, beta1: 0, keep_checkpoints: 0, log_every: 3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := engine.DecodeRunConfig(js)
	if err != nil {
		t.Fatal(err)
	}
	// The file left data.max_length out (to be fitted to the model when
	// the run starts); the saved copy records a length.
	cfg.FitMaxLength = false
	if !reflect.DeepEqual(again, cfg) {
		t.Errorf("saved as\n%s\nread back as\n%+v\nwant\n%+v", js, again, cfg)
	}
}

// TestRunFileNamesBadKeysAndValues: a key the run file cannot have, or a
// value of the wrong kind, is said by its line and run-file key (and what
// the key wants, or the key meant), not by the Go type the yaml package
// names ("field learning_rate not found in type engine.TrainConfig",
// "cannot unmarshal !!str `fast` into float64").
func TestRunFileNamesBadKeysAndValues(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"train: {learning_rate: 0.001}", "line 3: train.learning_rate: unknown key; did you mean train.lr? (train takes epochs, max_steps,"},
		{"train:\n  lr: fast", "line 4: train.lr: \"fast\" is not a number"},
		{"train: {epochs: many}", "line 3: train.epochs: \"many\" is not a number"},
		{"train: {micro_batch: 1.5}", "line 3: train.micro_batch: \"1.5\" is not a whole number"},
		{"train: {sample_prompts: [a, [b]]}", "line 3: train.sample_prompts[1]: a list is not a single value (text)"},
		{"lora: {target_modules: q}", "line 3: lora.target_modules: \"q\" is not a list"},
		{"lora: {lora_alpha: 16}", "line 3: lora.lora_alpha: unknown key; did you mean lora.alpha?"},
		{"train: {gradient_accumulation_steps: 4}", "did you mean train.grad_accum?"},
		{"loar: {r: 4}", "line 3: loar: unknown key; did you mean lora? (a run file takes name, model, method,"},
		{"train: 5", "line 3: train: \"5\" is not a mapping of keys"},
		{"data: {packing: maybe}", "line 2: data.packing: \"maybe\" is not true or false"},
	} {
		path := writeTinyRunFile(t, tc.yaml+"\n")
		_, err := engine.LoadRunConfig(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("%s: error %v, want %s: …%s…", tc.yaml, err, path, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "engine.") || strings.Contains(err.Error(), "unmarshal")) {
			t.Errorf("%s: error %v names Go types", tc.yaml, err)
		}
	}
}

// FuzzRunFileErrors decodes arbitrary run files: no panic, and an error
// about a key or value (the yaml package's type errors) says its line.
func FuzzRunFileErrors(f *testing.F) {
	for _, s := range []string{
		"model: m\ntrain: {learning_rate: 0.001}\n",
		"model: m\ntrain:\n  lr: fast\n",
		"train: {sample_prompts: [a, [b, {c: d}]]}\nlora: {target_modules: q}\nloar: 3\n",
		"data: {path: x, format: [1], columns: {a: [b]}}\n",
		"train: 5\ngrpo: {rewards: [{type: [x]}]}\n",
		"[1, 2]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, err := engine.DecodeRunConfig([]byte(s))
		if err == nil {
			return
		}
		if msg := err.Error(); strings.Contains(msg, "not found in type") && !strings.HasPrefix(msg, "yaml: ") {
			for _, part := range strings.Split(msg, "; ") {
				if !strings.HasPrefix(part, "line ") {
					t.Fatalf("a part of %q does not say its line", msg)
				}
			}
		}
	})
}
