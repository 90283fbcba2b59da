package presets

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"whet/datasets"
	"whet/engine"
)

// paramTolerance is how far the recomputed parameter count may be from the
// published one when the publisher gives three or more digits ("1.54B"): a
// correct entry is then within about 1%, and a wrong width or layer count is
// off by far more. A figure published with fewer digits ("1.7B") is held
// to its own rounding instead (see publishedTolerance).
const paramTolerance = 0.01

// publishedTolerance is the relative tolerance for a count written as lit
// in models.yaml: half a unit in its last published digit ("1.7e9" means
// 1.65e9–1.75e9), or paramTolerance where that is tighter.
func publishedTolerance(lit string) (float64, error) {
	v, err := strconv.ParseFloat(lit, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("count %q is not a positive number", lit)
	}
	mant, expPart, _ := strings.Cut(strings.ToLower(lit), "e")
	exp := 0
	if expPart != "" {
		if exp, err = strconv.Atoi(expPart); err != nil {
			return 0, fmt.Errorf("count %q: exponent: %w", lit, err)
		}
	}
	// The last written digit's place: digits after the point lower it.
	if _, frac, ok := strings.Cut(mant, "."); ok {
		exp -= len(frac)
	}
	half := 0.5 * math.Pow(10, float64(exp))
	return max(paramTolerance, half/v), nil
}

// publishedCounts reads the params and params_non_embedding literals of
// every entry as written in models.yaml (the decoded float has lost how
// many digits were published).
func publishedCounts(t *testing.T) map[string]map[string]string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(modelsYAML, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "models" {
			continue
		}
		for _, entry := range root.Content[i+1].Content {
			fields := map[string]string{}
			for k := 0; k+1 < len(entry.Content); k += 2 {
				fields[entry.Content[k].Value] = entry.Content[k+1].Value
			}
			out[fields["name"]] = fields
		}
	}
	return out
}

// headDimDerived are the model types whose config class derives head_dim
// from hidden_size / num_attention_heads; the others (Qwen3, Gemma) set it
// on its own.
var headDimDerived = []string{"llama", "mistral", "qwen2", "phi3"}

