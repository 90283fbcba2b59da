package export

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"whet/engine"
	"whet/engine/hub"
	"whet/engine/safetensors"
)

// PEFT saves a LoRA adapter as adapter_model.safetensors with keys
// base_model.model.<module path>.lora_A.weight ([r, in]) and .lora_B.weight
// ([out, r]) — the adapter name ("default") is dropped on save — and
// adapter_config.json with peft_type LORA, r, lora_alpha, target_modules,
// use_rslora and base_model_name_or_path (where the base is loaded from).
var peftKey = regexp.MustCompile(`^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(qkv|gate_up|q|k|v|o|gate|up|down)_proj\.lora_(A|B)\.weight$`)

// peftBlock is the submodule a linear lives in.
func peftBlock(short string) string {
	switch short {
	case "gate", "up", "down", "gate_up":
		return "mlp"
	}
	return "self_attn"
}

// exportPEFT checks the run's adapter against its base model and writes a
// copy that PEFT loads: base_model_name_or_path is the Hub id when the
// base came from the Hub (hubModel) and the absolute folder otherwise, and
// the tokenizer files (with the chat template it trained with: template
// is --template, else the run's data.template) lie beside it.
func exportPEFT(ctx context.Context, run *RunFiles, dir, template string, progress Progress) error {
	if run.AdapterDir == "" {
		return fmt.Errorf("export: %s is a full fine-tuning run: it has no adapter (export merged or gguf instead)", run.Dir)
	}
	if _, err := os.Stat(filepath.Join(run.AdapterDir, engine.VisionLayersLoRAFile)); err == nil || run.Cfg.LoRA.VisionLayers {
		return fmt.Errorf("export: %s: lora.vision_layers: a PEFT adapter with the vision tower's adapters is not written yet (export merged or gguf, which merge them); they are in %s", run.Dir, filepath.Join(run.AdapterDir, engine.VisionLayersLoRAFile))
	}
	chat, err := runChatTemplate(run, template)
	if err != nil {
		return err
	}
	if chat.Custom() {
		progress(0, 0, chatTemplateNotice(chat, "the tokenizer files"))
	}
	progress(0, 3, "checking the adapter against the base model")
	cfgPath := filepath.Join(run.AdapterDir, "adapter_config.json")
	cfg, err := readJSONMap(cfgPath)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	base, err := engine.LoadModelConfig(run.ModelDir)
	if err != nil {
		return fmt.Errorf("export: base model: %w", err)
	}
	r, targets, err := checkPEFTConfig(cfgPath, cfg)
	if err != nil {
		return err
	}
	weights := filepath.Join(run.AdapterDir, "adapter_model.safetensors")
	if err := CheckPEFTWeights(weights, base, r, targets); err != nil {
		return err
	}
	// whet train also keeps the projector adapter in its own layout
	// (engine.ProjectorLoRAFile); an adapter without PEFT's projector keys
	// gets them from there.
	extra, err := projectorFallback(weights, run.AdapterDir, cfg)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := checkGemma3ProjectorWeights(weights, run.ModelDir, base, r, cfg, extra); err != nil {
		return err
	}
	progress(1, 3, "adapter checked against the base model")
	if ref, ok := hubModel(run.Cfg.Model); ok {
		// From the Hub: the id loads on any machine (PEFT, vLLM), and
		// PEFT's revision pins the weights the adapter was trained on.
		cfg["base_model_name_or_path"] = ref.Repo
		if ref.Revision != hub.DefaultRevision {
			cfg["revision"] = ref.Revision
		}
	} else if abs, err := filepath.Abs(run.ModelDir); err == nil {
		if st, err := os.Stat(run.ModelDir); err == nil && st.IsDir() {
			cfg["base_model_name_or_path"] = abs
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("export cancelled: %w", err)
	}
	if prefix, ok := peftTextModule[base.ModelType]; ok {
		// A multimodal checkpoint: PEFT names the text model's modules
		// by their path inside the whole model, and target_modules must
		// not reach the vision tower's own q_proj, k_proj, ...
		if err := renamePEFTModules(weights, filepath.Join(dir, adapterWeights), prefix, extra); err != nil {
			return err
		}
		var mods []string
		list, _ := cfg["target_modules"].([]any)
		for _, m := range list {
			mods = append(mods, regexp.QuoteMeta(m.(string)))
		}
		sort.Strings(mods)
		if len(mods) > 0 {
			cfg["target_modules"] = `.*` + regexp.QuoteMeta(strings.TrimSuffix(prefix, ".")) + `\.layers\.\d+\.(self_attn|mlp)\.(` + strings.Join(mods, "|") + `)`
		}
	} else {
		if len(extra) > 0 {
			return fmt.Errorf("export: %s: %s adapts a Gemma 3 projector, but the base model is %s", run.AdapterDir, engine.ProjectorLoRAFile, base.ModelType)
		}
		data, err := os.ReadFile(weights)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := writeFile(filepath.Join(dir, adapterWeights), data); err != nil {
			return err
		}
	}
	if err := writeJSON(filepath.Join(dir, adapterConfigFile), cfg); err != nil {
		return err
	}
	progress(2, 3, "adapter_model.safetensors, adapter_config.json")
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("export cancelled: %w", err)
	}
	if err := copyTokenizerFiles(run.ModelDir, dir, chat); err != nil {
		return err
	}
	if err := copyPreprocessorConfig(run.ModelDir, dir); err != nil {
		return err
	}
	progress(3, 3, "tokenizer files")
	return nil
}

