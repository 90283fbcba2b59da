package engine_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/datasets/vision"
	"whet/engine"
)

// mllamaShapeSample is one captioned shape for the tiny Mllama: the
// 32x32 picture of gemma3_vision_train_test.go cut into its 2x2 grid of
// 16-pixel tiles (aspect-ratio id 6, tiles row-major, as the Mllama
// processor cuts a canvas), and "<|begin_of_text|> <|image|> 5 COLOUR SHAPE
// <eos>" with loss on the colour, the shape and the end.
func mllamaShapeSample(cfg *engine.MllamaConfig, s shapeSample) engine.MllamaSample {
	const S, tile = 32, 16
	px := make([]float32, 4*3*tile*tile)
	for r := 0; r < 2; r++ {
		for c := 0; c < 2; c++ {
			for ch := 0; ch < 3; ch++ {
				for y := 0; y < tile; y++ {
					for x := 0; x < tile; x++ {
						px[(((r*2+c)*3+ch)*tile+y)*tile+x] = s.pixels[(ch*S+r*tile+y)*S+c*tile+x]
					}
				}
			}
		}
	}
	ids := []int{1, cfg.ImageToken, shapePrompt, int(colourToken[s.colour]), int(shapeTokens[s.shape]), shapeEOS}
	out := engine.MllamaSample{Images: 1, Pixels: px, AspectRatioIDs: []int32{6}, AspectRatioMask: []int32{1, 1, 1, 1}}
	for _, b := range vision.CrossAttentionMask(vision.CrossAttentionSpans(ids, cfg.ImageToken), []int{4}, 4, len(ids)) {
		out.CrossMask = append(out.CrossMask, int32(b))
	}
	for i, id := range ids {
		out.IDs = append(out.IDs, int32(id))
		tg := int32(-100)
		if i >= 2 && i+1 < len(ids) {
			tg = int32(ids[i+1])
		}
		out.Targets = append(out.Targets, tg)
	}
	return out
}

// mllamaShapeScore is the held-out shape loss and how many shapes the
// model names first (argmax at the colour token).
func mllamaShapeScore(t *testing.T, m *engine.MllamaModel, cfg *engine.MllamaConfig, samples []shapeSample) (float64, int) {
	t.Helper()
	var in []engine.MllamaSample
	for _, s := range samples {
		in = append(in, mllamaShapeSample(cfg, s))
	}
	r, err := m.Run(in, false, true)
	if err != nil {
		t.Fatal(err)
	}
	V := cfg.Text.VocabSize
	var loss float64
	correct := 0
	for i, s := range samples {
		row := r.Logits[i][3*V : 4*V]
		l, ok := rowScore(row, shapeTokens[s.shape])
		loss += l
		if ok {
			correct++
		}
	}
	return loss / float64(len(samples)), correct
}

// TestMllamaLearnsShapes trains LoRA on the tiny random Llama 3.2 Vision's
// language model (cross-attention layer included) and projector, the
// vision tower frozen, on generated pictures of three shapes in four
// colours, until it names the shapes of held-out pictures: the pictures
// reach the text only through the gated cross-attention layer.
func TestMllamaLearnsShapes(t *testing.T) {
	m, cfg := loadTinyMllama(t, 31)
	rng := rand.New(rand.NewPCG(32, 33))
	if err := m.AddLoRA(engine.MllamaLoRA{Rank: 8, Alpha: 16, Projector: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		if strings.HasSuffix(p.Name, "lora_A.weight") {
			uploadRandom(t, m, p, rng, 0.1) // B stays 0: the adapted model starts as the base
		}
	}
	// The final norm's scale too: a tiny random model's head cannot make
	// one of 256 logits stand out otherwise (as in TestGemma3VisionLearnsShapes).
	if err := m.MakeTrainable(m.Norm); err != nil {
		t.Fatal(err)
	}
	train, heldOut := shapeSamples(rng, 72), shapeSamples(rand.New(rand.NewPCG(34, 35)), 24)
	loss0, correct0 := mllamaShapeScore(t, m, cfg, heldOut)
	const steps, perBatch = 480, 6
	for step := 0; step < steps; step++ {
		var batch []engine.MllamaSample
		for i := 0; i < perBatch; i++ {
			batch = append(batch, mllamaShapeSample(cfg, train[(step*perBatch+i)%len(train)]))
		}
		if err := m.ZeroGrads(); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Run(batch, true, false); err != nil {
			t.Fatal(err)
		}
		// Clip the gradient norm at 1.
		var ss float64
		var grads []engine.Tensor
		for _, p := range m.Params() {
			if p.Trainable {
				n, err := m.B.SumSquares(p.Grad)
				if err != nil {
					t.Fatal(err)
				}
				ss += n
				grads = append(grads, p.Grad)
			}
		}
		if norm := math.Sqrt(ss); norm > 1 {
			for _, g := range grads {
				if err := m.B.Scale(g, float32(1/norm)); err != nil {
					t.Fatal(err)
				}
			}
		}
		lr := 1e-2 * 0.5 * (1 + math.Cos(math.Pi*float64(step)/steps))
		if err := m.AdamW(engine.AdamWParams{LR: float32(lr), Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: step + 1}); err != nil {
			t.Fatal(err)
		}
	}
	loss1, correct1 := mllamaShapeScore(t, m, cfg, heldOut)
	t.Logf("held-out shape loss %.3f -> %.3f, named %d -> %d of %d", loss0, loss1, correct0, correct1, len(heldOut))
	if correct1 < 20 || correct1 <= correct0 || loss1 >= loss0/2 {
		t.Errorf("held-out shapes: loss %.3f -> %.3f, named %d -> %d of %d; want at least 20 and the loss halved", loss0, loss1, correct0, correct1, len(heldOut))
	}
	// Describe held-out pictures: the prompt up to "5", then greedy tokens.
	right := 0
	for _, s := range heldOut[:6] {
		in := mllamaShapeSample(cfg, s)
		in.IDs, in.Targets, in.CrossMask = in.IDs[:3], in.Targets[:3], in.CrossMask[:3*4]
		got, err := m.Greedy(in, 4, []int32{shapeEOS})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= 2 && got[0] == colourToken[s.colour] && got[1] == shapeTokens[s.shape] {
			right++
		}
	}
	t.Logf("greedy captions with colour and shape right: %d of 6", right)
	if right < 4 {
		t.Errorf("greedy captions right for %d of 6 held-out pictures, want at least 4", right)
	}
}
