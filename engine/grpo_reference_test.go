package engine_test

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/safetensors"
)

// TestReferenceGRPO compares GRPO's advantages, loss, TRL's metrics and the
// LoRA gradients with a PyTorch implementation of TRL's GRPOTrainer
// formulas (tools/reference/make_grpo_reference.py) on both tiny models,
// for each loss type (with the scale_rewards choices, β on and off and an
// upper clip apart from the lower one), on fixed completions and rewards
// and "old" log-probs set so that tokens clip on both sides. The reference
// log-probs are the base model's (adapter off), as TRL's PEFT path takes
// them. It skips until the reference files have been produced on the GPU
// machine and committed.
func TestReferenceGRPO(t *testing.T) {
	settings := map[string]struct {
		loss  engine.GRPOLoss
		scale string
	}{
		"grpo":    {engine.GRPOLoss{Type: "grpo", Beta: 0.04, Epsilon: 0.2, EpsilonHigh: 0.28}, "group"},
		"dr_grpo": {engine.GRPOLoss{Type: "dr_grpo", Beta: 0.04, Epsilon: 0.2, EpsilonHigh: 0.2, MaxCompletion: 8}, "none"},
		"dapo":    {engine.GRPOLoss{Type: "dapo", Beta: 0, Epsilon: 0.2, EpsilonHigh: 0.28}, "group"},
		"bnpo":    {engine.GRPOLoss{Type: "bnpo", Beta: 0.04, Epsilon: 0.2, EpsilonHigh: 0.2}, "batch"},
	}
	metricOrder := []string{"reward", "reward_std", "rewards/f0/mean", "rewards/f0/std", "rewards/f1/mean", "rewards/f1/std",
		"frac_reward_zero_std", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "completions/mean_length"}
	const g = 3
	// The models make_grpo_reference.py covers.
	for _, name := range []string{"tiny-llama", "tiny-qwen2"} {
		path := filepath.Join("..", "testdata", "reference", name+".grpo.safetensors")
		for key, set := range settings {
			t.Run(fmt.Sprintf("%s/%s", name, key), func(t *testing.T) {
				if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
					t.Skipf("%s not produced yet: run tools/reference/make_grpo_reference.py on the GPU machine (see tools/reference/README.md)", path)
				}
				rc := openReference(t, name)
				st, err := safetensors.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				b := &datasets.Batch{Tokens: mustI32(t, st, "input_ids"), Targets: mustI32(t, st, "targets"),
					Positions: mustI32(t, st, "positions"), SeqStarts: mustI32(t, st, "seq_starts")}
				ns := len(b.SeqStarts) - 1
				flat := mustF32(t, st, "rewards")
				weights32 := mustF32(t, st, "reward_weights")
				nf := len(weights32)
				rewards := make([][]float64, ns)
				for i := range rewards {
					for k := 0; k < nf; k++ {
						rewards[i] = append(rewards[i], float64(flat[i*nf+k]))
					}
				}
				weights := []float64{}
				for _, w := range weights32 {
					weights = append(weights, float64(w))
				}
				adv, metrics, err := engine.GRPOAdvantages(rewards, weights, []string{"f0", "f1"}, g, set.scale)
				if err != nil {
					t.Fatal(err)
				}
				wantAdv := mustF32(t, st, key+".advantages")
				for i := range adv {
					if math.Abs(adv[i]-float64(wantAdv[i])) > 1e-4*math.Abs(float64(wantAdv[i]))+1e-6 {
						t.Errorf("advantage %d = %.7g, torch %.7g", i, adv[i], wantAdv[i])
					}
				}

				m := loadRefModel(t, rc)
				addRefLoRA(t, m, rc)
				a, err := m.NewActivations(len(b.Tokens), false)
				if err != nil {
					t.Fatal(err)
				}
				m.SetLoRAEnabled(false)
				ref, err := a.CompletionLogprobs(b)
				if err != nil {
					t.Fatal(err)
				}
				m.SetLoRAEnabled(true)
				width := len(mustF32(t, st, "ref_logps")) / ns
				rows := func(name string) [][]float64 {
					flat := mustF32(t, st, name)
					out := make([][]float64, ns)
					for s := range out {
						for k := range ref[s] {
							out[s] = append(out[s], float64(flat[s*width+k]))
						}
					}
					return out
				}
				wantRef, old := rows("ref_logps"), rows("old_logps")
				for s := range ref {
					for k, v := range ref[s] {
						if w := wantRef[s][k]; math.Abs(v-w) > 1e-4*math.Abs(w)+1e-6 {
							t.Errorf("reference logp of sequence %d token %d: %.7g, torch %.7g", s, k, v, w)
						}
					}
				}
				seqs := make([]engine.GRPOSeq, ns)
				lens := make([]int, ns)
				tokens := 0
				for s := range seqs {
					seqs[s] = engine.GRPOSeq{Advantage: adv[s], Old: old[s]}
					if set.loss.Beta != 0 {
						seqs[s].Ref = ref[s]
					}
					lens[s] = len(ref[s])
					tokens += lens[s]
				}
				r, err := a.GRPOForwardBackward(b, seqs, set.loss, set.loss.SeqWeights(lens, 1, tokens), 0)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range r.Stats.Metrics(set.loss.Beta) {
					metrics[k] = v
				}
				metrics["completions/mean_length"] = float64(tokens) / float64(ns)
				wantLoss := float64(mustF32(t, st, key+".loss")[0])
				if math.Abs(r.Loss-wantLoss) > 1e-4*math.Abs(wantLoss)+1e-7 {
					t.Errorf("GRPO loss %.7g, torch %.7g", r.Loss, wantLoss)
				}
				wantM := mustF32(t, st, key+".metrics")
				for i, k := range metricOrder {
					if k == "kl" && set.loss.Beta == 0 {
						continue // TRL logs no kl without a reference
					}
					if d := math.Abs(metrics[k] - float64(wantM[i])); d > 1e-4*math.Abs(float64(wantM[i]))+1e-6 {
						t.Errorf("%s = %.7g, torch %.7g", k, metrics[k], wantM[i])
					}
				}
				for _, p := range m.TrainableParams() {
					w := mustF32(t, st, key+".lora_grad."+p.Name)
					if e := relErr(download(t, m, p.Grad), w); e > refTol {
						t.Errorf("GRPO grad %s relative error %.3g > %g", p.Name, e, refTol)
					}
				}
			})
		}
	}
}
