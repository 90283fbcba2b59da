package backendtest_test

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/backendtest"
	"whet/engine/cpu"
)

// The suite is proven by running it on deliberately broken backends: the
// CPU backend with one contract bent (accumulate instead of overwrite, a
// window ignored, a different dropout hash...). Each must fail exactly in
// the op it breaks. A backend whose outputs are only as noisy as a good bf16
// kernel's must pass, so the tolerances are not brittle either.
//
// A test cannot watch a *testing.T fail and carry on, so each mutant runs in
// a child process of this test binary (TestMutantChild) and the parent
// reads its verdicts.

const mutantEnv = "WHET_BACKENDTEST_MUTANT"

// mutant is the CPU backend with one behaviour changed, chosen by kind.
type mutant struct {
	*cpu.Backend
	kind string
	rng  *rand.Rand
}

func newMutant(kind string) *mutant {
	return &mutant{Backend: cpu.New(), kind: kind, rng: rand.New(rand.NewPCG(1, 1))}
}

// overwrite zeroes t first, so an accumulating op becomes an overwriting one.
func (m *mutant) overwrite(t engine.Tensor) error { return m.Backend.Fill(t, 0) }

// accumulate runs op into scratch copies of outs and adds them to outs.
func (m *mutant) accumulate(op func(scratch []engine.Tensor) error, outs ...engine.Tensor) error {
	scratch := make([]engine.Tensor, len(outs))
	for i, o := range outs {
		s, err := m.Backend.Alloc(o.DType(), o.Shape()...)
		if err != nil {
			return err
		}
		defer m.Backend.Free(s)
		scratch[i] = s
	}
	if err := op(scratch); err != nil {
		return err
	}
	for i, o := range outs {
		if err := m.Backend.AddScaled(o, scratch[i], 1); err != nil {
			return err
		}
	}
	return nil
}

// jitter multiplies every value by 1 ± 1e-3 on top of the bf16 rounding the
// CPU op already did, and the upload rounds again: together more error than
// a kernel that rounds its fp32 result to bf16 once.
func (m *mutant) jitter(ts ...engine.Tensor) error {
	if m.kind != "bf16_noise" {
		return nil
	}
	for _, t := range ts {
		x := make([]float32, t.Len())
		if err := m.Backend.Download(t, x); err != nil {
			return err
		}
		for i := range x {
			x[i] *= 1 + 1e-3*float32(2*m.rng.IntN(2)-1)
		}
		if err := m.Backend.Upload(t, x); err != nil {
			return err
		}
	}
	return nil
}

func (m *mutant) MatMul(c, a, b engine.Tensor, transA, transB bool, alpha, beta float32) error {
	if m.kind == "matmul_ignores_beta" {
		beta = 0
	}
	if err := m.Backend.MatMul(c, a, b, transA, transB, alpha, beta); err != nil {
		return err
	}
	return m.jitter(c)
}

func (m *mutant) EmbeddingBackward(dTable, dOut, ids engine.Tensor) error {
	if m.kind == "embedding_backward_overwrites" {
		if err := m.overwrite(dTable); err != nil {
			return err
		}
	}
	return m.Backend.EmbeddingBackward(dTable, dOut, ids)
}

func (m *mutant) RMSNorm(out, rstd, x, weight engine.Tensor, eps float32) error {
	if err := m.Backend.RMSNorm(out, rstd, x, weight, eps); err != nil {
		return err
	}
	return m.jitter(out)
}

func (m *mutant) RMSNormBackward(dx, dWeight, dOut, x, weight, rstd engine.Tensor) error {
	if m.kind == "rmsnorm_backward_overwrites_dx" {
		if err := m.overwrite(dx); err != nil {
			return err
		}
	}
	return m.Backend.RMSNormBackward(dx, dWeight, dOut, x, weight, rstd)
}

