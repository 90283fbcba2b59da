package engine

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"whet/datasets"
	"whet/engine/envswitch"
)

// SampleOptions are the decoding settings, with transformers' meanings.
// Temperature 0 means greedy (argmax).
type SampleOptions struct {
	MaxNewTokens      int
	Temperature       float64
	TopK              int     // 0 = off
	TopP              float64 // 0 or 1 = off
	MinP              float64 // 0 = off
	RepetitionPenalty float64 // 0 or 1 = off
	Seed              uint64
	// StopIDs end generation when sampled (the template's EOS and
	// end-of-turn tokens); the stop token is included in the output.
	StopIDs []int32
}

// Greedy is deterministic decoding, used for samples during training.
func Greedy(maxNew int, stop []int32) SampleOptions {
	return SampleOptions{MaxNewTokens: maxNew, StopIDs: stop}
}

// kvCache holds every layer's rotated keys and values for one sequence.
type kvCache struct {
	k, v []Tensor // per layer [MaxLen, KVDim]
	pos  int      // positions filled
	kva  KVAttention
	// devPos, while a device step runs, is the position (an I32 tensor of
	// one element on the device) at which attend stores k and v and up to
	// which it attends (DeviceDecoder).
	devPos Tensor
	// lanes, when set, are sequences decoded together (GRPO's completions
	// of one prompt): row i of a pass is lanes[i]'s next token, so the
	// projections run on all rows at once and attention lane by lane.
	lanes []*kvCache
	// pool, when set, holds this lane's keys and values in the blocks of
	// table (a paged lane of a GroupGenerator; k and v are unused).
	pool  *kvPool
	table []int
}

// attend stores this chunk's k and v at the cache's next positions and
// runs attention of the chunk's queries over everything cached so far.
func (c *kvCache) attend(a *Activations, l int, q, k, v, att Tensor) error {
	if done, err := a.imagePrefillAttention(c, l, q, k, v, att); done {
		return err
	}
	if c.lanes != nil {
		return c.attendLanes(a, l, q, k, v, att)
	}
	if c.pool != nil {
		return c.attendPaged(a, l, q, k, v, att)
	}
	if c.devPos != nil {
		// q and k come unturned (layerForward leaves the rotation to this
		// op while decoding on the device).
		tab := a.ropeTable(l)
		return a.m.B.(DeviceDecoder).AttentionDecode(att, q, k, v, c.k[l], c.v[l], c.devPos, tab[0], tab[1], a.attnParams(l))
	}
	B, T, kvd := a.m.B, Rows(k), a.m.Cfg.KVDim()
	for _, pair := range [][2]Tensor{{c.k[l], k}, {c.v[l], v}} {
		dst, err := B.View(pair[0], c.pos*kvd, T, kvd)
		if err != nil {
			return err
		}
		if err := B.Copy(dst, pair[1]); err != nil {
			return err
		}
	}
	kAll, err := B.View(c.k[l], 0, c.pos+T, kvd)
	if err != nil {
		return err
	}
	vAll, err := B.View(c.v[l], 0, c.pos+T, kvd)
	if err != nil {
		return err
	}
	return c.kva.AttentionKV(att, q, kAll, vAll, c.pos, a.attnParams(l))
}

