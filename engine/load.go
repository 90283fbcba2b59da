package engine

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"

	"whet/engine/units"
)

// WeightSource is where base weights come from: a safetensors folder, or
// anything else that can hand out float32 tensors by Hugging Face name.
type WeightSource interface {
	// Shape returns the tensor's shape and whether it exists.
	Shape(name string) ([]int, bool)
	Float32(name string) ([]float32, error)
	// Where names the source in error messages (a folder or file).
	Where(name string) string
}

// NewModel allocates an unbound model of the given config on b: every base
// weight exists (uninitialised) in the compute dtype, nothing is trainable.
func NewModel(cfg ModelConfig, b Backend) (*Model, error) {
	return NewModelWith(cfg, b, ModelOptions{})
}

// ModelOptions change how a model's weights are held.
type ModelOptions struct {
	// NF4Linears stores the decoder's linear weights in NF4 from the start
	// (QLoRA): they are quantized on the host as they are loaded, so the
	// full-precision weights never reach the device.
	NF4Linears bool
	// Gemma3Vision attaches the SigLIP tower and projector of a Gemma 3
	// multimodal folder (model_type gemma3 with vision_tower.* tensors);
	// without it such a folder loads as its text model alone, as before
	// (gemma3_vision.go).
	Gemma3Vision bool
}

// NewModelWith is NewModel with options.
func NewModelWith(cfg ModelConfig, b Backend, o ModelOptions) (*Model, error) {
	return newModel(cfg, b, o, nil)
}

// FreeMemoryReporter is implemented by backends that can tell how much
// memory is free to allocate from (the device's, or the host's for the CPU
// backend). A backend that cannot tell on this system returns an error
// wrapping ErrNotImplemented, and the check is skipped.
type FreeMemoryReporter interface {
	MemInfo() (free, total int64, err error)
}

