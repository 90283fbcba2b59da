package engine_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"whet/datasets"
	"whet/engine"
)

// The shapes task: 32×32 images of a circle, a square or a triangle in one
// of four colours (size, place and background noise vary), captioned
// "<colour> <shape>". Token ids stand for the words (the tiny model has no
// real tokenizer): a prompt token, the image block, then the caption.
const (
	shapePrompt = 5
	shapeEOS    = 2
)

var (
	shapeNames  = []string{"circle", "square", "triangle"}
	shapeTokens = []int32{10, 11, 12}
	colourRGB   = [][3]float64{{0.9, 0.1, 0.1}, {0.1, 0.8, 0.2}, {0.15, 0.25, 0.95}, {0.95, 0.85, 0.1}}
	colourToken = []int32{20, 21, 22, 23}
)

type shapeSample struct {
	shape, colour int
	pixels        []float32 // [3, 32, 32], normalised as Gemma3ImageProcessor does ((v/255 - 0.5)/0.5)
}

// drawShape paints one sample.
func drawShape(rng *rand.Rand, shape, colour int) shapeSample {
	const S = 32
	px := make([]float32, 3*S*S)
	cx := 16 + rng.Float64() - 0.5
	cy := 16 + rng.Float64() - 0.5
	r := 10 + rng.Float64() - 0.5
	inside := func(x, y float64) bool {
		dx, dy := x-cx, y-cy
		switch shape {
		case 0:
			return dx*dx+dy*dy <= r*r
		case 1:
			return math.Abs(dx) <= r*0.85 && math.Abs(dy) <= r*0.85
		default: // apex up, base down
			return dy <= r*0.8 && dy >= -r && math.Abs(dx) <= (dy+r)*0.6
		}
	}
	for y := 0; y < S; y++ {
		for x := 0; x < S; x++ {
			in := inside(float64(x)+0.5, float64(y)+0.5)
			for ch := 0; ch < 3; ch++ {
				v := 0.2 + rng.Float64()*0.04
				if in {
					v = colourRGB[colour][ch] + rng.Float64()*0.04
				}
				px[(ch*S+y)*S+x] = float32((min(v, 1) - 0.5) / 0.5)
			}
		}
	}
	return shapeSample{shape, colour, px}
}

