package engine_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// tinyGemma3VisionConfig is the tiny Gemma3ForConditionalGeneration of
// tools/reference/make_vision_model_reference.py, written the same way.
const tinyGemma3VisionConfig = `{
  "architectures": ["Gemma3ForConditionalGeneration"],
  "model_type": "gemma3",
  "boi_token_index": 509, "eoi_token_index": 510, "image_token_index": 511,
  "mm_tokens_per_image": 4,
  "text_config": {
    "model_type": "gemma3_text", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "query_pre_attn_scalar": 24,
    "vocab_size": 512, "max_position_embeddings": 512, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "rope_theta": 1000000.0, "sliding_window": 3, "sliding_window_pattern": 2,
    "layer_types": ["sliding_attention", "full_attention"], "pad_token_id": null, "bos_token_id": null,
    "eos_token_id": 2, "tie_word_embeddings": true
  },
  "vision_config": {
    "model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "vision_use_head": false
  }
}`

const g3Image, g3BOI, g3EOI = 511, 509, 510

// writeRandomGemma3Vision writes config and seeded random weights of the
// tiny model into a new folder, the tensors under the released names
// (language_model.model.*, vision_tower.*, multi_modal_projector.*) or,
// with transformers5, under transformers 5's (model.language_model.*,
// model.vision_tower.*, model.multi_modal_projector.*); skip leaves a
// tensor out and reshape changes one's shape.
func writeRandomGemma3Vision(t *testing.T, config string, transformers5 bool, skip string, reshape map[string][]int) string {
	t.Helper()
	layout := 0
	if transformers5 {
		layout = 1
	}
	return writeRandomGemma3VisionIn(t, config, layout, skip, reshape)
}

