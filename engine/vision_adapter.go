package engine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"whet/engine/atomicfile"
	"whet/engine/safetensors"
)

// PEFT's names for the vision models' adapters (issue 24).
//
// Gemma3ForConditionalGeneration's projector matrix is not a linear module
// but a bare parameter (Gemma3MultiModalProjector.mm_input_projection_weight,
// [Dv, Dt], used as z @ W), which PEFT adapts through
// LoraConfig.target_parameters: its ParamWrapper wraps the projector module
// and treats the parameter as a linear of in_features = shape[1] = Dt and
// out_features = shape[0] = Dv, so it saves
//
//	base_model.model.model.multi_modal_projector.lora_A.weight  [r, Dt]
//	base_model.model.model.multi_modal_projector.lora_B.weight  [Dv, r]
//
// and adds scale·lora_B·lora_A ([Dv, Dt]) to the parameter. whet's adapter
// (f += s·x Aᵀ Bᵀ with A [r, Dv], B [Dt, r]) is the same update
// ΔW = s·Aᵀ Bᵀ, so PEFT's lora_A is whet's Bᵀ and PEFT's lora_B whet's Aᵀ.
// PEFT refuses lora_dropout on a ParamWrapper, so an adapter with the
// projector is saved with lora_dropout 0 (dropout is a training setting;
// the saved weights do not depend on it).
const (
	// Gemma3ProjectorPEFTParameter is target_parameters' entry.
	Gemma3ProjectorPEFTParameter = "model.multi_modal_projector.mm_input_projection_weight"
	gemma3ProjectorPEFTModule    = "model.multi_modal_projector"
)

// gemma3ProjectorPEFTKeys are the spellings of the projector adapter's
// lora_A key (transformers 5 and 4.52 on, then transformers 4's, where the
// projector sat at the top of Gemma3ForConditionalGeneration).
var gemma3ProjectorPEFTKeys = []string{peftPrefix + gemma3ProjectorPEFTModule + ".", peftPrefix + "multi_modal_projector."}

// Gemma3ProjectorPEFTKey is the key of the projector adapter's lora_A or
// lora_B ("A" or "B") as whet saves it.
func Gemma3ProjectorPEFTKey(ab string) string {
	return gemma3ProjectorPEFTKeys[0] + "lora_" + ab + ".weight"
}

// IsGemma3ProjectorPEFTKey reports whether an adapter key is the Gemma 3
// projector's (under either spelling, with or without the adapter name).
func IsGemma3ProjectorPEFTKey(key string) bool {
	for _, p := range gemma3ProjectorPEFTKeys {
		if rest, ok := strings.CutPrefix(key, p); ok {
			switch rest {
			case "lora_A.weight", "lora_B.weight", "lora_A.default.weight", "lora_B.default.weight":
				return true
			}
		}
	}
	return false
}

// transpose returns the [cols, rows] transpose of v ([rows, cols]).
func transpose(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}

// gemma3ProjectorAdapterTensors returns the projector adapter in PEFT's
// layout, or nil when there is none.
func (m *Model) gemma3ProjectorAdapterTensors() ([]safetensors.Tensor, *LoRA, error) {
	v := m.Gemma3Vision
	if v == nil || v.ProjLoRA == nil {
		return nil, nil, nil
	}
	lo := v.ProjLoRA
	r, Dv, Dt := lo.Rank, v.Cfg.Hidden, v.Cfg.TextHidden
	a := make([]float32, r*Dv)
	b := make([]float32, Dt*r)
	for _, t := range []struct {
		p   *Param
		dst []float32
	}{{lo.A, a}, {lo.B, b}} {
		src := t.p.W
		if t.p.Master != nil {
			src = t.p.Master
		}
		if err := m.B.Download(src, t.dst); err != nil {
			return nil, nil, fmt.Errorf("adapter: download %s: %w", t.p.Name, err)
		}
	}
	return []safetensors.Tensor{
		safetensors.F32Tensor(Gemma3ProjectorPEFTKey("A"), []int{r, Dt}, transpose(b, Dt, r)),
		safetensors.F32Tensor(Gemma3ProjectorPEFTKey("B"), []int{Dv, r}, transpose(a, r, Dv)),
	}, lo, nil
}

