package presets

import (
	"math"
	"slices"
	"strings"
	"testing"

	"whet/engine"
)

// paramTolerance is how far the recomputed parameter count may be from the
// published one. Model cards round to three significant digits ("0.49B",
// "1.54B"), so a correct entry is within about 1%; a wrong width or layer
// count is off by far more.
const paramTolerance = 0.01

func TestCatalogEntriesAreConsistent(t *testing.T) {
	models, err := Models()
	if err != nil {
		t.Fatal(err)
	}
	if len(models) < 30 {
		t.Fatalf("catalog has %d models, want at least the 30 listed in the issue", len(models))
	}
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
		if !slices.Contains(Templates, m.Template) {
			t.Errorf("%s: template %q is not one of %v", where, m.Template, Templates)
		}

		a := m.Arch
		// The engine's one set of model-config rules, as for a config.json.
		// An entry not trainable may use a rope scaling the engine lacks
		// (Phi-3's longrope, one reason it is not trainable); its other
		// numbers are held to the same rules.
		cfg := m.ToModelConfig()
		if !m.Trainable() {
			cfg.RopeScaling = nil
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: arch: %v", where, err)
		}
		// Every family but Gemma 2 has heads × head_dim = hidden; Gemma 2
		// sets head_dim 256 independently of the width.
		if a.NumHeads*a.HeadDim != a.HiddenSize && a.ModelType != "gemma2" {
			t.Errorf("%s: heads %d × head_dim %d = %d, want hidden_size %d", where, a.NumHeads, a.HeadDim, a.NumHeads*a.HeadDim, a.HiddenSize)
		}

		if !m.Trainable() {
			// Not trainable: the decoder formula does not describe it (a
			// vision tower, cross-attention layers), so only the reason is
			// checked.
			if len(m.NotTrainable) < 20 {
				t.Errorf("%s: not_trainable needs a reason users can read, got %q", where, m.NotTrainable)
			}
			continue
		}
		got := float64(CountParams(m.ToModelConfig()))
		if rel := math.Abs(got-m.Params) / m.Params; rel > paramTolerance {
			t.Errorf("%s: recomputed %d parameters, published %.4g (%.2f%% apart, tolerance %.0f%%)", where, int64(got), m.Params, 100*rel, 100*paramTolerance)
		}
	}

	// The list, by short name.
	for _, want := range []string{
		"llama-3.2-1b", "llama-3.2-1b-instruct", "llama-3.2-3b", "llama-3.2-3b-instruct",
		"llama-3.1-8b", "llama-3.1-8b-instruct",
		"qwen2.5-0.5b", "qwen2.5-0.5b-instruct", "qwen2.5-1.5b", "qwen2.5-1.5b-instruct",
		"qwen2.5-3b", "qwen2.5-3b-instruct", "qwen2.5-7b", "qwen2.5-7b-instruct",
		"qwen2.5-14b", "qwen2.5-14b-instruct", "qwen2.5-coder-1.5b", "qwen2.5-coder-7b",
		"mistral-7b-v0.3", "smollm2-135m", "smollm2-360m", "smollm2-1.7b",
		"gemma-2-2b", "gemma-2-9b", "phi-3.5-mini-instruct", "llama-3.2-11b-vision",
	} {
		if !names[want] {
			t.Errorf("catalog lacks %s", want)
		}
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
	targets := []string{"q", "k", "v", "o", "gate", "up", "down"}
	for _, m := range methods {
		names = append(names, m.Name)
		if m.Train.LR <= 0 || m.Train.MicroBatch <= 0 || m.Train.GradAccum <= 0 || m.MaxLength <= 0 {
			t.Errorf("method %s: lr, micro_batch, grad_accum and max_length must be positive: %+v", m.Name, m.Train)
		}
		if m.LoRA != nil {
			if m.LoRA.Rank <= 0 || m.LoRA.Alpha <= 0 {
				t.Errorf("method %s: LoRA rank and alpha must be positive", m.Name)
			}
			for _, tm := range m.LoRA.TargetModules {
				if !slices.Contains(targets, tm) {
					t.Errorf("method %s: unknown LoRA target %q", m.Name, tm)
				}
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"dpo", "full", "lora", "qlora"}) {
		t.Errorf("methods = %v, want dpo, full, lora, qlora", names)
	}
	lora, _ := LookupMethod("lora")
	if lora.LoRA.Rank != 16 || lora.LoRA.Alpha != 16 || lora.Train.LR != 2e-4 || len(lora.LoRA.TargetModules) != 7 {
		t.Errorf("lora preset = %+v %+v, want Unsloth's r 16, alpha 16, lr 2e-4, 7 targets", lora.LoRA, lora.Train)
	}
	qlora, _ := LookupMethod("qlora")
	// Double quantization stays off until engine/nf4.go implements it.
	if qlora.Quantization != "nf4" || qlora.DoubleQuant {
		t.Errorf("qlora preset quantization = %q double=%v, want nf4 with fp32 absmax", qlora.Quantization, qlora.DoubleQuant)
	}
	full, _ := LookupMethod("full")
	if full.Train.LR != 2e-5 || full.LoRA != nil {
		t.Errorf("full preset lr = %g lora = %v, want 2e-5 and no adapters", full.Train.LR, full.LoRA)
	}
	dpo, _ := LookupMethod("dpo")
	if dpo.DPO == nil || dpo.DPO.Beta != 0.1 || dpo.Train.LR != 5e-6 {
		t.Errorf("dpo preset = %+v lr %g, want beta 0.1, lr 5e-6", dpo.DPO, dpo.Train.LR)
	}
	if _, err := LookupMethod("ppo"); err == nil {
		t.Error("LookupMethod(ppo) succeeded")
	}
}

func TestMethodApply(t *testing.T) {
	var rc = newRunConfig()
	dpo, err := LookupMethod("dpo")
	if err != nil {
		t.Fatal(err)
	}
	dpo.Apply(rc)
	if rc.Method != "dpo" || rc.LoRA.Rank != 16 || rc.DPO.Beta != 0.1 || rc.Train.LR != 5e-6 || rc.Data.MaxLength != 1024 {
		t.Errorf("after dpo.Apply: %+v", rc)
	}
	// Apply copies the target list: editing the run leaves the preset alone.
	rc.LoRA.TargetModules[0] = "changed"
	again, _ := LookupMethod("dpo")
	if again.LoRA.TargetModules[0] != "q" {
		t.Error("Apply shares the target module slice with the preset")
	}
}

func TestHardwareProfiles(t *testing.T) {
	profiles, err := HardwareProfiles()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, p := range profiles {
		if p.MemoryMiB <= 0 {
			t.Errorf("hardware %s: memory_mib %d", p.Name, p.MemoryMiB)
		}
		for _, key := range append([]string{p.Name}, p.Aliases...) {
			k := squash(key)
			if other, dup := seen[k]; dup {
				t.Errorf("hardware: %q names both %s and %s", key, other, p.Name)
			}
			seen[k] = p.Name
		}
	}
	for name, wantGiB := range map[string]float64{
		"RTX 4060": 8, "rtx 4090": 24, "RTX5090": 32, "RTX PRO 6000": 96, "DGX Spark": 128, "H100": 80, "h200": 141,
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
		if math.Abs(gb-wantGiB)/wantGiB > 0.08 && math.Abs(gib-wantGiB)/wantGiB > 0.05 {
			t.Errorf("%s: %.1f GB / %.1f GiB, want about %g", name, gb, gib, wantGiB)
		}
	}
	if _, err := LookupHardware("RTX 9999"); err == nil {
		t.Error("LookupHardware(RTX 9999) succeeded")
	}
}

func newRunConfig() *engine.RunConfig { return &engine.RunConfig{} }

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