// writeRandomGemma3VisionIn is writeRandomGemma3Vision with the tower and
// projector in engine's layout number layout (Gemma3VisionFileName), the
// text model under model.language_model. when the layout's names start
// with model. and under language_model.model. otherwise; skip and reshape
// take whet's names.
func writeRandomGemma3VisionIn(t *testing.T, config string, layout int, skip string, reshape map[string][]int) string {
	t.Helper()
	transformers5 := strings.HasPrefix(engine.Gemma3VisionFileName(layout, "multi_modal_projector.x"), "model.")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadModelConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := cpu.New()
	m, err := engine.NewModel(*cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := engine.ParseGemma3VisionConfig([]byte(config), cfg.HiddenSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AttachGemma3Vision(vc, nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(24, 3))
	var ts []safetensors.Tensor
	for _, p := range m.Params() {
		v := make([]float32, p.W.Len())
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.1)
		}
		if strings.Contains(p.Name, "layer_norm") || strings.Contains(p.Name, "layernorm.") {
			for i := range v {
				v[i] += 1 // SigLIP's LayerNorms scale by w (Gemma's RMSNorms by 1 + w)
			}
		}
		name := p.Name
		switch {
		case strings.HasPrefix(name, "model.") && transformers5:
			name = "model.language_model." + strings.TrimPrefix(name, "model.")
		case strings.HasPrefix(name, "model."):
			name = "language_model.model." + strings.TrimPrefix(name, "model.")
		default:
			name = engine.Gemma3VisionFileName(layout, name)
		}
		if p.Name == skip || name == skip {
			continue
		}
		shape := p.Shape
		if s, ok := reshape[p.Name]; ok {
			shape = s
			v = make([]float32, numelOf(s))
		}
		ts = append(ts, safetensors.F32Tensor(name, shape, v))
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	m.Free()
	return dir
}

func numelOf(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// gemma3VisionBatch is two sequences, the first with one image and the
// second with two (each framed by BOI/EOI), as the reference batch is;
// targets skip predicting image tokens.
func gemma3VisionBatch(rng *rand.Rand, tokensPerImage int) *datasets.Batch {
	b := &datasets.Batch{SeqStarts: []int32{0}}
	for s, spec := range [][3]int{{3, 1, 5}, {2, 2, 4}} {
		var seq []int32
		for range spec[0] {
			seq = append(seq, int32(3+rng.IntN(500)))
		}
		for range spec[1] {
			seq = append(seq, g3BOI)
			for range tokensPerImage {
				seq = append(seq, g3Image)
			}
			seq = append(seq, g3EOI)
		}
		for range spec[2] {
			seq = append(seq, int32(3+rng.IntN(500)))
		}
		for i, id := range seq {
			b.Tokens = append(b.Tokens, id)
			b.Positions = append(b.Positions, int32(i))
			tgt := int32(datasets.IgnoreIndex)
			if i+1 < len(seq) && seq[i+1] != g3Image && !(s == 1 && i < 3) {
				tgt = seq[i+1]
			}
			b.Targets = append(b.Targets, tgt)
		}
		b.SeqStarts = append(b.SeqStarts, int32(len(b.Tokens)))
	}
	return b
}

func randomPixels(rng *rand.Rand, n int) []float32 {
	px := make([]float32, n*3*32*32)
	for i := range px {
		px[i] = float32(rng.Float64()*2 - 1)
	}
	return px
}

func loadGemma3Vision(t *testing.T, dir string) *engine.Model {
	t.Helper()
	m, err := engine.LoadGemma3Vision(dir, cpu.New(), engine.ModelOptions{})
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	if m.Gemma3Vision == nil {
		t.Fatalf("load %s: no vision tower attached", dir)
	}
	t.Cleanup(m.Free)
	return m
}

// TestGemma3VisionLoadsBothLayouts: the released names and transformers
// 5's give the same model (the same logits).
func TestGemma3VisionLoadsBothLayouts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 24))
	batch := gemma3VisionBatch(rng, 4)
	px := randomPixels(rng, 3)
	var logits [][]float32
	// The released names, transformers 5's module names, and transformers
	// 5.17's saved and module names (no vision_model. under vision_tower.).
	for layout := range 4 {
		m := loadGemma3Vision(t, writeRandomGemma3VisionIn(t, tinyGemma3VisionConfig, layout, "", nil))
		acts, err := m.NewActivations(len(batch.Tokens), false)
		if err != nil {
			t.Fatal(err)
		}
		if err := acts.SetImages(px, 3); err != nil {
			t.Fatal(err)
		}
		l, err := acts.Logits(batch)
		if err != nil {
			t.Fatal(err)
		}
		logits = append(logits, l)
		acts.Free()
	}
	for l := 1; l < len(logits); l++ {
		if e := relErr(logits[l], logits[0]); e != 0 {
			t.Errorf("layout %d gives other logits (rel %g)", l, e)
		}
	}
}

// TestGemma3VisionImagesMatter: the logits depend on the pixels, only from
// the first image token on, and the image tokens' embeddings are not read.
func TestGemma3VisionImagesMatter(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 24))
	batch := gemma3VisionBatch(rng, 4)
	m := loadGemma3Vision(t, writeRandomGemma3Vision(t, tinyGemma3VisionConfig, false, "", nil))
	acts, err := m.NewActivations(len(batch.Tokens), false)
	if err != nil {
		t.Fatal(err)
	}
	defer acts.Free()
	run := func(px []float32) []float32 {
		if err := acts.SetImages(px, 3); err != nil {
			t.Fatal(err)
		}
		l, err := acts.Logits(batch)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	px := randomPixels(rng, 3)
	a := run(px)
	px2 := append([]float32(nil), px...)
	for i := 2 * 3 * 32 * 32; i < len(px2); i++ { // the third image only (second sequence's second)
		px2[i] = -px2[i]
	}
	b := run(px2)
	V := m.Cfg.VocabSize
	firstImage2 := 14 + 2 + 1 + 4 + 1 + 1 // second sequence: 2 text, BOI, 4 image, EOI, BOI, then image 3
	for tok := range len(batch.Tokens) {
		diff := relErr(a[tok*V:(tok+1)*V], b[tok*V:(tok+1)*V])
		if tok < firstImage2 && diff != 0 {
			t.Errorf("token %d before the changed image changed (%g)", tok, diff)
		}
		if tok >= firstImage2 && diff == 0 {
			t.Errorf("token %d after the changed image did not change", tok)
		}
	}
	if err := acts.SetImages(px[:2*3*32*32], 2); err != nil {
		t.Fatal(err)
	}
	if _, err := acts.Logits(batch); err == nil || !strings.Contains(err.Error(), "12 image tokens") {
		t.Errorf("2 images for 3 image runs: %v", err)
	}
	if err := acts.SetImages(px[:5], 1); err == nil {
		t.Error("5 pixel values for an image of 3×32×32 were taken")
	}
}

