package engine

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine/envswitch"
	"whet/engine/safetensors"
)

// Training on images through whet train (issue 24). A run whose model
// folder is a vision model (VisionModelKind) reads its data with the
// images (datasets.Options.Vision); when the data holds images the run
// trains the vision model, through the same Trainer, loop, checkpoints
// and resume as a text run:
//
//   - Gemma 3 (Gemma3ForConditionalGeneration): the Model is loaded with
//     its tower (ModelOptions.Gemma3Vision); each micro-batch's images go
//     through the model's processor and Activations.SetImages before the
//     usual ForwardBackward (gemma3Runner).
//   - Llama 3.2 Vision (Mllama): the MllamaModel is wrapped in a Model
//     whose parameters are its own (Model.mllama), so that clipping,
//     AdamW and checkpoints need no change; each micro-batch becomes
//     MllamaSamples with the processor's tiles, aspect-ratio ids and the
//     cross-attention mask (mllamaRunner).
//
// Both keep the vision tower's weights frozen: LoRA (QLoRA for Gemma 3) on
// the language model, with lora.projector an adapter on the projector, and
// for Gemma 3 with lora.vision_layers adapters on the tower's linear layers.
//
// What a run writes for the exporters: every trainable tensor (the
// language model's adapters, the projector's, their AdamW moments) is in
// each checkpoint's trainable.safetensors under whet's parameter names;
// the run's adapter folder (RunDir.Adapter) holds the PEFT adapter of the
// language model (adapter_model.safetensors, adapter_config.json) and,
// for Gemma 3 with lora.projector, the projector's adapter in
// projector_lora.safetensors (PEFT has no module name for Gemma 3's
// projector matrix, a bare parameter); Mllama's projector is a linear, so
// its adapter is in adapter_model.safetensors with the others.

// Vision model kinds, as VisionModelKind names them.
const (
	VisionGemma3 = "gemma3"
	VisionMllama = "mllama"
)

// VisionLayersLoRAFile is the file of a run's adapter folder that holds
// Gemma 3's tower adapters (lora.vision_layers) under whet's names
// (vision_tower.vision_model.encoder.layers.N.self_attn.q_proj.lora_A.weight, …).
const VisionLayersLoRAFile = "vision_layers_lora.safetensors"

// ProjectorLoRAFile is the file of a run's adapter folder that holds
// Gemma 3's projector adapter (lora.projector).
const ProjectorLoRAFile = "projector_lora.safetensors"

// VisionModelKind says whether a model folder is a vision model whet can
// train on images: "gemma3" (model_type gemma3 with a vision_config),
// "mllama", or "" (a text model, or a folder without config.json).
func VisionModelKind(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return ""
	}
	var c struct {
		ModelType    string          `json:"model_type"`
		VisionConfig json.RawMessage `json:"vision_config"`
	}
	if json.Unmarshal(data, &c) != nil {
		return ""
	}
	switch {
	case c.ModelType == "mllama":
		return VisionMllama
	case c.ModelType == "gemma3" && len(c.VisionConfig) > 0 && string(c.VisionConfig) != "null":
		return VisionGemma3
	}
	return ""
}