func TestCatalogEntriesAreConsistent(t *testing.T) {
	models, err := Models()
	if err != nil {
		t.Fatal(err)
	}
	if len(models) < 55 {
		t.Fatalf("catalog has %d models, want at least the 55 of issues #17 and #19", len(models))
	}
	literals := publishedCounts(t)
	names := map[string]bool{}
	repos := map[string]bool{}
	for _, m := range models {
		where := "models.yaml entry " + m.Name
		if m.Name == "" || m.Repo == "" || m.Family == "" || m.Licence == "" {
			t.Errorf("%s: name, repo, family and licence are all required (got %q, %q, %q, %q)", where, m.Name, m.Repo, m.Family, m.Licence)
		}
		if m.Name != strings.ToLower(m.Name) {
			t.Errorf("%s: short names are lower case", where)
		}
		if names[strings.ToLower(m.Name)] {
			t.Errorf("%s: duplicate name", where)
		}
		names[strings.ToLower(m.Name)] = true
		if repos[strings.ToLower(m.Repo)] {
			t.Errorf("%s: duplicate repo %s", where, m.Repo)
		}
		repos[strings.ToLower(m.Repo)] = true
		if !strings.Contains(m.Repo, "/") {
			t.Errorf("%s: repo %q is not owner/name", where, m.Repo)
		}
		// The chat template is one the datasets package renders (names
		// and aliases alike); an entry whet cannot train may have none.
		if _, ok := datasets.LookupTemplate(m.Template); !ok && (m.Trainable() || m.Template != "") {
			t.Errorf("%s: template %q is not a built-in template (%v)", where, m.Template, datasets.TemplateNames())
		}

		a := m.Arch
		cfg := m.ToModelConfig()
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: arch: %v", where, err)
		}
		if slices.Contains(headDimDerived, a.ModelType) && a.NumHeads*a.HeadDim != a.HiddenSize {
			t.Errorf("%s: heads %d × head_dim %d = %d, want hidden_size %d", where, a.NumHeads, a.HeadDim, a.NumHeads*a.HeadDim, a.HiddenSize)
		}

		if !m.Trainable() {
			// Not trainable: the decoder formula does not describe it (a
			// vision tower, cross-attention layers, experts), so only the
			// reason is checked.
			if len(m.NotTrainable) < 20 {
				t.Errorf("%s: not_trainable needs a reason users can read, got %q", where, m.NotTrainable)
			}
			continue
		}
		if m.cfg == nil {
			t.Errorf("%s: trainable, but the engine's config reader did not read it", where)
			continue
		}
		total := CountParams(cfg)
		embed := int64(cfg.VocabSize) * int64(cfg.HiddenSize)
		if !cfg.TieWordEmbeddings {
			embed *= 2
		}
		for _, c := range []struct {
			key       string
			published float64
			got       int64
		}{{"params", m.Params, total}, {"params_non_embedding", m.ParamsNonEmbedding, total - embed}} {
			if c.published == 0 && c.key != "params" {
				continue
			}
			tol, err := publishedTolerance(literals[m.Name][c.key])
			if err != nil {
				t.Errorf("%s: %s: %v", where, c.key, err)
				continue
			}
			if rel := math.Abs(float64(c.got)-c.published) / c.published; rel > tol {
				t.Errorf("%s: recomputed %s %d, published %s (%.2f%% apart, tolerance %.2f%%)", where, c.key, c.got, literals[m.Name][c.key], 100*rel, 100*tol)
			}
		}
	}

	// The lists of issues #17 and #19, by short name.
	for _, want := range []string{
		"llama-3.2-1b", "llama-3.2-1b-instruct", "llama-3.2-3b", "llama-3.2-3b-instruct",
		"llama-3.1-8b", "llama-3.1-8b-instruct",
		"qwen2.5-0.5b", "qwen2.5-0.5b-instruct", "qwen2.5-1.5b", "qwen2.5-1.5b-instruct",
		"qwen2.5-3b", "qwen2.5-3b-instruct", "qwen2.5-7b", "qwen2.5-7b-instruct",
		"qwen2.5-14b", "qwen2.5-14b-instruct", "qwen2.5-coder-1.5b", "qwen2.5-coder-7b",
		"mistral-7b-v0.3", "smollm2-135m", "smollm2-360m", "smollm2-1.7b",
		"qwen3-0.6b", "qwen3-0.6b-base", "qwen3-1.7b", "qwen3-1.7b-base", "qwen3-4b", "qwen3-4b-base",
		"qwen3-8b", "qwen3-8b-base", "qwen3-14b", "qwen3-14b-base", "qwen3-32b",
		"gemma-3-270m", "gemma-3-270m-it", "gemma-3-1b", "gemma-3-1b-it", "gemma-3-4b", "gemma-3-4b-it",
		"gemma-3-12b", "gemma-3-12b-it", "gemma-3-27b", "gemma-3-27b-it",
		"gemma-2-2b", "gemma-2-2b-it", "gemma-2-9b", "gemma-2-9b-it",
		"phi-4-mini-instruct", "phi-3.5-mini-instruct",
	} {
		if !names[want] {
			t.Errorf("catalog lacks %s", want)
			continue
		}
		if m, _ := Lookup(want); m == nil || !m.Trainable() {
			t.Errorf("%s is not trainable; the engine runs its family", want)
		}
	}
	// Mixture-of-experts models are listed, and say why they cannot be trained.
	for _, want := range []string{"qwen3-30b-a3b", "gpt-oss-20b"} {
		m, err := Lookup(want)
		if err != nil || m.Trainable() || !strings.Contains(m.NotTrainable, "mixture-of-experts") {
			t.Errorf("%s: %v; want listed, not trainable, the reason naming mixture-of-experts", want, err)
		}
	}
}

