package engine_test

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/safetensors"
)

// TestReferenceDPO compares loss, TRL's metrics and the LoRA gradients with
// a PyTorch implementation of TRL's DPO formula
// (tools/reference/make_dpo_reference.py), for the sigmoid loss with label
// smoothing and for IPO, on both tiny models. The reference log-probs are
// the base model's (adapter off), as TRL's PEFT path takes them.
func TestReferenceDPO(t *testing.T) {
	settings := map[string]engine.DPOLoss{
		"sigmoid": {Beta: 0.1, LabelSmoothing: 0.1, Type: "sigmoid"},
		"ipo":     {Beta: 0.1, Type: "ipo"},
	}
	metricOrder := []string{"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"}
	for _, name := range dpoReferenceModels {
		for key, d := range settings {
			t.Run(fmt.Sprintf("%s/%s", name, key), func(t *testing.T) {
				rc := openReference(t, name)
				st, err := safetensors.Open(filepath.Join("..", "testdata", "reference", name+".dpo.safetensors"))
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				b := &datasets.Batch{Tokens: mustI32(t, st, "input_ids"), Targets: mustI32(t, st, "targets"),
					Positions: mustI32(t, st, "positions"), SeqStarts: mustI32(t, st, "seq_starts")}
				m := loadRefModel(t, rc)
				addRefLoRA(t, m, rc)
				a, err := m.NewActivations(len(b.Tokens), false)
				if err != nil {
					t.Fatal(err)
				}
				m.SetLoRAEnabled(false)
				ref, err := a.PairLogprobs(b, d)
				if err != nil {
					t.Fatal(err)
				}
				m.SetLoRAEnabled(true)
				wantRef := mustF32(t, st, key+".ref_logps")
				for i, p := range ref {
					for k, v := range []float64{p.Chosen, p.Rejected} {
						w := float64(wantRef[2*i+k])
						if math.Abs(v-w) > 1e-4*math.Abs(w)+1e-6 {
							t.Errorf("reference logp of sequence %d: %.7g, torch %.7g", 2*i+k, v, w)
						}
					}
				}
				r, err := a.DPOForwardBackward(b, ref, d, 1, 0)
				if err != nil {
					t.Fatal(err)
				}
				wantLoss := float64(mustF32(t, st, key+".loss")[0])
				if math.Abs(r.Loss-wantLoss) > 1e-4*math.Abs(wantLoss) {
					t.Errorf("DPO loss %.7g, torch %.7g", r.Loss, wantLoss)
				}
				wantM := mustF32(t, st, key+".metrics")
				for i, k := range metricOrder {
					if d := math.Abs(r.Metrics[k] - float64(wantM[i])); d > 1e-4*math.Abs(float64(wantM[i]))+1e-6 {
						t.Errorf("%s = %.7g, torch %.7g", k, r.Metrics[k], wantM[i])
					}
				}
				for _, p := range m.TrainableParams() {
					w := mustF32(t, st, key+".lora_grad."+p.Name)
					if e := relErr(download(t, m, p.Grad), w); e > refTol {
						t.Errorf("DPO grad %s relative error %.3g > %g", p.Name, e, refTol)
					}
				}
			})
		}
	}
}