// gemma3VisionConfigIn is the vision tower's config of the Gemma 3 folder
// dir (its config.json's vision_config).
func gemma3VisionConfigIn(dir string) (*Gemma3VisionConfig, error) {
	mc, err := LoadModelConfig(dir)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	vc, err := ParseGemma3VisionConfig(data, mc.HiddenSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return vc, nil
}

// visionDataOptions are the data options of a vision run on the model in
// dir (what the chat template writes for an image, and the image tokens'
// count and names).
func visionDataOptions(dir, kind string) (*datasets.VisionOptions, error) {
	switch kind {
	case VisionGemma3:
		vc, err := gemma3VisionConfigIn(dir)
		if err != nil {
			return nil, err
		}
		tokens := vision.DefaultGemma3Tokens()
		tokens.SeqLen = vc.TokensPerImage
		return &datasets.VisionOptions{Model: "Gemma 3", Gemma3: &tokens, ImageToken: tokens.Image,
			NoLabel: []string{tokens.BOI, tokens.EOI}}, nil
	case VisionMllama:
		return &datasets.VisionOptions{Model: "Llama 3.2 Vision", ImageToken: "<|image|>"}, nil
	}
	return nil, fmt.Errorf("%s is not a vision model", dir)
}

// visionDataSettings fills o's image settings for a run of method on the
// model in dir: a vision model read with its images for the supervised
// methods, and otherwise the reason images are refused.
func visionDataSettings(o *datasets.Options, method, dir string) (string, error) {
	kind := VisionModelKind(dir)
	switch {
	case kind == "":
		o.NoImages = fmt.Sprintf("the model %s is a text model (whet trains on images with Gemma 3 vision and Llama 3.2 Vision models)", filepath.Base(dir))
	case method == "dpo" || method == "grpo":
		o.NoImages = fmt.Sprintf("method %s does not train on images yet (lora and qlora do)", method)
	default:
		v, err := visionDataOptions(dir, kind)
		if err != nil {
			return "", err
		}
		o.Vision = v
	}
	return kind, nil
}

// checkVisionRun refuses, by name, what a run on images cannot do yet.
// kind is the model's; images is whether the data has any.
func checkVisionRun(cfg RunConfig, kind string, images bool, backend Backend) error {
	if kind == VisionMllama {
		switch cfg.Method {
		case "lora", "qlora":
		default:
			return fmt.Errorf("method %s: Llama 3.2 Vision (Mllama) trains with method lora or qlora only (no full fine-tuning, dpo or grpo yet)", cfg.Method)
		}
		if _, ok := backend.(MllamaOps); !ok {
			return fmt.Errorf("backend %s cannot train Llama 3.2 Vision (Mllama): it lacks the Mllama ops (engine.MllamaOps: exact GELU, attention under a bias, LayerNorm); use backend: cpu", backend.Name())
		}
		if err := cudaVisionAllowed(backend, "Llama 3.2 Vision (exact GELU, attention under a bias, LayerNorm)"); err != nil {
			return err
		}
	}
	if kind == "" || !images {
		if cfg.LoRA.Projector {
			return fmt.Errorf("lora.projector: the run has no images to train a projector on (a vision model and data with images are needed)")
		}
		if cfg.LoRA.VisionLayers {
			return fmt.Errorf("lora.vision_layers: the run has no images to train the vision tower's layers on (a vision model and data with images are needed)")
		}
		return nil
	}
	if cfg.LoRA.VisionLayers && kind != VisionGemma3 {
		return fmt.Errorf("lora.vision_layers: adapters on the vision tower are implemented for Gemma 3 only (not yet for %s)", kind)
	}
	if cfg.Method == "full" {
		return fmt.Errorf("method full with images: whet keeps the vision tower frozen and trains adapters (method lora or qlora)")
	}
	if p := cfg.Parallel; p.Ranks > 1 || p.GPUs != "" || p.Nodes.NNodes > 1 {
		return fmt.Errorf("parallel: training on images runs on one device for now; remove the parallel section")
	}
	if cfg.Train.OffloadCheckpoints != "" && cfg.Train.OffloadCheckpoints != "off" {
		return fmt.Errorf("train.offload_checkpoints %s: not with images yet (the vision tower's activations are not offloaded); remove it", cfg.Train.OffloadCheckpoints)
	}
	if kind == VisionGemma3 {
		return cudaVisionAllowed(backend, "Gemma 3 vision (LayerNorm, GELU-tanh, group attention)")
	}
	return nil
}

// CUDAVisionEnv turns the vision models' GPU paths off: with
// WHET_CUDA_VISION=0 a GPU backend refuses Gemma 3 vision and Llama 3.2
// Vision training and Llama 3.2 Vision generation. They are on by default
// since tools/gpu vtrain, vlayers, mllama-vtrain and mllama-gen passed on
// an H100 (CUDA losses track the CPU's, resumes work, chat replies equal
// the CPU's).
const CUDAVisionEnv = "WHET_CUDA_VISION"

// cudaVisionAllowed refuses a GPU backend for a vision model's ops only
// where WHET_CUDA_VISION=0 turns them off.
func cudaVisionAllowed(backend Backend, ops string) error {
	if backend.Name() == "cpu" || envswitch.On(CUDAVisionEnv) {
		return nil
	}
	return fmt.Errorf("backend %s: %s=0 turns off the GPU path of %s; unset it, or use backend: cpu", backend.Name(), CUDAVisionEnv, ops)
}

// imageRunner runs a vision run's micro-batch with its images.
type imageRunner interface {
	forwardBackward(t *Trainer, b *datasets.Batch, gradScale float32, backward bool, seed uint64) (StepResult, error)
}

// forwardBackward runs one micro-batch: with its images on a vision run,
// else as text.
func (t *Trainer) forwardBackward(b *datasets.Batch, gradScale float32, backward bool, seed uint64) (StepResult, error) {
	if t.images != nil {
		return t.images.forwardBackward(t, b, gradScale, backward, seed)
	}
	return t.Acts.ForwardBackward(b, gradScale, backward, seed)
}

// processedImages keeps processor outputs between epochs, up to a byte
// budget (a big dataset is processed again each time it is read).
type processedImages struct {
	mu    sync.Mutex
	byKey map[string]any
	bytes int
	limit int
}

// get is the processor's output for im, from the cache or made by
// process (size is its size in bytes).
func (c *processedImages) get(im datasets.BatchImage, process func(*vision.Decoded) (any, int, error)) (any, error) {
	key := im.Where
	c.mu.Lock()
	v, ok := c.byKey[key]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	d, err := im.Load()
	if err != nil {
		return nil, err
	}
	v, size, err := process(d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", im.Where, err)
	}
	c.mu.Lock()
	if c.byKey == nil {
		c.byKey = map[string]any{}
	}
	if c.bytes+size <= c.limit {
		c.byKey[key] = v
		c.bytes += size
	}
	c.mu.Unlock()
	return v, nil
}

// imageCacheBytes is how much processed pixel data a run keeps.
const imageCacheBytes = 1 << 30

// gemma3Runner feeds Gemma 3's micro-batches their pixel values.
type gemma3Runner struct {
	proc  vision.Gemma3
	cache processedImages
}

// Pixels are the pixel values of b's images ([n, 3, S, S]) as the model's
// processor makes them.
func (g *gemma3Runner) pixels(b *datasets.Batch) ([]float32, error) {
	var px []float32
	for _, im := range b.Images {
		v, err := g.cache.get(im, func(d *vision.Decoded) (any, int, error) {
			out, err := g.proc.Process(d)
			if err != nil {
				return nil, 0, err
			}
			if out.NumCrops != 0 || len(out.PixelValues) != 1 {
				return nil, 0, fmt.Errorf("pan-and-scan crops are not supported for training")
			}
			return out.PixelValues[0], 4 * len(out.PixelValues[0]), nil
		})
		if err != nil {
			return nil, err
		}
		px = append(px, v.([]float32)...)
	}
	return px, nil
}

func (g *gemma3Runner) forwardBackward(t *Trainer, b *datasets.Batch, gradScale float32, backward bool, seed uint64) (StepResult, error) {
	px, err := g.pixels(b)
	if err != nil {
		return StepResult{}, err
	}
	if err := t.Acts.SetImages(px, len(b.Images)); err != nil {
		return StepResult{}, err
	}
	return t.Acts.ForwardBackward(b, gradScale, backward, seed)
}

// Gemma3ImageProcessor is the image processor of a Gemma 3 vision model
// folder for training (LoadGemma3ImageProcessor's): pan-and-scan is
// refused, as training does not expand crops yet.
func Gemma3ImageProcessor(dir string, v *Gemma3VisionConfig) (vision.Gemma3, error) {
	p, err := LoadGemma3ImageProcessor(dir, v)
	if err == nil && p.PanAndScan {
		err = fmt.Errorf("%s: do_pan_and_scan is on, which whet does not train with yet; set it to false", filepath.Join(dir, "preprocessor_config.json"))
	}
	return p, err
}

// ModelImageProcessor is the image processor a vision model folder's runs
// use (LoadGemma3ImageProcessor, MllamaImageProcessor): its
// preprocessor_config.json when there is one, else the released defaults
// at its tower's size.
func ModelImageProcessor(dir string) (*vision.ProcessorConfig, error) {
	switch VisionModelKind(dir) {
	case VisionGemma3:
		vc, err := gemma3VisionConfigIn(dir)
		if err != nil {
			return nil, err
		}
		p, err := LoadGemma3ImageProcessor(dir, vc)
		if err != nil {
			return nil, err
		}
		return &vision.ProcessorConfig{Type: "Gemma3ImageProcessor", Gemma3: &p}, nil
	case VisionMllama:
		mc, err := LoadMllamaConfig(dir)
		if err != nil {
			return nil, err
		}
		p, err := MllamaImageProcessor(dir, &mc.Vision)
		if err != nil {
			return nil, err
		}
		return &vision.ProcessorConfig{Type: "MllamaImageProcessor", Mllama: &p}, nil
	}
	return nil, fmt.Errorf("%s is not a vision model whet reads images for (Gemma 3 with a vision_config, or Llama 3.2 Vision)", dir)
}

// LoadGemma3ImageProcessor is the image processor of a Gemma 3 vision
// model folder: its preprocessor_config.json when there is one, else the
// released defaults at the tower's image size.
func LoadGemma3ImageProcessor(dir string, v *Gemma3VisionConfig) (vision.Gemma3, error) {
	p := vision.DefaultGemma3()
	p.Size = v.ImageSize
	path := filepath.Join(dir, "preprocessor_config.json")
	if _, err := os.Stat(path); err == nil {
		pc, err := vision.LoadProcessorConfig(path)
		if err != nil {
			return p, err
		}
		if pc.Gemma3 == nil {
			return p, fmt.Errorf("%s: image processor %q is not Gemma 3's", path, pc.Type)
		}
		p = *pc.Gemma3
		if p.Size != v.ImageSize {
			return p, fmt.Errorf("%s: size %d, but the vision tower takes %d×%d images", path, p.Size, v.ImageSize, v.ImageSize)
		}
	}
	return p, nil
}

// MllamaImageProcessor is the image processor of an Mllama folder: its
// preprocessor_config.json when there is one, else the released defaults
// at the tower's tile size and tile count.
func MllamaImageProcessor(dir string, v *MllamaVisionConfig) (vision.Mllama, error) {
	p := vision.DefaultMllama()
	p.TileSize, p.MaxTiles = v.ImageSize, v.MaxTiles
	path := filepath.Join(dir, "preprocessor_config.json")
	if _, err := os.Stat(path); err == nil {
		pc, err := vision.LoadProcessorConfig(path)
		if err != nil {
			return p, err
		}
		if pc.Mllama == nil {
			return p, fmt.Errorf("%s: image processor %q is not Mllama's", path, pc.Type)
		}
		p = *pc.Mllama
		if p.TileSize != v.ImageSize || p.MaxTiles != v.MaxTiles {
			return p, fmt.Errorf("%s: tiles of %d pixels, at most %d, but the vision tower takes %d-pixel tiles, at most %d", path, p.TileSize, p.MaxTiles, v.ImageSize, v.MaxTiles)
		}
	}
	return p, nil
}

// mllamaRunner runs Llama 3.2 Vision's micro-batches.
type mllamaRunner struct {
	m     *MllamaModel
	proc  vision.Mllama
	cache processedImages
}

// samples cuts b into its sequences, each with its images processed, the
// aspect-ratio ids and masks and the cross-attention mask.
func (r *mllamaRunner) samples(b *datasets.Batch) ([]MllamaSample, error) {
	var out []MllamaSample
	next := 0
	imageID := int32(r.m.Cfg.ImageToken)
	for s := 0; s+1 < len(b.SeqStarts); s++ {
		lo, hi := int(b.SeqStarts[s]), int(b.SeqStarts[s+1])
		smp := MllamaSample{IDs: b.Tokens[lo:hi], Targets: b.Targets[lo:hi]}
		ids := make([]int, hi-lo)
		for i, id := range smp.IDs {
			ids[i] = int(id)
			if id == imageID {
				smp.Images++
			}
		}
		if next+smp.Images > len(b.Images) {
			return nil, fmt.Errorf("sequence %d has %d image tokens, but the batch has %d images left", s, smp.Images, len(b.Images)-next)
		}
		var tiles []int
		for _, im := range b.Images[next : next+smp.Images] {
			v, err := r.cache.get(im, func(d *vision.Decoded) (any, int, error) {
				o, err := r.proc.Process(d)
				if err != nil {
					return nil, 0, err
				}
				return o, 4 * len(o.PixelValues), nil
			})
			if err != nil {
				return nil, err
			}
			o := v.(*vision.MllamaOutput)
			smp.Pixels = append(smp.Pixels, o.PixelValues...)
			smp.AspectRatioIDs = append(smp.AspectRatioIDs, int32(o.AspectRatioID))
			for _, k := range o.AspectRatioMask {
				smp.AspectRatioMask = append(smp.AspectRatioMask, int32(k))
			}
			tiles = append(tiles, o.NumTiles)
		}
		next += smp.Images
		if smp.Images > 0 {
			for _, k := range vision.CrossAttentionMask(vision.CrossAttentionSpans(ids, int(imageID)), tiles, r.proc.MaxTiles, len(ids)) {
				smp.CrossMask = append(smp.CrossMask, int32(k))
			}
		}
		out = append(out, smp)
	}
	if next != len(b.Images) {
		return nil, fmt.Errorf("the batch has %d images but its sequences %d image tokens", len(b.Images), next)
	}
	return out, nil
}

func (r *mllamaRunner) forwardBackward(t *Trainer, b *datasets.Batch, gradScale float32, backward bool, seed uint64) (StepResult, error) {
	samples, err := r.samples(b)
	if err != nil {
		return StepResult{}, err
	}
	if b.NumTargets() == 0 {
		return StepResult{}, nil
	}
	res, err := r.m.run(samples, backward, false, gradScale)
	if err != nil {
		return StepResult{}, err
	}
	return StepResult{LossSum: res.Loss * float64(res.Count), Count: res.Count}, nil
}

// newMllamaTrainer loads a Llama 3.2 Vision folder and makes a LoRA
// trainer of it (checkVisionRun has refused what it cannot do).
func (s *Session) newMllamaTrainer(b Backend, data *PreparedData) (*Trainer, error) {
	cfg := s.Cfg
	// qlora: the language model's linears in NF4 (MllamaOptions.NF4Linears);
	// bf16 compute on a bf16 backend unless WHET_MLLAMA_BF16=0
	// (MllamaComputeDType), else float32.
	mm, err := LoadMllamaWith(s.ModelDir, b, MllamaOptions{NF4Linears: cfg.Method == "qlora", Compute: MllamaComputeDType(b)})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Trainer, error) {
		mm.Free()
		return nil, err
	}
	mm.LogitsRows = cfg.Train.LogitsChunk
	// train.activation_checkpointing: each text layer's forward runs
	// again in the backward (MllamaModel.Checkpointing).
	mm.Checkpointing = cfg.Train.Checkpointing
	proc, err := MllamaImageProcessor(s.ModelDir, &mm.Cfg.Vision)
	if err != nil {
		return fail(err)
	}
	l := cfg.LoRA
	// MllamaLoRA scales by Alpha/Rank; rsLoRA's alpha/√r is that of
	// alpha·√r.
	alpha := l.Alpha
	if l.RSLoRA {
		alpha *= math.Sqrt(float64(l.Rank))
	}
	if err := mm.AddLoRA(MllamaLoRA{Rank: l.Rank, Alpha: float32(alpha), Targets: l.TargetModules, Projector: l.Projector}); err != nil {
		return fail(fmt.Errorf("lora: %w", err))
	}
	// PEFT's initialisation: A uniform in ±1/√in (kaiming_uniform with
	// a=√5), B zero, so training starts from the base model.
	for i, lin := range mm.loraLinears() {
		if lin.LoRA == nil {
			continue
		}
		rng := rand.New(rand.NewPCG(uint64(cfg.Train.Seed), uint64(i)+0x11a))
		bound := 1 / math.Sqrt(float64(lin.In))
		vals := make([]float32, numel(lin.LoRA.A.Shape))
		for j := range vals {
			vals[j] = float32((rng.Float64()*2 - 1) * bound)
		}
		if err := mm.SetValues(lin.LoRA.A, vals); err != nil {
			return fail(err)
		}
	}
	for _, p := range mm.Params() {
		if !p.Trainable {
			continue
		}
		for _, t := range []*Tensor{&p.M, &p.V} {
			x, err := b.Alloc(F32, p.Shape...)
			if err == nil {
				err = b.Fill(x, 0)
			}
			if err != nil {
				return fail(fmt.Errorf("AdamW moments of %s: %w", p.Name, err))
			}
			*t = x
		}
	}
	m := &Model{Cfg: mm.Cfg.Text, B: b, Compute: mm.Compute, mllama: mm}
	m.Cfg.ModelType = "mllama"
	t := &Trainer{Model: m, Cfg: cfg.Train, Train: data.Train, Eval: data.Eval, Seed: cfg.Train.Seed,
		Opt: &Optimizer{Beta1: cfg.Train.Beta1, Beta2: cfg.Train.Beta2, Eps: cfg.Train.Eps, WeightDecay: cfg.Train.WeightDecay,
			Seed: uint64(cfg.Train.Seed)},
		images: &mllamaRunner{m: mm, proc: proc, cache: processedImages{limit: imageCacheBytes}}}
	t.Sched = NewSchedule(cfg.Train, t.TotalSteps())
	return t, nil
}

