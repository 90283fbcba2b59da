package engine_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/testmodels"
)

// bf16Backend is engine/cpu claiming bf16 compute (engine.ComputeDTyper),
// as the CUDA backend does.
type bf16Backend struct{ *cpu.Backend }

func (bf16Backend) ComputeDType() engine.DType { return engine.BF16 }

// TestMllamaComputeDType: bf16 by default where the backend computes in
// bf16, float32 with WHET_MLLAMA_BF16=0 or on a float32 backend; and
// VisionComputeDType, which the memory plans follow, says the same by
// backend name.
func TestMllamaComputeDType(t *testing.T) {
	bf := bf16Backend{cpu.New()}
	for env, want := range map[string]engine.DType{"": engine.BF16, "1": engine.BF16, "0": engine.F32} {
		t.Setenv(engine.MllamaBF16Env, env)
		if d := engine.MllamaComputeDType(bf); d != want {
			t.Errorf("%s=%q on a bf16 backend: %s, want %s", engine.MllamaBF16Env, env, d, want)
		}
		if d := engine.VisionComputeDType(engine.VisionMllama, "cuda"); d != want {
			t.Errorf("%s=%q: VisionComputeDType(mllama, cuda) %s, want %s", engine.MllamaBF16Env, env, d, want)
		}
		if d := engine.MllamaComputeDType(cpu.New()); d != engine.F32 {
			t.Errorf("%s=%q on the float32 CPU backend: %s, want f32", engine.MllamaBF16Env, env, d)
		}
		if d := engine.VisionComputeDType(engine.VisionMllama, "cpu"); d != engine.F32 {
			t.Errorf("%s=%q: VisionComputeDType(mllama, cpu) %s, want f32", engine.MllamaBF16Env, env, d)
		}
	}
	cfg := tinyMllamaConfigParsed(t)
	if _, err := engine.NewMllamaModelWith(*cfg, cpu.New(), engine.MllamaOptions{Compute: engine.I32}); err == nil || !strings.Contains(err.Error(), "compute dtype i32") {
		t.Errorf("compute i32: %v, want a refusal naming the dtype", err)
	}
}