func shapeSamples(rng *rand.Rand, n int) []shapeSample {
	out := make([]shapeSample, n)
	for i := range out {
		out[i] = drawShape(rng, i%3, (i/3)%4)
	}
	rng.Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// shapeBatch packs samples as sequences: prompt, image block, caption, eos.
// Only the caption and eos are targets.
func shapeBatch(samples []shapeSample, tokensPerImage int) (*datasets.Batch, []float32) {
	b := &datasets.Batch{SeqStarts: []int32{0}}
	var px []float32
	for _, s := range samples {
		seq := []int32{shapePrompt, g3BOI}
		for range tokensPerImage {
			seq = append(seq, g3Image)
		}
		seq = append(seq, g3EOI, colourToken[s.colour], shapeTokens[s.shape], shapeEOS)
		caption := len(seq) - 3 // index of the colour token
		for i, id := range seq {
			b.Tokens = append(b.Tokens, id)
			b.Positions = append(b.Positions, int32(i))
			tgt := int32(datasets.IgnoreIndex)
			if i+1 < len(seq) && i+1 >= caption {
				tgt = seq[i+1]
			}
			b.Targets = append(b.Targets, tgt)
		}
		b.SeqStarts = append(b.SeqStarts, int32(len(b.Tokens)))
		px = append(px, s.pixels...)
	}
	return b, px
}

// shapeScore is the held-out mean loss of the shape word and how often the
// most likely next token after "<image> <colour>" is the right shape.
func shapeScore(t *testing.T, acts *engine.Activations, m *engine.Model, samples []shapeSample, tokensPerImage int) (loss float64, correct int) {
	t.Helper()
	b, px := shapeBatch(samples, tokensPerImage)
	if err := acts.SetImages(px, len(samples)); err != nil {
		t.Fatal(err)
	}
	logits, err := acts.Logits(b)
	if err != nil {
		t.Fatal(err)
	}
	V := m.Cfg.VocabSize
	for i, s := range samples {
		pos := int(b.SeqStarts[i+1]) - 3 // the colour token: its next token is the shape
		row := logits[pos*V : (pos+1)*V]
		l, ok := rowScore(row, shapeTokens[s.shape])
		loss += l
		if ok {
			correct++
		}
	}
	return loss / float64(len(samples)), correct
}

// rowScore is the cross-entropy of token want under one row of logits,
// and whether want is the row's most likely token.
func rowScore(row []float32, want int32) (float64, bool) {
	best, lse := 0, math.Inf(-1)
	for j, v := range row {
		if v > row[best] {
			best = j
		}
		lse = logaddexp(lse, float64(v))
	}
	return lse - float64(row[want]), int32(best) == want
}

func logaddexp(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(b, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// greedyCaption describes one image: "prompt <image>" and greedy decoding
// with the KV-cache generator until eos or 4 tokens.
func greedyCaption(t *testing.T, m *engine.Model, s shapeSample, tokensPerImage int) []int32 {
	t.Helper()
	ids := []int32{shapePrompt, g3BOI}
	for range tokensPerImage {
		ids = append(ids, g3Image)
	}
	ids = append(ids, g3EOI)
	g, err := m.NewGenerator(len(ids) + 4)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	if err := g.SetImages(s.pixels, 1); err != nil {
		t.Fatal(err)
	}
	out, err := g.Generate(context.Background(), ids, engine.Greedy(4, []int32{shapeEOS}), nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGemma3VisionLearnsShapes trains LoRA on the language model and the
// projector of a tiny random Gemma 3 vision model (tower frozen) on
// captioned shapes until it names the shapes of held-out images better
// than before, then describes a held-out image.
func TestGemma3VisionLearnsShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 24))
	m := loadGemma3Vision(t, writeRandomGemma3Vision(t, tinyGemma3VisionConfig, false, "", nil))
	M := m.Gemma3Vision.Cfg.TokensPerImage
	if err := m.AddLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := m.AddGemma3ProjectorLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	// The tiny random model's tied embeddings (std 0.1 over 32 values) cap
	// how far one logit can stand above 511 others; training the final norm's
	// scale too lets the model become confident, as a real one can.
	if err := m.MakeTrainable(m.Norm); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Gemma3Vision.TowerParams() {
		if p.Trainable {
			t.Fatalf("%s is trainable: the tower is frozen by default", p.Name)
		}
	}
	train, heldOut := shapeSamples(rng, 72), shapeSamples(rand.New(rand.NewPCG(8, 24)), 24)
	const perBatch = 6
	evalActs, err := m.NewActivations(len(heldOut)*(M+6), false)
	if err != nil {
		t.Fatal(err)
	}
	defer evalActs.Free()
	loss0, correct0 := shapeScore(t, evalActs, m, heldOut, M)

	acts, err := m.NewActivations(perBatch*(M+6), false)
	if err != nil {
		t.Fatal(err)
	}
	defer acts.Free()
	opt := &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
	const steps = 600
	var first, last float64
	for step := 0; step < steps; step++ {
		i0 := (step * perBatch) % len(train)
		b, px := shapeBatch(train[i0:i0+perBatch], M)
		if err := m.ZeroGrads(); err != nil {
			t.Fatal(err)
		}
		if err := acts.SetImages(px, perBatch); err != nil {
			t.Fatal(err)
		}
		r, err := acts.ForwardBackward(b, float32(1/float64(b.NumTargets())), true, uint64(step))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := engine.ClipGrads(m, 1); err != nil {
			t.Fatal(err)
		}
		// Cosine decay from 1e-2, so the last steps settle.
		if err := opt.Apply(m, 1e-2*0.5*(1+math.Cos(math.Pi*float64(step)/steps))); err != nil {
			t.Fatal(err)
		}
		l := r.LossSum / float64(r.Count)
		if step == 0 {
			first = l
		}
		last = l
	}
	loss1, correct1 := shapeScore(t, evalActs, m, heldOut, M)
	t.Logf("training loss %.3f -> %.3f; held-out shape loss %.3f -> %.3f, named right %d -> %d of %d",
		first, last, loss0, loss1, correct0, correct1, len(heldOut))
	if !(loss1 < loss0/2) {
		t.Errorf("held-out shape loss %.3f -> %.3f: did not halve", loss0, loss1)
	}
	if correct1 <= correct0 || correct1 < len(heldOut)*2/3 {
		t.Errorf("held-out shapes named right %d -> %d of %d: want more than before and at least 2/3", correct0, correct1, len(heldOut))
	}

	// "Chat": describe a held-out image.
	s := heldOut[0]
	got := greedyCaption(t, m, s, M)
	t.Logf("held-out %s %s described as %v", []string{"red", "green", "blue", "yellow"}[s.colour], shapeNames[s.shape], got)
	if len(got) < 2 || got[0] != colourToken[s.colour] || got[1] != shapeTokens[s.shape] {
		t.Errorf("held-out image (colour %d, %s) described as %v, want [%d %d ...]", s.colour, shapeNames[s.shape], got, colourToken[s.colour], shapeTokens[s.shape])
	}
}
