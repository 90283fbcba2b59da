package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
)

// Llama 3.2 Vision (MllamaForConditionalGeneration, config.json
// model_type "mllama"): a tiled ViT (the vision tower), a linear projector,
// and a Llama 3.1 language model some of whose layers
// (text_config.cross_attention_layers) are gated cross-attention layers
// reading the projected image states instead of self-attention layers.

// MllamaVisionConfig is config.json's vision_config (MllamaVisionConfig).
type MllamaVisionConfig struct {
	Hidden, Heads, Intermediate int
	Layers, GlobalLayers        int // local (ungated) and global (gated) encoder layers
	ImageSize, PatchSize        int // a tile's side and a patch's side, in pixels
	Channels, MaxTiles          int
	OutputDim                   int // Hidden * (1 + len(Intermediates))
	NormEps                     float64
	// Intermediates are the indices into the local encoder's hidden
	// states (0: its input, i: layer i-1's output) whose values are
	// concatenated to the output, interleaved feature by feature.
	Intermediates []int
	// TapLayerOutputs reads index i of Intermediates as local layer i's
	// output instead (its input plus one), as transformers 5 does
	// (checked on 5.17.0: its MllamaVisionEncoder collects the hidden
	// states after each layer, without the input). Meta's reference code,
	// which trained the released weights, and transformers 4 take layer
	// i's input, so whet does by default; set this to reproduce transformers
	// 5 (TestReferenceMllama does). Not read from config.json.
	TapLayerOutputs bool
	// AspectRatios are the tile grids [rows, cols]; aspect-ratio id i+1
	// means AspectRatios[i] and 0 a padding image.
	AspectRatios [][2]int
}

// Patches is the number of positions of one tile: its patches and the
// class token.
func (v *MllamaVisionConfig) Patches() int {
	n := v.ImageSize / v.PatchSize
	return n*n + 1
}

// PaddedPatches is Patches rounded up to a multiple of 8, as
// MllamaVisionModel pads each tile before its encoders.
func (v *MllamaVisionConfig) PaddedPatches() int {
	p := v.Patches()
	return p + (8-p%8)%8
}

// MllamaConfig is a whole Mllama config.json.
type MllamaConfig struct {
	// Text is the language model read as a Llama (text_config);
	// NumLayers counts every layer, the cross-attention ones included.
	Text ModelConfig
	// CrossLayers are the indices of the cross-attention layers.
	CrossLayers []int
	// ImageToken is the id of <|image|> (image_token_index).
	ImageToken int
	Vision     MllamaVisionConfig
}

// IsCross reports whether text layer l is a cross-attention layer.
func (c *MllamaConfig) IsCross(l int) bool { return slices.Contains(c.CrossLayers, l) }

// EmbedRows is the embedding table's row count: MllamaTextModel keeps 8
// rows past vocab_size (the image token is one of them).
func (c *MllamaConfig) EmbedRows() int { return c.Text.VocabSize + 8 }

// MllamaReleasedVisionConfig is the vision_config of the released
// Llama-3.2-11B-Vision and -90B-Vision checkpoints (the same tower).
const MllamaReleasedVisionConfig = `{"attention_heads": 16, "hidden_act": "gelu", "hidden_size": 1280, "image_size": 560,
 "intermediate_layers_indices": [3, 7, 15, 23, 30], "intermediate_size": 5120, "max_num_tiles": 4,
 "norm_eps": 1e-05, "num_channels": 3, "num_global_layers": 8, "num_hidden_layers": 32, "patch_size": 14,
 "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]], "vision_output_dim": 7680}`

