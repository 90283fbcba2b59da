package engine

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeModelDir makes a model folder holding config.json and, when gen is
// not empty, generation_config.json.
func writeModelDir(t *testing.T, config, gen string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if gen != "" {
		if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(gen), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Llama 3.2 1B's config.json, as transformers 4 writes it.
const llama32Config = `{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "vocab_size": 128256
}`

func TestLoadModelConfigLlama3(t *testing.T) {
	dir := writeModelDir(t, llama32Config, `{"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}`)
	c, err := LoadModelConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &ModelConfig{
		ModelType: "llama", VocabSize: 128256, HiddenSize: 2048, IntermediateSize: 8192,
		NumLayers: 16, NumHeads: 32, NumKVHeads: 8, HeadDim: 64, RMSNormEps: 1e-5,
		RopeTheta: 500000, MaxPositions: 131072, TieWordEmbeddings: true,
		RopeScaling: &RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192},
		BOSTokenID:  128000,
		// generation_config.json's list wins over config.json's single id.
		EOSTokenIDs: []int{128001, 128008, 128009},
		TorchDType:  "bfloat16",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v %+v\nwant %+v %+v", c, c.RopeScaling, want, want.RopeScaling)
	}
}

func TestLoadModelConfigTransformers5Layout(t *testing.T) {
	// transformers 5 moves rope_theta and the scaling into rope_parameters
	// and renames torch_dtype to dtype.
	cfg := `{"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
	  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": null,
	  "dtype": "float32", "eos_token_id": 5,
	  "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0,
	    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}`
	c, err := LoadModelConfig(writeModelDir(t, cfg, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.RopeTheta != 500000 || c.RopeScaling == nil || c.RopeScaling.Factor != 8 || c.RopeScaling.OriginalMaxPositionEmbeddings != 64 {
		t.Errorf("rope: theta %v scaling %+v", c.RopeTheta, c.RopeScaling)
	}
	if c.HeadDim != 16 || c.TorchDType != "float32" || !reflect.DeepEqual(c.EOSTokenIDs, []int{5}) {
		t.Errorf("head_dim %d dtype %q eos %v", c.HeadDim, c.TorchDType, c.EOSTokenIDs)
	}

	plain := `{"model_type": "qwen2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
	  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
	  "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}}`
	c, err = LoadModelConfig(writeModelDir(t, plain, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.RopeTheta != 1e6 || c.RopeScaling != nil {
		t.Errorf("default rope_parameters: theta %v scaling %+v", c.RopeTheta, c.RopeScaling)
	}

	// Both spellings at once: theta found in rope_parameters, scaling in
	// rope_scaling.
	both := strings.Replace(plain, `"rope_type": "default"}`, `"rope_type": "default"},
	  "rope_scaling": {"type": "llama3", "factor": 2.0, "low_freq_factor": 1.0, "high_freq_factor": 2.0, "original_max_position_embeddings": 32}`, 1)
	c, err = LoadModelConfig(writeModelDir(t, both, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.RopeTheta != 1e6 || c.RopeScaling == nil || c.RopeScaling.Factor != 2 {
		t.Errorf("both layouts: theta %v scaling %+v", c.RopeTheta, c.RopeScaling)
	}
}

func TestLoadModelConfigDefaults(t *testing.T) {
	sizes := `"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4`
	tests := []struct {
		modelType string
		extra     string
		want      ModelConfig
	}{
		{"llama", "", ModelConfig{NumKVHeads: 4, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 2048, BOSTokenID: 1, EOSTokenIDs: []int{2}}},
		{"llama", `, "num_key_value_heads": null, "rope_scaling": null, "bos_token_id": null, "eos_token_id": null`,
			ModelConfig{NumKVHeads: 4, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 2048, BOSTokenID: NoTokenID}},
		// MistralConfig: 8 kv heads and a 4096-token window unless told.
		{"mistral", `, "num_attention_heads": 8`, ModelConfig{NumHeads: 8, NumKVHeads: 8, HeadDim: 8, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 131072, SlidingWindow: 4096, BOSTokenID: 1, EOSTokenIDs: []int{2}}},
		{"mistral", `, "num_key_value_heads": null`, ModelConfig{NumKVHeads: 4, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 131072, SlidingWindow: 4096, BOSTokenID: 1, EOSTokenIDs: []int{2}}},
		{"mistral", `, "sliding_window": null, "num_key_value_heads": 2`, ModelConfig{NumKVHeads: 2, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 131072, BOSTokenID: 1, EOSTokenIDs: []int{2}}},
		// Qwen2: q/k/v bias always; sliding window only when switched on.
		{"qwen2", `, "num_key_value_heads": 2, "sliding_window": 4096, "tie_word_embeddings": true`,
			ModelConfig{NumKVHeads: 2, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 32768, TieWordEmbeddings: true, AttentionBias: true, BOSTokenID: NoTokenID}},
		{"qwen2", `, "num_key_value_heads": 4, "use_sliding_window": true, "sliding_window": 512, "max_window_layers": 0`,
			ModelConfig{NumKVHeads: 4, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 32768, AttentionBias: true, SlidingWindow: 512, BOSTokenID: NoTokenID}},
		// Sliding layers start at max_window_layers (default 28): none here.
		{"qwen2", `, "num_key_value_heads": 4, "use_sliding_window": true, "sliding_window": 512`,
			ModelConfig{NumKVHeads: 4, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 32768, AttentionBias: true, BOSTokenID: NoTokenID}},
		{"qwen2", `, "num_key_value_heads": 4, "use_sliding_window": true, "sliding_window": 256, "layer_types": ["sliding_attention", "sliding_attention"]`,
			ModelConfig{NumKVHeads: 4, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 32768, AttentionBias: true, SlidingWindow: 256, BOSTokenID: NoTokenID}},
		// Layers from max_window_layers on slide; the first keep full attention.
		{"qwen2", `, "num_key_value_heads": 4, "use_sliding_window": true, "max_window_layers": 1`,
			ModelConfig{NumKVHeads: 4, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 32768, AttentionBias: true, SlidingWindow: 4096,
				LayerTypes: []string{FullAttention, SlidingAttention}, BOSTokenID: NoTokenID}},
		{"qwen3", `, "num_key_value_heads": 4, "head_dim": 8, "use_sliding_window": true, "sliding_window": 64, "layer_types": ["sliding_attention", "full_attention"]`,
			ModelConfig{NumKVHeads: 4, HeadDim: 8, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 32768, SlidingWindow: 64,
				LayerTypes: []string{SlidingAttention, FullAttention}, BOSTokenID: NoTokenID}},
	}
	for _, tt := range tests {
		cfg := `{"model_type": "` + tt.modelType + `", ` + sizes + tt.extra + `}`
		c, err := LoadModelConfig(writeModelDir(t, cfg, ""))
		if err != nil {
			t.Errorf("%s: %v", cfg, err)
			continue
		}
		want := tt.want
		want.ModelType, want.VocabSize, want.HiddenSize, want.IntermediateSize, want.NumLayers = tt.modelType, 1000, 64, 128, 2
		if want.NumHeads == 0 {
			want.NumHeads = 4
		}
		if !reflect.DeepEqual(*c, want) {
			t.Errorf("%s:\n got  %+v\n want %+v", cfg, *c, want)
		}
	}
}

func TestLoadModelConfigEOSForms(t *testing.T) {
	base := `{"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "eos_token_id": [7, 9]}`
	c, err := LoadModelConfig(writeModelDir(t, base, ""))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.EOSTokenIDs, []int{7, 9}) {
		t.Errorf("list in config.json: eos %v", c.EOSTokenIDs)
	}
	c, err = LoadModelConfig(writeModelDir(t, base, `{"eos_token_id": 11}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.EOSTokenIDs, []int{11}) {
		t.Errorf("int in generation_config.json: eos %v", c.EOSTokenIDs)
	}
	c, err = LoadModelConfig(writeModelDir(t, base, `{"temperature": 0.6}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.EOSTokenIDs, []int{7, 9}) {
		t.Errorf("generation_config.json without eos: eos %v", c.EOSTokenIDs)
	}
}

func TestLoadModelConfigErrors(t *testing.T) {
	sizes := `"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4`
	tests := []struct {
		name, config, gen string
		wantFile          string
		want              []string // substrings of the message
	}{
		{"unknown type", `{"model_type": "gpt_neox", ` + sizes + `}`, "", "config.json",
			[]string{"model_type", `"gpt_neox"`, "llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gemma2", "phi3"}},
		{"no type", `{` + sizes + `}`, "", "config.json", []string{"model_type", "missing"}},
		{"garbage", `{"model_type": "llama",` + "\n" + ` oops}`, "", "config.json", []string{"line 2"}},
		{"missing size", `{"model_type": "llama", "vocab_size": 10}`, "", "config.json", []string{"hidden_size", "missing"}},
		{"string size", `{"model_type": "llama", ` + strings.Replace(sizes, `"hidden_size": 64`, `"hidden_size": "64"`, 1) + `}`, "", "config.json", []string{"hidden_size", "integer"}},
		{"fractional size", `{"model_type": "llama", ` + strings.Replace(sizes, `"hidden_size": 64`, `"hidden_size": 64.5`, 1) + `}`, "", "config.json", []string{"hidden_size", "64.5"}},
		{"negative layers", `{"model_type": "llama", ` + strings.Replace(sizes, `"num_hidden_layers": 2`, `"num_hidden_layers": -1`, 1) + `}`, "", "config.json", []string{"num_hidden_layers", "positive"}},
		{"heads do not divide hidden", `{"model_type": "llama", ` + strings.Replace(sizes, `"num_attention_heads": 4`, `"num_attention_heads": 6`, 1) + `}`, "", "config.json", []string{"num_attention_heads", "hidden_size"}},
		{"kv heads do not divide heads", `{"model_type": "llama", "num_key_value_heads": 3, ` + sizes + `}`, "", "config.json", []string{"num_key_value_heads", "3"}},
		{"odd head_dim", `{"model_type": "llama", "head_dim": 15, ` + sizes + `}`, "", "config.json", []string{"head_dim"}},
		{"llama attention bias", `{"model_type": "llama", "attention_bias": true, ` + sizes + `}`, "", "config.json", []string{"attention_bias", "o_proj"}},
		{"llama mlp bias", `{"model_type": "llama", "mlp_bias": true, ` + sizes + `}`, "", "config.json", []string{"mlp_bias"}},
		{"gelu", `{"model_type": "llama", "hidden_act": "gelu", ` + sizes + `}`, "", "config.json", []string{"hidden_act", "gelu"}},
		{"dynamic rope", `{"model_type": "llama", "rope_scaling": {"type": "dynamic", "factor": 2.0}, ` + sizes + `}`, "", "config.json",
			[]string{"rope_scaling.type", "dynamic", "llama3", "longrope"}},
		{"yarn rope v5", `{"model_type": "qwen2", "rope_parameters": {"rope_type": "yarn", "factor": 4.0}, ` + sizes + `}`, "", "config.json",
			[]string{"rope_parameters.rope_type", "yarn"}},
		{"llama3 without factor", `{"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 64}, ` + sizes + `}`, "", "config.json",
			[]string{"rope_scaling.factor", "missing"}},
		{"llama3 factors reversed", `{"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 1, "original_max_position_embeddings": 64}, ` + sizes + `}`, "", "config.json",
			[]string{"rope_scaling.high_freq_factor"}},
		{"qwen2 layer types", `{"model_type": "qwen2", "use_sliding_window": true, "layer_types": ["full_attention"], ` + sizes + `}`, "", "config.json",
			[]string{"layer_types", "1 entries", "num_hidden_layers 2"}},
		{"eos outside vocab", `{"model_type": "llama", "eos_token_id": 1000, ` + sizes + `}`, "", "config.json", []string{"eos_token_id", "1000"}},
		{"bad eos list", `{"model_type": "llama", ` + sizes + `}`, `{"eos_token_id": [1, "x"]}`, "generation_config.json", []string{"eos_token_id"}},
		{"bad eos element", `{"model_type": "llama", ` + sizes + `}`, `{"eos_token_id": [1, 2.5]}`, "generation_config.json", []string{"eos_token_id[1]"}},
		{"bad generation json", `{"model_type": "llama", ` + sizes + `}`, `[1,`, "generation_config.json", []string{"JSON"}},
		{"not an object", `[]`, "", "config.json", []string{"JSON object"}},
		{"architectures disagree", `{"model_type": "llama", "architectures": ["Qwen2ForCausalLM"], ` + sizes + `}`, "", "config.json",
			[]string{"architectures", "model_type", "Qwen2ForCausalLM", `"llama"`}},
		{"second architecture disagrees", `{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM", "MistralForCausalLM"], ` + sizes + `}`, "", "config.json",
			[]string{"architectures[1]", "model_type", "MistralForCausalLM", `"qwen2"`}},
		{"architectures not a list", `{"model_type": "llama", "architectures": "LlamaForCausalLM", ` + sizes + `}`, "", "config.json",
			[]string{"architectures", "list"}},
	}
	for _, tt := range tests {
		dir := writeModelDir(t, tt.config, tt.gen)
		_, err := LoadModelConfig(dir)
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, filepath.Join(dir, tt.wantFile)) {
			t.Errorf("%s: error %q does not name %s", tt.name, msg, tt.wantFile)
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q does not mention %q", tt.name, msg, w)
			}
		}
	}

	_, err := LoadModelConfig(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("empty folder: %v", err)
	}
}

func TestRopeTablesPlain(t *testing.T) {
	// head_dim 4, theta 10000: inv_freq = [1, 10000^-0.5 = 0.01].
	c := &ModelConfig{HeadDim: 4, RopeTheta: 10000}
	cos, sin := RopeTables(c, 3)
	if len(cos) != 3*2 || len(sin) != 3*2 {
		t.Fatalf("tables have %d and %d entries, want 6", len(cos), len(sin))
	}
	want := []struct {
		pos, i   int
		cos, sin float64
	}{
		{0, 0, 1, 0},
		{0, 1, 1, 0},
		{1, 0, 0.5403023058681398, 0.8414709848078965},
		{2, 0, -0.4161468365471424, 0.9092974268256817},
		{2, 1, 0.9998000066665778, 0.01999866669333308},
	}
	for _, w := range want {
		gc, gs := cos[w.pos*2+w.i], sin[w.pos*2+w.i]
		if math.Abs(float64(gc)-w.cos) > 1e-7 || math.Abs(float64(gs)-w.sin) > 1e-7 {
			t.Errorf("pos %d freq %d: cos %v sin %v, want %v %v", w.pos, w.i, gc, gs, w.cos, w.sin)
		}
	}
}

func TestRopeInvFreqLlama3(t *testing.T) {
	// head_dim 8, theta 10000: inv_freq [1, 0.1, 0.01, 0.001], wavelengths
	// 2π/f = [6.28, 62.8, 628.3, 6283]. With an original context of 1024,
	// low_freq_factor 1 and high_freq_factor 4 the band edges are 1024 and
	// 256: the first two are short (kept), the last long (divided by the
	// factor 8), and 628.3 is blended with
	// smooth = (1024/628.3185 - 1)/(4 - 1) = 0.2099155,
	// inv = 0.01*((1-smooth)/8 + smooth) = 0.003086761.
	c := &ModelConfig{HeadDim: 8, RopeTheta: 10000, RopeScaling: &RopeScaling{
		Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 1024}}
	got := RopeInvFreq(c)
	want := []float64{1, 0.1, 0.003086760967011274, 0.000125}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12*math.Max(1, want[i]) {
			t.Errorf("inv_freq[%d] = %.15g, want %.15g", i, got[i], want[i])
		}
	}
	cos, sin := RopeTables(c, 1001)
	// pos 3, freq 2: angle 3*0.003086761; pos 1000, freq 3: angle 0.125.
	if g := float64(cos[3*4+2]); math.Abs(g-0.999957123885777) > 1e-7 {
		t.Errorf("cos(pos 3, freq 2) = %v", g)
	}
	if g := float64(sin[1000*4+3]); math.Abs(g-0.12467473338522769) > 1e-7 {
		t.Errorf("sin(pos 1000, freq 3) = %v", g)
	}
}
