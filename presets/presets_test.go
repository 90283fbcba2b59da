package presets

import (
	"math"
	"reflect"
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
	if !slices.Equal(names, []string{"dpo", "full", "lora", "qlora"}) {
		t.Errorf("methods = %v, want dpo, full, lora, qlora", names)
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