// LoadMllamaConfig reads dir/config.json.
func LoadMllamaConfig(dir string) (*MllamaConfig, error) {
	j, err := readJSONObject(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	return parseMllamaConfig(j)
}

// ParseMllamaConfig reads an Mllama config.json's bytes; name is used in errors.
func ParseMllamaConfig(name string, raw []byte) (*MllamaConfig, error) {
	j, err := parseJSONObject(name, raw)
	if err != nil {
		return nil, err
	}
	return parseMllamaConfig(j)
}

// IsMllamaConfig reports whether a config.json's bytes are an Mllama model's.
func IsMllamaConfig(raw []byte) bool {
	var head struct {
		ModelType string `json:"model_type"`
	}
	return json.Unmarshal(raw, &head) == nil && head.ModelType == "mllama"
}

func parseMllamaConfig(j jsonObject) (*MllamaConfig, error) {
	mt, err := j.str("model_type", "")
	if err != nil {
		return nil, err
	}
	if mt != "mllama" {
		return nil, j.fieldErr("model_type", "%q is not an Mllama (Llama 3.2 Vision) model", mt)
	}
	c := &MllamaConfig{}
	if c.ImageToken, err = j.intDefault("image_token_index", 128256); err != nil {
		return nil, err
	}
	text, ok, err := j.object("text_config")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, j.fieldErr("text_config", "missing (an Mllama checkpoint keeps its language model's settings there)")
	}
	if c.CrossLayers, err = intListField(text, "cross_attention_layers", []int{3, 8, 13, 18, 23, 28, 33, 38}); err != nil {
		return nil, err
	}
	// The language model is a Llama: read it as one.
	m := make(map[string]json.RawMessage, len(text.m))
	for k, v := range text.m {
		m[k] = v
	}
	m["model_type"] = json.RawMessage(`"llama"`)
	delete(m, "architectures")
	tc, err := parseModelConfig(jsonObject{path: text.path, prefix: text.prefix, m: m})
	if err != nil {
		return nil, err
	}
	c.Text = *tc
	for _, l := range c.CrossLayers {
		if l < 0 || l >= c.Text.NumLayers {
			return nil, text.fieldErr("cross_attention_layers", "layer %d is outside the %d layers", l, c.Text.NumLayers)
		}
	}
	if c.ImageToken < 0 || c.ImageToken >= c.EmbedRows() {
		return nil, j.fieldErr("image_token_index", "%d is outside the %d embedding rows", c.ImageToken, c.EmbedRows())
	}
	vis, ok, err := j.object("vision_config")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, j.fieldErr("vision_config", "missing (an Mllama checkpoint keeps its vision tower's settings there)")
	}
	if err := parseMllamaVision(vis, &c.Vision); err != nil {
		return nil, err
	}
	if err := c.Text.Validate(); err != nil {
		return nil, fmt.Errorf("text_config: %w", err)
	}
	return c, nil
}

func parseMllamaVision(j jsonObject, v *MllamaVisionConfig) error {
	// Bounds far above any released model keep the products below in int.
	ints := []struct {
		key      string
		dst      *int
		def, top int
	}{
		{"hidden_size", &v.Hidden, 1280, 1 << 15},
		{"attention_heads", &v.Heads, 16, 1 << 10},
		{"intermediate_size", &v.Intermediate, 5120, 1 << 17},
		{"num_hidden_layers", &v.Layers, 32, 1 << 10},
		{"num_global_layers", &v.GlobalLayers, 8, 1 << 10},
		{"image_size", &v.ImageSize, 448, 1 << 13},
		{"patch_size", &v.PatchSize, 14, 1 << 13},
		{"num_channels", &v.Channels, 3, 16},
		{"max_num_tiles", &v.MaxTiles, 4, 64},
		{"vision_output_dim", &v.OutputDim, 7680, 1 << 20},
	}
	for _, f := range ints {
		x, err := j.intDefault(f.key, f.def)
		if err != nil {
			return err
		}
		if x <= 0 || x > f.top {
			return j.fieldErr(f.key, "%d is out of range (1 to %d)", x, f.top)
		}
		*f.dst = x
	}
	var err error
	if v.NormEps, err = j.floatDefault("norm_eps", 1e-5); err != nil {
		return err
	}
	if act, err := j.str("hidden_act", "gelu"); err != nil {
		return err
	} else if act != "gelu" {
		return j.fieldErr("hidden_act", "%q is not supported (Mllama's vision MLP uses gelu)", act)
	}
	if v.Intermediates, err = intListField(j, "intermediate_layers_indices", []int{3, 7, 15, 23, 30}); err != nil {
		return err
	}
	for _, i := range v.Intermediates {
		if i < 0 || i > v.Layers {
			return j.fieldErr("intermediate_layers_indices", "%d is outside the local encoder's %d hidden states", i, v.Layers+1)
		}
	}
	v.AspectRatios = [][2]int{{1, 1}, {1, 2}, {1, 3}, {1, 4}, {2, 1}, {2, 2}, {3, 1}, {4, 1}}
	if j.has("supported_aspect_ratios") {
		var ar [][]int
		if err := json.Unmarshal(j.m["supported_aspect_ratios"], &ar); err != nil {
			return j.fieldErr("supported_aspect_ratios", "want a list of [rows, cols] pairs: %v", err)
		}
		v.AspectRatios = v.AspectRatios[:0]
		for i, p := range ar {
			if len(p) != 2 || p[0] <= 0 || p[1] <= 0 || p[0]*p[1] > v.MaxTiles {
				return j.fieldErr("supported_aspect_ratios", "entry %d %v is not a grid of at most %d tiles", i, p, v.MaxTiles)
			}
			v.AspectRatios = append(v.AspectRatios, [2]int{p[0], p[1]})
		}
	}
	switch {
	case v.Hidden%v.Heads != 0:
		return j.fieldErr("attention_heads", "%d does not divide hidden_size %d", v.Heads, v.Hidden)
	case v.ImageSize%v.PatchSize != 0:
		return j.fieldErr("patch_size", "%d does not divide image_size %d", v.PatchSize, v.ImageSize)
	case v.OutputDim != v.Hidden*(1+len(v.Intermediates)):
		return j.fieldErr("vision_output_dim", "%d is not hidden_size %d times 1 + %d intermediate layers", v.OutputDim, v.Hidden, len(v.Intermediates))
	case len(v.AspectRatios) == 0 || len(v.AspectRatios) > 1024:
		return j.fieldErr("supported_aspect_ratios", "%d grids (want 1 to 1024)", len(v.AspectRatios))
	case v.Patches() > 1<<16:
		return j.fieldErr("patch_size", "%d patches of %d pixels in a %d-pixel tile is too many", v.Patches(), v.PatchSize, v.ImageSize)
	}
	return nil
}