// visionNotices say what a vision run does on backend b, for the log.
func visionNotices(cfg RunConfig, kind string, data *PreparedData, b Backend) []string {
	what := "Gemma 3"
	if kind == VisionMllama {
		what = "Llama 3.2 Vision"
	}
	targets := "the language model"
	if cfg.LoRA.Projector {
		targets += " and the projector"
	}
	tower := "the vision tower frozen"
	if cfg.LoRA.VisionLayers {
		tower = "and on the vision tower's linear layers (lora.vision_layers; the tower's weights frozen, its activations kept for the backward)"
	}
	out := []string{fmt.Sprintf("vision: %s trains on %d images; LoRA on %s, %s", what, data.Images, targets, tower)}
	if kind == VisionMllama {
		rest := "float32"
		if MllamaComputeDType(b) == BF16 {
			rest = "bf16"
			out = append(out, fmt.Sprintf("vision: Llama 3.2 Vision computes in bf16 (weights and activations bf16, the adapters' masters, gradients and moments float32; %s=0 keeps float32)", MllamaBF16Env))
		}
		if cfg.Method == "qlora" {
			out = append(out, "vision: qlora holds Llama 3.2 Vision's language-model linears in NF4; the vision tower, projector, embeddings and LM head stay "+rest)
		}
		if cfg.LoRA.Dropout > 0 {
			out = append(out, fmt.Sprintf("vision: lora.dropout %g is not applied: Llama 3.2 Vision's trainer has no adapter dropout yet", cfg.LoRA.Dropout))
		}
	}
	return out
}

