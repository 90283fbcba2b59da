package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"whet/engine/atomicfile"
	"whet/engine/safetensors"
)

// PEFT's on-disk names: adapter_model.safetensors holds
// base_model.model.<module>.lora_A.weight / lora_B.weight (the adapter name
// "default" is dropped on save), and adapter_config.json the settings.
const peftPrefix = "base_model.model."

// PEFTConfig is the subset of PEFT's LoraConfig that loaders read.
type PEFTConfig struct {
	PEFTType          string   `json:"peft_type"`
	TaskType          string   `json:"task_type"`
	BaseModel         string   `json:"base_model_name_or_path"`
	R                 int      `json:"r"`
	LoRAAlpha         float64  `json:"lora_alpha"`
	LoRADropout       float64  `json:"lora_dropout"`
	TargetModules     []string `json:"target_modules"`
	UseRSLoRA         bool     `json:"use_rslora"`
	Bias              string   `json:"bias"`
	FanInFanOut       bool     `json:"fan_in_fan_out"`
	InferenceMode     bool     `json:"inference_mode"`
	InitLoRAWeights   bool     `json:"init_lora_weights"`
	ModulesToSave     []string `json:"modules_to_save"`
	LayersToTransform []int    `json:"layers_to_transform"`
	// TargetParameters names bare parameters PEFT adapts (Gemma 3's
	// projector matrix, Gemma3ProjectorPEFTParameter).
	TargetParameters []string `json:"target_parameters,omitempty"`
}

// SaveAdapter writes m's LoRA adapters as a PEFT adapter folder.
func SaveAdapter(dir string, m *Model, opts LoRAOptions, baseModel string) error {
	if err := os.MkdirAll(dir, atomicfile.DirPerm); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	var tensors []safetensors.Tensor
	targets := map[string]bool{}
	for _, lin := range m.Linears() {
		if lin.LoRA == nil {
			continue
		}
		targets[lin.Short+"_proj"] = true
		for _, p := range []*Param{lin.LoRA.A, lin.LoRA.B} {
			t, err := m.masterTensor(p, peftPrefix+p.Name)
			if err != nil {
				return err
			}
			tensors = append(tensors, t)
		}
	}
	proj, projLoRA, err := m.gemma3ProjectorAdapterTensors()
	if err != nil {
		return err
	}
	if projLoRA != nil && (projLoRA.Rank != opts.Rank || projLoRA.Scale != opts.LoRAScale()) {
		return fmt.Errorf("adapter: the projector adapter has rank %d and scale %g, the language model's options rank %d and scale %g (PEFT's adapter_config.json holds one r and lora_alpha)",
			projLoRA.Rank, projLoRA.Scale, opts.Rank, opts.LoRAScale())
	}
	tensors = append(tensors, proj...)
	if len(tensors) == 0 {
		return fmt.Errorf("adapter: the model has no LoRA adapters")
	}
	cfg := PEFTConfig{PEFTType: "LORA", TaskType: "CAUSAL_LM", BaseModel: baseModel, R: opts.Rank,
		LoRAAlpha: opts.Alpha, LoRADropout: opts.Dropout, TargetModules: slices.Sorted(maps.Keys(targets)), UseRSLoRA: opts.RSLoRA,
		Bias: "none", InferenceMode: true, InitLoRAWeights: true}
	if projLoRA != nil {
		// PEFT's ParamWrapper refuses dropout (see vision_adapter.go).
		cfg.TargetParameters = []string{Gemma3ProjectorPEFTParameter}
		cfg.LoRADropout = 0
	}
	return writePEFTFolder(dir, tensors, cfg)
}

// masterTensor is p's float32 master (also in a bf16 model) as a tensor
// named name.
func (m *Model) masterTensor(p *Param, name string) (safetensors.Tensor, error) {
	v := make([]float32, numel(p.Shape))
	if err := m.B.Download(p.Master, v); err != nil {
		return safetensors.Tensor{}, fmt.Errorf("adapter: download %s: %w", p.Name, err)
	}
	return safetensors.F32Tensor(name, p.Shape, v), nil
}

