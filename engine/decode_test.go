package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// replayCPU is the CPU backend with a StepRecorder that behaves like a
// CUDA graph: recording queues each op with the arguments it was called
// with, runs nothing, and refuses host transfers; a replay runs the queue
// again with those same arguments. A decoding step that baked a
// host-side position or length into an op would replay it unchanged and
// decode wrong tokens, as it would on a GPU.
type replayCPU struct {
	*cpu.Backend
	queue     *[]func() error // non-nil while recording
	recorded  int             // recordings made
	replays   int
	matVecs   int   // MatVecs calls
	hostWhile error // a host transfer attempted while recording
}

type replayRecording struct {
	r   *replayCPU
	ops []func() error
}

func (rc *replayRecording) Replay() error {
	rc.r.replays++
	for _, op := range rc.ops {
		if err := op(); err != nil {
			return err
		}
	}
	return nil
}

func (rc *replayRecording) Free() {}

func (r *replayCPU) Record(f func() error) (engine.Recording, error) {
	var q []func() error
	r.queue = &q
	err := f()
	r.queue = nil
	if err == nil {
		err = r.hostWhile
	}
	r.hostWhile = nil
	if err != nil {
		return nil, err
	}
	r.recorded++
	return &replayRecording{r: r, ops: q}, nil
}

// op runs f now, or queues it while recording.
func (r *replayCPU) op(f func() error) error {
	if r.queue != nil {
		*r.queue = append(*r.queue, f)
		return nil
	}
	return f()
}

func (r *replayCPU) host(what string) error {
	if r.queue != nil {
		r.hostWhile = fmt.Errorf("%s while recording", what)
		return r.hostWhile
	}
	return nil
}

func (r *replayCPU) Upload(dst engine.Tensor, src []float32) error {
	if err := r.host("Upload"); err != nil {
		return err
	}
	return r.Backend.Upload(dst, src)
}

func (r *replayCPU) UploadInt32(dst engine.Tensor, src []int32) error {
	if err := r.host("UploadInt32"); err != nil {
		return err
	}
	return r.Backend.UploadInt32(dst, src)
}

func (r *replayCPU) Download(src engine.Tensor, dst []float32) error {
	if err := r.host("Download"); err != nil {
		return err
	}
	return r.Backend.Download(src, dst)
}

func (r *replayCPU) Embedding(out, table, ids engine.Tensor) error {
	return r.op(func() error { return r.Backend.Embedding(out, table, ids) })
}
func (r *replayCPU) Scale(t engine.Tensor, s float32) error {
	return r.op(func() error { return r.Backend.Scale(t, s) })
}
func (r *replayCPU) Fill(t engine.Tensor, v float32) error {
	return r.op(func() error { return r.Backend.Fill(t, v) })
}
func (r *replayCPU) Copy(dst, src engine.Tensor) error {
	return r.op(func() error { return r.Backend.Copy(dst, src) })
}
func (r *replayCPU) AddScaled(dst, src engine.Tensor, alpha float32) error {
	return r.op(func() error { return r.Backend.AddScaled(dst, src, alpha) })
}
func (r *replayCPU) AddBias(out, bias engine.Tensor) error {
	return r.op(func() error { return r.Backend.AddBias(out, bias) })
}
func (r *replayCPU) RMSNorm(out, rstd, x, w engine.Tensor, eps float32) error {
	return r.op(func() error { return r.Backend.RMSNorm(out, rstd, x, w, eps) })
}
func (r *replayCPU) MatMul(c, a, b engine.Tensor, ta, tb bool, alpha, beta float32) error {
	return r.op(func() error { return r.Backend.MatMul(c, a, b, ta, tb, alpha, beta) })
}
func (r *replayCPU) RoPE(x, pos, cos, sin engine.Tensor, nHeads, headDim int, inverse bool) error {
	return r.op(func() error { return r.Backend.RoPE(x, pos, cos, sin, nHeads, headDim, inverse) })
}
func (r *replayCPU) RoPEPartial(x, pos, cos, sin engine.Tensor, nHeads, headDim int, inverse bool) error {
	return r.op(func() error { return r.Backend.RoPEPartial(x, pos, cos, sin, nHeads, headDim, inverse) })
}
func (r *replayCPU) SwiGLU(out, g, u engine.Tensor) error {
	return r.op(func() error { return r.Backend.SwiGLU(out, g, u) })
}
func (r *replayCPU) GeGLU(out, g, u engine.Tensor) error {
	return r.op(func() error { return r.Backend.GeGLU(out, g, u) })
}
func (r *replayCPU) AttentionKV(out, q, k, v engine.Tensor, qOffset int, p engine.AttnParams) error {
	return r.op(func() error { return r.Backend.AttentionKV(out, q, k, v, qOffset, p) })
}
func (r *replayCPU) AttentionDecode(out, q, k, v, kc, vc, pos, cos, sin engine.Tensor, p engine.AttnParams) error {
	return r.op(func() error { return r.Backend.AttentionDecode(out, q, k, v, kc, vc, pos, cos, sin, p) })
}