// Generator decodes with a KV cache: one prefill over the prompt, then one
// token at a time. It shares the model's weights (and adapters: switch
// them with Model.SetLoRAEnabled to talk to the base or the tuned model).
//
// How a token is decoded is its Mode (DecodeModeFromEnv: graph unless
// WHET_DECODE says otherwise):
// DecodePlain uploads each token and its position and reads the logits
// back; DecodeDevice keeps the token, its position and the cache length in
// device memory (DeviceDecoder) and reads back only the chosen id, the
// greedy argmax running on the device; DecodeGraph also records one
// decoding step (StepRecorder, a CUDA graph) and replays it for every
// token. Each falls back to the one before it on a backend without the
// ops; Used says what the last Generate ran.
type Generator struct {
	m      *Model
	acts   *Activations
	cache  *kvCache
	MaxLen int
	host   []float32
	// Mode is the decoding path asked for; Used the one the last Generate
	// took, and Fallback why it is not Mode (empty when it is).
	Mode     DecodeMode
	Used     DecodeMode
	Fallback string
	// Fuse lets one-token passes take the backend's fused ops
	// (FusedMatVecs), from DecodeFuseEnv; a backend without them, or
	// operands they do not take, run the ops one by one.
	Fuse bool
	// HeadArgmax lets a device step choose its token inside the LM head's
	// product (HeadArgmax), from DecodeArgmaxEnv; a backend without it, or
	// operands it does not take, run the head and Argmax one after the
	// other.
	HeadArgmax bool
	// Steps is how many greedy tokens one replay decodes in graph mode
	// (DecodeStepsEnv; 1, the default, replays one step a token): the
	// recording holds Steps steps, each copying its chosen id into a slot
	// of ids, which the host reads once per replay.
	Steps int
	// Chunks counts the multi-step replays of the last Generate.
	Chunks int

	pos, tok Tensor // views of the first position and token (device decoding)
	idHost   []float32
	rec      Recording // the recorded decoding step (DecodeGraph)
	recKey   string    // what rec was recorded for (recordKey)
	recLong  bool      // and with which rotary table (LongRoPE's long factors)
	recErr   error     // why recording failed for recKey, if it did
	// paramsKey is recordKey's description of the weights and adapters,
	// taken once per Generate (they do not change during one).
	paramsKey string
	eager     int // device steps run without recording since NewGenerator

	chunkRec Recording // Steps steps recorded together (decodeChunk)
	chunkKey string    // what chunkRec was recorded for
	chunkErr error     // why recording them failed for chunkKey
	ids      Tensor    // I32 [Steps]: the ids a chunk chose
	idsHost  []float32
}

// DecodeMode is how a Generator decodes after the prefill.
type DecodeMode string

const (
	DecodePlain  DecodeMode = "plain"  // host uploads and logits read-back every token
	DecodeDevice DecodeMode = "device" // position and token in device memory, argmax on the device
	DecodeGraph  DecodeMode = "graph"  // DecodeDevice with each step replayed from a recording
)

// DecodeModeEnv names the environment variable that picks the decoding
// path: graph (the default since the device and graph paths passed the
// GPU tests on an H100 on 2026-12-07 and decoded 2.3x faster than plain;
// docs/performance.md), device or plain. A backend without the device ops
// (the CPU) falls back to plain, with the reason in Generator.Fallback.
const DecodeModeEnv = "WHET_DECODE"

// DecodeFuseEnv set to 0 keeps decoding off the backend's fused one-row ops
// (FusedMatVecs: the RMSNorm inside the q/k/v and gate/up products, SwiGLU
// and the residual adds inside the down and o products), which it takes by
// default where the backend has them: on the GPU (tools/gpu/decode-fast,
// decode-next, 2026-12-07) the fused kernels gave the unfused ops' tokens
// for every family, bf16 and NF4, and 3-5 % more tokens a second.
const DecodeFuseEnv = "WHET_DECODE_FUSE"

// DecodeArgmaxEnv set to 0 keeps greedy device decoding off the backend's
// LM head with the argmax folded in (HeadArgmax: one launch instead of the
// head's product and a one-block argmax over the vocabulary), which it takes
// by default where the backend has it: on an H200 (tools/gpu/decode-next,
// 2026-12-07) it gave the separate argmax's tokens for every family and
// Llama-3.2-1B 917 tok/s against 888.
const DecodeArgmaxEnv = "WHET_DECODE_ARGMAX"

// DecodeStepsEnv sets Generator.Steps: how many greedy tokens one replay
// of the recorded graph decodes (1 to 64; 1 when unset). More than one
// saves the host round trip (a graph launch and a wait for the chosen id)
// of all but one token of each replay; the tokens after a stop are
// computed and dropped. Opt-in until measured on a GPU.
const DecodeStepsEnv = "WHET_DECODE_STEPS"