// newModel checks cfg's weights against src (when given) and their size
// against the backend's free memory, and only then lays the model out and
// allocates it: a config.json that disagrees with its weights, or asks for
// more than the machine holds, is refused before anything is taken, with
// a message naming the tensor or the fields.
func newModel(cfg ModelConfig, b Backend, o ModelOptions, src WeightSource) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	if err := checkSupported(cfg.ModelType); err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	src = withAliases(src, familyOf(cfg.ModelType))
	if _, ok := b.(NF4Dequantizer); o.NF4Linears && !ok {
		return nil, fmt.Errorf("backend %s cannot dequantize NF4 weights (QLoRA)", b.Name())
	}
	if src != nil {
		// The embedding, head, final norm and first layer against the
		// files, and that the last layer is there: a config.json that
		// disagrees with its weights is refused with the tensor named
		// before its sizes are even counted.
		first := cfg
		first.NumLayers = 1
		for _, p := range layoutModel(first, b, o).Params() {
			if err := checkWeightShape(src, p, cfg.ModelType); err != nil {
				return nil, err
			}
		}
		if last := layerPrefix(cfg.NumLayers-1) + familyOf(cfg.ModelType).Names.AttnNorm + ".weight"; cfg.NumLayers > 1 {
			if _, ok := src.Shape(last); !ok {
				return nil, fmt.Errorf("%s: missing tensor %s (config.json's num_hidden_layers is %d)", src.Where(last), last, cfg.NumLayers)
			}
		}
	}
	// Counted before the layout, which itself takes host memory for every
	// layer: a num_hidden_layers of 1e12 must not build a trillion structs.
	bytes, err := weightBytesOf(cfg, b, o)
	if err != nil {
		return nil, fmt.Errorf("model config: %w (%s)", err, cfg.sizeFields())
	}
	if fr, ok := b.(FreeMemoryReporter); ok {
		free, _, err := fr.MemInfo()
		switch {
		case errors.Is(err, ErrNotImplemented):
		case err != nil:
			return nil, fmt.Errorf("free memory of backend %s: %w", b.Name(), err)
		case bytes > free:
			return nil, fmt.Errorf("the model's weights need %s (%s), but backend %s has %s free",
				units.Bytes(bytes), cfg.sizeFields(), b.Name(), units.Bytes(free))
		}
	}
	m := layoutModel(cfg, b, o)
	if src != nil {
		for _, p := range m.Params() {
			if err := checkWeightShape(src, p, cfg.ModelType); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range m.Params() {
		if err := m.allocParam(p); err != nil {
			m.Free()
			return nil, err
		}
	}
	return m, nil
}

// layoutModel builds the model's structure, every parameter named and
// shaped, without allocating anything.
func layoutModel(cfg ModelConfig, b Backend, o ModelOptions) *Model {
	m := &Model{Cfg: cfg, B: b, Compute: computeDType(b), Tied: cfg.TieWordEmbeddings}
	p := func(name string, shape ...int) *Param { return &Param{Name: name, Shape: shape} }
	// Norm weights and biases are exempt from weight decay.
	noDecay := func(name string, d int) *Param { return &Param{Name: name, Shape: []int{d}, NoDecay: true} }
	lin := func(module, short string, out, in int, bias bool) *Linear {
		w := p(module+".weight", out, in)
		if o.NF4Linears {
			// Held as NF4 codes and absmax; W stays nil.
			w.Quant = &QuantState{}
		}
		l := &Linear{Module: module, Short: short, In: in, Out: out, W: w}
		if bias {
			l.B = noDecay(module+".bias", out)
		}
		return l
	}
	D, I := cfg.HiddenSize, cfg.IntermediateSize
	Q, KV, bias := cfg.QDim(), cfg.KVDim(), cfg.AttentionBias
	fam := familyOf(cfg.ModelType)
	n := fam.Names
	m.Embed = p("model.embed_tokens.weight", cfg.VocabSize, D)
	for i := 0; i < cfg.NumLayers; i++ {
		pre := layerPrefix(i)
		norm := func(name string, d int) *Param {
			if name == "" {
				return nil
			}
			return noDecay(pre+name+".weight", d)
		}
		L := &Layer{
			AttnNorm: norm(n.AttnNorm, D), AttnOutNorm: norm(n.AttnOutNorm, D),
			MLPNorm: norm(n.MLPNorm, D), MLPOutNorm: norm(n.MLPOutNorm, D),
			O:    lin(pre+n.O, "o", D, Q, false),
			Down: lin(pre+n.Down, "down", D, I, false),
		}
		if fam.QKNorm {
			// One weight of head_dim, shared by every head.
			L.QNorm, L.KNorm = norm(n.QNorm, cfg.HeadDim), norm(n.KNorm, cfg.HeadDim)
		}
		if fam.FusedQKV {
			L.QKV = lin(pre+n.QKV, "qkv", Q+2*KV, D, bias)
			L.QKV.Parts = []int{Q, KV, KV}
		} else {
			L.Q = lin(pre+n.Q, "q", Q, D, bias)
			L.K = lin(pre+n.K, "k", KV, D, bias)
			L.V = lin(pre+n.V, "v", KV, D, bias)
		}
		if fam.FusedGateUp {
			L.GateUp = lin(pre+n.GateUp, "gate_up", 2*I, D, false)
			L.GateUp.Parts = []int{I, I}
		} else {
			L.Gate = lin(pre+n.Gate, "gate", I, D, false)
			L.Up = lin(pre+n.Up, "up", I, D, false)
		}
		m.Layers = append(m.Layers, L)
	}
	m.Norm = noDecay("model.norm.weight", D)
	if m.Tied {
		m.Head = &Linear{Module: "lm_head", Short: "lm_head", W: m.Embed, In: D, Out: cfg.VocabSize}
	} else {
		// The head stays in the compute dtype, as bitsandbytes leaves it.
		m.Head = &Linear{Module: "lm_head", Short: "lm_head", In: D, Out: cfg.VocabSize, W: p("lm_head.weight", cfg.VocabSize, D)}
	}
	return m
}

// layoutBytesPerLayer bounds the host memory the layout of one decoder
// layer takes (its structs, names and shapes; TestLayoutBytesPerLayer
// measures it). The memory check counts it with the weights, so that a
// huge layer count of tiny layers is refused too.
const layoutBytesPerLayer = 16 << 10

// weightBytesOf is what cfg's base weights take on b, counted without
// overflowing and without laying out every layer: the layouts of zero
// and one layer give the size of the rest and of each layer.
func weightBytesOf(cfg ModelConfig, b Backend, o ModelOptions) (int64, error) {
	sizeWith := func(layers int) (int64, error) {
		c := cfg
		c.NumLayers = layers
		return layoutModel(c, b, o).weightBytes()
	}
	rest, err := sizeWith(0)
	if err != nil {
		return 0, err
	}
	one, err := sizeWith(1)
	if err != nil {
		return 0, err
	}
	perLayer, ok := checkedAdd(one-rest, layoutBytesPerLayer)
	var layers int64
	if ok {
		layers, ok = checkedMul(int64(cfg.NumLayers), perLayer)
	}
	var total int64
	if ok {
		total, ok = checkedAdd(rest, layers)
	}
	if !ok {
		return 0, fmt.Errorf("num_hidden_layers %d layers of %s each are too large to count", cfg.NumLayers, units.Bytes(one-rest))
	}
	return total, nil
}

// layerPrefix starts the Hugging Face names of decoder layer i's tensors.
func layerPrefix(i int) string { return fmt.Sprintf("model.layers.%d.", i) }

// weightBytes is what the base weights take on the backend, counted
// without overflowing: a shape whose size cannot be counted is refused.
func (m *Model) weightBytes() (int64, error) {
	var total int64
	for _, p := range m.Params() {
		n, ok := checkedNumel(p.Shape)
		var bytes int64
		switch {
		case !ok:
		case p.Quant != nil:
			if n%NF4BlockSize != 0 {
				return 0, fmt.Errorf("qlora: %s %v is not a whole number of %d-value NF4 blocks", p.Name, p.Shape, NF4BlockSize)
			}
			bytes = n/2 + n/NF4BlockSize*int64(F32.Size()) // 4-bit codes and one fp32 absmax per block
		default:
			bytes, ok = checkedMul(n, int64(m.Compute.Size()))
		}
		if ok {
			total, ok = checkedAdd(total, bytes)
		}
		if !ok {
			return 0, fmt.Errorf("%s %v is too large to count", p.Name, p.Shape)
		}
	}
	return total, nil
}

// sizeFields names the config.json numbers the weights' size follows from.
func (c *ModelConfig) sizeFields() string {
	return fmt.Sprintf("vocab_size %d, hidden_size %d, intermediate_size %d, num_hidden_layers %d, num_attention_heads %d, num_key_value_heads %d, head_dim %d",
		c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.HeadDim)
}

func checkedNumel(shape []int) (int64, bool) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		var ok bool
		if n, ok = checkedMul(n, int64(d)); !ok {
			return 0, false
		}
	}
	return n, true
}