// MatVecs takes the shared-input path through MatMul, one by one.
func (r *replayCPU) MatVecs(ys []engine.Tensor, x engine.Tensor, ws []engine.Tensor, accumulate bool) (bool, error) {
	r.matVecs++
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	for i := range ws {
		if err := r.MatMul(ys[i], x, ws[i], false, true, 1, beta); err != nil {
			return true, err
		}
	}
	return true, nil
}
func (r *replayCPU) Argmax(ids, logits engine.Tensor) error {
	return r.op(func() error { return r.Backend.Argmax(ids, logits) })
}
func (r *replayCPU) AdvancePosition(pos engine.Tensor, limit int) error {
	return r.op(func() error { return r.Backend.AdvancePosition(pos, limit) })
}

// decodeWith loads the tiny family model on b (the same weights for every
// backend: the CPU builds them, b gets a copy) and decodes with mode.
func decodeWith(t *testing.T, m *engine.Model, mode engine.DecodeMode, prompt []int32, o engine.SampleOptions) ([]int32, *engine.Generator) {
	t.Helper()
	g, err := m.NewGenerator(len(prompt) + o.MaxNewTokens + 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Free)
	g.Mode = mode
	out, err := g.Generate(context.Background(), prompt, o, nil)
	if err != nil {
		t.Fatalf("%s: %v", mode, err)
	}
	// A second call starts over and must give the same tokens.
	again, err := g.Generate(context.Background(), prompt, o, nil)
	if err != nil {
		t.Fatalf("%s again: %v", mode, err)
	}
	if !slices.Equal(out, again) {
		t.Fatalf("%s: a second generation gave %v after %v", mode, again, out)
	}
	return out, g
}

// TestDecodeModesAgree: decoding with the position in device memory, and
// replaying a recorded step, give the plain path's tokens exactly, greedy
// and sampled, for each family (Gemma 2's window and soft-caps, Phi-3's
// fused projections and LongRoPE switch, which forces a new recording
// when the decode crosses the original context).
func TestDecodeModesAgree(t *testing.T) {
	for _, name := range []string{"llama", "qwen3", "gemma2", "phi3"} {
		t.Run(name, func(t *testing.T) {
			m := newTinyNamed(t, name, true)
			rb := &replayCPU{Backend: m.B.(*cpu.Backend)}
			m.B = rb
			prompt := []int32{3, 1, 4, 1}
			for _, o := range []engine.SampleOptions{
				engine.Greedy(12, nil),
				{MaxNewTokens: 12, Temperature: 0.9, TopK: 8, Seed: 7},
				{MaxNewTokens: 12, RepetitionPenalty: 1.3},
			} {
				want, _ := decodeWith(t, m, engine.DecodePlain, prompt, o)
				for _, mode := range []engine.DecodeMode{engine.DecodeDevice, engine.DecodeGraph} {
					rec0, rep0 := rb.recorded, rb.replays
					got, g := decodeWith(t, m, mode, prompt, o)
					if !slices.Equal(got, want) {
						t.Errorf("%+v %s: %v, plain %v", o, mode, got, want)
					}
					if g.Used != mode || g.Fallback != "" {
						t.Errorf("%s: used %s (%s)", mode, g.Used, g.Fallback)
					}
					if rb.matVecs == 0 && name != "phi3" { // phi3 fuses its projections
						t.Errorf("%s: q, k, v and gate, up never went through MatVecs", mode)
					}
					if mode == engine.DecodeGraph && (rb.recorded == rec0 || rb.replays-rep0 < 2*(len(got)-2)) {
						t.Errorf("graph: %d recordings and %d replays for 2×%d tokens", rb.recorded-rec0, rb.replays-rep0, len(got))
					}
				}
			}
		})
	}
}

