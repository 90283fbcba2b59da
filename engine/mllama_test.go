package engine_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
	"whet/engine/testmodels"
)

// randomMllamaTensors draws every weight of cfg as the reference script
// does (testmodels.MllamaWeightDraw), under the released checkpoint's
// names.
func randomMllamaTensors(t *testing.T, cfg *engine.MllamaConfig, rng *rand.Rand) map[string]safetensors.Tensor {
	t.Helper()
	m, err := engine.NewMllamaModel(*cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	out := map[string]safetensors.Tensor{}
	for _, p := range m.Params() {
		n := 1
		for _, d := range p.Shape {
			n *= d
		}
		v := make([]float32, n)
		mean, std := testmodels.MllamaWeightDraw(p.Name)
		for i := range v {
			v[i] = mean + std*float32(rng.NormFloat64())
		}
		out[p.Name] = safetensors.F32Tensor(p.Name, p.Shape, v)
	}
	return out
}

// writeMllama writes config.json and model.safetensors into a new folder.
func writeMllama(t *testing.T, config string, tensors map[string]safetensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var list []safetensors.Tensor
	for _, x := range tensors {
		list = append(list, x)
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), list, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tinyMllamaConfigParsed(t *testing.T) *engine.MllamaConfig {
	t.Helper()
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(testmodels.TinyMllamaConfig))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// mllamaSample builds one sample with images of the given (aspect-ratio
// id, tiles), <|image|> at imageAt, random pixels and ids, the processor's
// cross-attention mask (datasets/vision) and targets = next ids with the
// first ignore targets and the image tokens' ignored.
func mllamaSample(cfg *engine.MllamaConfig, rng *rand.Rand, T int, imageAt []int, images [][2]int, ignore int) engine.MllamaSample {
	v := &cfg.Vision
	s := engine.MllamaSample{Images: len(images)}
	ids := make([]int, T)
	for i := range ids {
		ids[i] = 3 + rng.IntN(cfg.Text.VocabSize-3)
	}
	ids[0] = 1
	for _, at := range imageAt {
		ids[at] = cfg.ImageToken
	}
	s.Pixels = make([]float32, len(images)*v.MaxTiles*v.Channels*v.ImageSize*v.ImageSize)
	per := v.Channels * v.ImageSize * v.ImageSize
	var tiles []int
	for i, im := range images {
		s.AspectRatioIDs = append(s.AspectRatioIDs, int32(im[0]))
		for tile := 0; tile < v.MaxTiles; tile++ {
			on := int32(0)
			if tile < im[1] {
				on = 1
				for j := 0; j < per; j++ {
					s.Pixels[(i*v.MaxTiles+tile)*per+j] = float32(rng.NormFloat64())
				}
			}
			s.AspectRatioMask = append(s.AspectRatioMask, on)
		}
		tiles = append(tiles, im[1])
	}
	for _, b := range vision.CrossAttentionMask(vision.CrossAttentionSpans(ids, cfg.ImageToken), tiles, v.MaxTiles, T) {
		s.CrossMask = append(s.CrossMask, int32(b))
	}
	for i, id := range ids {
		s.IDs = append(s.IDs, int32(id))
		tg := int32(-100)
		if i+1 < T && i >= ignore && ids[i+1] != cfg.ImageToken {
			tg = int32(ids[i+1])
		}
		s.Targets = append(s.Targets, tg)
	}
	return s
}

func tinyMllamaSamples(cfg *engine.MllamaConfig, rng *rand.Rand) []engine.MllamaSample {
	return []engine.MllamaSample{
		mllamaSample(cfg, rng, 12, []int{1}, [][2]int{{2, 2}}, 3),
		mllamaSample(cfg, rng, 11, []int{3, 7}, [][2]int{{1, 1}, {6, 4}}, 5),
	}
}

func loadTinyMllama(t *testing.T, seed uint64) (*engine.MllamaModel, *engine.MllamaConfig) {
	t.Helper()
	cfg := tinyMllamaConfigParsed(t)
	dir := writeMllama(t, testmodels.TinyMllamaConfig, randomMllamaTensors(t, cfg, rand.New(rand.NewPCG(seed, 1))))
	m, err := engine.LoadMllama(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m, cfg
}

func uploadRandom(t *testing.T, m *engine.MllamaModel, p *engine.Param, rng *rand.Rand, std float64) {
	t.Helper()
	v := make([]float32, p.W.Len())
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	if err := m.B.Upload(p.W, v); err != nil {
		t.Fatal(err)
	}
}

// TestMllamaFiniteDiff checks the backward of the whole model (vision
// frozen) against central differences of the loss: LoRA on every
// language-model linear (the cross-attention layer's included) and on the
// projector, and the text-side weights whet may train in full (the cross
// layer's gates and q/k norms, a self layer's and the final norm, the
// embedding, the projector's bias).
func TestMllamaFiniteDiff(t *testing.T) {
	m, cfg := loadTinyMllama(t, 7)
	rng := rand.New(rand.NewPCG(8, 9))
	// A text-only sample too: transformers skips the cross-attention layers for it.
	samples := append(tinyMllamaSamples(cfg, rng), mllamaSample(cfg, rng, 7, nil, nil, 1))
	if err := m.AddLoRA(engine.MllamaLoRA{Rank: 2, Alpha: 4, Projector: true}); err != nil {
		t.Fatal(err)
	}
	var params []*engine.Param
	for _, p := range m.Params() {
		if strings.Contains(p.Name, "lora_") {
			uploadRandom(t, m, p, rng, 0.15)
			params = append(params, p)
		}
	}
	for _, name := range []string{
		"language_model.model.layers.1.cross_attn_attn_gate",
		"language_model.model.layers.1.cross_attn_mlp_gate",
		"language_model.model.layers.1.cross_attn.q_norm.weight",
		"language_model.model.layers.1.cross_attn.k_norm.weight",
		"language_model.model.layers.2.post_attention_layernorm.weight",
		"language_model.model.norm.weight",
		"language_model.model.embed_tokens.weight",
		"multi_modal_projector.bias",
	} {
		p := m.Param(name)
		if p == nil {
			t.Fatalf("no parameter %s", name)
		}
		if err := m.MakeTrainable(p); err != nil {
			t.Fatal(err)
		}
		params = append(params, p)
	}
	res, err := m.Run(samples, true, false)
	if err != nil {
		t.Fatal(err)
	}
	lossAt := func() float64 {
		r, err := m.Run(samples, false, false)
		if err != nil {
			t.Fatal(err)
		}
		return r.Loss
	}
	if l := lossAt(); math.Abs(l-res.Loss) > 1e-12 {
		t.Fatalf("the forward alone gives loss %v, the backward pass %v", l, res.Loss)
	}
	for _, p := range params {
		grad := make([]float32, p.Grad.Len())
		w := make([]float32, p.W.Len())
		m.B.Download(p.Grad, grad)
		m.B.Download(p.W, w)
		idx := []int{rng.IntN(len(w)), rng.IntN(len(w))}
		if strings.HasSuffix(p.Name, "embed_tokens.weight") {
			// A row the first sample reads (the image token's row is never read as a target but is embedded).
			idx = []int{int(samples[0].IDs[2])*cfg.Text.HiddenSize + 3, cfg.ImageToken*cfg.Text.HiddenSize + 5}
		}
		for _, i := range idx {
			checkMllamaFiniteDiff(t, m, p, grad, w, i, lossAt)
		}
	}
}

// checkMllamaFiniteDiff compares grad[i], p's gradient at element i, with
// Richardson's extrapolation of two central differences of lossAt (error
// O(h^4)): the loss bends sharply along a 0.1-sized embedding element,
// which a plain difference mistakes for a wrong gradient. w holds p's
// values; w[i] is put back on m's backend afterwards.
func checkMllamaFiniteDiff(t *testing.T, m *engine.MllamaModel, p *engine.Param, grad, w []float32, i int, lossAt func() float64) {
	t.Helper()
	orig := w[i]
	central := func(h float32) float64 {
		w[i] = orig + h
		m.B.Upload(p.W, w)
		up := lossAt()
		w[i] = orig - h
		m.B.Upload(p.W, w)
		down := lossAt()
		w[i] = orig
		m.B.Upload(p.W, w)
		return (up - down) / (2 * float64(h))
	}
	num := (4*central(2e-3) - central(4e-3)) / 3
	if d := math.Abs(float64(grad[i]) - num); d > 1e-3+0.02*math.Abs(num) {
		t.Errorf("%s[%d]: gradient %.6g, central difference %.6g", p.Name, i, grad[i], num)
	}
}

// TestMllamaLogitsChunks: the final norm, LM head and cross-entropy run
// over LogitsChunk rows at a time; chunks of 1, 5 and 64 rows (one chunk:
// the 12-token samples are shorter) give the same loss, logits and
// gradients (the head's weight and the final norm's included, which every
// chunk adds into).
func TestMllamaLogitsChunks(t *testing.T) {
	m, cfg := loadTinyMllama(t, 11)
	rng := rand.New(rand.NewPCG(12, 13))
	samples := append(tinyMllamaSamples(cfg, rng), mllamaSample(cfg, rng, 7, nil, nil, 1))
	if err := m.AddLoRA(engine.MllamaLoRA{Rank: 2, Alpha: 4, Projector: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		if strings.Contains(p.Name, "lora_") {
			uploadRandom(t, m, p, rng, 0.15)
		}
	}
	for _, p := range []*engine.Param{m.Head.W, m.Norm} {
		if err := m.MakeTrainable(p); err != nil {
			t.Fatal(err)
		}
	}
	type run struct {
		loss   float64
		logits [][]float32
		grads  map[string][]float32
	}
	do := func(rows int) run {
		m.LogitsRows = rows
		if err := m.ZeroGrads(); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Run(samples, true, false); err != nil {
			t.Fatalf("chunk %d: %v", rows, err)
		}
		r, err := m.Run(samples, false, true)
		if err != nil {
			t.Fatalf("chunk %d: %v", rows, err)
		}
		out := run{loss: r.Loss, logits: r.Logits, grads: map[string][]float32{}}
		for _, p := range m.Params() {
			if p.Trainable {
				g := make([]float32, p.Grad.Len())
				if err := m.B.Download(p.Grad, g); err != nil {
					t.Fatal(err)
				}
				out.grads[p.Name] = g
			}
		}
		return out
	}
	if got := engine.LogitsChunk(12, cfg.Text.VocabSize, 0); got != 12 {
		t.Fatalf("LogitsChunk(12, %d, 0) = %d: the engine's rule should take the whole sample", cfg.Text.VocabSize, got)
	}
	want := do(0)
	close := func(a, b float32) bool { return math.Abs(float64(a-b)) <= 1e-6+1e-5*math.Abs(float64(b)) }
	for _, rows := range []int{1, 5, 64} {
		got := do(rows)
		if math.Abs(got.loss-want.loss) > 1e-6*math.Abs(want.loss) {
			t.Errorf("chunk %d: loss %v, one chunk %v", rows, got.loss, want.loss)
		}
		for i := range want.logits {
			if len(got.logits[i]) != len(want.logits[i]) || len(want.logits[i]) != len(samples[i].IDs)*cfg.Text.VocabSize {
				t.Fatalf("chunk %d: sample %d has %d logits, one chunk %d, want tokens x vocab", rows, i, len(got.logits[i]), len(want.logits[i]))
			}
			for j, v := range want.logits[i] {
				if !close(got.logits[i][j], v) {
					t.Errorf("chunk %d: sample %d logit %d = %v, one chunk %v", rows, i, j, got.logits[i][j], v)
					break
				}
			}
		}
		if len(got.grads) != len(want.grads) || len(want.grads) == 0 {
			t.Fatalf("chunk %d: %d gradients, one chunk %d", rows, len(got.grads), len(want.grads))
		}
		for name, w := range want.grads {
			for j, v := range w {
				if !close(got.grads[name][j], v) {
					t.Errorf("chunk %d: %s grad[%d] = %v, one chunk %v", rows, name, j, got.grads[name][j], v)
					break
				}
			}
		}
	}
}

// TestMllamaVisionMemory: the vision tower holds one encoder layer's
// buffers at a time and frees all of them before the language model runs
// (as memplan.PlanMllama counts it), so a tower of 9 local layers peaks no
// higher than one of 3, and a Run leaves nothing allocated.
func TestMllamaVisionMemory(t *testing.T) {
	peak := func(config string) int64 {
		cfg, err := engine.ParseMllamaConfig("config.json", []byte(config))
		if err != nil {
			t.Fatal(err)
		}
		b := cpu.New()
		m, err := engine.LoadMllama(writeMllama(t, config, randomMllamaTensors(t, cfg, rand.New(rand.NewPCG(3, 1)))), b)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		rng := rand.New(rand.NewPCG(4, 5))
		samples := []engine.MllamaSample{mllamaSample(cfg, rng, 11, []int{3, 7}, [][2]int{{1, 1}, {6, 4}}, 5)}
		before := b.InUseBytes()
		b.ResetPeak()
		if _, err := m.Run(samples, false, false); err != nil {
			t.Fatal(err)
		}
		if after := b.InUseBytes(); after != before {
			t.Errorf("%d bytes in use after Run, %d before", after, before)
		}
		return b.PeakBytes() - before
	}
	three := peak(testmodels.TinyMllamaConfig)
	deep := strings.Replace(testmodels.TinyMllamaConfig, `"num_hidden_layers": 3, "patch_size"`, `"num_hidden_layers": 9, "patch_size"`, 1)
	if deep == testmodels.TinyMllamaConfig {
		t.Fatal("the config has no vision num_hidden_layers to change")
	}
	nine := peak(deep)
	t.Logf("peak above the weights: %d bytes with 3 local vision layers, %d with 9", three, nine)
	if nine != three {
		t.Errorf("a 9-layer vision tower peaks at %d bytes above the weights, a 3-layer one at %d: the tower keeps buffers per layer", nine, three)
	}
}

// TestMllamaCheckpointNames: a checkpoint under transformers 5's names
// loads and runs the same; a missing or mis-shaped tensor is refused by name.
func TestMllamaCheckpointNames(t *testing.T) {
	cfg := tinyMllamaConfigParsed(t)
	tensors := randomMllamaTensors(t, cfg, rand.New(rand.NewPCG(11, 12)))
	samples := tinyMllamaSamples(cfg, rand.New(rand.NewPCG(13, 14)))
	logitsOf := func(ts map[string]safetensors.Tensor) [][]float32 {
		m, err := engine.LoadMllama(writeMllama(t, testmodels.TinyMllamaConfig, ts), cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		r, err := m.Run(samples, false, true)
		if err != nil {
			t.Fatal(err)
		}
		return r.Logits
	}
	want := logitsOf(tensors)
	v5 := map[string]safetensors.Tensor{}
	for name, x := range tensors {
		for _, p := range [][2]string{{"language_model.model.", "model.language_model."}, {"language_model.lm_head.", "lm_head."},
			{"vision_model.", "model.vision_model."}, {"multi_modal_projector.", "model.multi_modal_projector."}} {
			if rest, ok := strings.CutPrefix(name, p[0]); ok {
				name = p[1] + rest
				break
			}
		}
		x.Name = name
		v5[name] = x
	}
	got := logitsOf(v5)
	for s := range want {
		for i := range want[s] {
			if got[s][i] != want[s][i] {
				t.Fatalf("transformers 5 names: sample %d logit %d is %v, released names %v", s, i, got[s][i], want[s][i])
			}
		}
	}

	// The aspect-ratio tables with unflattened rows load the same.
	unflat := map[string]safetensors.Tensor{}
	for k, x := range tensors {
		unflat[k] = x
	}
	for name, shape := range map[string][]int{
		"vision_model.gated_positional_embedding.tile_embedding.weight": {9, 4, 5, 32},
		"vision_model.pre_tile_positional_embedding.embedding.weight":   {9, 4, 1, 32},
	} {
		x := unflat[name]
		x.Shape = shape
		unflat[name] = x
	}
	if got := logitsOf(unflat); got[1][7] != want[1][7] {
		t.Errorf("unflattened aspect-ratio tables: logit %v, want %v", got[1][7], want[1][7])
	}

	missing := map[string]safetensors.Tensor{}
	for k, x := range tensors {
		missing[k] = x
	}
	gone := "vision_model.gated_positional_embedding.tile_embedding.weight"
	delete(missing, gone)
	if _, err := engine.LoadMllama(writeMllama(t, testmodels.TinyMllamaConfig, missing), cpu.New()); err == nil || !strings.Contains(err.Error(), "missing tensor "+gone) {
		t.Errorf("without %s: err = %v", gone, err)
	}
	bad := map[string]safetensors.Tensor{}
	for k, x := range tensors {
		bad[k] = x
	}
	q := "language_model.model.layers.1.cross_attn.q_norm.weight"
	bad[q] = safetensors.F32Tensor(q, []int{8}, make([]float32, 8))
	if _, err := engine.LoadMllama(writeMllama(t, testmodels.TinyMllamaConfig, bad), cpu.New()); err == nil ||
		!strings.Contains(err.Error(), q) || !strings.Contains(err.Error(), "[8]") || !strings.Contains(err.Error(), "[16]") {
		t.Errorf("q_norm of 8 values for head_dim 16: err = %v", err)
	}
}

// TestMllamaConfig reads the released Llama-3.2-11B-Vision config.json's
// fields and refuses inconsistent ones by name.
func TestMllamaConfig(t *testing.T) {
	released := `{"architectures": ["MllamaForConditionalGeneration"], "image_token_index": 128256, "model_type": "mllama",
	 "text_config": {"cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38], "hidden_act": "silu", "hidden_size": 4096,
	  "intermediate_size": 14336, "max_position_embeddings": 131072, "model_type": "mllama_text_model",
	  "num_attention_heads": 32, "num_hidden_layers": 40, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
	  "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
	  "rope_theta": 500000.0, "tie_word_embeddings": false, "vocab_size": 128256, "bos_token_id": 128000, "eos_token_id": 128001, "pad_token_id": 128004},
	 "vision_config": {"attention_heads": 16, "hidden_act": "gelu", "hidden_size": 1280, "image_size": 560,
	  "intermediate_layers_indices": [3, 7, 15, 23, 30], "intermediate_size": 5120, "max_num_tiles": 4,
	  "model_type": "mllama_vision_model", "norm_eps": 1e-05, "num_channels": 3, "num_global_layers": 8, "num_hidden_layers": 32,
	  "patch_size": 14, "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]], "vision_output_dim": 7680}}`
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(released))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Text.NumLayers != 40 || len(cfg.CrossLayers) != 8 || !cfg.IsCross(38) || cfg.IsCross(37) || cfg.Text.HeadDim != 128 ||
		cfg.EmbedRows() != 128264 || cfg.Vision.Patches() != 1601 || cfg.Vision.PaddedPatches() != 1608 || cfg.Vision.OutputDim != 7680 {
		t.Fatalf("released config read as %+v", cfg)
	}
	if !engine.IsMllamaConfig([]byte(released)) || engine.IsMllamaConfig([]byte(`{"model_type":"llama"}`)) {
		t.Fatal("IsMllamaConfig")
	}
	for _, tc := range []struct{ from, to, field string }{
		{`"vision_output_dim": 7680`, `"vision_output_dim": 7000`, "vision_output_dim"},
		{`"cross_attention_layers": [3,`, `"cross_attention_layers": [40,`, "cross_attention_layers"},
		{`"hidden_act": "gelu"`, `"hidden_act": "quick_gelu"`, "hidden_act"},
		{`"intermediate_layers_indices": [3,`, `"intermediate_layers_indices": [33,`, "intermediate_layers_indices"},
		{`"image_token_index": 128256`, `"image_token_index": 128264`, "image_token_index"},
	} {
		raw := strings.Replace(released, tc.from, tc.to, 1)
		if _, err := engine.ParseMllamaConfig("config.json", []byte(raw)); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want one naming %s", tc.to, err, tc.field)
		}
	}
}

// TestMllamaRefusesBadSamples names what is wrong with a sample.
func TestMllamaRefusesBadSamples(t *testing.T) {
	m, cfg := loadTinyMllama(t, 21)
	good := tinyMllamaSamples(cfg, rand.New(rand.NewPCG(22, 23)))[0]
	for _, tc := range []struct {
		name, want string
		edit       func(s *engine.MllamaSample)
	}{
		{"short pixels", "pixel values", func(s *engine.MllamaSample) { s.Pixels = s.Pixels[1:] }},
		{"aspect id", "aspect-ratio id 9", func(s *engine.MllamaSample) { s.AspectRatioIDs = []int32{9} }},
		{"cross mask", "cross-attention mask", func(s *engine.MllamaSample) { s.CrossMask = s.CrossMask[4:] }},
		{"token", "id 264", func(s *engine.MllamaSample) { s.IDs = append([]int32{264}, s.IDs[1:]...) }},
	} {
		s := good
		s.IDs = append([]int32(nil), good.IDs...)
		tc.edit(&s)
		if _, err := m.Run([]engine.MllamaSample{s}, false, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one with %q", tc.name, err, tc.want)
		}
	}
}

// TestReferenceMllama compares the CPU engine with transformers'
// MllamaForConditionalGeneration on the tiny model of
// tools/reference/make_mllama_reference.py: the vision tower's output,
// logits, loss, the language model's and projector's gradients, and the
// LoRA gradients (language model incl. the cross-attention layer, and the
// projector), within 1e-4.
func TestReferenceMllama(t *testing.T) {
	root := filepath.Join("..", "testdata")
	refPath := filepath.Join(root, "reference", "tiny-mllama.safetensors")
	if _, err := os.Stat(refPath); err != nil {
		t.Skipf("%s not present: make it with tools/reference/make_mllama_reference.py (torch + transformers; see tools/reference/README.md)", refPath)
	}
	st, err := safetensors.Open(refPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var meta struct {
		Lora struct {
			R     int     `json:"r"`
			Alpha float32 `json:"alpha"`
		} `json:"lora"`
		Versions struct {
			Transformers string `json:"transformers"`
		} `json:"versions"`
	}
	if raw, err := os.ReadFile(filepath.Join(root, "reference", "tiny-mllama.json")); err != nil || json.Unmarshal(raw, &meta) != nil || meta.Lora.R == 0 {
		t.Fatalf("reference tiny-mllama.json: lora settings unreadable (%v)", err)
	}
	// transformers 5 concatenates local layer i's output where the
	// released model (and transformers 4) take its input
	// (MllamaVisionConfig.TapLayerOutputs); compare like with like.
	tap5 := !strings.HasPrefix(meta.Versions.Transformers, "4.")
	m, err := engine.LoadMllama(filepath.Join(root, "tiny-mllama"), cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	cfg := &m.Cfg
	cfg.Vision.TapLayerOutputs = tap5
	samples := referenceMllamaSamples(t, st, cfg)
	compare := func(name string, got, want []float32) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %d values, reference %d", name, len(got), len(want))
			return
		}
		var worst float64
		at := 0
		for i := range want {
			if d := math.Abs(float64(got[i]) - float64(want[i])); d > worst {
				worst, at = d, i
			}
		}
		if worst > 1e-4 {
			t.Errorf("%s: max |diff| %.3g at %d (got %v, want %v)", name, worst, at, got[at], want[at])
		}
	}

	// Forward, and the gradients of every text-side weight and the projector.
	for _, p := range m.Params() {
		if !strings.HasPrefix(p.Name, "vision_model.") {
			if err := m.MakeTrainable(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	res, err := m.Run(samples, true, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range samples {
		pre := "s" + string(rune('0'+i)) + "."
		if want, err := st.Float32(pre + "vision_out"); err == nil {
			compare(pre+"vision_out", res.VisionOut[i], want)
		} else {
			t.Errorf("reference %svision_out: %v", pre, err)
		}
	}
	var logits []float32
	for _, l := range res.Logits {
		logits = append(logits, l...)
	}
	compare("logits", logits, mustF32(t, st, "logits"))
	compare("loss", []float32{float32(res.Loss)}, mustF32(t, st, "loss"))
	for _, p := range m.Params() {
		if !p.Trainable {
			continue
		}
		g := make([]float32, p.Grad.Len())
		m.B.Download(p.Grad, g)
		compare("grad."+p.Name, g, mustF32(t, st, "grad."+p.Name))
	}

	// LoRA from the reference's init, base frozen.
	m2, err := engine.LoadMllama(filepath.Join(root, "tiny-mllama"), cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Free()
	m2.Cfg.Vision.TapLayerOutputs = tap5
	if err := m2.AddLoRA(engine.MllamaLoRA{Rank: meta.Lora.R, Alpha: meta.Lora.Alpha, Projector: true}); err != nil {
		t.Fatal(err)
	}
	var adapters []*engine.Param
	for _, p := range m2.Params() {
		if strings.Contains(p.Name, ".lora_") {
			if err := m2.B.Upload(p.W, mustF32(t, st, "lora."+p.Name)); err != nil {
				t.Fatal(err)
			}
			adapters = append(adapters, p)
		}
	}
	if want := 3*7 + 1; len(adapters) != 2*want {
		t.Fatalf("%d adapter tensors, want %d", len(adapters), 2*want)
	}
	lres, err := m2.Run(samples, true, false)
	if err != nil {
		t.Fatal(err)
	}
	compare("lora_loss", []float32{float32(lres.Loss)}, mustF32(t, st, "lora_loss"))
	for _, p := range adapters {
		g := make([]float32, p.Grad.Len())
		m2.B.Download(p.Grad, g)
		compare("lora_grad."+p.Name, g, mustF32(t, st, "lora_grad."+p.Name))
	}
}

// referenceMllamaSamples reads the reference's two samples, checking that
// datasets/vision builds the processor's cross-attention masks.
func referenceMllamaSamples(t *testing.T, st *safetensors.File, cfg *engine.MllamaConfig) []engine.MllamaSample {
	t.Helper()
	var samples []engine.MllamaSample
	for i := 0; i < 2; i++ {
		pre := "s" + string(rune('0'+i)) + "."
		s := engine.MllamaSample{IDs: mustI32(t, st, pre+"input_ids"), Targets: mustI32(t, st, pre+"targets"),
			Pixels: mustF32(t, st, pre+"pixel_values"), AspectRatioIDs: mustI32(t, st, pre+"aspect_ratio_ids"),
			AspectRatioMask: mustI32(t, st, pre+"aspect_ratio_mask"), CrossMask: mustI32(t, st, pre+"cross_attention_mask")}
		s.Images = len(s.AspectRatioIDs)
		// The processor's mask is datasets/vision's.
		ids := make([]int, len(s.IDs))
		for j, id := range s.IDs {
			ids[j] = int(id)
		}
		tiles := make([]int, s.Images)
		for j := range tiles {
			for k := 0; k < cfg.Vision.MaxTiles; k++ {
				tiles[j] += int(s.AspectRatioMask[j*cfg.Vision.MaxTiles+k])
			}
		}
		mine := vision.CrossAttentionMask(vision.CrossAttentionSpans(ids, cfg.ImageToken), tiles, cfg.Vision.MaxTiles, len(ids))
		for j := range mine {
			if int32(mine[j]) != s.CrossMask[j] {
				t.Fatalf("sample %d: datasets/vision's cross-attention mask differs from the processor's at %d", i, j)
			}
		}
		samples = append(samples, s)
	}
	return samples
}

// TestMllamaIntermediateTaps: by default the vision output concatenates
// the local encoder's input to layer i for intermediate index i (Meta's
// code, transformers 4), with TapLayerOutputs layer i's output
// (transformers 5); checked against transformers' recorded output of
// local layer 1, which is the input of layer 2 (index 2 of the tiny
// model's [0, 2]). The final (global) features do not depend on the tap,
// and an index past the last layer's output is refused with the flag.
func TestMllamaIntermediateTaps(t *testing.T) {
	root := filepath.Join("..", "testdata")
	refPath := filepath.Join(root, "reference", "tiny-mllama.safetensors")
	if _, err := os.Stat(refPath); err != nil {
		t.Skipf("%s not present", refPath)
	}
	st, err := safetensors.Open(refPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := engine.LoadMllama(filepath.Join(root, "tiny-mllama"), cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	v := &m.Cfg.Vision
	if fmt.Sprint(v.Intermediates) != "[0 2]" {
		t.Fatalf("tiny-mllama's intermediate_layers_indices %v, the test expects [0 2]", v.Intermediates)
	}
	samples := referenceMllamaSamples(t, st, &m.Cfg)
	run := func(tap bool) [][]float32 {
		v.TapLayerOutputs = tap
		r, err := m.Run(samples, false, true) // the vision output comes with the logits
		if err != nil {
			t.Fatal(err)
		}
		return r.VisionOut
	}
	def, tap5 := run(false), run(true)
	H, P, Pp, K := v.Hidden, v.Patches(), v.PaddedPatches(), len(v.Intermediates)
	for i := range samples {
		pre := fmt.Sprintf("s%d.", i)
		layer1 := mustF32(t, st, pre+"vision_local.1") // [images, tiles*Pp, H]
		var worstFinal, worstTap float64
		for row := 0; row < len(def[i])/v.OutputDim; row++ {
			img, tj := row/(v.MaxTiles*P), row%(v.MaxTiles*P)
			tile, j := tj/P, tj%P
			for d := 0; d < H; d++ {
				a, b := def[i][row*v.OutputDim+d], tap5[i][row*v.OutputDim+d]
				worstFinal = max(worstFinal, math.Abs(float64(a-b)))
				got := def[i][row*v.OutputDim+H+d*K+1]
				want := layer1[((img*v.MaxTiles+tile)*Pp+j)*H+d]
				worstTap = max(worstTap, math.Abs(float64(got-want)))
			}
		}
		if worstFinal != 0 {
			t.Errorf("sample %d: the final features change with the tap (max |diff| %g)", i, worstFinal)
		}
		if worstTap > 1e-4 {
			t.Errorf("sample %d: index 2 differs from transformers' local layer 1 output by %g", i, worstTap)
		}
	}
	v.Intermediates = []int{0, v.Layers}
	v.TapLayerOutputs = true
	if _, err := m.Run(samples, false, false); err == nil || !strings.Contains(err.Error(), "intermediate_layers_indices 3") {
		t.Errorf("index %d with TapLayerOutputs: err = %v", v.Layers, err)
	}
}