// peftTextModule is, for a multimodal model_type whose text model whet
// trains, the module path of that text model in transformers 5 (and 4.52
// on): PEFT's keys are base_model.model.<path>layers.N... there
// (Gemma3ForConditionalGeneration: model.language_model.).
var peftTextModule = map[string]string{"gemma3": "model.language_model."}

// renamePEFTModules copies the adapter file src to dst with each
// base_model.model.model.X key renamed base_model.model.<prefix>X.
func renamePEFTModules(src, dst, prefix string, extra []safetensors.Tensor) error {
	f, err := safetensors.Open(src)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		raw, err := f.Raw(name)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if engine.IsGemma3ProjectorPEFTKey(name) {
			// Already PEFT's name in Gemma3ForConditionalGeneration.
			ts = append(ts, safetensors.Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
			continue
		}
		rest, ok := strings.CutPrefix(name, "base_model.model.model.")
		if !ok {
			return fmt.Errorf("export: %s: tensor %s is not under base_model.model.model.", src, name)
		}
		ts = append(ts, safetensors.Tensor{Name: "base_model.model." + prefix + rest, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	ts = append(ts, extra...)
	if err := safetensors.Write(dst, ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// checkPEFTConfig checks the fields PEFT and vLLM read and returns r and
// the target module names.
func checkPEFTConfig(path string, cfg map[string]any) (int, map[string]bool, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("export: %s: %s: %s", path, field, fmt.Sprintf(format, args...))
	}
	if t, _ := cfg["peft_type"].(string); t != "LORA" {
		return 0, nil, bad("peft_type", "%v, want LORA", cfg["peft_type"])
	}
	num := func(field string) (float64, error) {
		n, ok := cfg[field].(json.Number)
		if !ok {
			return 0, bad(field, "missing or not a number")
		}
		return n.Float64()
	}
	r, err := num("r")
	if err != nil {
		return 0, nil, err
	}
	if r < 1 || r != float64(int(r)) {
		return 0, nil, bad("r", "%v is not a positive integer", r)
	}
	if _, err := num("lora_alpha"); err != nil {
		return 0, nil, err
	}
	if b, ok := cfg["base_model_name_or_path"].(string); !ok || b == "" {
		return 0, nil, bad("base_model_name_or_path", "missing (PEFT loads the base model from it)")
	}
	if v, ok := cfg["use_rslora"]; ok {
		if _, isBool := v.(bool); !isBool {
			return 0, nil, bad("use_rslora", "%v is not a boolean", v)
		}
	}
	list, ok := cfg["target_modules"].([]any)
	params, _ := cfg["target_parameters"].([]any)
	for i, p := range params {
		if p != engine.Gemma3ProjectorPEFTParameter {
			return 0, nil, bad(fmt.Sprintf("target_parameters[%d]", i), "%v is not %s, the one parameter whet adapts", p, engine.Gemma3ProjectorPEFTParameter)
		}
	}
	if (!ok || len(list) == 0) && len(params) == 0 {
		return 0, nil, bad("target_modules", "missing or empty")
	}
	targets := map[string]bool{}
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			return 0, nil, bad(fmt.Sprintf("target_modules[%d]", i), "%v is not a string", v)
		}
		short := strings.TrimSuffix(s, "_proj")
		if _, err := engine.NormalizeTargets([]string{short}); err != nil {
			return 0, nil, bad(fmt.Sprintf("target_modules[%d]", i), "%v", err)
		}
		targets[short] = true
	}
	return int(r), targets, nil
}

// CheckPEFTWeights checks every key of an adapter_model.safetensors against
// PEFT's naming and the base model's shapes: each targeted linear of each
// layer has lora_A [r, in] and lora_B [out, r], and nothing else is there.
func CheckPEFTWeights(path string, base *engine.ModelConfig, r int, targets map[string]bool) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	D, I, Q, KV := base.HiddenSize, base.IntermediateSize, base.QDim(), base.KVDim()
	dims := map[string][2]int{"q": {Q, D}, "k": {KV, D}, "v": {KV, D}, "o": {D, Q}, "gate": {I, D}, "up": {I, D}, "down": {D, I},
		"qkv": {Q + 2*KV, D}, "gate_up": {2 * I, D}}
	if fam := engine.FamilyOf(base.ModelType); fam != nil {
		has := fam.LoRATargets()
		for short := range targets {
			if !slices.Contains(has, short) {
				return fmt.Errorf("export: %s: target_modules: %s has no %s_proj module (its linears: %s_proj)", path, base.ModelType, short, strings.Join(has, "_proj, "))
			}
		}
	}
	seen := map[string]bool{}
	for _, name := range f.Names() {
		if base.ModelType == "gemma3" && engine.IsGemma3ProjectorPEFTKey(name) {
			continue // checkGemma3ProjectorWeights
		}
		m := peftKey.FindStringSubmatch(name)
		if m == nil {
			return fmt.Errorf("export: %s: tensor %s does not follow PEFT's naming (base_model.model.model.layers.N.<self_attn|mlp>.<module>.lora_A|lora_B.weight)", path, name)
		}
		layer, _ := strconv.Atoi(m[1])
		if layer >= base.NumLayers {
			return fmt.Errorf("export: %s: tensor %s: the base model has %d layers", path, name, base.NumLayers)
		}
		short := m[3]
		if wantBlock := peftBlock(short); m[2] != wantBlock {
			return fmt.Errorf("export: %s: tensor %s: %s_proj lives under %s", path, name, short, wantBlock)
		}
		if !targets[short] {
			return fmt.Errorf("export: %s: tensor %s: %s_proj is not in adapter_config.json's target_modules", path, name, short)
		}
		info, _ := f.Info(name)
		out, in := dims[short][0], dims[short][1]
		want := []int{r, in}
		if m[4] == "B" {
			want = []int{out, r}
		}
		if len(info.Shape) != 2 || info.Shape[0] != want[0] || info.Shape[1] != want[1] {
			return fmt.Errorf("export: %s: tensor %s has shape %v, want %v (r=%d)", path, name, info.Shape, want, r)
		}
		seen[name] = true
	}
	var missing []string
	for l := 0; l < base.NumLayers; l++ {
		for short := range targets {
			block := peftBlock(short)
			for _, ab := range []string{"A", "B"} {
				name := fmt.Sprintf("base_model.model.model.layers.%d.%s.%s_proj.lora_%s.weight", l, block, short, ab)
				if !seen[name] {
					missing = append(missing, name)
				}
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("export: %s: %d adapter tensors missing, first %s", path, len(missing), missing[0])
	}
	return nil
}

// checkGemma3ProjectorWeights checks the Gemma 3 projector adapter an
// adapter file holds (engine/vision_adapter.go: lora_A [r, Dt], lora_B
// [Dv, r]) against the base model's config.json, and that it is there
// exactly when target_parameters names it.
func checkGemma3ProjectorWeights(path, modelDir string, base *engine.ModelConfig, r int, cfg map[string]any, extra []safetensors.Tensor) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	shapes := map[string][]int{}
	var keys []string
	for _, n := range f.Names() {
		if engine.IsGemma3ProjectorPEFTKey(n) {
			keys = append(keys, n)
			info, _ := f.Info(n)
			shapes[n] = info.Shape
		}
	}
	for _, t := range extra {
		keys = append(keys, t.Name)
		shapes[t.Name] = t.Shape
	}
	params, _ := cfg["target_parameters"].([]any)
	if len(keys) == 0 {
		if len(params) > 0 {
			return fmt.Errorf("export: %s: target_parameters names %v, but the adapter has no tensor %s", path, params[0], engine.Gemma3ProjectorPEFTKey("A"))
		}
		return nil
	}
	if base.ModelType != "gemma3" {
		return fmt.Errorf("export: %s: tensor %s adapts a Gemma 3 vision projector, but the base model is %s", path, keys[0], base.ModelType)
	}
	if len(params) == 0 {
		return fmt.Errorf("export: %s: tensor %s adapts the vision projector, but adapter_config.json's target_parameters does not name %s", path, keys[0], engine.Gemma3ProjectorPEFTParameter)
	}
	data, err := os.ReadFile(filepath.Join(modelDir, "config.json"))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	vc, err := engine.ParseGemma3VisionConfig(data, base.HiddenSize)
	if err != nil {
		return fmt.Errorf("export: %s: %w", modelDir, err)
	}
	want := map[string][]int{engine.Gemma3ProjectorPEFTKey("A"): {r, vc.TextHidden}, engine.Gemma3ProjectorPEFTKey("B"): {vc.Hidden, r}}
	for k, shape := range want {
		got, ok := shapes[k]
		if !ok {
			return fmt.Errorf("export: %s: missing tensor %s", path, k)
		}
		if !slices.Equal(got, shape) {
			return fmt.Errorf("export: %s: tensor %s has shape %v, want %v (r=%d)", path, k, got, shape, r)
		}
	}
	if len(keys) != 2 {
		return fmt.Errorf("export: %s: %d projector adapter tensors (%s), want lora_A and lora_B under %s", path, len(keys), strings.Join(keys, ", "), engine.Gemma3ProjectorPEFTKey("A"))
	}
	return nil
}

// projectorFallback returns the projector adapter of the adapter folder's
// engine.ProjectorLoRAFile in PEFT's layout when the adapter file itself has
// no PEFT projector keys, and then names it in cfg (target_parameters,
// lora_dropout 0 as PEFT's ParamWrapper wants).
func projectorFallback(weights, adapterDir string, cfg map[string]any) ([]safetensors.Tensor, error) {
	f, err := safetensors.Open(weights)
	if err != nil {
		return nil, err
	}
	for _, n := range f.Names() {
		if engine.IsGemma3ProjectorPEFTKey(n) {
			f.Close()
			return nil, nil
		}
	}
	f.Close()
	ts, ok, err := engine.Gemma3ProjectorLoRAAsPEFT(adapterDir)
	if err != nil || !ok {
		return nil, err
	}
	cfg["target_parameters"] = []any{engine.Gemma3ProjectorPEFTParameter}
	cfg["lora_dropout"] = 0
	return ts, nil
}