// DecodeStepsFromEnv reads DecodeStepsEnv (1 when unset; envswitch
// refuses anything but a whole number from 1 to 64).
func DecodeStepsFromEnv() (int, error) {
	if _, err := envswitch.Get(DecodeStepsEnv); err != nil {
		return 0, err
	}
	if n, ok := envswitch.Int(DecodeStepsEnv); ok {
		return n, nil
	}
	return 1, nil
}

// DecodeModeFromEnv reads DecodeModeEnv (graph when unset; envswitch
// refuses anything but plain, device or graph).
func DecodeModeFromEnv() (DecodeMode, error) {
	if _, err := envswitch.Get(DecodeModeEnv); err != nil {
		return "", err
	}
	return DecodeMode(envswitch.Choice(DecodeModeEnv)), nil
}

// NewGenerator plans buffers for prompt + new tokens up to maxLen.
func (m *Model) NewGenerator(maxLen int) (*Generator, error) {
	kva, ok := m.B.(KVAttention)
	if !ok {
		return nil, fmt.Errorf("backend %s cannot generate: it has no cached attention", m.B.Name())
	}
	mode, err := DecodeModeFromEnv()
	if err != nil {
		return nil, err
	}
	steps, err := DecodeStepsFromEnv()
	if err != nil {
		return nil, err
	}
	acts, err := m.NewActivations(maxLen, true)
	if err != nil {
		return nil, err
	}
	g := &Generator{m: m, acts: acts, MaxLen: maxLen, cache: &kvCache{kva: kva}, host: make([]float32, m.Cfg.VocabSize),
		Mode: mode, idHost: make([]float32, 1), Fuse: envswitch.On(DecodeFuseEnv), HeadArgmax: envswitch.On(DecodeArgmaxEnv), Steps: steps}
	for range m.Layers {
		for _, dst := range []*[]Tensor{&g.cache.k, &g.cache.v} {
			t, err := m.B.Alloc(m.Compute, maxLen, m.Cfg.KVDim())
			if err != nil {
				g.Free()
				return nil, fmt.Errorf("allocate kv cache for %d tokens: %w", maxLen, err)
			}
			*dst = append(*dst, t)
		}
	}
	if g.pos, err = m.B.View(acts.positions, 0, 1); err == nil {
		g.tok, err = m.B.View(acts.tokens, 0, 1)
	}
	if err != nil {
		g.Free()
		return nil, fmt.Errorf("generation: position and token views: %w", err)
	}
	return g, nil
}

// Free releases the generator's buffers.
func (g *Generator) Free() {
	if g.rec != nil {
		g.rec.Free()
		g.rec = nil
	}
	if g.chunkRec != nil {
		g.chunkRec.Free()
		g.chunkRec = nil
	}
	if g.ids != nil {
		g.m.B.Free(g.ids)
		g.ids = nil
	}
	g.acts.Free()
	for _, t := range append(g.cache.k, g.cache.v...) {
		g.m.B.Free(t)
	}
	g.cache.k, g.cache.v = nil, nil
}

// run feeds tokens at the cache's next positions and leaves the logits of
// the last one in the first row of the logits buffer, which it returns.
func (g *Generator) run(tokens []int32) (Tensor, error) {
	a := g.acts
	p0 := g.cache.pos
	if p0+len(tokens) > g.MaxLen {
		return nil, fmt.Errorf("generation: %d tokens exceed the planned %d", p0+len(tokens), g.MaxLen)
	}
	b := &datasets.Batch{Tokens: tokens, SeqStarts: []int32{0, int32(len(tokens))}}
	for i := range tokens {
		b.Targets = append(b.Targets, datasets.IgnoreIndex)
		b.Positions = append(b.Positions, int32(p0+i))
	}
	if err := a.setBatch(b); err != nil {
		return nil, err
	}
	a.training = false
	a.kv = g.cache
	err := a.forward()
	a.kv = nil
	a.imagesUsed()
	if err != nil {
		return nil, err
	}
	g.cache.pos += len(tokens)
	return g.head(len(tokens) - 1)
}