// TestDecodeRecordingFailureFallsBack: a step that cannot be recorded is
// run directly, with the reason kept, and the tokens do not change.
func TestDecodeRecordingFailureFallsBack(t *testing.T) {
	m := newTiny(t, true, false)
	m.B = failingRecorder{m.B.(*cpu.Backend)}
	prompt := []int32{3, 1, 4, 1}
	want, _ := decodeWith(t, m, engine.DecodePlain, prompt, engine.Greedy(8, nil))
	got, g := decodeWith(t, m, engine.DecodeGraph, prompt, engine.Greedy(8, nil))
	if !slices.Equal(got, want) {
		t.Errorf("after a failed recording: %v, plain %v", got, want)
	}
	if g.Used != engine.DecodeDevice || g.Fallback == "" {
		t.Errorf("used %s, fallback %q; want device with a reason", g.Used, g.Fallback)
	}
}

type failingRecorder struct{ *cpu.Backend }

func (failingRecorder) Record(func() error) (engine.Recording, error) {
	return nil, errors.New("no graphs here")
}

// TestDecodeModeFromEnv reads the switch.
func TestDecodeModeFromEnv(t *testing.T) {
	for v, want := range map[string]engine.DecodeMode{"": engine.DecodeGraph, "plain": engine.DecodePlain, "device": engine.DecodeDevice, "graph": engine.DecodeGraph} {
		t.Setenv(engine.DecodeModeEnv, v)
		if got, err := engine.DecodeModeFromEnv(); err != nil || got != want {
			t.Errorf("%q: %s, %v", v, got, err)
		}
	}
	t.Setenv(engine.DecodeModeEnv, "fast")
	if _, err := engine.DecodeModeFromEnv(); err == nil {
		t.Error("an unknown mode was accepted")
	}
}

// generateManyCase is the batched generators' test case: the tiny model
// of the family ("llama" or a newTinyFamily name), four prompts of
// different lengths, and their options: greedy, sampled with top-k,
// sampled with top-p, a repetition penalty and stop ids, and a short
// greedy limit, so that lanes finish at different passes.
// generateAlone generates each prompt with its options on its own, with a
// plain (not batched, no graph) generator of maxSeq positions.
func generateAlone(t *testing.T, m *engine.Model, maxSeq int, prompts [][]int32, opts []engine.SampleOptions) [][]int32 {
	t.Helper()
	one, err := m.NewGenerator(maxSeq)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Free()
	one.Mode = engine.DecodePlain
	out := make([][]int32, len(prompts))
	for i := range prompts {
		if out[i], err = one.Generate(context.Background(), prompts[i], opts[i], nil); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func generateManyCase(t *testing.T, family string) (*engine.Model, [][]int32, []engine.SampleOptions) {
	t.Helper()
	var m *engine.Model
	if family == "llama" {
		m = newTiny(t, true, false)
	} else {
		m = newTinyFamily(t, family)
	}
	prompts := [][]int32{{3, 1, 4}, {2, 7, 1, 8, 2, 8, 1}, {5}, {9, 9, 8, 7, 6}}
	opts := []engine.SampleOptions{
		engine.Greedy(10, nil),
		{MaxNewTokens: 6, Temperature: 0.9, TopK: 8, Seed: 7},
		{MaxNewTokens: 12, Temperature: 1, TopP: 0.9, RepetitionPenalty: 1.2, Seed: 3, StopIDs: []int32{4, 11}},
		engine.Greedy(3, nil),
	}
	return m, prompts, opts
}

// TestGenerateManyMatchesOneByOne: prompts of different lengths decoded
// together, one row per lane at its own position, give each lane the
// tokens the one-sequence generator gives its prompt alone: greedy,
// sampled, with stop ids and different limits (lanes finish at different
// passes), for a plain model, Gemma 2's window and soft-caps, and Phi-3's
// LongRoPE (lanes within and past the original context in one step are
// decoded in separate passes).
func TestGenerateManyMatchesOneByOne(t *testing.T) {
	for _, name := range []string{"llama", "gemma2", "phi3"} {
		t.Run(name, func(t *testing.T) {
			m, prompts, opts := generateManyCase(t, name)
			group, err := m.NewGroupGenerator(5, 20)
			if err != nil {
				t.Fatal(err)
			}
			defer group.Free()
			got, err := group.GenerateMany(context.Background(), prompts, opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range generateAlone(t, m, 20, prompts, opts) {
				if !slices.Equal(got[i], want) {
					t.Errorf("lane %d: together %v, alone %v", i, got[i], want)
				}
			}
			if _, err := group.GenerateMany(context.Background(), [][]int32{{1}}, opts, nil); err == nil {
				t.Error("one prompt with four options was accepted")
			}
			if _, err := group.GenerateMany(context.Background(), [][]int32{make([]int32, 15)}, opts[:1], nil); err == nil {
				t.Error("a prompt of 15 + 10 new tokens fit a 20-token plan")
			}
		})
	}
}