func TestPublishedTolerance(t *testing.T) {
	for lit, want := range map[string]float64{
		"1.7e9": 0.05 / 1.7, "0.6e9": 0.05 / 0.6, "1.54e9": 0.01, "3209e6": 0.01, "1.000e9": 0.01, "270e6": 0.01, "21e9": 0.5 / 21,
	} {
		got, err := publishedTolerance(lit)
		if err != nil || math.Abs(got-want) > 1e-12 {
			t.Errorf("publishedTolerance(%q) = %v, %v; want %v", lit, got, err, want)
		}
	}
	if _, err := publishedTolerance("lots"); err == nil {
		t.Error("publishedTolerance(lots) succeeded")
	}
}

// TestCatalogReadsAsConfigJSON: the engine reads each entry as a
// config.json, so the settings a family derives (layer kinds, rotary
// bases, scales, caps) come out as for the downloaded file.
func TestCatalogReadsAsConfigJSON(t *testing.T) {
	get := func(name string) *engine.ModelConfig {
		t.Helper()
		m, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		return m.ToModelConfig()
	}
	g := get("gemma-3-4b-it")
	if g.ModelType != "gemma3" || g.VocabSize != 262208 || len(g.LayerTypes) != 34 || g.SlidingWindow != 1024 ||
		g.RopeLocalTheta != 10000 || g.RopeTheta != 1e6 || g.RopeScaling == nil || g.RopeScaling.Type != "linear" || g.RopeScaling.Factor != 8 {
		t.Errorf("gemma-3-4b-it read as %+v", g)
	}
	for l, typ := range g.LayerTypes {
		want := engine.SlidingAttention
		if (l+1)%6 == 0 {
			want = engine.FullAttention
		}
		if typ != want {
			t.Errorf("gemma-3-4b-it layer %d is %s, want %s", l, typ, want)
		}
	}
	if g := get("gemma-3-27b"); math.Abs(g.AttnScale()-1/math.Sqrt(168)) > 1e-15 || g.HeadDim != 128 {
		t.Errorf("gemma-3-27b attention scale %v head_dim %d, want 1/sqrt(168) and 128", g.AttnScale(), g.HeadDim)
	}
	if g := get("gemma-3-1b"); g.VocabSize != 262144 || g.SlidingWindow != 512 || g.RopeScaling != nil || g.FinalSoftCap != 0 {
		t.Errorf("gemma-3-1b read as %+v", g)
	}
	g2 := get("gemma-2-9b")
	if g2.AttnSoftCap != 50 || g2.FinalSoftCap != 30 || g2.LayerTypes[0] != engine.SlidingAttention || g2.LayerTypes[1] != engine.FullAttention {
		t.Errorf("gemma-2-9b read as %+v", g2)
	}
	p := get("phi-4-mini-instruct")
	rs := p.RopeScaling
	if p.RotaryDim() != 96 || rs == nil || rs.Type != "longrope" || len(rs.LongFactor) != 48 || rs.LongFactor[47] != 47.77 ||
		rs.OriginalMaxPositionEmbeddings != 4096 || math.Abs(rs.AttentionFactor-math.Sqrt(1+math.Log(32)/math.Log(4096))) > 1e-12 || !p.TieWordEmbeddings {
		t.Errorf("phi-4-mini-instruct read as %+v rope %+v", p, rs)
	}
	if q := get("qwen3-8b"); q.HeadDim != 128 || q.QDim() != 4096 || q.TieWordEmbeddings || q.AttentionBias || q.MaxPositions != 40960 {
		t.Errorf("qwen3-8b read as %+v", q)
	}
	if q := get("qwen3-0.6b-base"); q.QDim() != 2048 || q.HiddenSize != 1024 || q.MaxPositions != 32768 {
		t.Errorf("qwen3-0.6b-base read as %+v", q)
	}
	// Mistral v0.3's config has "sliding_window": null (its class would
	// otherwise assume 4096).
	if m := get("mistral-7b-v0.3"); m.SlidingWindow != 0 {
		t.Errorf("mistral-7b-v0.3 window %d, want none", m.SlidingWindow)
	}
	// A copy: changing it leaves the catalog alone.
	p.RopeScaling.LongFactor[0] = 99
	if get("phi-4-mini-instruct").RopeScaling.LongFactor[0] != 1 {
		t.Error("ToModelConfig shares the LongRoPE factors with the catalog")
	}
}