// saveVisionAdapters writes the adapters whet's PEFT writer (SaveAdapter)
// does not: all of Mllama's (its names are the released checkpoint's,
// language_model.model.… and multi_modal_projector), or Gemma 3's
// projector adapter beside the language model's.
func saveVisionAdapters(dir string, m *Model, opts LoRAOptions, baseModel string) error {
	if m.mllama != nil {
		var tensors []safetensors.Tensor
		targets := map[string]bool{}
		for _, lin := range m.mllama.loraLinears() {
			if lin.LoRA == nil {
				continue
			}
			targets[lin.Module[strings.LastIndex(lin.Module, ".")+1:]] = true
			for _, p := range []*Param{lin.LoRA.A, lin.LoRA.B} {
				t, err := m.masterTensor(p, peftPrefix+p.Name)
				if err != nil {
					return err
				}
				tensors = append(tensors, t)
			}
		}
		cfg := PEFTConfig{PEFTType: "LORA", TaskType: "CAUSAL_LM", BaseModel: baseModel, R: opts.Rank,
			LoRAAlpha: opts.Alpha, TargetModules: slices.Sorted(maps.Keys(targets)), UseRSLoRA: opts.RSLoRA,
			Bias: "none", InferenceMode: true, InitLoRAWeights: true}
		return writePEFTFolder(dir, tensors, cfg)
	}
	if err := SaveAdapter(dir, m, opts, baseModel); err != nil {
		return err
	}
	v := m.Gemma3Vision
	if err := SaveGemma3VisionLayersLoRA(dir, m, opts); err != nil {
		return err
	}
	if v == nil || v.ProjLoRA == nil {
		return nil
	}
	return writeWhetLoRA(filepath.Join(dir, ProjectorLoRAFile), "whet-projector-lora", m, []*Param{v.ProjLoRA.A, v.ProjLoRA.B}, opts)
}

