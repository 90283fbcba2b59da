package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// The reference files are made by tools/reference/make_reference.py with
// PyTorch and transformers (float32, eager attention) on the GPU machine.
var referenceModels = []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3", "tiny-gemma2", "tiny-phi3"}

// The models with a DPO reference (tools/reference/make_dpo_reference.py): one of each
// loss-relevant shape is enough, since DPO only adds a loss on top of the forward.
var dpoReferenceModels = []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3", "tiny-phi3"}

const refTol = 1e-4

type refCase struct {
	name  string
	dir   string
	state *safetensors.File
	meta  map[string]any
	batch *datasets.Batch
}

func openReference(t *testing.T, name string) *refCase {
	t.Helper()
	root := filepath.Join("..", "testdata")
	st, err := safetensors.Open(filepath.Join(root, "reference", name+".safetensors"))
	if err != nil {
		t.Fatalf("reference state: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	rc := &refCase{name: name, dir: filepath.Join(root, name), state: st}
	if js, err := os.ReadFile(filepath.Join(root, "reference", name+".json")); err == nil {
		json.Unmarshal(js, &rc.meta)
	}
	ids := mustI32(t, st, "input_ids")
	rc.batch = &datasets.Batch{Tokens: ids, Targets: mustI32(t, st, "targets"),
		Positions: mustI32(t, st, "positions"), SeqStarts: mustI32(t, st, "seq_starts")}
	return rc
}

func mustI32(t *testing.T, f *safetensors.File, name string) []int32 {
	t.Helper()
	v, err := f.Int32(name)
	if err != nil {
		t.Fatalf("reference %s: %v", name, err)
	}
	return v
}

// countPrefixed is how many of f's tensors have names that start with prefix.
func countPrefixed(f *safetensors.File, prefix string) int {
	n := 0
	for _, name := range f.Names() {
		if strings.HasPrefix(name, prefix) {
			n++
		}
	}
	return n
}

// checkRefLoRA compares r's loss with the reference's lora_loss and each
// trainable parameter's gradient with its lora_grad.NAME (refName gives a
// parameter's NAME), and checks that the reference has no more adapter
// gradients than m has trainable parameters.
func checkRefLoRA(t *testing.T, m *engine.Model, rc *refCase, r engine.StepResult, refName func(*engine.Param) string) {
	t.Helper()
	want := float64(mustF32(t, rc.state, "lora_loss")[0])
	if got := r.LossSum / float64(r.Count); math.Abs(got-want)/want > refTol {
		t.Errorf("LoRA loss %.7f, reference %.7f", got, want)
	}
	n := 0
	for _, p := range m.TrainableParams() {
		if e := relErr(download(t, m, p.Grad), mustF32(t, rc.state, "lora_grad."+refName(p))); e > refTol {
			t.Errorf("LoRA grad %s relative error %.3g > %g", p.Name, e, refTol)
		}
		n++
	}
	if inFile := countPrefixed(rc.state, "lora_grad."); n != inFile {
		t.Errorf("%d LoRA tensors trainable, the reference has %d", n, inFile)
	}
}

func mustF32(t *testing.T, f *safetensors.File, name string) []float32 {
	t.Helper()
	v, err := f.Float32(name)
	if err != nil {
		t.Fatalf("reference %s: %v", name, err)
	}
	return v
}

// relErr is ||got-want|| / ||want|| (or the absolute norm when want is 0).
func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func loadRefModel(t *testing.T, rc *refCase) *engine.Model {
	t.Helper()
	m, err := engine.LoadModel(rc.dir, cpu.New())
	if err != nil {
		t.Fatalf("load %s: %v", rc.dir, err)
	}
	return m
}

func download(t *testing.T, m *engine.Model, x engine.Tensor) []float32 {
	t.Helper()
	v := make([]float32, x.Len())
	if err := m.B.Download(x, v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReferenceLogitsAndLoss(t *testing.T) {
	for _, name := range referenceModels {
		t.Run(name, func(t *testing.T) {
			rc := openReference(t, name)
			m := loadRefModel(t, rc)
			acts, err := m.NewActivations(len(rc.batch.Tokens), false)
			if err != nil {
				t.Fatal(err)
			}
			logits, err := acts.Logits(rc.batch)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(logits, mustF32(t, rc.state, "logits")); e > refTol {
				t.Errorf("logits relative error %.3g > %g", e, refTol)
			}
			r, err := acts.ForwardBackward(rc.batch, 0, false, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := float64(mustF32(t, rc.state, "loss")[0])
			got := r.LossSum / float64(r.Count)
			if math.Abs(got-want)/want > refTol {
				t.Errorf("loss %.7f, transformers %.7f", got, want)
			}
		})
	}
}

func TestReferenceFullGradients(t *testing.T) {
	for _, name := range referenceModels {
		t.Run(name, func(t *testing.T) {
			rc := openReference(t, name)
			m := loadRefModel(t, rc)
			if err := m.MakeAllTrainable(); err != nil {
				t.Fatal(err)
			}
			acts, err := m.NewActivations(len(rc.batch.Tokens), false)
			if err != nil {
				t.Fatal(err)
			}
			count := rc.batch.NumTargets()
			if _, err := acts.ForwardBackward(rc.batch, float32(1/float64(count)), true, 0); err != nil {
				t.Fatal(err)
			}
			checked := 0
			for _, p := range m.TrainableParams() {
				want := mustF32(t, rc.state, "grad."+p.Name)
				if e := relErr(download(t, m, p.Grad), want); e > refTol {
					t.Errorf("grad %s relative error %.3g > %g", p.Name, e, refTol)
				}
				checked++
			}
			if inFile := countPrefixed(rc.state, "grad."); checked != inFile {
				t.Errorf("checked %d gradients, reference has %d", checked, inFile)
			}
		})
	}
}

// addRefLoRA attaches r=4, alpha=8 adapters on all seven linears and loads
// the reference's fixed A and B.
func addRefLoRA(t *testing.T, m *engine.Model, rc *refCase) {
	t.Helper()
	if err := m.AddLoRA(engine.LoRAOptions{Rank: 4, Alpha: 8, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	for _, lin := range m.Linears() {
		for _, p := range []*engine.Param{lin.LoRA.A, lin.LoRA.B} {
			v := mustF32(t, rc.state, "lora."+p.Name)
			if err := m.B.Upload(p.Master, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := m.SyncFromMasters(); err != nil {
		t.Fatal(err)
	}
}

func TestReferenceLoRAGradients(t *testing.T) {
	for _, name := range referenceModels {
		t.Run(name, func(t *testing.T) {
			rc := openReference(t, name)
			m := loadRefModel(t, rc)
			addRefLoRA(t, m, rc)
			acts, err := m.NewActivations(len(rc.batch.Tokens), false)
			if err != nil {
				t.Fatal(err)
			}
			count := rc.batch.NumTargets()
			r, err := acts.ForwardBackward(rc.batch, float32(1/float64(count)), true, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Every adapter gradient of the reference is checked: the
			// family's "all" is the modules the reference adapted.
			checkRefLoRA(t, m, rc, r, func(p *engine.Param) string { return p.Name })
		})
	}
}

// refTrainer reproduces the reference's 10 steps: AdamW (0.9, 0.999, 1e-8,
// wd 0.01 on every parameter), warmup 2 then cosine, clip at 1.0.
func refTrainer(t *testing.T, m *engine.Model, rc *refCase, lr float64, checkpointing bool) *engine.Trainer {
	acts, err := m.NewActivations(len(rc.batch.Tokens), checkpointing)
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.TrainConfig{MicroBatch: 1, GradAccum: 1, LR: lr, MaxGradNorm: 1.0, MaxSteps: 10}
	return &engine.Trainer{Model: m, Acts: acts, Cfg: cfg, Train: []datasets.Batch{*rc.batch}, Seed: 1,
		Opt:   &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, DecayAll: true},
		Sched: engine.Schedule{Kind: "cosine", Warmup: 2, Total: 10}}
}

func checkCurve(t *testing.T, tr *engine.Trainer, rc *refCase, prefix string) {
	t.Helper()
	losses := mustF32(t, rc.state, prefix+"_losses")
	lrs := mustF32(t, rc.state, prefix+"_lrs")
	norms := mustF32(t, rc.state, prefix+"_grad_norms")
	for i := range losses {
		ev, err := tr.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		if d := math.Abs(ev.Loss-float64(losses[i])) / float64(losses[i]); d > refTol {
			t.Errorf("step %d loss %.7f, reference %.7f (rel %.2g)", i, ev.Loss, losses[i], d)
		}
		if d := math.Abs(ev.LR - float64(lrs[i])); d > 1e-9+1e-6*float64(lrs[i]) {
			t.Errorf("step %d lr %.8g, reference %.8g", i, ev.LR, lrs[i])
		}
		if d := math.Abs(ev.GradNorm-float64(norms[i])) / float64(norms[i]); d > refTol {
			t.Errorf("step %d grad norm %.6g, reference %.6g", i, ev.GradNorm, norms[i])
		}
	}
}

func TestReferenceFullTrainingCurve(t *testing.T) {
	for _, name := range referenceModels {
		t.Run(name, func(t *testing.T) {
			rc := openReference(t, name)
			m := loadRefModel(t, rc)
			if err := m.MakeAllTrainable(); err != nil {
				t.Fatal(err)
			}
			checkCurve(t, refTrainer(t, m, rc, 1e-3, false), rc, "full")
		})
	}
}

func TestReferenceLoRATrainingCurve(t *testing.T) {
	for _, name := range referenceModels {
		for _, ckpt := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/checkpointing=%v", name, ckpt), func(t *testing.T) {
				rc := openReference(t, name)
				m := loadRefModel(t, rc)
				addRefLoRA(t, m, rc)
				checkCurve(t, refTrainer(t, m, rc, 1e-2, ckpt), rc, "lora")
			})
		}
	}
}

// TestReferenceGenerateGreedy: greedy decoding with the KV cache equals
// transformers' generate(do_sample=False) on the untrained tiny models.
func TestReferenceGenerateGreedy(t *testing.T) {
	for _, name := range referenceModels {
		t.Run(name, func(t *testing.T) {
			rc := openReference(t, name)
			m := loadRefModel(t, rc)
			prompt := mustI32(t, rc.state, "gen_prompt")
			want := mustI32(t, rc.state, "gen_output")
			g, err := m.NewGenerator(len(prompt) + len(want))
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.Generate(context.Background(), prompt, engine.Greedy(len(want), nil), nil)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("greedy ids\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestReferenceRopeTables: every rotary table transformers built (one per
// layer type for Gemma 3; LongRoPE's short factors below the original
// context) equals the engine's inverse frequencies.
func TestReferenceRopeTables(t *testing.T) {
	kinds := map[string]engine.RopeKind{
		"rope.inv_freq":                   {},
		"rope.full_attention_inv_freq":    {},
		"rope.sliding_attention_inv_freq": {Local: true},
		"rope.global_inv_freq":            {},
		"rope.local_inv_freq":             {Local: true},
		// transformers keeps a copy of each table as built, to restore it after a
		// dynamic rope type has rescaled it; for static types it equals the table.
		"rope.full_attention_original_inv_freq":    {},
		"rope.sliding_attention_original_inv_freq": {Local: true},
	}
	for _, name := range referenceModels {
		t.Run(name, func(t *testing.T) {
			rc := openReference(t, name)
			cfg, err := engine.LoadModelConfig(rc.dir)
			if err != nil {
				t.Fatal(err)
			}
			checked := 0
			for _, tensor := range rc.state.Names() {
				if !strings.HasPrefix(tensor, "rope.") {
					continue
				}
				kind, ok := kinds[tensor]
				if !ok {
					t.Errorf("reference table %s: the engine has no table of that name", tensor)
					continue
				}
				want := mustF32(t, rc.state, tensor)
				inv, _ := engine.RopeInvFreqOf(cfg, kind)
				got := make([]float32, len(inv))
				for i, f := range inv {
					got[i] = float32(f)
				}
				if len(got) != len(want) {
					t.Errorf("%s: %d frequencies, transformers %d", tensor, len(got), len(want))
					continue
				}
				if e := relErr(got, want); e > 1e-6 {
					t.Errorf("%s relative error %.3g\n got %v\nwant %v", tensor, e, got, want)
				}
				checked++
			}
			if checked == 0 {
				t.Error("the reference holds no rotary table")
			}
		})
	}
}