// TestCountParamsByHand checks the formula on Llama 3.2 1B, worked out here:
//
//	embedding (tied)   128256 · 2048                      = 262,668,288
//	per layer: q, o    2 · 2048 · 2048                    =   8,388,608
//	           k, v    2 · 2048 · 512                     =   2,097,152
//	           MLP     3 · 2048 · 8192                    =  50,331,648
//	           norms   2 · 2048                           =       4,096
//	           sum                                        =  60,821,504
//	16 layers                                             = 973,144,064
//	final norm                                            =       2,048
//	total                                                 = 1,235,814,400
//
// which is the count in the published safetensors (1.24B).
func TestCountParamsByHand(t *testing.T) {
	m, err := Lookup("llama-3.2-1b")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := CountParams(m.ToModelConfig()), int64(1_235_814_400); got != want {
		t.Errorf("CountParams(llama-3.2-1b) = %d, want %d", got, want)
	}
	// Qwen2.5-0.5B adds q/k/v biases: Q + 2·KV = 896 + 2·128 = 1152 per
	// layer on top of the bias-free count.
	q, err := Lookup("qwen2.5-0.5b")
	if err != nil {
		t.Fatal(err)
	}
	cfg := q.ToModelConfig()
	withBias := CountParams(cfg)
	cfg.AttentionBias = false
	if got := withBias - CountParams(cfg); got != 24*1152 {
		t.Errorf("qwen2.5-0.5b bias parameters = %d, want 24·1152 = %d", got, 24*1152)
	}
}

func TestLookup(t *testing.T) {
	for _, name := range []string{"llama-3.1-8b", "LLAMA-3.1-8B", "meta-llama/Llama-3.1-8B", " meta-llama/llama-3.1-8b "} {
		m, err := Lookup(name)
		if err != nil {
			t.Errorf("Lookup(%q): %v", name, err)
			continue
		}
		if m.Name != "llama-3.1-8b" {
			t.Errorf("Lookup(%q) = %s, want llama-3.1-8b", name, m.Name)
		}
	}
	m, err := Lookup("Qwen/Qwen2.5-7B-Instruct")
	if err != nil || m.Name != "qwen2.5-7b-instruct" || m.Arch.MaxPositions != 32768 || m.Arch.HiddenSize != 3584 {
		t.Errorf("Lookup(Qwen/Qwen2.5-7B-Instruct) = %+v, %v; want the instruct entry with the base numbers merged and 32768 positions", m, err)
	}
	_, err = Lookup("llama-9")
	if err == nil || !strings.Contains(err.Error(), "llama-3.1-8b") {
		t.Errorf("Lookup(llama-9) error = %v, want one suggesting the llama entries", err)
	}
	// A name two edits from one entry is pointed to it alone.
	for typo, want := range map[string]string{"qwen2.5-05b": "qwen2.5-0.5b", "gemma-3-1b-itt": "gemma-3-1b-it", "LLAMA-3.2-1BB": "llama-3.2-1b"} {
		_, err := Lookup(typo)
		if w := fmt.Sprintf("presets: no model %q in the catalog (did you mean %s?)", typo, want); err == nil || err.Error() != w {
			t.Errorf("Lookup(%q) error = %v, want %q", typo, err, w)
		}
	}
	v, err := Lookup("llama-3.2-11b-vision")
	if err != nil || v.Trainable() {
		t.Errorf("llama-3.2-11b-vision: %v, trainable=%v; want listed and not trainable", err, v != nil && v.Trainable())
	}
}