// TestGemma3VisionFiniteDiff: every trainable tensor's gradient (language
// model, projector and tower; then LoRA on the language model and the
// projector; then LoRA on the language model and the tower's linear
// layers, lora.vision_layers) against central differences of the loss.
func TestGemma3VisionFiniteDiff(t *testing.T) {
	for _, mode := range []string{"full", "lora", "vision_layers"} {
		t.Run(mode, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 24))
			batch := gemma3VisionBatch(rng, 4)
			m := loadGemma3Vision(t, writeRandomGemma3Vision(t, tinyGemma3VisionConfig, false, "", nil))
			switch mode {
			case "full":
				if err := m.MakeAllTrainable(); err != nil {
					t.Fatal(err)
				}
			case "vision_layers":
				if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 5}); err != nil {
					t.Fatal(err)
				}
				if err := m.AddGemma3VisionLayersLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 7}); err != nil {
					t.Fatal(err)
				}
				randomLoRAB(t, m, rng)
				lins := m.Gemma3Vision.TowerLinears()
				if len(lins) != 12 {
					t.Fatalf("%d tower linears, want 2 layers × 6", len(lins))
				}
				for _, lin := range lins {
					v := make([]float32, lin.LoRA.B.W.Len())
					for i := range v {
						v[i] = float32(rng.NormFloat64() * 0.3)
					}
					if err := m.B.Upload(lin.LoRA.B.W, v); err != nil {
						t.Fatal(err)
					}
				}
				if n := len(m.TrainableParams()); n != 2*len(m.Linears())+2*12 {
					t.Fatalf("%d trainable tensors, want the language model's and 24 tower adapters'", n)
				}
			default:
				if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 5}); err != nil {
					t.Fatal(err)
				}
				if err := m.AddGemma3ProjectorLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 6}); err != nil {
					t.Fatal(err)
				}
				randomLoRAB(t, m, rng)
				lb := m.Gemma3Vision.ProjLoRA.B
				v := make([]float32, lb.W.Len())
				for i := range v {
					v[i] = float32(rng.NormFloat64() * 0.3)
				}
				if err := m.B.Upload(lb.W, v); err != nil {
					t.Fatal(err)
				}
			}
			acts, err := m.NewActivations(len(batch.Tokens), false)
			if err != nil {
				t.Fatal(err)
			}
			defer acts.Free()
			if err := acts.SetImages(randomPixels(rng, 3), 3); err != nil {
				t.Fatal(err)
			}
			count := float64(batch.NumTargets())
			if err := m.ZeroGrads(); err != nil {
				t.Fatal(err)
			}
			if _, err := acts.ForwardBackward(batch, float32(1/count), true, 0); err != nil {
				t.Fatal(err)
			}
			grads := trainableGrads(m)
			nonzero := 0
			for pi, p := range m.TrainableParams() {
				var s float64
				for _, g := range grads[pi] {
					s += math.Abs(float64(g))
				}
				if s > 0 {
					nonzero++
				} else {
					t.Errorf("%s has an all-zero gradient", p.Name)
				}
			}
			lossAt := func() float64 {
				r, err := acts.ForwardBackward(batch, 0, false, 0)
				if err != nil {
					t.Fatal(err)
				}
				return r.LossSum / float64(r.Count)
			}
			checkFiniteDiffAt(t, m, rng, grads, lossAt, mode+" ", fdStep{h: 3e-3, tol: 2e-4, coords: 2})
			t.Logf("%d trainable tensors checked", nonzero)
		})
	}
}