// weightBytes is what the model's float32 weights take, or false when
// that overflows.
func (c *MllamaConfig) weightBytes() (int64, bool) {
	var n int64
	ok := true
	mul := func(xs ...int) int64 {
		r := int64(1)
		for _, x := range xs {
			var good bool
			if r, good = checkedMul(r, int64(x)); !good {
				ok = false
				return 0
			}
		}
		return r
	}
	addTo := func(x int64) {
		var good bool
		if n, good = checkedAdd(n, x); !good {
			ok = false
		}
	}
	t, v := &c.Text, &c.Vision
	D, I, hd := t.HiddenSize, t.IntermediateSize, t.HeadDim
	addTo(mul(c.EmbedRows(), D))
	addTo(mul(t.VocabSize, D))
	addTo(int64(D)) // final norm
	perLayer := mul(D, t.NumHeads*hd) * 2
	perLayer += mul(D, t.KVDim()) * 2
	perLayer += mul(D, I) * 3
	addTo(mul(t.NumLayers) * (perLayer + int64(2*D)))
	addTo(mul(len(c.CrossLayers)) * int64(2*hd+2)) // q/k norms and gates
	P, H, nAR := v.Patches(), v.Hidden, len(v.AspectRatios)+1
	addTo(mul(nAR, v.MaxTiles, P, H) + mul(2, nAR, v.MaxTiles, H)) // tile and pre/post tile embeddings
	addTo(mul(v.Layers+v.GlobalLayers) * (mul(4, H, H) + mul(2, H, v.Intermediate) + int64(v.Intermediate+5*H)))
	addTo(int64(2 * v.GlobalLayers))                                                 // gate_attn, gate_ffn
	addTo(mul(H, v.Channels, v.PatchSize, v.PatchSize) + mul(P, H) + int64(H+3+4*H)) // patches, positions, class, gates, layernorms
	addTo(mul(D, v.OutputDim) + int64(D))                                            // projector
	if b, good := checkedMul(n, 4); ok && good {
		return b, true
	}
	return 0, false
}

// intListField reads a list of integers, def when absent or null.
func intListField(j jsonObject, key string, def []int) ([]int, error) {
	if !j.has(key) {
		return append([]int(nil), def...), nil
	}
	var list []int
	if err := json.Unmarshal(bytes.TrimSpace(j.m[key]), &list); err != nil {
		return nil, j.fieldErr(key, "want a list of integers, found %s", j.m[key])
	}
	return list, nil
}