func checkedMul(a, b int64) (int64, bool) {
	if a != 0 && b > math.MaxInt64/a {
		return 0, false
	}
	return a * b, true
}

func checkedAdd(a, b int64) (int64, bool) {
	if a > math.MaxInt64-b {
		return 0, false
	}
	return a + b, true
}

// allocParam gives a laid-out parameter its tensors: W in the compute
// dtype, or the packed codes and absmax of an NF4 weight.
func (m *Model) allocParam(p *Param) error {
	if p.Quant == nil {
		w, err := m.B.Alloc(m.Compute, p.Shape...)
		if err != nil {
			return fmt.Errorf("allocate %s %v: %w", p.Name, p.Shape, err)
		}
		p.W = w
		return nil
	}
	n := numel(p.Shape)
	var err error
	if p.Quant.Packed, err = m.B.Alloc(I32, n/8); err != nil {
		return fmt.Errorf("allocate %s (nf4): %w", p.Name, err)
	}
	if p.Quant.Absmax, err = m.B.Alloc(F32, n/NF4BlockSize); err != nil {
		return fmt.Errorf("allocate %s (nf4 absmax): %w", p.Name, err)
	}
	return nil
}

// checkWeightShape checks that src holds p's tensor with p's shape.
func checkWeightShape(src WeightSource, p *Param, modelType string) error {
	shape, ok := src.Shape(p.Name)
	if !ok {
		return fmt.Errorf("%s: missing tensor %s (a %s model needs it)", src.Where(p.Name), p.Name, modelType)
	}
	if !slices.Equal(shape, p.Shape) {
		return fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", src.Where(p.Name), p.Name, shape, p.Shape)
	}
	return nil
}

// LoadWeights fills every base weight from src, checking names and shapes.
// Errors name the source and the tensor.
func (m *Model) LoadWeights(src WeightSource) error {
	src = withAliases(src, m.Family())
	for _, p := range m.Params() {
		if isLoRAName(p.Name) {
			continue
		}
		if err := checkWeightShape(src, p, m.Cfg.ModelType); err != nil {
			return err
		}
		data, err := src.Float32(p.Name)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", src.Where(p.Name), p.Name, err)
		}
		if err := m.setValues(p, data); err != nil {
			return err
		}
	}
	return nil
}