// head runs the LM head on row r of the final norm's output into the
// first row of the logits buffer.
func (g *Generator) head(r int) (Tensor, error) {
	a, B := g.acts, g.m.B
	logits, err := B.View(a.logits, 0, 1, g.m.Cfg.VocabSize)
	if err != nil {
		return nil, err
	}
	h, err := a.finalNorm(r, r+1)
	if err != nil {
		return nil, err
	}
	if err := B.MatMul(logits, h, g.m.Head.W.W, false, true, 1, 0); err != nil {
		return nil, fmt.Errorf("lm head: %w", err)
	}
	return logits, a.viewError()
}

// download reads logits back into g.host, soft-capped for Gemma 2.
func (g *Generator) download(logits Tensor) ([]float32, error) {
	if err := g.m.B.Download(logits, g.host); err != nil {
		return nil, err
	}
	if c := g.m.Cfg.FinalSoftCap; c > 0 {
		// Gemma 2 caps its final logits; one row, so on the host.
		for i, x := range g.host {
			g.host[i] = float32(c * math.Tanh(float64(x)/c))
		}
	}
	return g.host, nil
}

// step feeds tokens at the cache's next positions and returns the logits
// of the last one (in g.host).
func (g *Generator) step(tokens []int32) ([]float32, error) {
	logits, err := g.run(tokens)
	if err != nil {
		return nil, err
	}
	return g.download(logits)
}

// mode is the decoding path this generator can take, and why it is not
// g.Mode when it is not.
func (g *Generator) mode() (DecodeMode, string) {
	if g.Mode == DecodePlain || g.Mode == "" {
		return DecodePlain, ""
	}
	if _, ok := g.m.B.(DeviceDecoder); !ok {
		return DecodePlain, fmt.Sprintf("backend %s has no device-side decoding ops", g.m.B.Name())
	}
	if g.Mode == DecodeDevice {
		return DecodeDevice, ""
	}
	if _, ok := g.m.B.(StepRecorder); !ok {
		return DecodeDevice, fmt.Sprintf("backend %s cannot record a step", g.m.B.Name())
	}
	return DecodeGraph, ""
}

// deviceStep decodes one token at the position held on the device: the
// token in g.tok goes through the model, its k and v into the cache at
// g.pos, the argmax of its logits into g.tok, and g.pos moves on. It
// reads nothing from the host, so a recording of it serves every position.
func (g *Generator) deviceStep() error {
	a, B := g.acts, g.m.B
	dd := B.(DeviceDecoder)
	a.t, a.r0 = 1, 0
	a.training = false
	a.kv = g.cache
	g.cache.devPos = g.pos
	err := a.forward()
	a.kv, g.cache.devPos = nil, nil
	if err != nil {
		return err
	}
	if err := g.headArgmax(dd); err != nil {
		return err
	}
	if err := dd.AdvancePosition(g.pos, a.Cap); err != nil {
		return fmt.Errorf("advance position: %w", err)
	}
	return nil
}

// headArgmax runs the LM head on the first row of the final norm and
// leaves the argmax of its logits in g.tok: in one op (HeadArgmax) when
// g.HeadArgmax asks for it and the backend takes the operands, else the
// head's product and then Argmax.
func (g *Generator) headArgmax(dd DeviceDecoder) error {
	ha, ok := g.m.B.(HeadArgmax)
	if !g.HeadArgmax || !ok {
		logits, err := g.head(0)
		if err != nil {
			return err
		}
		if err := dd.Argmax(g.tok, logits); err != nil {
			return fmt.Errorf("argmax: %w", err)
		}
		return nil
	}
	a, B := g.acts, g.m.B
	logits, err := B.View(a.logits, 0, 1, g.m.Cfg.VocabSize)
	if err != nil {
		return err
	}
	h, err := a.finalNorm(0, 1)
	if err != nil {
		return err
	}
	done, err := ha.MatVecArgmax(g.tok, logits, h, g.m.Head.W.W)
	if err != nil {
		return fmt.Errorf("lm head with argmax: %w", err)
	}
	if !done {
		if err := B.MatMul(logits, h, g.m.Head.W.W, false, true, 1, 0); err != nil {
			return fmt.Errorf("lm head: %w", err)
		}
		if err := dd.Argmax(g.tok, logits); err != nil {
			return fmt.Errorf("argmax: %w", err)
		}
	}
	return a.viewError()
}