func TestToModelConfig(t *testing.T) {
	m, err := Lookup("llama-3.1-8b")
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.ToModelConfig()
	if cfg.QDim() != 4096 || cfg.KVDim() != 1024 || cfg.NumLayers != 32 || cfg.VocabSize != 128256 || cfg.TieWordEmbeddings {
		t.Errorf("llama-3.1-8b config = %+v", cfg)
	}
	if cfg.RopeScaling == nil || cfg.RopeScaling.Type != "llama3" || cfg.RopeScaling.Factor != 8 {
		t.Errorf("llama-3.1-8b rope scaling = %+v, want llama3 factor 8", cfg.RopeScaling)
	}
	// The returned config is a copy: changing it leaves the catalog alone.
	cfg.RopeScaling.Factor = 1
	again, _ := Lookup("llama-3.1-8b")
	if again.ToModelConfig().RopeScaling.Factor != 8 {
		t.Error("ToModelConfig shares rope scaling with the catalog")
	}
}

func TestMethodPresets(t *testing.T) {
	methods, err := Methods()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range methods {
		names = append(names, m.Name)
		// Every method's defaults make a valid run once a model and data
		// are named: nothing a run needs is left at zero.
		rc := m.RunConfig()
		rc.Model, rc.Data.Path = "model", "data.jsonl"
		if err := rc.Validate(); err != nil {
			t.Errorf("method %s: defaults do not validate: %v", m.Name, err)
		}
		if rc.Method != m.Name {
			t.Errorf("method %s: RunConfig().Method = %q", m.Name, rc.Method)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"dpo", "full", "grpo", "lora", "qlora"}) {
		t.Errorf("methods = %v, want dpo, full, grpo, lora, qlora", names)
	}
	grpo, _ := LookupMethod("grpo")
	// TRL's GRPOConfig defaults.
	if rc := grpo.RunConfig(); rc.GRPO.NumGenerations != 8 || rc.GRPO.MaxCompletionLength != 256 || rc.GRPO.Temperature != 1 ||
		rc.GRPO.TopP != 1 || rc.GRPO.Beta != 0 || rc.GRPO.Epsilon != 0.2 || rc.GRPO.NumIterations != 1 || rc.GRPO.LossType != "dapo" ||
		rc.GRPO.ScaleRewards != "group" || rc.Train.LR != 1e-6 || rc.Train.MicroBatch != 8 || rc.Train.GradAccum != 1 {
		t.Errorf("grpo preset = %+v %+v, want TRL's defaults", rc.GRPO, rc.Train)
	}
	lora, _ := LookupMethod("lora")
	if rc := lora.RunConfig(); rc.LoRA.Rank != 16 || rc.LoRA.Alpha != 16 || rc.Train.LR != 2e-4 || len(rc.LoRA.TargetModules) != 7 ||
		rc.Train.Beta2 != 0.999 || rc.Train.WarmupSteps != 5 {
		t.Errorf("lora preset = %+v %+v, want Unsloth's r 16, alpha 16, lr 2e-4, 7 targets, 5 warm-up steps and torch's beta2", rc.LoRA, rc.Train)
	}
	qlora, _ := LookupMethod("qlora")
	// Double quantization stays off until engine/nf4.go implements it.
	if qlora.Quantization != "nf4" || qlora.DoubleQuant {
		t.Errorf("qlora preset quantization = %q double=%v, want nf4 with fp32 absmax", qlora.Quantization, qlora.DoubleQuant)
	}
	full, _ := LookupMethod("full")
	if rc := full.RunConfig(); rc.Train.LR != 2e-5 || rc.LoRA.Rank != 0 || !rc.Train.Checkpointing {
		t.Errorf("full preset lr = %g lora = %v, want 2e-5, no adapters, activation checkpointing", rc.Train.LR, rc.LoRA)
	}
	dpo, _ := LookupMethod("dpo")
	if rc := dpo.RunConfig(); rc.DPO.Beta != 0.1 || rc.Train.LR != 5e-6 || rc.Data.MaxLength != 1024 || rc.LoRA.Rank != 16 {
		t.Errorf("dpo preset = %+v lr %g, want beta 0.1, lr 5e-6, max length 1024, LoRA r 16", rc.DPO, rc.Train.LR)
	}
	if _, err := LookupMethod("ppo"); err == nil {
		t.Error("LookupMethod(ppo) succeeded")
	}
}

