package engine_test

import (
	"math"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
)

func TestMasterWeightsRule(t *testing.T) {
	for _, c := range []struct {
		in   string
		bf16 bool
		ok   bool
	}{{"", false, true}, {"fp32", false, true}, {"bf16", true, true}, {"fp16", false, false}, {"BF16", false, false}} {
		got, err := engine.MasterWeights(c.in)
		if (err == nil) != c.ok || got != c.bf16 {
			t.Errorf("MasterWeights(%q) = %v, %v; want bf16=%v ok=%v", c.in, got, err, c.bf16, c.ok)
		}
	}
	for _, mw := range []string{"bf16", "fp16"} {
		rc := engine.RunConfig{Model: abs("../testdata/tiny-llama"), Method: "full",
			Data: engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl")}, Train: engine.TrainConfig{MasterWeights: mw}}
		if err := rc.FillDefaults(); err != nil {
			t.Fatal(err)
		}
		err := rc.Validate()
		if mw == "bf16" && err != nil {
			t.Errorf("train.master_weights: bf16: %v", err)
		}
		if mw == "fp16" && (err == nil || !strings.Contains(err.Error(), "train.master_weights")) {
			t.Errorf("train.master_weights: fp16: error %v, want one naming the key", err)
		}
	}
}

// bf16Neighbours are the bfloat16 values just below and above |x| (with
// x's sign), by truncating and incrementing the kept half.
func bf16Neighbours(x float32) (lo, hi float32) {
	u := math.Float32bits(x) &^ 0xffff
	return math.Float32frombits(u), math.Float32frombits(u + 0x10000)
}

// Over all 2^16 values of the random bits, stochastic rounding lands on
// the two neighbours only, and its mean is x exactly (the sum is exact in
// float64): the rounding is unbiased by construction, not just on average.
func TestRoundBF16StochasticIsUnbiased(t *testing.T) {
	for _, x := range []float32{1.0001, -1.0001, 0.3, -0.3, 3.14159e-5, 1e-39 /* subnormal */, 65504.7, 1, -2, 0, 1.9999999} {
		lo, hi := bf16Neighbours(x)
		var sum float64
		for r := uint32(0); r < 1<<16; r++ {
			y := engine.RoundBF16Stochastic(x, r)
			if y != lo && y != hi {
				t.Fatalf("x=%g r=%d: %g is neither neighbour %g nor %g", x, r, y, lo, hi)
			}
			sum += float64(y)
		}
		if mean := sum / (1 << 16); mean != float64(x) {
			t.Errorf("x=%g: mean over every r is %.10g, want x exactly", x, mean)
		}
	}
	// Exact bf16 values never move.
	for _, x := range []float32{1, -0.5, 0.00390625} {
		for _, r := range []uint32{0, 1, 0x8000, 0xffff} {
			if y := engine.RoundBF16Stochastic(x, r); y != x {
				t.Errorf("bf16 value %g with r=%#x rounds to %g", x, r, y)
			}
		}
	}
	if y := engine.RoundBF16Stochastic(float32(math.Inf(-1)), 0xffff); !math.IsInf(float64(y), -1) {
		t.Errorf("-Inf rounds to %g", y)
	}
	if y := engine.RoundBF16Stochastic(float32(math.NaN()), 0xffff); !math.IsNaN(float64(y)) {
		t.Errorf("NaN rounds to %g", y)
	}
}

// The generator's bits, as the rounding draws them over a tensor, give
// the same mean: the share of elements rounded up is within 5 standard
// deviations of the exact probability, for several seeds.
func TestStochasticBitsRoundWithoutBias(t *testing.T) {
	const n = 1 << 18
	for _, x := range []float32{1.0001, -0.3, 7.77e-3} {
		lo, hi := bf16Neighbours(x)
		p := (float64(x) - float64(lo)) / (float64(hi) - float64(lo)) // P(round to hi)
		for _, key := range []uint64{1, 42, 0xdeadbeef} {
			seed := engine.StepSeed(key, 3)
			up := 0
			for i := uint64(0); i < n; i++ {
				if engine.RoundBF16Stochastic(x, engine.StochasticBits(seed, i)) == hi {
					up++
				}
			}
			sd := math.Sqrt(n * p * (1 - p))
			if d := math.Abs(float64(up) - n*p); d > 5*sd {
				t.Errorf("x=%g key=%d: %d of %d rounded away, expected %.0f ± %.0f", x, key, up, n, n*p, sd)
			}
		}
	}
	if engine.StepSeed(5, 1) == engine.StepSeed(5, 2) || engine.StepSeed(5, 1) == engine.StepSeed(6, 1) {
		t.Error("StepSeed gives the same seed to two steps or two keys")
	}
}

// Updates far below bf16's resolution: with round-to-nearest a bf16
// weight never moves, with stochastic rounding it follows the fp32
// master's trajectory on average. AdamW on a constant gradient steps by
// about lr each time; 1e-4 is a fortieth of bf16's spacing at 1.
func TestBF16MasterFollowsSmallUpdates(t *testing.T) {
	b := cpu.New()
	const n, steps, lr = 1 << 14, 20, 1e-4
	run := func(dt engine.DType, key uint64) []float32 {
		ones := make([]float32, n)
		for i := range ones {
			ones[i] = 1
		}
		param, _ := b.Alloc(dt, n)
		grad, _ := b.Alloc(engine.F32, n)
		m, _ := b.Alloc(engine.F32, n)
		v, _ := b.Alloc(engine.F32, n)
		defer func() { b.Free(param); b.Free(grad); b.Free(m); b.Free(v) }()
		if err := b.Upload(param, ones); err != nil {
			t.Fatal(err)
		}
		if err := b.Fill(grad, 0.5); err != nil {
			t.Fatal(err)
		}
		for s := 1; s <= steps; s++ {
			p := engine.AdamWParams{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: s, RoundSeed: key}
			if err := b.AdamW(param, grad, m, v, p); err != nil {
				t.Fatal(err)
			}
		}
		out := make([]float32, n)
		if err := b.Download(param, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	mean := func(v []float32) float64 {
		var s float64
		for _, x := range v {
			s += float64(x)
		}
		return s / float64(len(v))
	}
	fp32 := run(engine.F32, 0)[0]
	if math.Abs(float64(fp32)-(1-steps*lr)) > 1e-5 {
		t.Fatalf("fp32 master after %d steps: %g, want about %g", steps, fp32, 1-steps*lr)
	}
	// Round to nearest (no key) on a bf16 tensor: the weight never moves.
	for i, x := range run(engine.BF16, 0) {
		if x != 1 {
			t.Fatalf("round to nearest: element %d moved to %g", i, x)
		}
	}
	sr := run(engine.BF16, 77)
	got := mean(sr)
	// Each element's final value is a sum of steps independent roundings
	// of spacing 2^-8: the mean of n such has a spread below 2^-8·sqrt(steps/n).
	if tol := math.Ldexp(1, -8) * math.Sqrt(float64(steps)/n) * 5; math.Abs(got-float64(fp32)) > tol {
		t.Errorf("bf16 masters with stochastic rounding: mean %.7f, fp32 master %.7f (tolerance %.2g)", got, fp32, tol)
	}
	for i, x := range sr {
		if x != engine.RoundBF16Stochastic(x, 0) {
			t.Fatalf("element %d = %g is not a bf16 value", i, x)
		}
	}
	// The same key gives the same weights; another key other weights.
	again := run(engine.BF16, 77)
	other := run(engine.BF16, 78)
	same, diff := true, false
	for i := range sr {
		same = same && sr[i] == again[i]
		diff = diff || sr[i] != other[i]
	}
	if !same || !diff {
		t.Errorf("rerun with the same key bit-equal: %v (want true); another key differs: %v (want true)", same, diff)
	}
}

// A stochastic-rounding AdamW on an F32 tensor and on a BF16 one (a CPU
// run's weights, a GPU run's) give the same values.
func TestBF16MasterSameInEitherStorage(t *testing.T) {
	b := cpu.New()
	const n = 999
	vals := make([]float32, n)
	gv := make([]float32, n)
	for i := range vals {
		vals[i] = engine.RoundBF16Stochastic(float32(math.Sin(float64(i)))*0.3, 0)
		gv[i] = float32(math.Cos(float64(3*i))) * 0.01
	}
	var outs [2][]float32
	for k, dt := range []engine.DType{engine.F32, engine.BF16} {
		param, _ := b.Alloc(dt, n)
		grad, _ := b.Alloc(engine.BF16, n)
		m, _ := b.Alloc(engine.F32, n)
		v, _ := b.Alloc(engine.F32, n)
		if err := b.Upload(param, vals); err != nil {
			t.Fatal(err)
		}
		if err := b.Upload(grad, gv); err != nil {
			t.Fatal(err)
		}
		for s := 1; s <= 3; s++ {
			p := engine.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.1, Step: s, GradScale: 0.7, RoundSeed: 9}
			if err := b.AdamW(param, grad, m, v, p); err != nil {
				t.Fatal(err)
			}
		}
		outs[k] = make([]float32, n)
		if err := b.Download(param, outs[k]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range outs[0] {
		if outs[0][i] != outs[1][i] {
			t.Fatalf("element %d: %g in F32 storage, %g in BF16", i, outs[0][i], outs[1][i])
		}
	}
}

// fullTinyTrainer is a full fine-tuning run of the tiny model on the CPU,
// with fp32 or bf16 masters.
func fullTinyTrainer(t *testing.T, dir string, bf16 bool, steps int) *engine.Trainer {
	t.Helper()
	m := newTiny(t, true, false)
	m.BF16Masters = bf16
	if err := m.MakeAllTrainable(); err != nil {
		t.Fatal(err)
	}
	var rows []datasets.Batch
	for i := 0; i < 6; i++ {
		rows = append(rows, *tinyBatch(m.Cfg.VocabSize, uint64(30+i)))
	}
	a, err := m.NewActivations(2*len(rows[0].Tokens), false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.TrainConfig{MicroBatch: 2, GradAccum: 1, LR: 3e-3, MaxGradNorm: 1, MaxSteps: steps, KeepCheckpoints: 2}
	tr := &engine.Trainer{Model: m, Acts: a, Cfg: cfg, Train: rows, Seed: 42, Dir: dir,
		Opt: &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Seed: 42}}
	tr.Sched = engine.Schedule{Kind: "cosine", Warmup: 2, Total: tr.TotalSteps()}
	return tr
}

func lossesOf(t *testing.T, tr *engine.Trainer) []float64 {
	t.Helper()
	var out []float64
	for tr.Step() < tr.TotalSteps() {
		ev, err := tr.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Loss)
	}
	return out
}

// The tiny model trained with bf16 masters follows the fp32-master run
// over 40 steps (the loss falls from 4.0 to 2.5): every step's loss within
// 2 % of it and the mean gap under 1 %, and both learn (the last loss at
// least 20 % under the first). Every trained weight holds a bf16 value.
func TestBF16MastersTrainLikeFP32(t *testing.T) {
	const steps = 40
	f32 := lossesOf(t, fullTinyTrainer(t, "", false, steps))
	trB := fullTinyTrainer(t, "", true, steps)
	b16 := lossesOf(t, trB)
	worst, mean := 0.0, 0.0
	for i := range f32 {
		rel := math.Abs(b16[i]-f32[i]) / f32[i]
		worst = max(worst, rel)
		mean += rel / steps
		if rel > 0.02 {
			t.Errorf("step %d: loss %.6f with bf16 masters, %.6f with fp32 (%.2f%% apart, bound 2%%)", i+1, b16[i], f32[i], 100*rel)
		}
	}
	if mean > 0.01 {
		t.Errorf("losses %.2f%% apart on average, bound 1%%", 100*mean)
	}
	t.Logf("worst step %.3f%% apart, mean %.3f%%; first loss %.4f, last %.4f (fp32) / %.4f (bf16)", 100*worst, 100*mean, f32[0], f32[steps-1], b16[steps-1])
	for _, l := range [][]float64{f32, b16} {
		if l[steps-1] > 0.8*l[0] {
			t.Errorf("the run did not learn: loss %.4f → %.4f", l[0], l[steps-1])
		}
	}
	for _, p := range trB.Model.TrainableParams() {
		if p.Master != p.W {
			t.Fatalf("%s has a master apart from its compute copy", p.Name)
		}
		v, err := trB.Model.WeightValues(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range v {
			if x != engine.RoundBF16Stochastic(x, 0) {
				t.Fatalf("%s[%d] = %g is not a bf16 value", p.Name, i, x)
			}
		}
	}
}

// A bf16-master run stopped at a checkpoint and resumed makes the
// uninterrupted run's losses to the bit: the rounding's random bits come
// from the seed and the step, which the checkpoint holds.
func TestBF16MastersResumeIsExact(t *testing.T) {
	const steps = 10
	want := lossesOf(t, fullTinyTrainer(t, "", true, steps))
	again := lossesOf(t, fullTinyTrainer(t, "", true, steps))
	for i := range want {
		if again[i] != want[i] {
			t.Fatalf("two uninterrupted runs part at step %d: %.9g vs %.9g", i+1, want[i], again[i])
		}
	}
	dir := t.TempDir()
	a := fullTinyTrainer(t, dir, true, steps)
	for i := 0; i < 4; i++ {
		if _, err := a.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	b := fullTinyTrainer(t, dir, true, steps)
	if ok, err := b.Resume(); err != nil || !ok || b.Step() != 4 {
		t.Fatalf("resume: ok=%v step=%d err=%v", ok, b.Step(), err)
	}
	checkGoesOnAsUninterrupted(t, b, want, "after resume")
}

// Clipping folded into the AdamW step (what the trainer does) gives the
// masters bit for bit that scaling the gradients first (ClipGrads) and
// then stepping does, on a step where the clip bites.
func TestClipFoldedIntoAdamWIsBitEqual(t *testing.T) {
	train := func(folded bool) [][]float32 {
		tr := fullTinyTrainer(t, "", false, 3)
		tr.Cfg.MaxGradNorm = 0.05 // well under the tiny model's gradient norm
		m := tr.Model
		for s := 0; s < 3; s++ {
			if err := m.ZeroGrads(); err != nil {
				t.Fatal(err)
			}
			bt := engine.JoinBatches([]*datasets.Batch{&tr.Train[2*s], &tr.Train[2*s+1]})
			if _, err := tr.Acts.ForwardBackward(bt, float32(1/float64(bt.NumTargets())), true, 5); err != nil {
				t.Fatal(err)
			}
			norm, err := engine.GradNorm(m)
			if err != nil {
				t.Fatal(err)
			}
			coef := engine.ClipCoef(norm, tr.Cfg.MaxGradNorm)
			if coef >= 1 {
				t.Fatalf("step %d: norm %g does not clip at %g", s, norm, tr.Cfg.MaxGradNorm)
			}
			if folded {
				err = tr.Opt.ApplyScaled(m, 1e-3, coef)
			} else {
				if _, err = engine.ClipGrads(m, tr.Cfg.MaxGradNorm); err == nil {
					err = tr.Opt.Apply(m, 1e-3)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		var out [][]float32
		for _, p := range m.TrainableParams() {
			v, err := m.WeightValues(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		return out
	}
	a, b := train(true), train(false)
	for i := range a {
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				t.Fatalf("param %d element %d: %g folded, %g clipped first", i, j, a[i][j], b[i][j])
			}
		}
	}
}

// A run prepared from a run config with train.master_weights: bf16 keeps
// no fp32 masters and trains bf16 values; one with the default keeps fp32
// values; a data-parallel full run refuses bf16 masters by name.
func TestPreparedRunTakesMasterWeights(t *testing.T) {
	for _, mw := range []string{"", "bf16"} {
		cfg := withDefaults(t, engine.RunConfig{Name: "masters", Model: abs("../testdata/tiny-llama"), Method: "full", Backend: "cpu", RunsDir: t.TempDir(),
			Data:  engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 64, Packing: true, Seed: 1},
			Train: engine.TrainConfig{MaxSteps: 2, MicroBatch: 1, GradAccum: 1, LR: 1e-3, Schedule: "constant", MaxGradNorm: 1, Seed: 1, MasterWeights: mw}})
		s, err := engine.Prepare(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if _, err := s.Trainer.TrainStep(); err != nil {
				s.Close()
				t.Fatal(err)
			}
		}
		m := s.Trainer.Model
		if m.BF16Masters != (mw == "bf16") {
			t.Errorf("master_weights %q: Model.BF16Masters = %v", mw, m.BF16Masters)
		}
		notBF16 := 0
		for _, p := range m.TrainableParams() {
			v, err := m.WeightValues(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range v {
				if x != engine.RoundBF16Stochastic(x, 0) {
					notBF16++
				}
			}
		}
		if (notBF16 == 0) != (mw == "bf16") {
			t.Errorf("master_weights %q: %d trained values are not bf16 values", mw, notBF16)
		}
		s.Close()
	}
	cfg := withDefaults(t, engine.RunConfig{Name: "masters-dp", Model: abs("../testdata/tiny-llama"), Method: "full", Backend: "cpu", RunsDir: t.TempDir(),
		Parallel: engine.ParallelConfig{Ranks: 2},
		Data:     engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 64, Packing: true, Seed: 1},
		Train:    engine.TrainConfig{MaxSteps: 2, MicroBatch: 1, GradAccum: 2, LR: 1e-3, Schedule: "constant", MaxGradNorm: 1, Seed: 1, MasterWeights: "bf16"}})
	if s, err := engine.Prepare(cfg); err == nil {
		s.Close()
		t.Error("a data-parallel full run with bf16 masters was prepared")
	} else if !strings.Contains(err.Error(), "train.master_weights") {
		t.Errorf("data-parallel full run with bf16 masters: %v, want an error naming train.master_weights", err)
	}
}

// noFold is the CPU backend saying it does not fold clipping into AdamW,
// as the CUDA backend says by default: the trainer scales the gradients in
// a pass of their own.
type noFold struct{ *cpu.Backend }

func (noFold) FoldsGradScale() bool { return false }

// The trainer's two ways of clipping (folded into AdamW, or a pass of its
// own before it, per engine.GradScaleFolder) train to the same losses and
// weights, bit for bit, on steps where the clip bites.
func TestTrainerClipsAlikeFoldedOrNot(t *testing.T) {
	run := func(fold bool) ([]float64, [][]float32) {
		tr := fullTinyTrainer(t, "", false, 6)
		tr.Cfg.MaxGradNorm = 0.05
		if !fold {
			tr.Model.B = noFold{tr.Model.B.(*cpu.Backend)}
		}
		var losses []float64
		for i := 0; i < 6; i++ {
			ev, err := tr.TrainStep()
			if err != nil {
				t.Fatal(err)
			}
			if ev.GradNorm <= tr.Cfg.MaxGradNorm {
				t.Fatalf("step %d: norm %g does not clip", i+1, ev.GradNorm)
			}
			losses = append(losses, ev.Loss)
		}
		var w [][]float32
		for _, p := range tr.Model.TrainableParams() {
			v, err := tr.Model.WeightValues(p)
			if err != nil {
				t.Fatal(err)
			}
			w = append(w, v)
		}
		return losses, w
	}
	la, wa := run(true)
	lb, wb := run(false)
	for i := range la {
		if la[i] != lb[i] {
			t.Fatalf("step %d: loss %.9g folded, %.9g clipped first", i+1, la[i], lb[i])
		}
	}
	for i := range wa {
		for j := range wa[i] {
			if wa[i][j] != wb[i][j] {
				t.Fatalf("param %d element %d: %g folded, %g clipped first", i, j, wa[i][j], wb[i][j])
			}
		}
	}
}