// recordKey describes what a recorded step depends on beyond the
// buffers: whether it takes the fused ops (Fuse), every parameter's
// storage and the adapters' switches and scales (the rotary table in use
// is added per step).
func (g *Generator) recordKey() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "fuse=%v;argmax=%v;", g.Fuse, g.HeadArgmax)
	for _, p := range g.m.Params() {
		fmt.Fprintf(&sb, "%p", p.W)
		if p.Quant != nil {
			fmt.Fprintf(&sb, "/%p/%p", p.Quant.Packed, p.Quant.Absmax)
		}
		sb.WriteByte(',')
	}
	for _, lin := range g.m.Linears() {
		if lo := lin.LoRA; lo != nil {
			fmt.Fprintf(&sb, "%v:%g,", lo.Enabled, lo.Scale)
		}
	}
	return sb.String()
}

// decodeStep runs one device step the way mode says: recorded once and
// replayed (DecodeGraph, after one step run directly so that kernels are
// loaded and plans made before recording), or run directly. A recording
// that fails leaves the step run directly, with the reason in g.Fallback.
func (g *Generator) decodeStep(mode DecodeMode) error {
	a := g.acts
	if rs := g.m.Cfg.RopeScaling; rs != nil && rs.Type == "longrope" {
		a.longRope = g.cache.pos+1 > rs.OriginalMaxPositionEmbeddings
	}
	if mode != DecodeGraph || g.eager < 1 {
		g.eager++
		return g.deviceStep()
	}
	same := g.recKey == g.paramsKey && g.recLong == a.longRope
	if g.rec == nil || !same {
		if g.rec != nil {
			g.rec.Free()
			g.rec = nil
		}
		if !same || g.recErr == nil {
			g.recKey, g.recLong = g.paramsKey, a.longRope
			g.rec, g.recErr = g.m.B.(StepRecorder).Record(g.deviceStep)
		}
	}
	if g.rec == nil {
		g.Used, g.Fallback = DecodeDevice, fmt.Sprintf("recording the step failed: %v", g.recErr)
		return g.deviceStep()
	}
	return g.rec.Replay()
}

// chunkable reports whether the next tokens may come from a multi-step
// replay: graph mode choosing on the device, Steps > 1, a step already run
// directly (kernels loaded), room in the cache and need (tokens still to
// produce) for all of them, no recording of them already failed, and no
// LongRoPE switch that a position inside the chunk could cross.
func (g *Generator) chunkable(mode DecodeMode, onDevice bool, need int) bool {
	if mode != DecodeGraph || !onDevice || g.Steps < 2 || need < g.Steps || g.eager < 1 || g.cache.pos+g.Steps > g.MaxLen {
		return false
	}
	if rs := g.m.Cfg.RopeScaling; rs != nil && rs.Type == "longrope" {
		return false
	}
	return g.chunkErr == nil || g.chunkKey != g.paramsKey
}

// decodeChunk decodes g.Steps tokens with one replay of a recording of that
// many device steps, each copying the id it chose into its slot of g.ids,
// and returns the ids (nil, with no error, when recording failed: the
// caller decodes step by step, and chunkErr keeps why).
func (g *Generator) decodeChunk() ([]int32, error) {
	B, n := g.m.B, g.Steps
	if g.ids == nil {
		ids, err := B.Alloc(I32, n)
		if err != nil {
			return nil, fmt.Errorf("generation: ids of %d steps: %w", n, err)
		}
		g.ids, g.idsHost = ids, make([]float32, n)
	}
	if g.chunkRec == nil || g.chunkKey != g.paramsKey {
		if g.chunkRec != nil {
			g.chunkRec.Free()
			g.chunkRec = nil
		}
		g.chunkKey = g.paramsKey
		slots := make([]Tensor, n)
		for j := range slots {
			v, err := B.View(g.ids, j, 1)
			if err != nil {
				return nil, fmt.Errorf("generation: id slot %d: %w", j, err)
			}
			slots[j] = v
		}
		g.chunkRec, g.chunkErr = B.(StepRecorder).Record(func() error {
			for j := range slots {
				if err := g.deviceStep(); err != nil {
					return fmt.Errorf("step %d of %d: %w", j+1, n, err)
				}
				if err := B.Copy(slots[j], g.tok); err != nil {
					return fmt.Errorf("step %d of %d: keep the id: %w", j+1, n, err)
				}
			}
			return nil
		})
		if g.chunkRec == nil {
			if g.Fallback == "" {
				g.Fallback = fmt.Sprintf("recording %d steps together failed (decoding step by step): %v", n, g.chunkErr)
			}
			return nil, nil
		}
	}
	if err := g.chunkRec.Replay(); err != nil {
		return nil, err
	}
	if err := B.Download(g.ids, g.idsHost); err != nil {
		return nil, fmt.Errorf("read the chosen tokens: %w", err)
	}
	out := make([]int32, n)
	for j, v := range g.idsHost {
		out[j] = int32(v)
	}
	g.Chunks++
	return out, nil
}