// SaveGemma3VisionLayersLoRA writes the tower's adapters, if any, to
// VisionLayersLoRAFile in dir (whet train's adapter folder).
func SaveGemma3VisionLayersLoRA(dir string, m *Model, opts LoRAOptions) error {
	ps := m.Gemma3Vision.towerLoRAParams()
	if len(ps) == 0 {
		return nil
	}
	return writeWhetLoRA(filepath.Join(dir, VisionLayersLoRAFile), "whet-vision-layers-lora", m, ps, opts)
}

// writeWhetLoRA writes the float32 masters of ps under their own names to
// path, a file in whet's own adapter layout: format, lora_alpha, r and
// use_rslora in the file's metadata.
func writeWhetLoRA(path, format string, m *Model, ps []*Param, opts LoRAOptions) error {
	var tensors []safetensors.Tensor
	for _, p := range ps {
		t, err := m.masterTensor(p, p.Name)
		if err != nil {
			return err
		}
		tensors = append(tensors, t)
	}
	meta := map[string]string{"format": format, "lora_alpha": fmt.Sprint(opts.Alpha), "r": fmt.Sprint(opts.Rank),
		"use_rslora": fmt.Sprint(opts.RSLoRA)}
	if err := safetensors.Write(path, tensors, meta); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	return nil
}
