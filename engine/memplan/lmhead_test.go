package memplan

import (
	"testing"

	"whet/engine"
)

// TestLogitsChunkPlan: the plan's LM head holds one chunk of engine.LogitsChunk
// rows, fp32 logits and a bf16 gradient, 6·C·V bytes, and the final norm's
// output for those C rows, for the default rule and a requested chunk, and
// no buffer grows with tokens × vocabulary; Gemma 2 adds its capped copy
// only where the cap is not fused (TestCappedLogitsPlan).
func TestLogitsChunkPlan(t *testing.T) {
	llama := tiny()
	llama.VocabSize = 1 << 20 // the default rule: 64 rows
	gemma2 := *llama
	gemma2.ModelType, gemma2.FinalSoftCap = "gemma2", 30
	v := int64(llama.VocabSize)
	for _, cfg := range []*engine.ModelConfig{llama, &gemma2} {
		for _, c := range []struct{ seq, req, rows int64 }{
			{4096, 0, 64}, // 2^26 / 2^20
			{4096, 100, 100},
			{32, 0, 32}, // a short batch: one chunk of all its rows
			{32, 100, 32},
		} {
			o := Options{Method: LoRA, MicroBatch: 1, SeqLen: int(c.seq), LogitsChunk: int(c.req)}
			p, err := Plan(cfg, o)
			if err != nil {
				t.Fatal(err)
			}
			want := 6 * c.rows * v
			if cfg.FinalSoftCap > 0 && !engine.FusedSoftCapOn(false) {
				want += 4 * c.rows * v // CUDA's default: the capped copy
			}
			if got := p.ExactBytes(Logits); got != want {
				t.Errorf("%s seq %d chunk %d: logits %d bytes, want %d (%d rows)", cfg.ModelType, c.seq, c.req, got, want, c.rows)
			}
			if b, ok := p.Find("acts.final_norm_out"); !ok || b.Shape[0] != c.rows || b.Shape[1] != int64(cfg.HiddenSize) {
				t.Errorf("%s seq %d chunk %d: final norm output %+v, want [%d, %d] (one chunk)", cfg.ModelType, c.seq, c.req, b, c.rows, cfg.HiddenSize)
			}
			for _, b := range p.Buffers {
				for k, d := range b.Shape {
					if d == c.seq && c.seq > c.rows && k+1 < len(b.Shape) && b.Shape[k+1] == v {
						t.Errorf("%s: %s %v grows with tokens × vocabulary", cfg.ModelType, b.Name, b.Shape)
					}
				}
			}
		}
	}
	if _, err := Plan(llama, Options{Method: LoRA, MicroBatch: 1, SeqLen: 64, LogitsChunk: -1}); err == nil {
		t.Error("a negative logits chunk was planned")
	}
}

// TestCappedLogitsPlan: Gemma 2's capped [C, V] copy is planned on CUDA
// by default and not with WHET_FUSED_SOFTCAP_CE=1, nor on the CPU, which
// always fuses the cap into the cross-entropy.
func TestCappedLogitsPlan(t *testing.T) {
	cfg := *tiny()
	cfg.ModelType, cfg.FinalSoftCap = "gemma2", 30
	has := func(backend Backend) bool {
		p, err := Plan(&cfg, Options{Method: LoRA, MicroBatch: 1, SeqLen: 64, Backend: backend})
		if err != nil {
			t.Fatal(err)
		}
		_, ok := p.Find("logits.capped")
		return ok
	}
	t.Setenv(engine.FusedSoftCapEnv, "")
	if !has(BackendCUDA) || has(BackendCPU) {
		t.Errorf("capped copy planned on cuda %v, cpu %v; want true, false", has(BackendCUDA), has(BackendCPU))
	}
	t.Setenv(engine.FusedSoftCapEnv, "1")
	if has(BackendCUDA) {
		t.Error("capped copy planned on cuda with the fused cross-entropy turned on")
	}
}

// TestFromRunConfigLogitsChunk: train.logits_chunk reaches the plan.
func TestFromRunConfigLogitsChunk(t *testing.T) {
	rc := engine.RunConfig{Method: "lora", Data: engine.DataConfig{MaxLength: 64},
		Train: engine.TrainConfig{MicroBatch: 1, GradAccum: 1, LogitsChunk: 24, MLPChunk: 8}}
	o, err := FromRunConfig(&rc)
	if err != nil {
		t.Fatal(err)
	}
	if o.LogitsChunk != 24 || o.MLPChunk != 8 {
		t.Errorf("options chunk %d, MLP chunk %d; want 24 and 8", o.LogitsChunk, o.MLPChunk)
	}
}
