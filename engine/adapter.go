package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
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
			v := make([]float32, numel(p.Shape))
			if err := m.B.Download(p.Master, v); err != nil {
				return fmt.Errorf("adapter: download %s: %w", p.Name, err)
			}
			tensors = append(tensors, safetensors.F32Tensor(peftPrefix+p.Name, p.Shape, v))
		}
	}
	if len(tensors) == 0 {
		return fmt.Errorf("adapter: the model has no LoRA adapters")
	}
	var names []string
	for t := range targets {
		names = append(names, t)
	}
	sort.Strings(names)
	cfg := PEFTConfig{PEFTType: "LORA", TaskType: "CAUSAL_LM", BaseModel: baseModel, R: opts.Rank,
		LoRAAlpha: opts.Alpha, LoRADropout: opts.Dropout, TargetModules: names, UseRSLoRA: opts.RSLoRA,
		Bias: "none", InferenceMode: true, InitLoRAWeights: true}
	if err := safetensors.Write(filepath.Join(dir, "adapter_model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	js, _ := json.MarshalIndent(cfg, "", "  ")
	return writeFileAtomic(filepath.Join(dir, "adapter_config.json"), js)
}

// LoadAdapter reads a PEFT adapter folder and attaches it to m (which must
// have no adapters yet). Errors name the file and the tensor.
func LoadAdapter(dir string, m *Model) (LoRAOptions, error) {
	var cfg PEFTConfig
	cfgPath := filepath.Join(dir, "adapter_config.json")
	js, err := os.ReadFile(cfgPath)
	if err != nil {
		return LoRAOptions{}, fmt.Errorf("adapter: %w", err)
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		return LoRAOptions{}, fmt.Errorf("%s: %w", cfgPath, err)
	}
	if cfg.PEFTType != "" && cfg.PEFTType != "LORA" {
		return LoRAOptions{}, fmt.Errorf("%s: peft_type %q is not LORA", cfgPath, cfg.PEFTType)
	}
	if cfg.FanInFanOut {
		return LoRAOptions{}, fmt.Errorf("%s: fan_in_fan_out adapters are not supported", cfgPath)
	}
	opts := LoRAOptions{Rank: cfg.R, Alpha: cfg.LoRAAlpha, Targets: cfg.TargetModules, RSLoRA: cfg.UseRSLoRA}
	if err := m.AddLoRA(opts); err != nil {
		return opts, fmt.Errorf("%s: %w", cfgPath, err)
	}
	file := filepath.Join(dir, "adapter_model.safetensors")
	f, err := safetensors.Open(file)
	if err != nil {
		return opts, err
	}
	defer f.Close()
	for _, lin := range m.Linears() {
		if lin.LoRA == nil {
			continue
		}
		for _, p := range []*Param{lin.LoRA.A, lin.LoRA.B} {
			name := peftPrefix + p.Name
			info, ok := f.Info(name)
			if !ok {
				// Some tools save with the adapter name kept.
				alt := strings.Replace(name, ".weight", ".default.weight", 1)
				if info, ok = f.Info(alt); ok {
					name = alt
				}
			}
			if !ok {
				return opts, fmt.Errorf("%s: missing tensor %s", file, name)
			}
			if !sameShape(info.Shape, p.Shape) {
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