// tensorReader is what loadGemma3ProjectorAdapter reads: a safetensors
// file, or tensors converted in memory.
type tensorReader interface {
	Info(name string) (safetensors.TensorInfo, bool)
	Float32(name string) ([]float32, error)
}

// memTensors is a tensorReader over float32 tensors held in memory.
type memTensors map[string]safetensors.Tensor

func (m memTensors) Info(name string) (safetensors.TensorInfo, bool) {
	t, ok := m[name]
	return safetensors.TensorInfo{DType: t.DType, Shape: t.Shape}, ok
}

func (m memTensors) Float32(name string) ([]float32, error) {
	t, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %s", name)
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// Gemma3ProjectorLoRAAsPEFT reads the projector adapter that whet train
// also writes in whet's own layout (ProjectorLoRAFile in the adapter
// folder dir: A [r, Dv] and B [Dt, r] under
// multi_modal_projector.mm_input_projection.lora_A/B.weight) and returns it
// in PEFT's layout and names (lora_A = Bᵀ [r, Dt], lora_B = Aᵀ [Dv, r]);
// ok is false when the file is not there.
func Gemma3ProjectorLoRAAsPEFT(dir string) (ts []safetensors.Tensor, ok bool, err error) {
	path := filepath.Join(dir, ProjectorLoRAFile)
	f, err := safetensors.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	get := func(ab string) ([]float32, []int, error) {
		name := Gemma3ProjectorModule + ".lora_" + ab + ".weight"
		info, ok := f.Info(name)
		if !ok {
			return nil, nil, fmt.Errorf("%s: missing tensor %s", path, name)
		}
		if len(info.Shape) != 2 || info.Shape[0] <= 0 || info.Shape[1] <= 0 {
			return nil, nil, fmt.Errorf("%s: tensor %s has shape %v, want 2 dimensions", path, name, info.Shape)
		}
		v, err := f.Float32(name)
		return v, info.Shape, err
	}
	a, sa, err := get("A") // [r, Dv]
	if err != nil {
		return nil, false, err
	}
	b, sb, err := get("B") // [Dt, r]
	if err != nil {
		return nil, false, err
	}
	if sb[1] != sa[0] {
		return nil, false, fmt.Errorf("%s: lora_A %v and lora_B %v disagree on the rank", path, sa, sb)
	}
	r, Dv, Dt := sa[0], sa[1], sb[0]
	return []safetensors.Tensor{
		safetensors.F32Tensor(Gemma3ProjectorPEFTKey("A"), []int{r, Dt}, transpose(b, Dt, r)),
		safetensors.F32Tensor(Gemma3ProjectorPEFTKey("B"), []int{Dv, r}, transpose(a, r, Dv)),
	}, true, nil
}

// loadGemma3ProjectorAdapter attaches the projector adapter an adapter file
// holds (PEFT's layout), if it holds one and m has its vision tower; it
// reports whether it attached one.
func (m *Model) loadGemma3ProjectorAdapter(f tensorReader, file string, opts LoRAOptions) (bool, error) {
	find := func(ab string) (string, safetensors.TensorInfo, bool) {
		for _, p := range gemma3ProjectorPEFTKeys {
			for _, k := range []string{p + "lora_" + ab + ".weight", p + "lora_" + ab + ".default.weight"} {
				if info, ok := f.Info(k); ok {
					return k, info, true
				}
			}
		}
		return Gemma3ProjectorPEFTKey(ab), safetensors.TensorInfo{}, false
	}
	ka, ia, okA := find("A")
	kb, ib, okB := find("B")
	if !okA && !okB {
		return false, nil
	}
	if !okA || !okB {
		missing := ka
		if okA {
			missing = kb
		}
		return false, fmt.Errorf("%s: missing tensor %s (the projector adapter needs lora_A and lora_B)", file, missing)
	}
	v := m.Gemma3Vision
	if v == nil {
		// Without its tower the model sees no image, and the projector
		// only acts on images: the text model computes the same with or
		// without this adapter (whet chat without --vision, the text GGUF).
		return false, nil
	}
	Dv, Dt := v.Cfg.Hidden, v.Cfg.TextHidden
	if len(ia.Shape) != 2 || ia.Shape[1] != Dt || ia.Shape[0] <= 0 {
		return false, fmt.Errorf("%s: tensor %s has shape %v, want [r, %d] (PEFT's lora_A of mm_input_projection_weight [%d, %d])", file, ka, ia.Shape, Dt, Dv, Dt)
	}
	r := ia.Shape[0]
	if !slices.Equal(ib.Shape, []int{Dv, r}) {
		return false, fmt.Errorf("%s: tensor %s has shape %v, want [%d, %d]", file, kb, ib.Shape, Dv, r)
	}
	if opts.Rank != r {
		return false, fmt.Errorf("%s: tensor %s has rank %d, adapter_config.json's r is %d", file, ka, r, opts.Rank)
	}
	pa, err := f.Float32(ka)
	if err != nil {
		return false, err
	}
	pb, err := f.Float32(kb)
	if err != nil {
		return false, err
	}
	if err := m.AddGemma3ProjectorLoRA(opts); err != nil {
		return false, fmt.Errorf("%s: %w", file, err)
	}
	lo := v.ProjLoRA
	// whet's A [r, Dv] is PEFT's lora_B [Dv, r] transposed; whet's B [Dt, r] is lora_A [r, Dt] transposed.
	for _, t := range []struct {
		p *Param
		v []float32
	}{{lo.A, transpose(pb, Dv, r)}, {lo.B, transpose(pa, r, Dt)}} {
		if err := m.B.Upload(t.p.W, t.v); err != nil {
			return false, err
		}
		if t.p.Master != nil && t.p.Master != t.p.W {
			if err := m.B.Upload(t.p.Master, t.v); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// AdapterHasGemma3Projector reports whether the adapter folder dir adapts
// Gemma 3's vision projector (its adapter_model.safetensors holds the
// projector's PEFT keys), so a caller knows to load the vision tower.
func AdapterHasGemma3Projector(dir string) (bool, error) {
	f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, n := range f.Names() {
		if IsGemma3ProjectorPEFTKey(n) {
			return true, nil
		}
	}
	_, err = os.Stat(filepath.Join(dir, ProjectorLoRAFile))
	return err == nil, nil
}

// loadWhetProjectorLoRA attaches the projector adapter of dir's
// ProjectorLoRAFile (whet train's own layout), when m has its tower and
// the file is there.
func (m *Model) loadWhetProjectorLoRA(dir string, opts LoRAOptions) (bool, error) {
	if m.Gemma3Vision == nil {
		return false, nil
	}
	ts, ok, err := Gemma3ProjectorLoRAAsPEFT(dir)
	if err != nil || !ok {
		return false, err
	}
	mem := memTensors{}
	for _, t := range ts {
		mem[t.Name] = t
	}
	return m.loadGemma3ProjectorAdapter(mem, filepath.Join(dir, ProjectorLoRAFile), opts)
}

// Mllama (MllamaForConditionalGeneration) in transformers 5 (and 4.52 on):
// model.language_model.layers.N.{self_attn|cross_attn|mlp}.X_proj,
// model.multi_modal_projector (an nn.Linear), lm_head at the top; before,
// language_model.model.layers.N... and multi_modal_projector at the top.
// PEFT names the adapters by those paths.

// mllamaPEFTName is the transformers 5 module path of an Mllama linear
// whose whet (released) name is module.
func mllamaPEFTName(module string) string {
	if sp := mllamaSpellings(module); len(sp) > 1 {
		return sp[1]
	}
	return module
}

// MllamaPEFTTargetPattern is the target_modules pattern of an Mllama
// adapter on the language model's linears short (q, k, ...; their _proj
// module names) and, with projector, on multi_modal_projector: it reaches
// neither the vision tower's own q_proj/k_proj/v_proj/o_proj nor lm_head.
func MllamaPEFTTargetPattern(short []string, projector bool) string {
	var alts []string
	if len(short) > 0 {
		mods := make([]string, len(short))
		for i, s := range short {
			mods[i] = regexp.QuoteMeta(s + "_proj")
		}
		sort.Strings(mods)
		alts = append(alts, `.*language_model(\.model)?\.layers\.\d+\.(self_attn|cross_attn|mlp)\.(`+strings.Join(mods, "|")+`)`)
	}
	if projector {
		alts = append(alts, `(.*\.)?multi_modal_projector`)
	}
	return strings.Join(alts, "|")
}

// SaveMllamaAdapter writes m's adapters as a PEFT adapter folder with
// transformers 5's module names (base_model.model.model.language_model.
// layers.N..., base_model.model.model.multi_modal_projector) and
// target_modules as a pattern (MllamaPEFTTargetPattern).
func SaveMllamaAdapter(dir string, m *MllamaModel, o MllamaLoRA, baseModel string) error {
	var tensors []safetensors.Tensor
	short := map[string]bool{}
	projector := false
	rank := 0
	for _, lin := range m.loraLinears() {
		if lin.LoRA == nil {
			continue
		}
		if rank == 0 {
			rank = lin.LoRA.Rank
		} else if lin.LoRA.Rank != rank {
			return fmt.Errorf("adapter: %s has rank %d, the others %d (PEFT's adapter_config.json holds one r)", lin.Module, lin.LoRA.Rank, rank)
		}
		if lin == m.Projector {
			projector = true
		} else {
			short[lin.Short] = true
		}
		for _, p := range []*Param{lin.LoRA.A, lin.LoRA.B} {
			v, err := m.WeightValues(p) // the float32 master, also in a bf16 model
			if err != nil {
				return fmt.Errorf("adapter: %w", err)
			}
			tensors = append(tensors, safetensors.F32Tensor(peftPrefix+mllamaPEFTName(p.Name), p.Shape, v))
		}
	}
	if len(tensors) == 0 {
		return fmt.Errorf("adapter: the Mllama model has no LoRA adapters")
	}
	if o.Rank != rank {
		return fmt.Errorf("adapter: the adapters have rank %d, the options say %d", rank, o.Rank)
	}
	cfg := mllamaPEFTConfig(MllamaLoRA{Rank: o.Rank, Alpha: o.Alpha, Targets: slices.Sorted(maps.Keys(short)), Projector: projector}, baseModel)
	if err := os.MkdirAll(dir, atomicfile.DirPerm); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	return writePEFTFolder(dir, tensors, cfg)
}

// LoadMllamaAdapter reads a PEFT adapter folder onto m (which must have no
// adapters yet): keys under transformers 5's or 4's module names (with or
// without the adapter name "default"), target_modules a list or a pattern.
// The linears adapted are those target_modules matches; each must have its
// lora_A and lora_B, and the file nothing else. Errors name the file and
// the tensor.
func LoadMllamaAdapter(dir string, m *MllamaModel) (MllamaLoRA, error) {
	plan, err := planMllamaAdapter(dir, m)
	if err != nil {
		return plan.opts, err
	}
	defer plan.f.Close()
	if err := m.addLoRAOn(plan.linears, plan.opts); err != nil {
		return plan.opts, fmt.Errorf("%s: %w", plan.cfgPath, err)
	}
	for _, lin := range plan.linears {
		for i, p := range []*Param{lin.LoRA.A, lin.LoRA.B} {
			v, err := plan.f.Float32(plan.keys[lin][i])
			if err != nil {
				return plan.opts, err
			}
			if err := m.SetValues(p, v); err != nil {
				return plan.opts, err
			}
		}
	}
	return plan.opts, nil
}

// ConvertMllamaAdapter checks the PEFT adapter folder src against an
// Mllama config (every tensor's name and shape, nothing allocated) and
// writes it into dst as SaveMllamaAdapter names it (transformers 5's
// module names, target_modules a pattern, base_model_name_or_path
// baseModel), the values unchanged.
func ConvertMllamaAdapter(src, dst string, cfg *MllamaConfig, baseModel string) (MllamaLoRA, error) {
	plan, err := planMllamaAdapter(src, layoutMllama(*cfg, MllamaOptions{}))
	if err != nil {
		return plan.opts, err
	}
	defer plan.f.Close()
	var tensors []safetensors.Tensor
	for _, lin := range plan.linears {
		for i, ab := range []string{"A", "B"} {
			k := plan.keys[lin][i]
			info, _ := plan.f.Info(k)
			raw, err := plan.f.Raw(k)
			if err != nil {
				return plan.opts, err
			}
			tensors = append(tensors, safetensors.Tensor{Name: peftPrefix + mllamaPEFTName(lin.Module+".lora_"+ab+".weight"),
				DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
		}
	}
	if err := os.MkdirAll(dst, atomicfile.DirPerm); err != nil {
		return plan.opts, fmt.Errorf("adapter: %w", err)
	}
	if err := safetensors.Write(filepath.Join(dst, "adapter_model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return plan.opts, fmt.Errorf("adapter: %w", err)
	}
	js, _ := json.MarshalIndent(mllamaPEFTConfig(plan.opts, baseModel), "", "  ")
	return plan.opts, writeFileAtomic(filepath.Join(dst, "adapter_config.json"), js)
}

// mllamaPEFTConfig is adapter_config.json for o.
func mllamaPEFTConfig(o MllamaLoRA, baseModel string) map[string]any {
	return map[string]any{"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": baseModel,
		"r": o.Rank, "lora_alpha": o.Alpha, "lora_dropout": 0.0, "target_modules": MllamaPEFTTargetPattern(o.Targets, o.Projector),
		"use_rslora": false, "bias": "none", "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true}
}

// mllamaAdapterPlan is what an adapter folder adapts: the options, the
// linears and, per linear, the keys of its lora_A and lora_B in the file.
type mllamaAdapterPlan struct {
	opts    MllamaLoRA
	cfgPath string
	f       *safetensors.File
	linears []*Linear
	keys    map[*Linear][2]string
}

// planMllamaAdapter reads and checks an adapter folder against m's layout
// (m's weights need not be allocated). On success the caller closes plan.f.
func planMllamaAdapter(dir string, m *MllamaModel) (mllamaAdapterPlan, error) {
	plan := mllamaAdapterPlan{cfgPath: filepath.Join(dir, "adapter_config.json"), keys: map[*Linear][2]string{}}
	js, err := os.ReadFile(plan.cfgPath)
	if err != nil {
		return plan, fmt.Errorf("adapter: %w", err)
	}
	o, match, err := ParseMllamaAdapterConfig(plan.cfgPath, js)
	plan.opts = o
	if err != nil {
		return plan, err
	}
	file := filepath.Join(dir, "adapter_model.safetensors")
	f, err := safetensors.Open(file)
	if err != nil {
		return plan, err
	}
	find := func(name string) (string, safetensors.TensorInfo, bool) {
		return peftTensorOf(f, mllamaSpellings(name))
	}
	fail := func(err error) (mllamaAdapterPlan, error) {
		f.Close()
		return plan, err
	}
	shorts := map[string]bool{}
	used := map[string]bool{}
	for _, lin := range m.loraLinears() {
		if !slices.ContainsFunc(mllamaSpellings(lin.Module), match) {
			continue
		}
		var keys [2]string
		for i, ab := range []string{"A", "B"} {
			k, info, ok := find(lin.Module + ".lora_" + ab + ".weight")
			if !ok {
				return fail(fmt.Errorf("%s: missing tensor %s (target_modules names %s)", file, k, mllamaPEFTName(lin.Module)))
			}
			want := []int{o.Rank, lin.In}
			if ab == "B" {
				want = []int{lin.Out, o.Rank}
			}
			if !slices.Equal(info.Shape, want) {
				return fail(fmt.Errorf("%s: tensor %s has shape %v, want %v (r=%d)", file, k, info.Shape, want, o.Rank))
			}
			keys[i] = k
			used[k] = true
		}
		plan.keys[lin] = keys
		plan.linears = append(plan.linears, lin)
		if lin == m.Projector {
			plan.opts.Projector = true
		} else {
			shorts[lin.Short] = true
		}
	}
	if len(plan.linears) == 0 {
		return fail(fmt.Errorf("%s: target_modules matches none of the Mllama model's adaptable linears (such as model.language_model.layers.0.self_attn.q_proj, model.multi_modal_projector)", plan.cfgPath))
	}
	for _, n := range f.Names() {
		if !used[n] {
			return fail(fmt.Errorf("%s: tensor %s is not an adapter of a module target_modules names", file, n))
		}
	}
	for s := range shorts {
		plan.opts.Targets = append(plan.opts.Targets, s)
	}
	sort.Strings(plan.opts.Targets)
	plan.f = f
	return plan, nil
}

// ParseMllamaAdapterConfig reads an Mllama adapter_config.json: r,
// lora_alpha, target_modules (a list of module names, matched as PEFT
// matches them, by the last part of the module path or the whole path, or
// a pattern PEFT matches whole); it returns the options (Targets left
// empty) and the module matcher.
func ParseMllamaAdapterConfig(path string, js []byte) (MllamaLoRA, func(string) bool, error) {
	var c struct {
		PEFTType      string          `json:"peft_type"`
		R             json.Number     `json:"r"`
		Alpha         json.Number     `json:"lora_alpha"`
		TargetModules json.RawMessage `json:"target_modules"`
		UseRSLoRA     bool            `json:"use_rslora"`
		FanInFanOut   bool            `json:"fan_in_fan_out"`
		UseDoRA       bool            `json:"use_dora"`
		RankPattern   map[string]any  `json:"rank_pattern"`
		AlphaPattern  map[string]any  `json:"alpha_pattern"`
		Bias          string          `json:"bias"`
		LoRABias      bool            `json:"lora_bias"`
		ModulesToSave json.RawMessage `json:"modules_to_save"`
		Layers        json.RawMessage `json:"layers_to_transform"`
	}
	if err := json.Unmarshal(js, &c); err != nil {
		return MllamaLoRA{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: field %s: %s", path, field, fmt.Sprintf(format, args...))
	}
	if c.PEFTType != "" && c.PEFTType != "LORA" {
		return MllamaLoRA{}, nil, bad("peft_type", "%q is not LORA", c.PEFTType)
	}
	for _, f := range []struct {
		name string
		on   bool
	}{{"use_rslora", c.UseRSLoRA}, {"fan_in_fan_out", c.FanInFanOut}, {"use_dora", c.UseDoRA},
		{"rank_pattern", len(c.RankPattern) > 0}, {"alpha_pattern", len(c.AlphaPattern) > 0},
		{"bias", c.Bias != "" && c.Bias != "none"}, {"lora_bias", c.LoRABias},
		{"modules_to_save", given(c.ModulesToSave)}, {"layers_to_transform", given(c.Layers)}} {
		if f.on {
			return MllamaLoRA{}, nil, bad(f.name, "is set: whet's Mllama adapters do not support it")
		}
	}
	r, err := c.R.Int64()
	if err != nil || r <= 0 || r > 1<<16 {
		return MllamaLoRA{}, nil, bad("r", "%q is not a positive integer", c.R.String())
	}
	alpha, err := c.Alpha.Float64()
	if err != nil {
		return MllamaLoRA{}, nil, bad("lora_alpha", "%q is not a number", c.Alpha.String())
	}
	o := MllamaLoRA{Rank: int(r), Alpha: float32(alpha)}
	raw := c.TargetModules
	if len(raw) > 0 && raw[0] == '"' {
		var pattern string
		if err := json.Unmarshal(raw, &pattern); err != nil {
			return o, nil, bad("target_modules", "%v", err)
		}
		re, err := regexp.Compile(`^(?:` + pattern + `)$`)
		if err != nil {
			return o, nil, bad("target_modules", "pattern %q: %v", pattern, err)
		}
		return o, re.MatchString, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		return o, nil, bad("target_modules", "want a non-empty list of module names or a pattern")
	}
	return o, func(module string) bool {
		// PEFT: the whole path, or its last part(s) after a dot. A bare
		// q_proj would also reach the vision tower, which whet keeps frozen:
		// only language-model and projector modules are asked about here.
		for _, t := range list {
			if module == t || strings.HasSuffix(module, "."+t) {
				return true
			}
		}
		return false
	}, nil
}

// given reports whether a JSON field holds something: not absent, null,
// an empty list or an empty string.
func given(raw json.RawMessage) bool {
	switch strings.TrimSpace(string(raw)) {
	case "", "null", "[]", `""`:
		return false
	}
	return true
}

// addLoRAOn puts zero adapters (scale Alpha/Rank) on the given linears.
func (m *MllamaModel) addLoRAOn(lins []*Linear, o MllamaLoRA) error {
	for _, lin := range lins {
		if lin.LoRA != nil {
			return fmt.Errorf("%s already has a LoRA adapter", lin.Module)
		}
	}
	for _, lin := range lins {
		if err := m.addAdapter(lin, o); err != nil {
			return err
		}
	}
	return nil
}

// MllamaWeight is one base tensor of an Mllama model for export: its
// released name, PyTorch shape and float32 values with any adapter merged
// (W' = W + s·B·A for a linear).
type MllamaWeight struct {
	Name  string
	Shape []int
	Param *Param
	Lin   *Linear
}

// MllamaWeights lists the base tensors in checkpoint order, each with the
// linear it belongs to (for merging its adapter).
func (m *MllamaModel) MllamaWeights() []MllamaWeight {
	linOf := map[*Param]*Linear{}
	for _, lin := range m.loraLinears() {
		linOf[lin.W] = lin
	}
	var out []MllamaWeight
	for _, p := range m.params {
		out = append(out, MllamaWeight{Name: p.Name, Shape: append([]int(nil), p.Shape...), Param: p, Lin: linOf[p]})
	}
	return out
}

// MllamaCheckpointNames lists the spellings a released Mllama tensor name
// may have in a checkpoint (itself, then transformers 5's).
func MllamaCheckpointNames(name string) []string { return mllamaSpellings(name) }

// loadVisionLayersLoRA attaches the tower adapters of dir's
// VisionLayersLoRAFile (whet train's lora.vision_layers), when the file
// is there; a model without a Gemma 3 tower cannot take them.
func (m *Model) loadVisionLayersLoRA(dir string, opts LoRAOptions) error {
	path := filepath.Join(dir, VisionLayersLoRAFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if m.Gemma3Vision == nil {
		return fmt.Errorf("%s: adapters on a Gemma 3 vision tower, but the model has none (load it with its tower)", path)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := m.AddGemma3VisionLayersLoRA(opts); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, p := range m.Gemma3Vision.towerLoRAParams() {
		info, ok := f.Info(p.Name)
		if !ok {
			return fmt.Errorf("%s: missing tensor %s", path, p.Name)
		}
		if !slices.Equal(info.Shape, p.Shape) {
			return fmt.Errorf("%s: tensor %s has shape %v, want %v (the rank of adapter_config.json's r)", path, p.Name, info.Shape, p.Shape)
		}
		v, err := f.Float32(p.Name)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := m.B.Upload(p.Master, v); err != nil {
			return err
		}
	}
	return nil
}