func (m *mutant) RoPE(x, positions, cos, sin engine.Tensor, nHeads, headDim int, inverse bool) error {
	if m.kind == "rope_ignores_inverse" {
		inverse = false
	}
	return m.Backend.RoPE(x, positions, cos, sin, nHeads, headDim, inverse)
}

func (m *mutant) Attention(out, lse, q, k, v engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	switch m.kind {
	case "attention_ignores_window":
		p.Window = 0
	case "attention_crosses_sequences":
		seqs.Starts = []int32{0, int32(engine.Rows(q))}
		seqs.MaxLen = engine.Rows(q)
	case "attention_ignores_softcap":
		p.SoftCap = 0
	}
	if err := m.Backend.Attention(out, lse, q, k, v, seqs, p); err != nil {
		return err
	}
	return m.jitter(out)
}

func (m *mutant) AttentionKV(out, q, k, v engine.Tensor, qOffset int, p engine.AttnParams) error {
	switch m.kind {
	case "attention_kv_ignores_window":
		p.Window = 0
	case "attention_ignores_softcap":
		p.SoftCap = 0
	}
	if err := m.Backend.AttentionKV(out, q, k, v, qOffset, p); err != nil {
		return err
	}
	return m.jitter(out)
}

func (m *mutant) AttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	if m.kind == "attention_backward_accumulates" {
		return m.accumulate(func(s []engine.Tensor) error {
			return m.Backend.AttentionBackward(s[0], s[1], s[2], dOut, q, k, v, out, lse, seqs, p)
		}, dq, dk, dv)
	}
	if m.kind == "attention_ignores_softcap" {
		p.SoftCap = 0
	}
	if err := m.Backend.AttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, seqs, p); err != nil {
		return err
	}
	return m.jitter(dq, dk, dv)
}

func (m *mutant) BiasAttention(out, lse, q, k, v, bias engine.Tensor, p engine.AttnParams) error {
	if m.kind == "bias_attention_ignores_bias" {
		bias = nil
	}
	if err := m.Backend.BiasAttention(out, lse, q, k, v, bias, p); err != nil {
		return err
	}
	return m.jitter(out)
}

func (m *mutant) BiasAttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, bias engine.Tensor, p engine.AttnParams) error {
	switch m.kind {
	case "bias_attention_ignores_bias":
		bias = nil
	case "bias_attention_backward_accumulates":
		return m.accumulate(func(s []engine.Tensor) error {
			return m.Backend.BiasAttentionBackward(s[0], s[1], s[2], dOut, q, k, v, out, lse, bias, p)
		}, dq, dk, dv)
	}
	if err := m.Backend.BiasAttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, bias, p); err != nil {
		return err
	}
	return m.jitter(dq, dk, dv)
}

func (m *mutant) GELU(out, x engine.Tensor) error {
	if err := m.Backend.GELU(out, x); err != nil {
		return err
	}
	return m.jitter(out)
}

func (m *mutant) SwiGLU(out, gate, up engine.Tensor) error {
	if err := m.Backend.SwiGLU(out, gate, up); err != nil {
		return err
	}
	return m.jitter(out)
}

func (m *mutant) SoftmaxCrossEntropy(logits, labels, losses engine.Tensor, gradScale float32) error {
	if m.kind == "cross_entropy_counts_ignored" {
		ids := make([]float32, labels.Len())
		if err := m.Backend.Download(labels, ids); err != nil {
			return err
		}
		fixed := make([]int32, len(ids))
		for i, id := range ids {
			fixed[i] = int32(id)
			if id == -100 {
				fixed[i] = 0
			}
		}
		l2, err := m.Backend.Alloc(engine.I32, len(fixed))
		if err != nil {
			return err
		}
		defer m.Backend.Free(l2)
		if err := m.Backend.UploadInt32(l2, fixed); err != nil {
			return err
		}
		labels = l2
	}
	if err := m.Backend.SoftmaxCrossEntropy(logits, labels, losses, gradScale); err != nil {
		return err
	}
	return m.jitter(logits)
}