// readID reads the token id the device chose (g.tok).
func (g *Generator) readID() (int32, error) {
	if err := g.m.B.Download(g.tok, g.idHost); err != nil {
		return 0, fmt.Errorf("read the chosen token: %w", err)
	}
	return int32(g.idHost[0]), nil
}

// Generate continues prompt and returns the new token ids. onToken, when
// set, sees each new id as it is chosen and may return false to stop
// (stop strings are checked by the caller, which decodes text).
func (g *Generator) Generate(ctx context.Context, prompt []int32, o SampleOptions, onToken func(id int32) bool) ([]int32, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generation: empty prompt")
	}
	if o.MaxNewTokens <= 0 {
		o.MaxNewTokens = g.MaxLen - len(prompt)
	}
	if len(prompt)+o.MaxNewTokens > g.MaxLen {
		return nil, fmt.Errorf("generation: prompt of %d tokens + %d new exceeds the planned %d", len(prompt), o.MaxNewTokens, g.MaxLen)
	}
	g.cache.pos = 0
	rng := rand.New(rand.NewPCG(o.Seed, 0x6e6))
	seen := map[int32]bool{}
	for _, id := range prompt {
		seen[id] = true
	}
	mode, why := g.mode()
	g.Used, g.Fallback = mode, why
	if mode == DecodeGraph {
		g.paramsKey = g.recordKey()
		if g.Steps > 1 && g.chunkErr != nil && g.chunkKey == g.paramsKey {
			g.Fallback = fmt.Sprintf("recording %d steps together failed (decoding step by step): %v", g.Steps, g.chunkErr)
		}
	}
	g.acts.matVec = mode != DecodePlain
	g.acts.fuse = g.Fuse
	g.Chunks = 0
	// The greedy choice without a repetition penalty is an argmax, which
	// the device makes; anything else samples from logits read back.
	// (Gemma 2's final soft-cap is monotonic, so the argmax of the capped
	// logits is that of the raw ones.)
	onDevice := mode != DecodePlain && o.Temperature <= 0 && (o.RepetitionPenalty == 0 || o.RepetitionPenalty == 1)
	dd, _ := g.m.B.(DeviceDecoder)
	choose := func(logits Tensor) (int32, error) {
		if onDevice {
			if err := dd.Argmax(g.tok, logits); err != nil {
				return 0, fmt.Errorf("argmax: %w", err)
			}
			return g.readID()
		}
		host, err := g.download(logits)
		if err != nil {
			return 0, err
		}
		return Sample(host, o, seen, rng), nil
	}
	logits, err := g.run(prompt)
	if err != nil {
		return nil, err
	}
	id, err := choose(logits)
	if err != nil {
		return nil, err
	}
	if mode != DecodePlain {
		// The device steps read their position from the first slot.
		if err := g.m.B.UploadInt32(g.pos, []int32{int32(g.cache.pos)}); err != nil {
			return nil, fmt.Errorf("generation: set the position: %w", err)
		}
	}
	var out []int32
	var pending []int32 // ids a multi-step replay chose, not yet taken
	for len(out) < o.MaxNewTokens {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		out = append(out, id)
		seen[id] = true
		if onToken != nil && !onToken(id) {
			break
		}
		if isStop(id, o.StopIDs) || len(out) == o.MaxNewTokens {
			break
		}
		if mode == DecodePlain {
			if logits, err = g.run([]int32{id}); err != nil {
				return out, err
			}
			if id, err = choose(logits); err != nil {
				return out, err
			}
			continue
		}
		if len(pending) > 0 {
			id, pending = pending[0], pending[1:]
			continue
		}
		if g.chunkable(mode, onDevice, o.MaxNewTokens-len(out)) {
			ids, err := g.decodeChunk()
			if err != nil {
				return out, err
			}
			if ids != nil {
				g.cache.pos += len(ids)
				id, pending = ids[0], ids[1:]
				continue
			}
		}
		if g.cache.pos+1 > g.MaxLen {
			return out, fmt.Errorf("generation: %d tokens exceed the planned %d", g.cache.pos+1, g.MaxLen)
		}
		if !onDevice {
			if err := g.m.B.UploadInt32(g.tok, []int32{id}); err != nil {
				return out, fmt.Errorf("generation: set the token: %w", err)
			}
		}
		if err := g.decodeStep(mode); err != nil {
			return out, err
		}
		g.cache.pos++
		if onDevice {
			id, err = g.readID()
		} else {
			var host []float32
			if host, err = g.download(g.logitsRow()); err == nil {
				id = Sample(host, o, seen, rng)
			}
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// logitsRow is the first row of the logits buffer, where a device step
// leaves its logits.
func (g *Generator) logitsRow() Tensor {
	v, err := g.m.B.View(g.acts.logits, 0, 1, g.m.Cfg.VocabSize)
	if err != nil {
		g.acts.noteViewErr(err)
		return g.acts.logits
	}
	return v
}

func isStop(id int32, stops []int32) bool {
	for _, s := range stops {
		if id == s {
			return true
		}
	}
	return false
}

// Sample picks the next token from logits (modified in place), applying in
// transformers' order: repetition penalty, temperature, top-k, top-p,
// min-p. Temperature 0 is greedy; ties go to the lowest id, as argmax does.
func Sample(logits []float32, o SampleOptions, seen map[int32]bool, rng *rand.Rand) int32 {
	if o.RepetitionPenalty > 0 && o.RepetitionPenalty != 1 {
		pen := float32(o.RepetitionPenalty)
		for id := range seen {
			if int(id) < len(logits) {
				if logits[id] < 0 {
					logits[id] *= pen
				} else {
					logits[id] /= pen
				}
			}
		}
	}
	if o.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	negInf := float32(math.Inf(-1))
	for i := range logits {
		logits[i] /= float32(o.Temperature)
	}
	if o.TopK > 0 && o.TopK < len(logits) {
		sorted := append([]float32(nil), logits...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] > sorted[j] })
		kth := sorted[o.TopK-1]
		for i, v := range logits {
			if v < kth {
				logits[i] = negInf
			}
		}
	}
	probs := softmax64(logits)
	if o.TopP > 0 && o.TopP < 1 {
		idx := make([]int, len(probs))
		for i := range idx {
			idx[i] = i
		}
		// Ascending, as transformers' TopPLogitsWarper: drop the tokens
		// whose cumulative probability stays within 1-top_p, keep >= 1.
		sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] < probs[idx[b]] })
		var cum float64
		for n, i := range idx {
			cum += probs[i]
			if cum <= 1-o.TopP && n < len(idx)-1 {
				logits[i] = negInf
			}
		}
		probs = softmax64(logits)
	}
	if o.MinP > 0 {
		top := 0.0
		for _, p := range probs {
			top = math.Max(top, p)
		}
		for i, p := range probs {
			if p < o.MinP*top {
				logits[i] = negInf
			}
		}
		probs = softmax64(logits)
	}
	u := rng.Float64()
	var cum float64
	last := 0
	for i, p := range probs {
		if p == 0 {
			continue
		}
		last = i
		cum += p
		if u < cum {
			return int32(i)
		}
	}
	return int32(last)
}

func softmax64(logits []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(logits))
	var sum float64
	for i, v := range logits {
		out[i] = math.Exp(float64(v) - m)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