// writePEFTFolder writes a PEFT adapter folder's two files into dir (which
// exists): tensors as adapter_model.safetensors, cfg as adapter_config.json.
func writePEFTFolder(dir string, tensors []safetensors.Tensor, cfg any) error {
	if err := safetensors.Write(filepath.Join(dir, "adapter_model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	js, _ := json.MarshalIndent(cfg, "", "  ")
	return writeFileAtomic(filepath.Join(dir, "adapter_config.json"), js)
}

// LoadAdapter reads a PEFT adapter folder and attaches it to m (which must
// have no adapters yet). Errors name the file and the tensor.
func LoadAdapter(dir string, m *Model) (LoRAOptions, error) {
	// target_modules is a list of module names or, as PEFT also allows
	// (and whet's export of a multimodal Gemma 3 writes), one pattern.
	var onDisk struct {
		PEFTConfig
		TargetModules json.RawMessage `json:"target_modules"`
		// PEFT settings that change what the adapter computes and that
		// whet does not apply: refused, not ignored.
		UseDoRA      bool           `json:"use_dora"`
		LoRABias     bool           `json:"lora_bias"`
		RankPattern  map[string]any `json:"rank_pattern"`
		AlphaPattern map[string]any `json:"alpha_pattern"`
	}
	cfgPath := filepath.Join(dir, "adapter_config.json")
	js, err := os.ReadFile(cfgPath)
	if err != nil {
		return LoRAOptions{}, fmt.Errorf("adapter: %w", err)
	}
	if err := json.Unmarshal(js, &onDisk); err != nil {
		return LoRAOptions{}, fmt.Errorf("%s: %w", cfgPath, err)
	}
	cfg := onDisk.PEFTConfig
	if cfg.TargetModules, err = peftTargets(onDisk.TargetModules, m); err != nil {
		return LoRAOptions{}, fmt.Errorf("%s: target_modules: %w", cfgPath, err)
	}
	if cfg.PEFTType != "" && cfg.PEFTType != "LORA" {
		return LoRAOptions{}, fmt.Errorf("%s: peft_type %q is not LORA", cfgPath, cfg.PEFTType)
	}
	if cfg.FanInFanOut {
		return LoRAOptions{}, fmt.Errorf("%s: fan_in_fan_out adapters are not supported", cfgPath)
	}
	for _, f := range []struct {
		field, why string
		set        bool
	}{
		{"use_dora", "DoRA's magnitude vectors", onDisk.UseDoRA},
		{"lora_bias", "LoRA bias terms", onDisk.LoRABias},
		{"bias", "trained bias terms", cfg.Bias != "" && cfg.Bias != "none"},
		{"modules_to_save", "fully trained modules", len(cfg.ModulesToSave) > 0},
		{"rank_pattern", "a rank per module", len(onDisk.RankPattern) > 0},
		{"alpha_pattern", "an alpha per module", len(onDisk.AlphaPattern) > 0},
		{"layers_to_transform", "adapters on some layers only", len(cfg.LayersToTransform) > 0},
	} {
		if f.set {
			return LoRAOptions{}, fmt.Errorf("%s: %s is set: whet loads one rank and alpha of plain LoRA matrices on every layer, not %s (merge the adapter into the base model with PEFT instead)", cfgPath, f.field, f.why)
		}
	}
	opts := LoRAOptions{Rank: cfg.R, Alpha: cfg.LoRAAlpha, Targets: cfg.TargetModules, RSLoRA: cfg.UseRSLoRA}
	for i, p := range cfg.TargetParameters {
		if p != Gemma3ProjectorPEFTParameter && p != "multi_modal_projector.mm_input_projection_weight" {
			return opts, fmt.Errorf("%s: target_parameters[%d]: whet adapts no parameter %q (only Gemma 3's %s)", cfgPath, i, p, Gemma3ProjectorPEFTParameter)
		}
	}
	file := filepath.Join(dir, "adapter_model.safetensors")
	f, err := safetensors.Open(file)
	if err != nil {
		return opts, err
	}
	defer f.Close()
	// r sizes the adapters AddLoRA allocates: check it against the file
	// first, so that a wrong r is an error, not an allocation of r rows.
	for _, name := range f.Names() {
		if info, _ := f.Info(name); strings.Contains(name, ".lora_A.") && len(info.Shape) == 2 && info.Shape[0] != cfg.R {
			return opts, fmt.Errorf("%s: r is %d, but %s has rank %d (tensor %s)", cfgPath, cfg.R, file, info.Shape[0], name)
		}
	}
	// An adapter of the projector alone has no target_modules (an empty
	// list would mean every linear to AddLoRA).
	if len(cfg.TargetModules) > 0 || len(cfg.TargetParameters) == 0 {
		if err := m.AddLoRA(opts); err != nil {
			return opts, fmt.Errorf("%s: %w", cfgPath, err)
		}
	}
	hasProj, err := m.loadGemma3ProjectorAdapter(f, file, opts)
	if err != nil {
		return opts, err
	}
	if !hasProj {
		// whet train's own copy of the projector adapter (ProjectorLoRAFile).
		if hasProj, err = m.loadWhetProjectorLoRA(dir, opts); err != nil {
			return opts, err
		}
	}
	if err := m.loadVisionLayersLoRA(dir, opts); err != nil {
		return opts, err
	}
	if len(cfg.TargetParameters) > 0 && !hasProj && m.Gemma3Vision != nil {
		return opts, fmt.Errorf("%s: missing tensor %s (target_parameters names the projector)", file, Gemma3ProjectorPEFTKey("A"))
	}
	aliases := familyAliases(m)
	for _, lin := range m.Linears() {
		if lin.LoRA == nil {
			continue
		}
		for _, p := range []*Param{lin.LoRA.A, lin.LoRA.B} {
			name, info, ok := peftTensor(f, p.Name, aliases)
			if !ok {
				return opts, fmt.Errorf("%s: missing tensor %s", file, name)
			}
			if !slices.Equal(info.Shape, p.Shape) {
				return opts, fmt.Errorf("%s: tensor %s has shape %v, want %v", file, name, info.Shape, p.Shape)
			}
			v, err := f.Float32(name)
			if err != nil {
				return opts, err
			}
			if err := m.B.Upload(p.Master, v); err != nil {
				return opts, err
			}
		}
	}
	return opts, m.SyncFromMasters()
}

// familyAliases is m's family's other spellings of "model." (a multimodal
// Gemma 3 keeps its text model under model.language_model.).
func familyAliases(m *Model) []string {
	if fam := m.Family(); fam != nil {
		return fam.WeightAliases
	}
	return nil
}

// peftTensor finds the adapter tensor whet calls name
// (model.layers.N....lora_A.weight) in f: under PEFT's prefix, spelt as
// whet spells it or as the family's checkpoints do (PEFT names a module
// by its path in the whole model, base_model.model.model.language_model.
// layers.N... in Gemma3ForConditionalGeneration), with or without the
// adapter name "default" that some tools keep. It returns the first
// spelling tried when none is there.
func peftTensor(f *safetensors.File, name string, aliases []string) (string, safetensors.TensorInfo, bool) {
	return peftTensorOf(f, spellings(name, aliases))
}

// peftTensorOf looks in f for the first of names (a tensor's spellings, in
// order) that PEFT's prefix, with or without the adapter name "default",
// finds; it returns the first key tried when none is there.
func peftTensorOf(f *safetensors.File, names []string) (string, safetensors.TensorInfo, bool) {
	var first string
	for _, n := range names {
		for _, key := range []string{peftPrefix + n, peftPrefix + strings.Replace(n, ".weight", ".default.weight", 1)} {
			if first == "" {
				first = key
			}
			if info, ok := f.Info(key); ok {
				return key, info, true
			}
		}
	}
	return first, safetensors.TensorInfo{}, false
}

// peftTargets reads adapter_config.json's target_modules: a list of module
// names, or a pattern that PEFT matches whole against each module's path,
// which becomes the list of m's linears it matches under any of the
// family's spellings (a pattern that matched none would otherwise mean
// "all").
func peftTargets(raw json.RawMessage, m *Model) ([]string, error) {
	var pattern string
	if len(raw) == 0 || raw[0] != '"' {
		var list []string
		if len(raw) > 0 && string(raw) != "null" {
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, fmt.Errorf("want a list of module names or a pattern: %w", err)
			}
		}
		return list, nil
	}
	if err := json.Unmarshal(raw, &pattern); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	aliases := familyAliases(m)
	seen := map[string]bool{}
	var out []string
	for _, lin := range m.Linears() {
		if lin.Short == "lm_head" || seen[lin.Short] {
			continue
		}
		for _, n := range spellings(lin.Module, aliases) {
			if re.MatchString(n) {
				seen[lin.Short] = true
				out = append(out, lin.Short+"_proj")
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pattern %q matches none of the model's linear modules (such as model.layers.0.self_attn.q_proj)", pattern)
	}
	return out, nil
}

// SaveModel writes every base weight of m as bf16 safetensors into dir
// (sharded past 4 GiB), with config.json and the tokenizer and generation
// files copied from the source folder.
func SaveModel(dir string, m *Model, srcDir string) error {
	if err := os.MkdirAll(dir, atomicfile.DirPerm); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	var tensors []safetensors.Tensor
	for _, p := range m.Params() {
		if isLoRAName(p.Name) {
			continue
		}
		v, err := m.WeightValues(p)
		if err != nil {
			return fmt.Errorf("save model: %w", err)
		}
		tensors = append(tensors, safetensors.BF16Tensor(p.Name, p.Shape, v))
	}
	if err := safetensors.WriteSharded(dir, "model", tensors, 4<<30, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	for _, name := range []string{"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		if err := copyFile(filepath.Join(srcDir, name), filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("save model: copy %s: %w", name, err)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	return writeFileAtomic(dst, data)
}
