package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
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
}

// NewModelWith is NewModel with options.
func NewModelWith(cfg ModelConfig, b Backend, o ModelOptions) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, ok := b.(NF4Dequantizer); o.NF4Linears && !ok {
		return nil, fmt.Errorf("backend %s cannot dequantize NF4 weights (QLoRA)", b.Name())
	}
	m := &Model{Cfg: cfg, B: b, Compute: computeDType(b), Tied: cfg.TieWordEmbeddings}
	var err error
	p := func(name string, shape ...int) *Param {
		if err != nil {
			return nil
		}
		var prm *Param
		prm, err = m.newParam(name, shape...)
		return prm
	}
	// nf4 allocates a weight's packed codes and absmax instead of W.
	nf4 := func(name string, out, in int) *Param {
		if err != nil {
			return nil
		}
		n := out * in
		if n%NF4BlockSize != 0 {
			err = fmt.Errorf("qlora: %s [%d %d] is not a whole number of %d-value NF4 blocks", name, out, in, NF4BlockSize)
			return nil
		}
		q := &QuantState{}
		if q.Packed, err = b.Alloc(I32, n/8); err != nil {
			err = fmt.Errorf("allocate %s (nf4): %w", name, err)
			return nil
		}
		if q.Absmax, err = b.Alloc(F32, n/NF4BlockSize); err != nil {
			b.Free(q.Packed)
			err = fmt.Errorf("allocate %s (nf4 absmax): %w", name, err)
			return nil
		}
		return &Param{Name: name, Shape: []int{out, in}, Quant: q}
	}
	lin := func(module, short string, out, in int, bias bool) *Linear {
		var w *Param
		if o.NF4Linears {
			w = nf4(module+".weight", out, in)
		} else {
			w = p(module+".weight", out, in)
		}
		l := &Linear{Module: module, Short: short, In: in, Out: out, W: w}
		if bias {
			l.B = p(module+".bias", out)
			if l.B != nil {
				l.B.NoDecay = true
			}
		}
		return l
	}
	D, I := cfg.HiddenSize, cfg.IntermediateSize
	m.Embed = p("model.embed_tokens.weight", cfg.VocabSize, D)
	for i := 0; i < cfg.NumLayers; i++ {
		pre := fmt.Sprintf("model.layers.%d.", i)
		l := &Layer{
			InputNorm:    p(pre+"input_layernorm.weight", D),
			PostAttnNorm: p(pre+"post_attention_layernorm.weight", D),
			Q:            lin(pre+"self_attn.q_proj", "q", cfg.QDim(), D, cfg.AttentionBias),
			K:            lin(pre+"self_attn.k_proj", "k", cfg.KVDim(), D, cfg.AttentionBias),
			V:            lin(pre+"self_attn.v_proj", "v", cfg.KVDim(), D, cfg.AttentionBias),
			O:            lin(pre+"self_attn.o_proj", "o", D, cfg.QDim(), false),
			Gate:         lin(pre+"mlp.gate_proj", "gate", I, D, false),
			Up:           lin(pre+"mlp.up_proj", "up", I, D, false),
			Down:         lin(pre+"mlp.down_proj", "down", D, I, false),
		}
		if err == nil {
			l.InputNorm.NoDecay, l.PostAttnNorm.NoDecay = true, true
		}
		m.Layers = append(m.Layers, l)
	}
	m.Norm = p("model.norm.weight", D)
	if err == nil {
		m.Norm.NoDecay = true
	}
	if m.Tied {
		m.Head = &Linear{Module: "lm_head", Short: "lm_head", W: m.Embed, In: D, Out: cfg.VocabSize}
	} else {
		// The head stays in the compute dtype, as bitsandbytes leaves it.
		m.Head = &Linear{Module: "lm_head", Short: "lm_head", In: D, Out: cfg.VocabSize, W: p("lm_head.weight", cfg.VocabSize, D)}
	}
	if err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// LoadWeights fills every base weight from src, checking names and shapes.
// Errors name the source and the tensor.
func (m *Model) LoadWeights(src WeightSource) error {
	for _, p := range m.Params() {
		if isLoRAName(p.Name) {
			continue
		}
		shape, ok := src.Shape(p.Name)
		if !ok {
			return fmt.Errorf("%s: missing tensor %s (a %s model needs it)", src.Where(p.Name), p.Name, m.Cfg.ModelType)
		}
		if !sameShape(shape, p.Shape) {
			return fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", src.Where(p.Name), p.Name, shape, p.Shape)
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

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// InitRandom fills the base weights with seeded random values (normal with
// the given std for matrices, 1 for norm weights, 0 for biases): benchmarks
// and tests use it where no weights exist. Values are drawn in parallel, in
// chunks with their own seeded streams, so an 8B model takes seconds and the
// result does not depend on the number of cores.
func (m *Model) InitRandom(seed uint64, std float64) error {
	const chunk = 1 << 20
	for pi, p := range m.Params() {
		if isLoRAName(p.Name) {
			continue
		}
		v := make([]float32, numel(p.Shape))
		switch {
		case len(p.Shape) == 1 && p.NoDecay && !isBias(p.Name):
			for i := range v {
				v[i] = 1
			}
		case isBias(p.Name):
		default:
			var wg sync.WaitGroup
			sem := make(chan struct{}, runtime.NumCPU())
			for c0 := 0; c0 < len(v); c0 += chunk {
				wg.Add(1)
				sem <- struct{}{}
				go func(c0 int) {
					defer wg.Done()
					defer func() { <-sem }()
					rng := rand.New(rand.NewPCG(seed, uint64(pi)<<32|uint64(c0/chunk)))
					for i := c0; i < min(len(v), c0+chunk); i++ {
						v[i] = float32(rng.NormFloat64() * std)
					}
				}(c0)
			}
			wg.Wait()
		}
		if err := m.setValues(p, v); err != nil {
			return err
		}
	}
	return nil
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
	packed, absmax, err := QuantizeNF4(v)
	if err != nil {
		return fmt.Errorf("qlora: %s: %w", p.Name, err)
	}
	if err := m.B.UploadInt32(p.Quant.Packed, PackNF4Words(packed)); err != nil {
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

// Validate checks the numbers the engine relies on.
func (c *ModelConfig) Validate() error {
	bad := func(field string, v int) error {
		return fmt.Errorf("config.json: %s must be positive, got %d", field, v)
	}
	switch {
	case c.VocabSize <= 0:
		return bad("vocab_size", c.VocabSize)
	case c.HiddenSize <= 0:
		return bad("hidden_size", c.HiddenSize)
	case c.IntermediateSize <= 0:
		return bad("intermediate_size", c.IntermediateSize)
	case c.NumLayers <= 0:
		return bad("num_hidden_layers", c.NumLayers)
	case c.NumHeads <= 0:
		return bad("num_attention_heads", c.NumHeads)
	case c.NumKVHeads <= 0:
		return bad("num_key_value_heads", c.NumKVHeads)
	case c.HeadDim <= 0 || c.HeadDim%2 != 0:
		return fmt.Errorf("config.json: head_dim must be a positive even number, got %d", c.HeadDim)
	}
	if c.NumHeads%c.NumKVHeads != 0 {
		return fmt.Errorf("config.json: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", c.NumHeads, c.NumKVHeads)
	}
	if c.RMSNormEps <= 0 || math.IsNaN(c.RMSNormEps) {
		return fmt.Errorf("config.json: rms_norm_eps must be positive, got %g", c.RMSNormEps)
	}
	return nil
}