// tinyMllamaBF16Pair loads the tiny Mllama of seed from the same files in
// float32 and in bf16 compute (engine/cpu holds bf16 tensors as rounded
// float32 values, rounding whatever is written into them), both with
// NF4 language-model linears or not, with the same LoRA (rank 4, every
// language-model linear and the projector; A and B random), the final norm
// and a cross-attention gate trainable.
func tinyMllamaBF16Pair(t *testing.T, seed uint64, nf4 bool) (f, b *engine.MllamaModel, cfg *engine.MllamaConfig) {
	t.Helper()
	cfg = tinyMllamaConfigParsed(t)
	dir := writeMllama(t, testmodels.TinyMllamaConfig, randomMllamaTensors(t, cfg, rand.New(rand.NewPCG(seed, 1))))
	var ms [2]*engine.MllamaModel
	for i, dt := range []engine.DType{engine.F32, engine.BF16} {
		m, err := engine.LoadMllamaWith(dir, cpu.New(), engine.MllamaOptions{NF4Linears: nf4, Compute: dt})
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		t.Cleanup(m.Free)
		if err := m.AddLoRA(engine.MllamaLoRA{Rank: 4, Alpha: 8, Projector: true}); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		for _, p := range m.Params() {
			if strings.Contains(p.Name, ".lora_") {
				v := make([]float32, p.W.Len())
				for j := range v {
					v[j] = float32(rng.NormFloat64() * 0.1)
				}
				if err := m.SetValues(p, v); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, name := range []string{"language_model.model.norm.weight", "language_model.model.layers.1.cross_attn_attn_gate"} {
			if err := m.MakeTrainable(m.Param(name)); err != nil {
				t.Fatal(err)
			}
		}
		ms[i] = m
	}
	return ms[0], ms[1], cfg
}

// checkBF16Layout: every base weight of b that is not NF4 is bf16; every
// trainable parameter has a float32 master of its own and a float32
// gradient, its compute copy bf16 and equal to its master rounded.
func checkBF16Layout(t *testing.T, b *engine.MllamaModel) {
	t.Helper()
	for _, p := range b.Params() {
		switch {
		case p.Quant != nil:
			if p.W != nil {
				t.Errorf("%s is NF4 and also has W", p.Name)
			}
		case p.W.DType() != engine.BF16:
			t.Errorf("%s is %s in a bf16 model", p.Name, p.W.DType())
		}
		if !p.Trainable {
			continue
		}
		if p.Master == nil || p.Master == p.W || p.Master.DType() != engine.F32 || p.Grad.DType() != engine.F32 {
			t.Errorf("%s: master %v (W %v), grad %v: want a float32 master of its own and a float32 gradient", p.Name, p.Master, p.W, p.Grad)
			continue
		}
		w, m := make([]float32, p.W.Len()), make([]float32, p.W.Len())
		if err := b.B.Download(p.W, w); err != nil {
			t.Fatal(err)
		}
		if err := b.B.Download(p.Master, m); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if w[i] != cpu.RoundBF16(m[i]) {
				t.Errorf("%s[%d]: compute copy %v, master %v (rounded %v)", p.Name, i, w[i], m[i], cpu.RoundBF16(m[i]))
				break
			}
		}
	}
}

// maxAbsRel is the largest |a-b| over the largest |b|.
func maxAbsRel(a, b []float32) float64 {
	var d, ref float64
	for i := range b {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		ref = max(ref, math.Abs(float64(b[i])))
	}
	if len(a) != len(b) || math.IsNaN(d) {
		return math.Inf(1)
	}
	return d / ref
}

// gradGap is how far model b's gradient of the parameter name is from
// model f's, the reference (relErr: the relative norm of the difference).
func gradGap(t *testing.T, f, b *engine.MllamaModel, name string) float64 {
	t.Helper()
	p, q := f.Param(name), b.Param(name)
	gw, gg := make([]float32, p.Grad.Len()), make([]float32, p.Grad.Len())
	if err := f.B.Download(p.Grad, gw); err != nil {
		t.Fatal(err)
	}
	if err := b.B.Download(q.Grad, gg); err != nil {
		t.Fatal(err)
	}
	return relErr(gg, gw)
}

// TestMllamaBF16MatchesF32 runs the tiny Llama 3.2 Vision in bf16 compute
// (MllamaOptions.Compute) on the CPU against the float32 model from the
// same weights: the layout (bf16 weights and activations, float32 masters
// and gradients), the vision tower's output, every logit and the loss of a
// forward within bf16's error and not equal (the bf16 path really rounds),
// every trainable gradient within 5 % (relative norm of the difference),
// then 20 AdamW steps whose losses stay within 2 % of float32's while they
// fall, the compute copies the masters rounded after every step.
func TestMllamaBF16MatchesF32(t *testing.T) {
	f, b, cfg := tinyMllamaBF16Pair(t, 31, false)
	checkBF16Layout(t, b)
	rng := rand.New(rand.NewPCG(32, 33))
	samples := append(tinyMllamaSamples(cfg, rng), mllamaSample(cfg, rng, 7, nil, nil, 1))

	want, err := f.Run(samples, true, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Run(samples, true, true)
	if err != nil {
		t.Fatalf("bf16: %v", err)
	}
	for i := range want.Logits {
		if len(want.VisionOut[i]) > 0 {
			d := maxAbsRel(got.VisionOut[i], want.VisionOut[i])
			t.Logf("sample %d: vision output %.3g, logits %.3g of the largest", i, d, maxAbsRel(got.Logits[i], want.Logits[i]))
			if d > 3e-2 || d == 0 {
				t.Errorf("sample %d: the bf16 vision output differs from float32's by %.3g of its largest value (want (0, 3e-2])", i, d)
			}
		}
		if d := maxAbsRel(got.Logits[i], want.Logits[i]); d > 3e-2 || d == 0 {
			t.Errorf("sample %d: bf16 logits differ from float32's by %.3g of the largest (want (0, 3e-2])", i, d)
		}
	}
	if d := math.Abs(got.Loss-want.Loss) / want.Loss; d > 1e-2 {
		t.Errorf("loss bf16 %.5f, f32 %.5f", got.Loss, want.Loss)
	}
	nGrads := 0
	for _, p := range f.Params() {
		if !p.Trainable {
			continue
		}
		if d := gradGap(t, f, b, p.Name); d > 5e-2 || math.IsNaN(d) {
			t.Errorf("%s: bf16 gradient differs from float32's by %.3g (relative norm)", p.Name, d)
		}
		nGrads++
	}
	// 7 linears × 2 matrices × 3 layers, the projector's 2, norm, gate.
	if want := 7*2*cfg.Text.NumLayers + 4; nGrads != want {
		t.Errorf("%d trainable tensors compared, want %d", nGrads, want)
	}
	if t.Failed() {
		return
	}

	const steps = 20
	var lf, lb []float64
	for s := range steps {
		batch := []engine.MllamaSample{samples[s%len(samples)], samples[(s+1)%len(samples)]}
		for i, m := range []*engine.MllamaModel{f, b} {
			if err := m.ZeroGrads(); err != nil {
				t.Fatal(err)
			}
			r, err := m.Run(batch, true, false)
			if err != nil {
				t.Fatalf("step %d: %v", s+1, err)
			}
			if err := m.AdamW(engine.AdamWParams{LR: 3e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: s + 1}); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				lf = append(lf, r.Loss)
			} else {
				lb = append(lb, r.Loss)
			}
		}
	}
	t.Logf("loss f32  %v", lf)
	t.Logf("loss bf16 %v", lb)
	for s := range steps {
		if d := math.Abs(lb[s]-lf[s]) / lf[s]; d > 2e-2 || math.IsNaN(d) {
			t.Errorf("step %d: bf16 loss %.5f, float32 %.5f (%.2f %%)", s+1, lb[s], lf[s], 100*d)
		}
	}
	if !(lf[steps-1] < 0.9*lf[0]) || !(lb[steps-1] < 0.9*lb[0]) {
		t.Errorf("the losses did not fall (f32 %.4f -> %.4f, bf16 %.4f -> %.4f): the comparison would measure nothing", lf[0], lf[steps-1], lb[0], lb[steps-1])
	}
	checkBF16Layout(t, b)

	// The PEFT adapter holds the float32 masters, which a bf16 model
	// loading it takes back exactly.
	dir := t.TempDir()
	if err := engine.SaveMllamaAdapter(dir, b, engine.MllamaLoRA{Rank: 4, Alpha: 8}, "tiny"); err != nil {
		t.Fatal(err)
	}
	c, err := engine.NewMllamaModelWith(*cfg, cpu.New(), engine.MllamaOptions{Compute: engine.BF16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	if _, err := engine.LoadMllamaAdapter(dir, c); err != nil {
		t.Fatal(err)
	}
	checkBF16Layout(t, c)
	n := 0
	for _, p := range b.Params() {
		if !strings.Contains(p.Name, ".lora_") {
			continue
		}
		want, err := b.WeightValues(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.WeightValues(c.Param(p.Name))
		if err != nil {
			t.Fatal(err)
		}
		rounded := 0
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s[%d]: reloaded %v, saved master %v", p.Name, i, got[i], want[i])
			}
			if want[i] != cpu.RoundBF16(want[i]) {
				rounded++
			}
		}
		if rounded > 0 {
			n++
		}
	}
	if n == 0 {
		t.Errorf("every saved adapter value is a bf16 value: the adapter holds the compute copies, not the masters")
	}
}

// TestMllamaBF16QLoRA: NF4 language-model linears with the rest in bf16
// (the QLoRA layout the CUDA backend runs by default)
// give the loss and gradients of NF4 with float32 compute within bf16's
// error, and the model's weights take less memory.
func TestMllamaBF16QLoRA(t *testing.T) {
	f, b, cfg := tinyMllamaBF16Pair(t, 34, true)
	checkBF16Layout(t, b)
	rng := rand.New(rand.NewPCG(35, 36))
	samples := tinyMllamaSamples(cfg, rng)
	want, err := f.Run(samples, true, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Run(samples, true, false)
	if err != nil {
		t.Fatalf("bf16: %v", err)
	}
	if d := math.Abs(got.Loss-want.Loss) / want.Loss; d > 1e-2 || d == 0 {
		t.Errorf("loss nf4+bf16 %.6f, nf4+f32 %.6f (want within 1 %%, not equal)", got.Loss, want.Loss)
	}
	for _, name := range []string{"language_model.model.layers.1.cross_attn.q_proj.lora_B.weight", "multi_modal_projector.lora_A.weight", "language_model.model.norm.weight"} {
		if d := gradGap(t, f, b, name); d > 5e-2 || math.IsNaN(d) {
			t.Errorf("%s: gradient differs by %.3g (relative norm)", name, d)
		}
	}
	var bytes [2]int64
	for i, m := range []*engine.MllamaModel{f, b} {
		for _, p := range m.Params() {
			if p.W != nil && !p.Trainable {
				bytes[i] += int64(p.W.Len() * p.W.DType().Size())
			}
		}
	}
	if bytes[1]*2 != bytes[0] {
		t.Errorf("frozen compute weights: bf16 %d bytes, f32 %d: want half", bytes[1], bytes[0])
	}
}