func (m *mutant) Dropout(out, x engine.Tensor, p float32, seed uint64) error {
	if m.kind == "dropout_other_hash" {
		seed++
	}
	return m.Backend.Dropout(out, x, p, seed)
}

func (m *mutant) AdamW(param, grad, mom, v engine.Tensor, p engine.AdamWParams) error {
	switch {
	case m.kind == "adamw_no_bias_correction":
		p.Step = 1 << 20 // 1-beta^step is 1: no correction
	case m.kind == "adamw_ignores_grad_scale":
		p.GradScale = 1
	case m.kind == "adamw_other_rounding_bits" && p.RoundSeed != 0:
		p.RoundSeed += 2
	}
	return m.Backend.AdamW(param, grad, mom, v, p)
}

// TestMutantChild runs the suite on the mutant named in the environment;
// only TestSuiteCatchesMutants starts it that way.
func TestMutantChild(t *testing.T) {
	kind := os.Getenv(mutantEnv)
	if kind == "" {
		t.Skip("runs only as a child of TestSuiteCatchesMutants")
	}
	backendtest.Run(t, func() (engine.Backend, error) { return newMutant(kind), nil }, backendtest.DefaultBF16())
}

func TestSuiteCatchesMutants(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("inside a child")
	}
	for _, tc := range []struct {
		kind string
		fail []string // ops that must fail; no other op may
	}{
		{"bf16_noise", nil},
		{"matmul_ignores_beta", []string{"MatMul", "Views"}},
		{"embedding_backward_overwrites", []string{"EmbeddingBackward"}},
		{"rmsnorm_backward_overwrites_dx", []string{"RMSNormBackward", "QKNorm"}},
		{"rope_ignores_inverse", []string{"RoPE"}},
		{"attention_ignores_window", []string{"Attention"}},
		{"attention_crosses_sequences", []string{"Attention", "Views"}},
		{"attention_backward_accumulates", []string{"AttentionBackward"}},
		{"attention_kv_ignores_window", []string{"AttentionKV"}},
		{"attention_ignores_softcap", []string{"Attention", "AttentionBackward", "AttentionKV"}},
		{"cross_entropy_counts_ignored", []string{"SoftmaxCrossEntropy"}},
		{"dropout_other_hash", []string{"Dropout"}},
		{"adamw_no_bias_correction", []string{"AdamW", "AdamWBF16Master"}},
		{"adamw_ignores_grad_scale", []string{"AdamW", "AdamWBF16Master"}},
		{"adamw_other_rounding_bits", []string{"AdamWBF16Master"}},
		{"bias_attention_ignores_bias", []string{"BiasAttention", "BiasAttentionBackward"}},
		{"bias_attention_backward_accumulates", []string{"BiasAttentionBackward"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMutantChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), mutantEnv+"="+tc.kind)
			out, err := cmd.CombinedOutput()
			text := string(out)
			if strings.Contains(text, "oracle (cpu)") {
				t.Fatalf("the suite built a call the oracle rejects:\n%s", text)
			}
			failed := map[string]bool{}
			for _, m := range regexp.MustCompile(`--- FAIL: TestMutantChild/(\w+) `).FindAllStringSubmatch(text, -1) {
				failed[m[1]] = true
			}
			if !strings.Contains(text, "--- PASS: TestMutantChild/Memory") && !failed["Memory"] {
				t.Fatalf("the child did not run the suite (err %v):\n%s", err, text)
			}
			for _, op := range tc.fail {
				if !failed[op] {
					t.Errorf("op %s passed on a backend that breaks it", op)
				}
				delete(failed, op)
			}
			for op := range failed {
				t.Errorf("op %s failed although this mutant leaves it alone", op)
			}
			if len(tc.fail) == 0 && err != nil {
				t.Errorf("child failed: %v", err)
			}
			if t.Failed() {
				t.Logf("child output:\n%s", text)
			}
		})
	}
}
