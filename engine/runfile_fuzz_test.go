package engine_test

import (
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"whet/engine"
)

// FuzzRunConfigRoundTrip reads arbitrary run files. A file that decodes and
// validates is saved as a run directory's run.yaml is (yaml.Marshal of the
// config), and that copy must read back to the same settings and validate
// again: a resumed run, whet runs and the studio read the saved copy, and a
// setting that came back different (a 0 dropped and replaced by the
// method's default, a string that no longer parses) would change the run.
func FuzzRunConfigRoundTrip(f *testing.F) {
	for _, s := range []string{
		"model: m\ndata: {path: d.jsonl}\n",
		"model: m\nmethod: qlora\ndata: {path: d.jsonl, template: chatml}\nlora: {r: 8, alpha: 16, target_modules: [q, v]}\ntrain: {warmup_steps: 0, beta1: 0, log_every: 3}\n",
		"model: m\nmethod: full\ndata: {path: d.jsonl}\ntrain: {max_steps: 10, lr: 1e-5, sample_prompts: ['a: b', '#c']}\n",
		"model: m\nmethod: dpo\ndata: {path: d.jsonl}\ndpo: {beta: 0.2, loss_type: ipo}\n",
		"model: m\nmethod: grpo\ndata: {path: d.jsonl}\ngrpo: {min_p: 0, epsilon_high: 0.28, rewards: [{type: regex, pattern: '\\?$', weight: 2}]}\n",
		"name: r1\nmodel: org/name@main\nbackend: cpu\ndata: {path: d.jsonl}\nparallel: {ranks: 2, bucket_mb: 0.5}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := engine.DecodeRunConfig([]byte(s))
		if err != nil || cfg.Validate() != nil {
			return
		}
		saved, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("a valid config does not save: %v", err)
		}
		again, err := engine.DecodeRunConfig(saved)
		if err != nil {
			t.Fatalf("run file\n%s\nsaved as\n%s\ndoes not read back: %v", s, saved, err)
		}
		// The saved copy records data.max_length, so it no longer asks for
		// the length to be fitted to the model (FitMaxLength, 1957513):
		// the run fits it before saving.
		want := cfg
		want.FitMaxLength = false
		if !reflect.DeepEqual(again, want) {
			t.Fatalf("run file\n%s\nsaved as\n%s\nreads back as\n%+v\nwant\n%+v", s, saved, again, want)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("run file\n%s\nsaved as\n%s\nno longer validates: %v", s, saved, err)
		}
	})
}