// InitRandom fills the base weights with seeded random values (normal with
// the given std for matrices, 1 for norm weights, 0 for biases): benchmarks
// and tests use it where no weights exist. Values are drawn in parallel, in
// chunks with their own seeded streams, so an 8B model takes seconds and the
// result does not depend on the number of cores. An NF4 weight is quantized
// chunk by chunk as its values are drawn (a chunk is a whole number of NF4
// blocks), by the same cores and without a full-precision copy of the
// tensor: the same codes as drawing all values and then quantizing them
// (TestInitRandomNF4EqualsQuantizeAfter).
func (m *Model) InitRandom(seed uint64, std float64) error {
	const chunk = initRandomChunk
	for pi, p := range m.Params() {
		if isLoRAName(p.Name) {
			continue
		}
		n := numel(p.Shape)
		// draw fills v with chunk c0's values.
		draw := func(v []float32, c0 int) {
			rng := rand.New(rand.NewPCG(seed, uint64(pi)<<32|uint64(c0/chunk)))
			for i := range v {
				v[i] = float32(rng.NormFloat64() * std)
			}
		}
		matrix := !(len(p.Shape) == 1 && p.NoDecay && !isBias(p.Name)) && !isBias(p.Name)
		if matrix && p.Quant != nil {
			if n%NF4BlockSize != 0 {
				return fmt.Errorf("qlora: %s %v: nf4: %d values are not a whole number of %d-value blocks", p.Name, p.Shape, n, NF4BlockSize)
			}
			words, absmax := make([]int32, n/8), make([]float32, n/NF4BlockSize)
			parallelChunks(n, chunk, func(c0, c1 int) {
				buf := chunkPool.Get().(*[]float32)
				defer chunkPool.Put(buf)
				v := (*buf)[:c1-c0]
				draw(v, c0)
				for b := 0; b < len(v)/NF4BlockSize; b++ {
					at := c0/NF4BlockSize + b
					quantizeBlockWords(v[b*NF4BlockSize:(b+1)*NF4BlockSize], words[at*NF4BlockSize/8:(at+1)*NF4BlockSize/8], &absmax[at])
				}
			})
			if err := m.setQuantized(p, words, absmax); err != nil {
				return err
			}
			continue
		}
		v := make([]float32, n)
		switch {
		case len(p.Shape) == 1 && p.NoDecay && !isBias(p.Name):
			for i := range v {
				v[i] = 1
			}
		case isBias(p.Name):
		default:
			parallelChunks(n, chunk, func(c0, c1 int) { draw(v[c0:c1], c0) })
		}
		if err := m.setValues(p, v); err != nil {
			return err
		}
	}
	return nil
}

// initRandomChunk is how many values InitRandom draws from one seeded
// stream: a multiple of NF4BlockSize.
const initRandomChunk = 1 << 20

// chunkPool holds InitRandom's per-chunk buffers for NF4 weights.
var chunkPool = sync.Pool{New: func() any { b := make([]float32, initRandomChunk); return &b }}

// parallelChunks runs f(c0, c1) for each chunk [c0, c1) of n values, at
// most one goroutine per core at a time.
func parallelChunks(n, chunk int, f func(c0, c1 int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for c0 := 0; c0 < n; c0 += chunk {
		wg.Add(1)
		sem <- struct{}{}
		go func(c0 int) {
			defer wg.Done()
			defer func() { <-sem }()
			f(c0, min(n, c0+chunk))
		}(c0)
	}
	wg.Wait()
}

// setValues writes host values into a parameter: uploaded as they are, or
// quantized to NF4 first for a quantized weight.
func (m *Model) setValues(p *Param, v []float32) error {
	if p.Quant == nil {
		if err := m.B.Upload(p.W, v); err != nil {
			return fmt.Errorf("upload %s: %w", p.Name, err)
		}
		return nil
	}
	words, absmax, err := QuantizeNF4Words(v)
	if err != nil {
		return fmt.Errorf("qlora: %s: %w", p.Name, err)
	}
	return m.setQuantized(p, words, absmax)
}

// setQuantized uploads an NF4 weight's code words and absmax.
func (m *Model) setQuantized(p *Param, words []int32, absmax []float32) error {
	if err := m.B.UploadInt32(p.Quant.Packed, words); err != nil {
		return fmt.Errorf("upload %s (nf4): %w", p.Name, err)
	}
	if err := m.B.Upload(p.Quant.Absmax, absmax); err != nil {
		return fmt.Errorf("upload %s (nf4 absmax): %w", p.Name, err)
	}
	return nil
}

func isBias(name string) bool {
	return len(name) >= 5 && name[len(name)-5:] == ".bias"
}