// greedyByRecompute decodes n tokens greedily by running the whole prefix
// through Logits each time (no cache), the image given to every pass.
func greedyByRecompute(t *testing.T, m *engine.Model, prompt []int32, px []float32, nImages, n int) []int32 {
	t.Helper()
	acts, err := m.NewActivations(len(prompt)+n, false)
	if err != nil {
		t.Fatal(err)
	}
	defer acts.Free()
	if err := acts.SetImages(px, nImages); err != nil {
		t.Fatal(err)
	}
	ids := append([]int32(nil), prompt...)
	V := m.Cfg.VocabSize
	for range n {
		b := &datasets.Batch{Tokens: ids, SeqStarts: []int32{0, int32(len(ids))}}
		for i := range ids {
			b.Positions = append(b.Positions, int32(i))
			b.Targets = append(b.Targets, datasets.IgnoreIndex)
		}
		logits, err := acts.Logits(b)
		if err != nil {
			t.Fatal(err)
		}
		row := logits[(len(ids)-1)*V:]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		ids = append(ids, int32(best))
	}
	return ids[len(prompt):]
}

// generateWithImage decodes greedily with the KV-cache generator.
func generateWithImage(t *testing.T, m *engine.Model, prompt []int32, px []float32, nImages, n int) []int32 {
	t.Helper()
	g, err := m.NewGenerator(len(prompt) + n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	if err := g.SetImages(px, nImages); err != nil {
		t.Fatal(err)
	}
	out, err := g.Generate(context.Background(), prompt, engine.Greedy(n, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGemma3VisionGenerate: the KV-cache generator with an image (the
// prefill attending with the image groups, the steps after it causally)
// decodes what recomputing the whole prefix each step decodes, in every
// decoding mode; a second prompt without images runs as text.
func TestGemma3VisionGenerate(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 24))
	m := loadGemma3Vision(t, writeRandomGemma3Vision(t, tinyGemma3VisionConfig, false, "", nil))
	prompt := []int32{37, 100, 7, g3BOI, g3Image, g3Image, g3Image, g3Image, g3EOI, 55}
	px := randomPixels(rng, 1)
	want := greedyByRecompute(t, m, prompt, px, 1, 8)
	for _, mode := range []string{"plain", "device", "graph"} {
		t.Setenv(engine.DecodeModeEnv, mode)
		if got := generateWithImage(t, m, prompt, px, 1, 8); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: generated %v, recomputed %v", mode, got, want)
		}
	}
	g, err := m.NewGenerator(20)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	if err := g.SetImages(px, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Generate(context.Background(), prompt, engine.Greedy(3, nil), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Generate(context.Background(), []int32{37, 100, 7}, engine.Greedy(3, nil), nil); err != nil {
		t.Errorf("a text prompt after an image prompt: %v", err)
	}
	if _, err := g.Generate(context.Background(), prompt, engine.Greedy(3, nil), nil); err == nil || !strings.Contains(err.Error(), "image tokens") {
		t.Errorf("image tokens without images: %v", err)
	}
}

func TestGemma3VisionLoadErrors(t *testing.T) {
	cases := []struct {
		name    string
		config  string
		skip    string
		reshape map[string][]int
		want    []string
	}{
		{"missing tensor", tinyGemma3VisionConfig, "vision_tower.vision_model.encoder.layers.1.mlp.fc2.bias", nil,
			[]string{"missing tensor vision_tower.vision_model.encoder.layers.1.mlp.fc2.bias"}},
		{"missing projector", tinyGemma3VisionConfig, "multi_modal_projector.mm_input_projection_weight", nil,
			[]string{"missing tensor multi_modal_projector.mm_input_projection_weight"}},
		{"wrong shape", tinyGemma3VisionConfig, "", map[string][]int{"vision_tower.vision_model.embeddings.position_embedding.weight": {15, 32}},
			[]string{"vision_tower.vision_model.embeddings.position_embedding.weight", "[15 32]", "[16 32]"}},
		{"tokens not square", strings.Replace(tinyGemma3VisionConfig, `"mm_tokens_per_image": 4`, `"mm_tokens_per_image": 3`, 1), "", nil,
			[]string{"mm_tokens_per_image", "3 is not a square"}},
		{"uneven pooling", strings.Replace(tinyGemma3VisionConfig, `"mm_tokens_per_image": 4`, `"mm_tokens_per_image": 9`, 1), "", nil,
			[]string{"do not pool evenly", "mm_tokens_per_image 9"}},
		{"patch size", strings.Replace(tinyGemma3VisionConfig, `"patch_size": 8`, `"patch_size": 5`, 1), "", nil,
			[]string{"image_size 32 is not a multiple of patch_size 5"}},
		{"activation", strings.Replace(tinyGemma3VisionConfig, `"vision_use_head": false`, `"vision_use_head": false, "hidden_act": "relu"`, 1), "", nil,
			[]string{"vision_config.hidden_act", "relu"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.config
			// The files are written from a valid config; the case's config.json replaces it.
			dir := writeRandomGemma3Vision(t, tinyGemma3VisionConfig, false, tc.skip, tc.reshape)
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := engine.LoadGemma3Vision(dir, cpu.New(), engine.ModelOptions{})
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestGemma3VisionLoadErrorsNameTheFilesTensor: a file in transformers
// 5.17's layout missing a tower tensor is refused naming the tensor as
// that file would hold it, and the layout; one holding no patch embedding
// under any layout names every spelling looked for.
func TestGemma3VisionLoadErrorsNameTheFilesTensor(t *testing.T) {
	dir := writeRandomGemma3VisionIn(t, tinyGemma3VisionConfig, 2, "vision_tower.vision_model.encoder.layers.1.mlp.fc2.bias", nil)
	_, err := engine.LoadGemma3Vision(dir, cpu.New(), engine.ModelOptions{})
	if err == nil || !strings.Contains(err.Error(), "missing tensor vision_tower.encoder.layers.1.mlp.fc2.bias") ||
		!strings.Contains(err.Error(), "5.17") {
		t.Errorf("missing tensor in the 5.17 layout: %v", err)
	}
	dir = writeRandomGemma3VisionIn(t, tinyGemma3VisionConfig, 3, "vision_tower.vision_model.embeddings.patch_embedding.weight", nil)
	_, err = engine.LoadGemma3Vision(dir, cpu.New(), engine.ModelOptions{})
	for _, w := range []string{"no vision tower", "vision_tower.vision_model.embeddings.patch_embedding.weight", "model.vision_tower.embeddings.patch_embedding.weight"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("no patch embedding: error %v does not say %q", err, w)
		}
	}
}

// TestGemma3PatchesByHand: the patch rows follow the conv weight's
// (channel, row, column) order, patches row-major over the image.
func TestGemma3PatchesByHand(t *testing.T) {
	c := &engine.Gemma3VisionConfig{Channels: 2, ImageSize: 4, PatchSize: 2}
	px := make([]float32, 2*2*4*4) // two images: value = image*1000 + channel*100 + y*10 + x
	for i := 0; i < 2; i++ {
		for ch := 0; ch < 2; ch++ {
			for y := 0; y < 4; y++ {
				for x := 0; x < 4; x++ {
					px[((i*2+ch)*4+y)*4+x] = float32(i*1000 + ch*100 + y*10 + x)
				}
			}
		}
	}
	got, err := c.Gemma3Patches(px, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Image 1, patch (1, 0): rows 2-3, columns 0-1.
	row := got[(1*4+2)*8 : (1*4+3)*8]
	want := []float32{1020, 1021, 1030, 1031, 1120, 1121, 1130, 1131}
	for i := range want {
		if row[i] != want[i] {
			t.Fatalf("image 1 patch (1,0) = %v, want %v", row, want)
		}
	}
}

// TestReferenceGemma3Vision compares the CPU engine with transformers on
// the tiny Gemma3ForConditionalGeneration: the tower and projector
// outputs, logits, loss, every gradient of full fine-tuning and the LoRA
// gradients (language model and projector), all within 1e-4.
func TestReferenceGemma3Vision(t *testing.T) {
	const name = "tiny-gemma3-vision"
	if _, err := os.Stat(filepath.Join("..", "testdata", "reference", name+".safetensors")); err != nil {
		t.Skipf("no reference for %s yet: make it with tools/reference/make_vision_model_reference.py (needs torch + transformers; docs in tools/reference/README.md)", name)
	}
	rc := openReference(t, name)
	pixels := mustF32(t, rc.state, "pixel_values")
	nImages := len(mustI32(t, rc.state, "image_seq"))
	newActs := func(m *engine.Model) *engine.Activations {
		acts, err := m.NewActivations(len(rc.batch.Tokens), false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(acts.Free)
		if err := acts.SetImages(pixels, nImages); err != nil {
			t.Fatal(err)
		}
		return acts
	}
	count := rc.batch.NumTargets()

	t.Run("logits", func(t *testing.T) {
		m := loadGemma3Vision(t, rc.dir)
		acts := newActs(m)
		logits, err := acts.Logits(rc.batch)
		if err != nil {
			t.Fatal(err)
		}
		hidden, err := acts.Gemma3VisionHidden()
		if err != nil {
			t.Fatal(err)
		}
		feats, err := acts.Gemma3ImageFeatures()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			got  []float32
		}{{"vision_hidden", hidden}, {"image_features", feats}, {"logits", logits}} {
			want := mustF32(t, rc.state, c.name)
			if len(c.got) != len(want) {
				t.Errorf("%s: %d values, reference %d", c.name, len(c.got), len(want))
				continue
			}
			if e := relErr(c.got, want); e > refTol {
				t.Errorf("%s relative error %.3g > %g", c.name, e, refTol)
			}
		}
		r, err := acts.ForwardBackward(rc.batch, 0, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := float64(mustF32(t, rc.state, "loss")[0])
		if got := r.LossSum / float64(r.Count); math.Abs(got-want)/want > refTol {
			t.Errorf("loss %.7f, transformers %.7f", got, want)
		}
	})

	t.Run("generate", func(t *testing.T) {
		m := loadGemma3Vision(t, rc.dir)
		prompt := mustI32(t, rc.state, "gen_prompt")
		want := mustI32(t, rc.state, "gen_output")
		got := generateWithImage(t, m, prompt, pixels[:len(pixels)/nImages], 1, len(want))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("greedy ids with the first image\n got %v\nwant %v", got, want)
		}
	})

	t.Run("full gradients", func(t *testing.T) {
		m := loadGemma3Vision(t, rc.dir)
		if err := m.MakeAllTrainable(); err != nil {
			t.Fatal(err)
		}
		acts := newActs(m)
		if _, err := acts.ForwardBackward(rc.batch, float32(1/float64(count)), true, 0); err != nil {
			t.Fatal(err)
		}
		// The reference names gradients as the model folder names its
		// tensors (transformers 5.17: vision_tower.embeddings.…).
		set, err := safetensors.OpenDir(rc.dir)
		if err != nil {
			t.Fatal(err)
		}
		layout, _, ok := engine.Gemma3VisionLayout(func(n string) bool { _, ok := set.Info(n); return ok })
		set.Close()
		if !ok {
			t.Fatalf("%s: no vision tower in any known layout", rc.dir)
		}
		checked := 0
		for _, p := range m.TrainableParams() {
			name := engine.Gemma3VisionFileName(layout, p.Name)
			if strings.HasPrefix(name, "model.") {
				name = "language_model." + name
			}
			want := mustF32(t, rc.state, "grad."+name)
			got := download(t, m, p.Grad)
			if kw, ok := strings.CutSuffix(p.Name, "self_attn.k_proj.bias"); ok && strings.HasPrefix(p.Name, "vision_tower.") {
				// The tower attends both ways, so a key bias adds q.b to
				// every score of a query alike and the softmax cancels it:
				// its gradient is zero but for rounding (both sides ~1e-10).
				// Both must be that small against the key weights' gradient.
				scale := norm(mustF32(t, rc.state, "grad."+engine.Gemma3VisionFileName(layout, kw+"self_attn.k_proj.weight")))
				if g, w := norm(got), norm(want); g > refTol*scale || w > refTol*scale {
					t.Errorf("grad %s: norms %.3g (whet), %.3g (transformers), want both below %g x the key weights' %.3g", p.Name, g, w, refTol, scale)
				}
				checked++
				continue
			}
			if e := relErr(got, want); e > refTol {
				t.Errorf("grad %s relative error %.3g > %g", p.Name, e, refTol)
			}
			checked++
		}
		if inFile := countPrefixed(rc.state, "grad."); checked != inFile {
			t.Errorf("checked %d gradients, reference has %d", checked, inFile)
		}
	})

	t.Run("lora gradients", func(t *testing.T) {
		m := loadGemma3Vision(t, rc.dir)
		if err := m.AddLoRA(engine.LoRAOptions{Rank: 4, Alpha: 8, Seed: 1}); err != nil {
			t.Fatal(err)
		}
		if err := m.AddGemma3ProjectorLoRA(engine.LoRAOptions{Rank: 4, Alpha: 8, Seed: 1}); err != nil {
			t.Fatal(err)
		}
		// The reference names modules as transformers 5 does: model.language_model.layers.N…, model.multi_modal_projector….
		refName := func(p *engine.Param) string {
			if rest, ok := strings.CutPrefix(p.Name, "model."); ok {
				return "model.language_model." + rest
			}
			return "model." + p.Name
		}
		for _, p := range m.TrainableParams() {
			if err := m.B.Upload(p.Master, mustF32(t, rc.state, "lora."+refName(p))); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.SyncFromMasters(); err != nil {
			t.Fatal(err)
		}
		acts := newActs(m)
		r, err := acts.ForwardBackward(rc.batch, float32(1/float64(count)), true, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkRefLoRA(t, m, rc, r, refName)
	})
}

// TestGemma3VisionIsOptIn: LoadModel of a Gemma 3 vision folder loads the
// text model alone, as before the tower existed (no vision weights on the
// device, the text memory plan unchanged); LoadGemma3Vision attaches it,
// and refuses a text-only folder naming the missing tensor.
func TestGemma3VisionIsOptIn(t *testing.T) {
	dir := writeRandomGemma3Vision(t, tinyGemma3VisionConfig, false, "", nil)
	m, err := engine.LoadModel(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if m.Gemma3Vision != nil {
		t.Error("LoadModel attached the vision tower")
	}
	for _, p := range m.Params() {
		if strings.Contains(p.Name, "vision_tower") || strings.Contains(p.Name, "multi_modal_projector") {
			t.Errorf("LoadModel holds %s", p.Name)
		}
	}
	_, err = engine.LoadGemma3Vision(filepath.Join("..", "testdata", "tiny-gemma3"), cpu.New(), engine.ModelOptions{})
	if err == nil || !strings.Contains(err.Error(), "vision") {
		t.Errorf("a text-only Gemma 3 folder: %v", err)
	}
}

// norm is the Euclidean norm of v.
func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
