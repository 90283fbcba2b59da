package export

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/gguf"
	"whet/engine/safetensors"
)

// The tiny Gemma 3 vision model of these tests: the gemma3 family model of
// familyConfigs (hidden 64, 512 tokens) as the language model, a SigLIP
// tower of 32×32 images in 8×8 patches (hidden 32, 2 layers), 4 image
// tokens (a 2×2 pool of the 4×4 patches) and image/BOI/EOI tokens at the
// top of the vocabulary, as engine's tinyGemma3VisionConfig has them.
const vImage, vBOI, vEOI = 511, 509, 510

// makeGemma3VisionModel writes a Gemma3ForConditionalGeneration folder under
// transformers 5's names (model.language_model.*, model.vision_tower.*,
// model.multi_modal_projector.*) with random tower and projector weights
// and a preprocessor_config.json.
func makeGemma3VisionModel(t *testing.T, dir string) string {
	t.Helper()
	textDir := makeFamilyModel(t, dir+"-text", "gemma3")
	copyDir(t, textDir, dir)
	text, err := readJSONMap(filepath.Join(textDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"architectures": []string{"Gemma3ForConditionalGeneration"}, "model_type": "gemma3",
		"text_config": text, "vision_config": map[string]any{"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
			"num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "vision_use_head": false},
		"eos_token_id": 2, "image_token_index": vImage, "boi_token_index": vBOI, "eoi_token_index": vEOI, "mm_tokens_per_image": 4}
	config := jsonString(t, cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	pre := `{"image_processor_type": "Gemma3ImageProcessor", "size": {"height": 32, "width": 32}, "resample": 2,
		"do_rescale": true, "rescale_factor": 0.00392156862745098, "do_normalize": true,
		"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": null, "image_seq_length": 4}`
	if err := os.WriteFile(filepath.Join(dir, "preprocessor_config.json"), []byte(pre), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(textDir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		raw, _ := f.Raw(n)
		ts = append(ts, safetensors.Tensor{Name: "model.language_model." + strings.TrimPrefix(n, "model."), DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	f.Close()
	// The tower's names and shapes from the engine's own layout.
	mc, err := engine.LoadModelConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := engine.NewModel(*mc, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	vc, err := engine.ParseGemma3VisionConfig([]byte(config), mc.HiddenSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AttachGemma3Vision(vc, nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(24, 5))
	for _, p := range append(m.Gemma3Vision.TowerParams(), m.Gemma3Vision.ProjectorParams()...) {
		v := make([]float32, numel(p.Shape))
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.1)
			if strings.Contains(p.Name, "layer_norm") || strings.Contains(p.Name, "layernorm.") {
				v[i]++ // SigLIP's LayerNorms scale by w
			}
		}
		ts = append(ts, safetensors.F32Tensor("model."+p.Name, p.Shape, v))
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// makeGemma3VisionRun makes a finished LoRA run on the vision model: random
// non-zero adapters on every language-model linear and, with projector, on
// the projector matrix, saved by engine.SaveAdapter as training saves them.
// It returns the run and the training model's logits for visionBatch.
func makeGemma3VisionRun(t *testing.T, dir, base string, projector bool) (string, []float32) {
	t.Helper()
	m, err := engine.LoadGemma3Vision(base, cpu.New(), engine.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	opts := engine.LoRAOptions{Rank: 4, Alpha: 8, Targets: m.Family().LoRATargets(), Seed: 9, Dropout: 0.05}
	if err := m.AddLoRA(opts); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 2))
	random := func(p *engine.Param, std float64) {
		v := make([]float32, numel(p.Shape))
		for i := range v {
			v[i] = float32(rng.NormFloat64() * std)
		}
		if err := m.B.Upload(p.Master, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, lin := range m.Linears() {
		random(lin.LoRA.B, 0.05)
	}
	if projector {
		if err := m.AddGemma3ProjectorLoRA(opts); err != nil {
			t.Fatal(err)
		}
		random(m.Gemma3Vision.ProjLoRA.A, 0.2)
		random(m.Gemma3Vision.ProjLoRA.B, 0.2)
	}
	if err := m.SyncFromMasters(); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(base)
	if err := engine.SaveAdapter(filepath.Join(dir, "adapter"), m, opts, abs); err != nil {
		t.Fatal(err)
	}
	writeRunYAML(t, dir, filepath.Base(dir), abs, "lora", engine.LoRAConfig{Rank: opts.Rank, Alpha: opts.Alpha, TargetModules: opts.Targets})
	return dir, visionLogits(t, m)
}

// visionBatch is one sequence with an image (BOI, 4 image tokens, EOI)
// between text tokens, and its pixels.
func visionBatch() (*datasets.Batch, []float32) {
	ids := []int32{45, 300, 12, vBOI, vImage, vImage, vImage, vImage, vEOI, 7, 99, 410, 3, 17}
	rng := rand.New(rand.NewPCG(3, 3))
	px := make([]float32, 3*32*32)
	for i := range px {
		px[i] = float32(rng.Float64()*2 - 1)
	}
	return sequenceBatch(ids), px
}

// visionLogits is m's logits for visionBatch.
// visionFolderLogits is visionLogits of the Gemma 3 vision model folder
// dir, loaded on the CPU.
func visionFolderLogits(t *testing.T, dir string) []float32 {
	t.Helper()
	m, err := engine.LoadGemma3Vision(dir, cpu.New(), engine.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	return visionLogits(t, m)
}

func visionLogits(t *testing.T, m *engine.Model) []float32 {
	t.Helper()
	b, px := visionBatch()
	a, err := m.NewActivations(len(b.Tokens), false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	if err := a.SetImages(px, 1); err != nil {
		t.Fatal(err)
	}
	out, err := a.Logits(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGemma3VisionExports: a LoRA run on a Gemma 3 vision model with an
// adapter on the language model and the projector exports
//   - a PEFT adapter under PEFT's names for Gemma3ForConditionalGeneration
//     (the language model's modules, the projector through
//     target_parameters) that whet reads back with the run's logits, image
//     included, bit for bit;
//   - a merged folder under the checkpoint's names (tower, merged projector,
//     merged language model) with config.json, preprocessor_config.json and
//     the tokenizer, which LoadGemma3Vision reads with the run's logits
//     within bf16 rounding (and not without the projector merged);
//   - a GGUF of the language model and mmproj-model.gguf with clip.cpp's keys,
//     tensor names, shapes and values.
func TestGemma3VisionExports(t *testing.T) {
	tmp := t.TempDir()
	base := makeGemma3VisionModel(t, filepath.Join(tmp, "base"))
	run, want := makeGemma3VisionRun(t, filepath.Join(tmp, "run"), base, true)
	r, err := OpenRun(run)
	if err != nil {
		t.Fatal(err)
	}
	src, err := r.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Model.Gemma3Vision == nil || src.Model.Gemma3Vision.ProjLoRA == nil {
		t.Fatal("the run's source was loaded without its vision tower or projector adapter")
	}
	if got := visionLogits(t, src.Model); !slices.Equal(got, want) {
		d, top := maxDiff(got, want)
		t.Errorf("the run's adapter, loaded back, gives logits %g away from the training model's (largest %g)", d, top)
	}
	// The projector's adapter matters to these logits.
	src.Model.Gemma3Vision.ProjLoRA.Enabled = false
	noProj := visionLogits(t, src.Model)
	src.Model.Gemma3Vision.ProjLoRA.Enabled = true
	if d, top := maxDiff(noProj, want); d < 0.05*top {
		t.Fatalf("the projector adapter changes the logits by %g only (largest %g)", d, top)
	}

	peft := filepath.Join(tmp, "peft")
	if err := Run(Options{RunDir: run, Format: "peft", OutDir: peft}, nil); err != nil {
		t.Fatal(err)
	}
	keys := safetensorNames(t, filepath.Join(peft, "adapter_model.safetensors"))
	for _, k := range []string{"base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight",
		"base_model.model.model.language_model.layers.2.mlp.down_proj.lora_B.weight",
		"base_model.model.model.multi_modal_projector.lora_A.weight", "base_model.model.model.multi_modal_projector.lora_B.weight"} {
		if !slices.Contains(keys, k) {
			t.Errorf("adapter has no %s", k)
		}
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "base_model.model.model.language_model.layers.") && !strings.HasPrefix(k, "base_model.model.model.multi_modal_projector.") {
			t.Errorf("adapter key %s is neither the language model's nor the projector's", k)
		}
	}
	af, _ := safetensors.Open(filepath.Join(peft, "adapter_model.safetensors"))
	for k, shape := range map[string][]int{"base_model.model.model.multi_modal_projector.lora_A.weight": {4, 64},
		"base_model.model.model.multi_modal_projector.lora_B.weight": {32, 4}} {
		if info, _ := af.Info(k); !slices.Equal(info.Shape, shape) {
			t.Errorf("%s has shape %v, want %v (PEFT's ParamWrapper over [Dv, Dt] = [32, 64])", k, info.Shape, shape)
		}
	}
	af.Close()
	cfg, err := readJSONMap(filepath.Join(peft, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tp, _ := cfg["target_parameters"].([]any); len(tp) != 1 || tp[0] != "model.multi_modal_projector.mm_input_projection_weight" {
		t.Errorf("target_parameters %v", cfg["target_parameters"])
	}
	if d := cfg["lora_dropout"]; d != nil && d.(interface{ String() string }).String() != "0" {
		t.Errorf("lora_dropout %v: PEFT refuses dropout on target_parameters", d)
	}
	pattern, _ := cfg["target_modules"].(string)
	checkTargetPattern(t, pattern, map[string]bool{
		"model.language_model.layers.0.self_attn.q_proj":                    true,
		"model.language_model.layers.2.mlp.gate_proj":                       true,
		"model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj": false,
		"model.vision_tower.vision_model.encoder.layers.1.mlp.fc1":          false,
		"model.multi_modal_projector":                                       false,
	})
	if _, err := os.Stat(filepath.Join(peft, "preprocessor_config.json")); err != nil {
		t.Errorf("the PEFT export has no preprocessor_config.json: %v", err)
	}
	back, err := LoadSource(base, peft, "", "reloaded")
	if err != nil {
		t.Fatalf("reloading the PEFT export: %v", err)
	}
	if got := visionLogits(t, back.Model); !slices.Equal(got, want) {
		d, top := maxDiff(got, want)
		t.Errorf("the reloaded PEFT export's logits differ from the run's by %g (largest %g)", d, top)
	}
	back.Close()

	merged := filepath.Join(tmp, "merged")
	if err := Run(Options{RunDir: run, Format: "merged", Quant: "bf16", OutDir: merged}, nil); err != nil {
		t.Fatal(err)
	}
	in, _ := safetensors.OpenDir(base)
	out, _ := safetensors.OpenDir(merged)
	if a, b := slices.Sorted(slices.Values(in.Names())), slices.Sorted(slices.Values(out.Names())); !slices.Equal(a, b) {
		t.Errorf("merged tensors\n %v\nsource\n %v", b, a)
	}
	for _, n := range out.Names() {
		if info, _ := out.Info(n); info.DType != "BF16" {
			t.Errorf("%s stored as %s", n, info.DType)
		}
	}
	// The tower is the base's, rounded once.
	a, _ := in.Float32("model.vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight")
	b, _ := out.Float32("model.vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight")
	for i := range a {
		if r := safetensors.BF16ToFloat32(safetensors.Float32ToBF16(a[i])); b[i] != r {
			t.Fatalf("merged tower fc1[%d] = %v, base %v", i, b[i], a[i])
		}
	}
	in.Close()
	out.Close()
	for _, f := range []string{"config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(merged, f)); err != nil {
			t.Errorf("merged folder: %v", err)
		}
	}
	got := visionFolderLogits(t, merged)
	d, top := maxDiff(got, want)
	if d > 0.02*top {
		t.Errorf("the merged vision model's logits differ by %g (largest %g)", d, top)
	}
	if dp, _ := maxDiff(got, noProj); dp < 2*d {
		t.Errorf("the merged model is as close to the run without its projector adapter (%g) as with it (%g)", dp, d)
	}

	gg := filepath.Join(tmp, "gguf")
	if err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: gg}, nil); err != nil {
		t.Fatal(err)
	}
	checkGemma3MMProj(t, filepath.Join(gg, "mmproj-model.gguf"), src)
	checkMMProjInGGML(t, filepath.Join(gg, "mmproj-model.gguf"), src)
	// llama.cpp (node-llama-cpp has no multimodal API, see docs/export.md)
	// runs the language model's GGUF on a text prompt as whet does.
	c := &greedyCase{name: "gemma3-vision/f16", quant: "f16", prompts: [][]int32{{45, 300, 12, 7, 99, 410, 3}}, src: src,
		path: filepath.Join(gg, "model.gguf"), ref: src.Model}
	replies := runLlama(t, []llamaJob{{Model: c.path, Greedy: c.prompts, MaxTokens: 12}})
	checkGreedy(t, c, replies[0], 12)
	lm, err := parser.ParseGGUFFile(filepath.Join(gg, "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range lm.TensorInfos {
		if strings.HasPrefix(ti.Name, "v.") || strings.HasPrefix(ti.Name, "mm.") {
			t.Errorf("model.gguf holds the vision tensor %s", ti.Name)
		}
	}
	if a, _ := lm.Header.MetadataKV.Get("general.architecture"); a.ValueString() != "gemma3" {
		t.Errorf("model.gguf architecture %v", a.ValueString())
	}
}

// checkGemma3MMProj reads an mmproj file back (gguf-parser-go) and checks
// clip.cpp's keys, every tensor's name, type and GGUF shape, and values:
// the tower's as the model holds them, mm.soft_emb_norm as 1 + w and
// mm.input_projection as the projector with its adapter merged.
func checkGemma3MMProj(t *testing.T, path string, src *Source) {
	t.Helper()
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kvs := gf.Header.MetadataKV
	str := func(k string) string {
		v, ok := kvs.Get(k)
		if !ok {
			t.Errorf("%s: no key %s", path, k)
			return ""
		}
		return v.ValueString()
	}
	u32 := func(k string) uint32 {
		v, ok := kvs.Get(k)
		if !ok {
			t.Errorf("%s: no key %s", path, k)
			return 0
		}
		return v.ValueUint32()
	}
	if a := str("general.architecture"); a != "clip" {
		t.Errorf("architecture %q", a)
	}
	if p := str("clip.projector_type"); p != "gemma3" {
		t.Errorf("projector type %q", p)
	}
	for k, want := range map[string]uint32{"clip.vision.image_size": 32, "clip.vision.patch_size": 8, "clip.vision.embedding_length": 32,
		"clip.vision.feed_forward_length": 64, "clip.vision.projection_dim": 64, "clip.vision.block_count": 2,
		"clip.vision.attention.head_count": 2, "clip.vision.projector.scale_factor": 2} {
		if got := u32(k); got != want {
			t.Errorf("%s = %d, want %d", k, got, want)
		}
	}
	for _, k := range []string{"clip.has_vision_encoder", "clip.use_gelu"} {
		if v, ok := kvs.Get(k); !ok || !v.ValueBool() {
			t.Errorf("%s not true", k)
		}
	}
	if v, ok := kvs.Get("clip.vision.attention.layer_norm_epsilon"); !ok || v.ValueFloat32() != 1e-6 {
		t.Errorf("layer_norm_epsilon %v", v)
	}
	for _, k := range []string{"clip.vision.image_mean", "clip.vision.image_std"} {
		v, ok := kvs.Get(k)
		if !ok {
			t.Errorf("no %s", k)
			continue
		}
		arr := v.ValueArray()
		if arr.Len != 3 {
			t.Errorf("%s has %d values", k, arr.Len)
		}
	}
	want := map[string][]uint64{"v.patch_embd.weight": {8, 8, 3, 32}, "v.patch_embd.bias": {32}, "v.position_embd.weight": {32, 16},
		"v.post_ln.weight": {32}, "v.post_ln.bias": {32}, "mm.soft_emb_norm.weight": {32}, "mm.input_projection.weight": {64, 32}}
	for l := 0; l < 2; l++ {
		p := "v.blk." + string(rune('0'+l)) + "."
		for _, n := range []string{"ln1", "ln2"} {
			want[p+n+".weight"], want[p+n+".bias"] = []uint64{32}, []uint64{32}
		}
		for _, n := range []string{"attn_q", "attn_k", "attn_v", "attn_out"} {
			want[p+n+".weight"], want[p+n+".bias"] = []uint64{32, 32}, []uint64{32}
		}
		want[p+"ffn_up.weight"], want[p+"ffn_up.bias"] = []uint64{32, 64}, []uint64{64}
		want[p+"ffn_down.weight"], want[p+"ffn_down.bias"] = []uint64{64, 32}, []uint64{32}
	}
	if len(gf.TensorInfos) != len(want) {
		t.Errorf("%d tensors, want %d", len(gf.TensorInfos), len(want))
	}
	for _, ti := range gf.TensorInfos {
		dims, ok := want[ti.Name]
		if !ok {
			t.Errorf("unexpected tensor %s", ti.Name)
			continue
		}
		if !slices.Equal(ti.Dimensions, dims) {
			t.Errorf("%s dims %v, want %v", ti.Name, ti.Dimensions, dims)
		}
		typ := parser.GGMLTypeF16
		if len(dims) == 1 || strings.HasPrefix(ti.Name, "v.patch_embd") || strings.HasPrefix(ti.Name, "v.position_embd") {
			typ = parser.GGMLTypeF32
		}
		if ti.Type != typ {
			t.Errorf("%s stored as %v, want %v", ti.Name, ti.Type, typ)
		}
	}
	v := src.Model.Gemma3Vision
	values := func(p *engine.Param) []float32 {
		out, err := src.Model.WeightValues(p)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// F32 tensors exactly.
	if got, w := ggufF32(t, path, gf, "v.position_embd.weight"), values(v.PosEmb); !slices.Equal(got, w) {
		t.Errorf("v.position_embd differs from the model's position embedding")
	}
	norm := values(v.ProjNorm)
	for i := range norm {
		norm[i]++
	}
	if got := ggufF32(t, path, gf, "mm.soft_emb_norm.weight"); !slices.Equal(got, norm) {
		t.Errorf("mm.soft_emb_norm %v, want 1 + w = %v", got[:3], norm[:3])
	}
	// The projection: W + s·Aᵀ·Bᵀ, computed here from the adapter, in F16.
	proj := values(v.Proj)
	lo := v.ProjLoRA
	a := values(lo.A) // [r, Dv]
	b := values(lo.B) // [Dt, r]
	Dv, Dt, r := 32, 64, lo.Rank
	for i := 0; i < Dv; i++ {
		for o := 0; o < Dt; o++ {
			var s float32
			for k := 0; k < r; k++ {
				s += a[k*Dv+i] * b[o*r+k]
			}
			proj[i*Dt+o] += lo.Scale * s
		}
	}
	got := ggufF16(t, path, gf, "mm.input_projection.weight")
	if d, top := maxDiff(got, proj); d > 2e-3*top {
		t.Errorf("mm.input_projection differs from W + s·AᵀBᵀ by %g (largest %g)", d, top)
	}
	base := values(v.Proj)
	if d, top := maxDiff(got, base); d < 0.05*top {
		t.Errorf("mm.input_projection is the base projection (the adapter was not merged): %g", d)
	}
}

// ggufF16 reads an F16 tensor of a GGUF file parsed by gguf-parser-go.
func ggufF16(t *testing.T, path string, gf *parser.GGUFFile, name string) []float32 {
	t.Helper()
	for _, ti := range gf.TensorInfos {
		if ti.Name != name {
			continue
		}
		if gguf.TensorType(ti.Type) != gguf.F16 {
			t.Fatalf("%s is %s, not F16", name, gguf.TensorType(ti.Type))
		}
		n := 1
		for _, d := range ti.Dimensions {
			n *= int(d)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		off := gf.TensorDataStartOffset + int64(ti.Offset)
		out, err := gguf.Decode(gguf.F16, data[off:off+int64(2*n)], n)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Fatalf("%s has no tensor %s", path, name)
	return nil
}

// checkMMProjInGGML reads the mmproj file with ggml's own GGUF reader
// (testdata/ggufdump.c, built with gcc against the libggml-base that
// node-llama-cpp bundles: the reader clip.cpp loads an mmproj with) and
// checks that it accepts the file, that every key clip.cpp reads for a
// gemma3 projector has the type clip.cpp's getters ask for (gguf_get_val_u32
// and friends abort on another type), and that the tensors' ggml shapes and
// F32 values are the model's.
func checkMMProjInGGML(t *testing.T, path string, src *Source) {
	t.Helper()
	requireLlama(t)
	platform := map[string]string{"amd64": "linux-x64", "arm64": "linux-arm64"}[runtime.GOARCH]
	lib := filepath.Join(repoRoot, ".cache/npm-llama/node_modules/@node-llama-cpp", platform, "bins", platform)
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("gcc is required to build testdata/ggufdump.c against llama.cpp's libggml-base: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "ggufdump")
	if out, err := exec.Command(gcc, "-O1", "-o", bin, "testdata/ggufdump.c", "-L"+lib, "-l:libggml-base.so", "-Wl,-rpath,"+lib).CombinedOutput(); err != nil {
		t.Fatalf("building ggufdump: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, path).CombinedOutput()
	if err != nil {
		t.Fatalf("ggml could not read %s: %v\n%s", path, err, out)
	}
	kvs := map[string][]string{}
	tensors := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "kv":
			kvs[f[1]] = f[2:]
		case len(f) >= 7 && f[0] == "tensor":
			if f[1] != "GGUF" { // ggml's own blob of all tensor data ("GGUF tensor data binary blob")
				tensors[f[1]] = f[2:]
			}
		default:
			t.Fatalf("ggufdump line %q", line)
		}
	}
	const u32, f32, boolean, str, arr = "4", "6", "7", "8", "9"
	for key, want := range map[string][]string{
		"general.architecture": {str, "clip"}, "clip.projector_type": {str, "gemma3"},
		"clip.has_vision_encoder": {boolean, "1"}, "clip.use_gelu": {boolean, "1"},
		"clip.vision.image_size": {u32, "32"}, "clip.vision.patch_size": {u32, "8"},
		"clip.vision.embedding_length": {u32, "32"}, "clip.vision.feed_forward_length": {u32, "64"},
		"clip.vision.projection_dim": {u32, "64"}, "clip.vision.block_count": {u32, "2"},
		"clip.vision.attention.head_count": {u32, "2"}, "clip.vision.attention.layer_norm_epsilon": {f32, "9.99999997e-07"},
		"clip.vision.projector.scale_factor": {u32, "2"},
		"clip.vision.image_mean":             {arr, f32, "3", "0.5", "0.5", "0.5"}, "clip.vision.image_std": {arr, f32, "3", "0.5", "0.5", "0.5"},
	} {
		if got := kvs[key]; !slices.Equal(got, want) {
			t.Errorf("ggml reads %s as %v, want %v", key, got, want)
		}
	}
	v := src.Model.Gemma3Vision
	for name, p := range map[string]*engine.Param{"v.position_embd.weight": v.PosEmb, "v.patch_embd.weight": v.PatchW,
		"v.blk.1.ln2.bias": v.Layers[1].LN2B, "v.post_ln.weight": v.PostW} {
		f, ok := tensors[name]
		if !ok {
			t.Errorf("ggml finds no tensor %s", name)
			continue
		}
		// ggml's ne is the PyTorch shape reversed, padded with 1s.
		var ne []int
		for _, d := range f[1:5] {
			n, _ := strconv.Atoi(d)
			ne = append(ne, n)
		}
		want := slices.Clone(p.Shape)
		slices.Reverse(want)
		for len(want) < 4 {
			want = append(want, 1)
		}
		if f[0] != "0" || !slices.Equal(ne, want) {
			t.Errorf("ggml reads %s as type %s ne %v, want F32 (0) ne %v", name, f[0], ne, want)
			continue
		}
		vals, err := src.Model.WeightValues(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(f[5:]) != len(vals) {
			t.Errorf("%s: ggml gives %d values, want %d", name, len(f[5:]), len(vals))
			continue
		}
		for i, s := range f[5:] {
			x, _ := strconv.ParseFloat(s, 32)
			if float32(x) != vals[i] && !(math.IsNaN(x) && math.IsNaN(float64(vals[i]))) {
				t.Errorf("%s[%d]: ggml reads %v, want %v", name, i, x, vals[i])
				break
			}
		}
	}
	if f := tensors["mm.input_projection.weight"]; len(f) < 5 || f[0] != "1" || f[1] != "64" || f[2] != "32" {
		t.Errorf("ggml reads mm.input_projection as %v, want F16 (1) ne [64 32 1 1]", f)
	}
	if len(tensors) != 2*16+7 {
		t.Errorf("ggml finds %d tensors, want %d", len(tensors), 2*16+7)
	}
}

// TestGemma3VisionProjectorFile: a run whose adapter keeps the projector's
// adapter only in whet train's own file (engine.ProjectorLoRAFile: A [r, Dv],
// B [Dt, r] under whet's names) and not under PEFT's keys loads with the
// training model's logits, and its PEFT export gets the projector in PEFT's
// layout, equal to what SaveAdapter writes.
func TestGemma3VisionProjectorFile(t *testing.T) {
	tmp := t.TempDir()
	base := makeGemma3VisionModel(t, filepath.Join(tmp, "base"))
	run, want := makeGemma3VisionRun(t, filepath.Join(tmp, "run"), base, true)
	adapter := filepath.Join(run, "adapter")
	f, err := safetensors.Open(filepath.Join(adapter, adapterWeights))
	if err != nil {
		t.Fatal(err)
	}
	var keep []safetensors.Tensor
	peftProj := map[string][]float32{}
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		raw, _ := f.Raw(n)
		if engine.IsGemma3ProjectorPEFTKey(n) {
			peftProj[n], _ = f.Float32(n)
			continue
		}
		keep = append(keep, safetensors.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	f.Close()
	if len(peftProj) != 2 {
		t.Fatalf("SaveAdapter wrote %d projector tensors", len(peftProj))
	}
	if err := safetensors.Write(filepath.Join(adapter, adapterWeights), keep, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := readJSONMap(filepath.Join(adapter, adapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	delete(cfg, "target_parameters")
	if err := writeJSON(filepath.Join(adapter, adapterConfigFile), cfg); err != nil {
		t.Fatal(err)
	}
	// whet's A [r, Dv] is PEFT's lora_B [Dv, r] transposed, B [Dt, r] lora_A [r, Dt] transposed.
	tr := func(v []float32, rows, cols int) []float32 {
		out := make([]float32, len(v))
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				out[j*rows+i] = v[i*cols+j]
			}
		}
		return out
	}
	a := tr(peftProj["base_model.model.model.multi_modal_projector.lora_B.weight"], 32, 4)
	b := tr(peftProj["base_model.model.model.multi_modal_projector.lora_A.weight"], 4, 64)
	if err := safetensors.Write(filepath.Join(adapter, engine.ProjectorLoRAFile), []safetensors.Tensor{
		safetensors.F32Tensor("multi_modal_projector.mm_input_projection.lora_A.weight", []int{4, 32}, a),
		safetensors.F32Tensor("multi_modal_projector.mm_input_projection.lora_B.weight", []int{64, 4}, b),
	}, map[string]string{"format": "whet-projector-lora"}); err != nil {
		t.Fatal(err)
	}
	src := loadRun(t, run)
	if src.Model.Gemma3Vision == nil || src.Model.Gemma3Vision.ProjLoRA == nil {
		t.Fatal("the projector adapter of projector_lora.safetensors was not loaded")
	}
	if got := visionLogits(t, src.Model); !slices.Equal(got, want) {
		t.Errorf("logits differ from the training model's")
	}
	peft := filepath.Join(tmp, "peft")
	if err := Run(Options{RunDir: run, Format: "peft", OutDir: peft}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := safetensors.Open(filepath.Join(peft, adapterWeights))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range peftProj {
		got, err := out.Float32(k)
		if err != nil || !slices.Equal(got, v) {
			t.Errorf("PEFT export's %s differs from SaveAdapter's (%v)", k, err)
		}
	}
	out.Close()
	c, _ := readJSONMap(filepath.Join(peft, adapterConfigFile))
	if tp, _ := c["target_parameters"].([]any); len(tp) != 1 {
		t.Errorf("target_parameters %v", c["target_parameters"])
	}
	// A model loaded without its tower leaves the projector adapter out.
	m, err := engine.LoadModel(base, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if _, err := engine.LoadAdapter(peft, m); err != nil {
		t.Errorf("the text model refuses the adapter with a projector: %v", err)
	}
}

// TestGemma3VisionQLoRAExports: a QLoRA run of the vision model (the
// language model's linears in NF4, the tower and projector not) exports
// GGUF into the NF4 base with the mmproj file, whose projection is the same
// merged projector as a LoRA run's, and merged safetensors into the full base.
func TestGemma3VisionQLoRAExports(t *testing.T) {
	tmp := t.TempDir()
	base := makeGemma3VisionModel(t, filepath.Join(tmp, "base"))
	run, _ := makeGemma3VisionRun(t, filepath.Join(tmp, "run"), base, true)
	lora := filepath.Join(tmp, "lora-gguf")
	if err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: lora}, nil); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(base)
	writeRunYAML(t, run, "run", abs, "qlora", engine.LoRAConfig{Rank: 4, Alpha: 8})
	q := filepath.Join(tmp, "qlora-gguf")
	if err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: q}, nil); err != nil {
		t.Fatal(err)
	}
	var proj [][]float32
	for _, dir := range []string{lora, q} {
		path := filepath.Join(dir, "mmproj-model.gguf")
		gf, err := parser.ParseGGUFFile(path)
		if err != nil {
			t.Fatal(err)
		}
		proj = append(proj, ggufF16(t, path, gf, "mm.input_projection.weight"))
	}
	if !slices.Equal(proj[0], proj[1]) {
		t.Errorf("the QLoRA run's mmproj projection differs from the LoRA run's (the projector is not quantized)")
	}
	if err := Run(Options{RunDir: run, Format: "merged", OutDir: filepath.Join(tmp, "merged")}, nil); err != nil {
		t.Fatal(err)
	}
	m, err := engine.LoadGemma3Vision(filepath.Join(tmp, "merged"), cpu.New(), engine.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Free()
}

// TestGemma3VisionLayersExport: a run with adapters on the tower's layers
// (lora.vision_layers) exports merged with them merged into the tower's
// linears (fc1 of layer 1 equals W + s·B·A computed here from the
// adapter file, within bf16 rounding; the merged model's logits are the
// run's within bf16 and far from the run's without its tower adapters), and
// a PEFT export is refused by name.
func TestGemma3VisionLayersExport(t *testing.T) {
	tmp := t.TempDir()
	base := makeGemma3VisionModel(t, filepath.Join(tmp, "base"))
	dir := filepath.Join(tmp, "run")
	m, err := engine.LoadGemma3Vision(base, cpu.New(), engine.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	opts := engine.LoRAOptions{Rank: 4, Alpha: 8, Targets: m.Family().LoRATargets(), Seed: 9}
	if err := m.AddLoRA(opts); err != nil {
		t.Fatal(err)
	}
	if err := m.AddGemma3VisionLayersLoRA(opts); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 5))
	for _, lin := range m.Gemma3Vision.TowerLinears() {
		v := make([]float32, numel(lin.LoRA.B.Shape))
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.3)
		}
		if err := m.B.Upload(lin.LoRA.B.Master, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.SyncFromMasters(); err != nil {
		t.Fatal(err)
	}
	want := visionLogits(t, m)
	for _, lin := range m.Gemma3Vision.TowerLinears() {
		lin.LoRA.Enabled = false
	}
	noTower := visionLogits(t, m)
	for _, lin := range m.Gemma3Vision.TowerLinears() {
		lin.LoRA.Enabled = true
	}
	abs, _ := filepath.Abs(base)
	adapter := filepath.Join(dir, "adapter")
	if err := engine.SaveAdapter(adapter, m, opts, abs); err != nil {
		t.Fatal(err)
	}
	if err := engine.SaveGemma3VisionLayersLoRA(adapter, m, opts); err != nil {
		t.Fatal(err)
	}
	writeRunYAML(t, dir, "run", abs, "lora", engine.LoRAConfig{Rank: opts.Rank, Alpha: opts.Alpha, TargetModules: opts.Targets, VisionLayers: true})

	err = Run(Options{RunDir: dir, Format: "peft", OutDir: filepath.Join(tmp, "peft")}, nil)
	if err == nil || !strings.Contains(err.Error(), "lora.vision_layers") {
		t.Errorf("PEFT export of a run with lora.vision_layers: %v, want a refusal naming lora.vision_layers", err)
	}
	merged := filepath.Join(tmp, "merged")
	if err := Run(Options{RunDir: dir, Format: "merged", Quant: "bf16", OutDir: merged}, nil); err != nil {
		t.Fatal(err)
	}
	const fc1 = "vision_tower.vision_model.encoder.layers.1.mlp.fc1"
	in, _ := safetensors.OpenDir(base)
	out, _ := safetensors.OpenDir(merged)
	w, err1 := in.Float32("model." + fc1 + ".weight")
	got, err2 := out.Float32("model." + fc1 + ".weight")
	in.Close()
	out.Close()
	af, err3 := safetensors.Open(filepath.Join(adapter, engine.VisionLayersLoRAFile))
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	a, err1 := af.Float32(fc1 + ".lora_A.weight")
	b, err2 := af.Float32(fc1 + ".lora_B.weight")
	ainfo, _ := af.Info(fc1 + ".lora_A.weight")
	af.Close()
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	r, in1 := ainfo.Shape[0], ainfo.Shape[1]
	out1 := len(w) / in1
	s := float64(opts.LoRAScale())
	for o := 0; o < out1; o++ {
		for i := 0; i < in1; i++ {
			e := float64(w[o*in1+i])
			for k := 0; k < r; k++ {
				e += s * float64(b[o*r+k]) * float64(a[k*in1+i])
			}
			if d := math.Abs(float64(got[o*in1+i]) - e); d > 1e-2*math.Abs(e)+1e-6 {
				t.Fatalf("merged %s[%d,%d] = %v, want W + s·B·A = %v", fc1, o, i, got[o*in1+i], e)
			}
		}
	}
	gotLogits := visionFolderLogits(t, merged)
	d, top := maxDiff(gotLogits, want)
	if d > 0.02*top {
		t.Errorf("the merged model's logits differ from the run's by %g (largest %g)", d, top)
	}
	if dn, _ := maxDiff(gotLogits, noTower); dn < 2*d {
		t.Errorf("the merged model is as close to the run without its tower adapters (%g) as with them (%g)", dn, d)
	}
}