func TestMethodRunConfigIsACopy(t *testing.T) {
	dpo, err := LookupMethod("dpo")
	if err != nil {
		t.Fatal(err)
	}
	rc := dpo.RunConfig()
	rc.LoRA.TargetModules[0] = "changed"
	again, _ := LookupMethod("dpo")
	if again.RunConfig().LoRA.TargetModules[0] != "q" {
		t.Error("RunConfig shares the target module slice with the preset")
	}
}

// TestEngineReadsRunFilesOnTheseDefaults: with this package linked in, a
// run file that names only a model and data gets exactly its method's
// preset (the engine has no defaults of its own), and no method means the
// first one listed.
func TestEngineReadsRunFilesOnTheseDefaults(t *testing.T) {
	for _, method := range []string{"", "full", "dpo"} {
		file := "model: m\ndata: {path: d.jsonl}\n"
		if method != "" {
			file += "method: " + method + "\n"
		}
		rc, err := engine.DecodeRunConfig([]byte(file))
		if err != nil {
			t.Fatal(err)
		}
		want := method
		if want == "" {
			methods, _ := Methods()
			want = methods[0].Name
		}
		m, _ := LookupMethod(want)
		exp := m.RunConfig()
		exp.Model, exp.Data.Path = "m", "d.jsonl"
		exp.FitMaxLength = true // the file leaves data.max_length out: the run fits it to the model
		if !reflect.DeepEqual(rc, exp) {
			t.Errorf("method %q: run file read as\n%+v\nwant the preset\n%+v", method, rc, exp)
		}
	}
}

func TestHardwareProfiles(t *testing.T) {
	profiles, err := HardwareProfiles()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, p := range profiles {
		if p.MemoryMiB <= 0 || !(p.BF16TFLOPs > 0) || !(p.BandwidthGBs > 0) {
			t.Errorf("hardware %s: memory_mib %d, bf16_tflops %v, bandwidth_gbs %v; all are required", p.Name, p.MemoryMiB, p.BF16TFLOPs, p.BandwidthGBs)
		}
		if cc, err := strconv.ParseFloat(p.ComputeCapability, 64); err != nil || cc < 8 || !strings.Contains(p.ComputeCapability, ".") {
			t.Errorf("hardware %s: compute_capability %q, want X.Y of sm_80 or newer", p.Name, p.ComputeCapability)
		}
		for _, key := range append([]string{p.Name}, p.Aliases...) {
			k := squash(key)
			if other, dup := seen[k]; dup {
				t.Errorf("hardware: %q names both %s and %s", key, other, p.Name)
			}
			seen[k] = p.Name
		}
	}
	// The seed's machines (issue #19), with their marketed memory in GB,
	// bandwidth in GB/s and architecture.
	for name, want := range map[string]struct {
		gb, bw float64
		sm     string
	}{
		"RTX 5070": {12, 672, "12.0"}, "rtx 5070 ti": {16, 896, "12.0"}, "RTX5080": {16, 960, "12.0"}, "RTX 5090": {32, 1792, "12.0"},
		"RTX 4060": {8, 272, "8.9"}, "rtx 4090": {24, 1008, "8.9"}, "RTX 3090": {24, 936, "8.6"},
		"RTX PRO 6000": {96, 1792, "12.0"}, "DGX Spark": {128, 273, "12.1"},
		"H100": {80, 3350, "9.0"}, "h200": {141, 4800, "9.0"}, "B200": {180, 8000, "10.0"},
	} {
		p, err := LookupHardware(name)
		if err != nil {
			t.Errorf("LookupHardware(%q): %v", name, err)
			continue
		}
		// Driver totals sit a little under the marketed size (GB vs GiB and
		// the driver's reservation): within 5% of it.
		gb := float64(p.MemoryBytes()) / 1e9
		gib := float64(p.MemoryBytes()) / (1 << 30)
		if math.Abs(gb-want.gb)/want.gb > 0.08 && math.Abs(gib-want.gb)/want.gb > 0.05 {
			t.Errorf("%s: %.1f GB / %.1f GiB, want about %g", name, gb, gib, want.gb)
		}
		if p.BandwidthGBs != want.bw || p.ComputeCapability != want.sm {
			t.Errorf("%s: %v GB/s sm %s, want %v GB/s sm %s", name, p.BandwidthGBs, p.ComputeCapability, want.bw, want.sm)
		}
		// Arch names it as engine/cuda names a device (engine.ArchName).
		var major, minor int
		if _, err := fmt.Sscanf(want.sm, "%d.%d", &major, &minor); err != nil || p.Arch() != engine.ArchName(major, minor) {
			t.Errorf("%s: Arch() = %q, want %q", name, p.Arch(), engine.ArchName(major, minor))
		}
	}
	if p, _ := LookupHardware("spark"); p == nil || !p.Unified {
		t.Error("DGX Spark is not marked unified")
	}
	if _, err := LookupHardware("RTX 9999"); err == nil {
		t.Error("LookupHardware(RTX 9999) succeeded")
	}
}

// TestHardwareFiguresNameTheirSource: every memory, rate and bandwidth
// figure in hardware.yaml carries a comment saying where it comes from
// (data sheet, product page, whitepaper, nvidia-smi, or derived from which
// published figure).
func TestHardwareFiguresNameTheirSource(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal(hardwareYAML, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	n := 0
	for i := 0; i+1 < len(root.Content); i += 2 {
		for _, entry := range root.Content[i+1].Content {
			name := ""
			for k := 0; k+1 < len(entry.Content); k += 2 {
				key, val := entry.Content[k], entry.Content[k+1]
				switch key.Value {
				case "name":
					name = val.Value
				case "memory_mib", "bf16_tflops", "bandwidth_gbs":
					n++
					c := strings.ToLower(val.LineComment)
					if !strings.Contains(c, "nvidia") && !strings.Contains(c, "derived") && !strings.Contains(c, "whitepaper") {
						t.Errorf("hardware.yaml line %d (%s %s): comment %q does not name the figure's source", val.Line, name, key.Value, val.LineComment)
					}
				}
			}
		}
	}
	if n < 36 {
		t.Errorf("checked %d figures, want 3 for each of at least 12 profiles", n)
	}
}

// TestTrainableEntriesUseSupportedArchitectures: a catalog model offered
// for training must be one the engine can load (LoadModelConfig accepts
// llama, qwen2 and mistral), so the wizard never offers a run that fails
// only after the fit check.
func TestTrainableEntriesUseSupportedArchitectures(t *testing.T) {
	models, err := Models()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range models {
		if m.Trainable() && !slices.Contains(engine.SupportedModelTypes(), m.Arch.ModelType) {
			t.Errorf("%s (model_type %s) is offered for training but the engine cannot load it; set not_trainable", m.Name, m.Arch.ModelType)
		}
	}
}

func TestMaxLengthFor(t *testing.T) {
	for _, c := range []struct{ def, pos, want int }{
		{2048, 512, 512}, {2048, 131072, 2048}, {2048, 0, 2048}, {512, 2048, 512}, {2048, 2048, 2048},
	} {
		if got := MaxLengthFor(c.def, c.pos); got != c.want {
			t.Errorf("MaxLengthFor(%d, %d) = %d, want %d", c.def, c.pos, got, c.want)
		}
	}
}
