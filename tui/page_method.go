package tui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/engine/reward"
	"whet/presets"
	"whet/tui/components/form"
)

// Methods the wizard offers, in the order shown.
var methods = []string{"lora", "qlora", "full", "dpo", "grpo"}

var methodBlurb = map[string]string{
	"lora":  "LoRA: small adapters on a frozen bf16 base. Fast, light, the usual choice.",
	"qlora": "QLoRA: adapters on a 4-bit base. Least memory, a little slower.",
	"full":  "Full fine-tuning: every weight trains. Most memory; best for tiny models.",
	"dpo":   "DPO: preference tuning on chosen/rejected pairs, with LoRA adapters.",
	"grpo":  "GRPO: the model answers each prompt several times; a reward scores the answers.",
}

// catalogPresets are the method defaults of presets/methods.yaml, the one
// place they live; the studio wires in its own Presets only to add the
// demo model's tuned run file on top.
type catalogPresets struct{}

var _ Presets = catalogPresets{}

func (catalogPresets) Defaults(model, method string) (engine.RunConfig, error) {
	m, err := presets.LookupMethod(method)
	if err != nil {
		return engine.RunConfig{}, err
	}
	c := m.RunConfigFor(catalogModelConfig(model))
	c.Model = model
	return c, nil
}

// catalogModelConfig is the architecture of a model folder (its
// config.json) or a catalog entry, nil when model is neither.
func catalogModelConfig(model string) *engine.ModelConfig {
	if model == "" {
		return nil
	}
	if mc, err := engine.LoadModelConfig(model); err == nil {
		return mc
	}
	if e, err := presets.Lookup(model); err == nil {
		return e.ToModelConfig()
	}
	return nil
}

// applyMethodDefaults puts a method's defaults into cfg, keeping what the
// user chose elsewhere (model, data path, name). The sample prompts are the
// defaults' unless the user typed others: presetPrompts are the ones the
// previous defaults brought (the demo's run file carries a prompt, so that
// its run shows sample generations out of the box).
func applyMethodDefaults(cfg *engine.RunConfig, d engine.RunConfig, presetPrompts []string) {
	prompts := cfg.Train.SamplePrompts
	if slices.Equal(prompts, presetPrompts) {
		prompts = slices.Clone(d.Train.SamplePrompts)
	}
	cfg.Method = d.Method
	cfg.LoRA = d.LoRA
	cfg.DPO = d.DPO
	cfg.GRPO = d.GRPO
	cfg.Train = d.Train
	cfg.Train.SamplePrompts = prompts
	cfg.Data.TrainOn = d.Data.TrainOn
	cfg.Data.MaxLength = d.Data.MaxLength
	cfg.Data.Packing = d.Data.Packing
	cfg.Data.EvalSplit = d.Data.EvalSplit
}

// methodPage picks the method and its parameters; the rarely changed ones
// sit in the folded advanced section.
type methodPage struct {
	*common
	cfg     *engine.RunConfig
	presets Presets
	form    form.Model
	method  string
	err     string
	w, h    int
	// defaultsFor is the model whose defaults were loaded last.
	defaultsFor string
	// presetPrompts are the sample prompts the last defaults brought; the
	// user's own prompts differ from them and survive a change of defaults.
	presetPrompts []string
}

// newMethodPage starts from the config's defaults, which New loaded.
func newMethodPage(c *common, cfg *engine.RunConfig, presets Presets) *methodPage {
	return &methodPage{common: c, cfg: cfg, presets: presets, presetPrompts: slices.Clone(cfg.Train.SamplePrompts)}
}

// applyDefaults loads a method's defaults into the config.
func (p *methodPage) applyDefaults(d engine.RunConfig) {
	applyMethodDefaults(p.cfg, d, p.presetPrompts)
	p.presetPrompts = slices.Clone(d.Train.SamplePrompts)
}

func (p *methodPage) title() string { return "method" }

func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (p *methodPage) enter() tea.Cmd {
	c := p.cfg
	if c.Method == "" {
		c.Method = "lora"
	}
	// A newly chosen model may come with defaults of its own (the demo's
	// run settings): load them once per model.
	if p.presets != nil && c.Model != p.defaultsFor {
		p.defaultsFor = c.Model
		if d, err := p.presets.Defaults(c.Model, c.Method); err != nil {
			p.err = fmt.Sprintf("defaults for %s: %v", c.Method, err)
		} else {
			p.err = ""
			p.applyDefaults(d)
		}
	}
	p.method = c.Method
	p.form = form.New([]form.Field{
		{Key: "method", Label: "Method", Kind: form.Choice, Value: c.Method, Options: methods, Hint: "←/→ to change; each method loads its defaults"},
		{Key: "r", Label: "LoRA rank (r)", Kind: form.Int, Value: strconv.Itoa(c.LoRA.Rank), Min: 1, Max: 4096, Hint: "adapter width: 8–64 is usual; higher learns more and costs more"},
		{Key: "alpha", Label: "LoRA alpha", Kind: form.Float, Value: ftoa(c.LoRA.Alpha), Min: 0.001, Max: 1e6, Hint: "scale of the adapter update (alpha/r); often 2×r"},
		{Key: "dropout", Label: "LoRA dropout", Kind: form.Float, Value: ftoa(c.LoRA.Dropout), Min: 0, Max: 0.9, Hint: "dropout on the adapter input"},
		{Key: "targets", Label: "Target modules", Kind: form.Text, Value: strings.Join(c.LoRA.TargetModules, ","), Hint: "comma list among q,k,v,o,gate,up,down"},
		{Key: "beta", Label: "DPO beta", Kind: form.Float, Value: ftoa(c.DPO.Beta), Min: 0.0001, Max: 100, Hint: "strength of the pull towards the reference model"},
		{Key: "loss", Label: "DPO loss", Kind: form.Choice, Value: orDefault(c.DPO.LossType, "sigmoid"), Options: []string{"sigmoid", "ipo"}},
		{Key: "reward", Label: "Reward", Kind: form.Choice, Value: firstReward(c.GRPO).Type, Options: reward.Types, Hint: rewardHint},
		{Key: "rewardarg", Label: "Reward setting", Kind: form.Text, Value: rewardArg(firstReward(c.GRPO)), Hint: rewardArgHint},
		{Key: "gens", Label: "Answers per prompt", Kind: form.Int, Value: strconv.Itoa(c.GRPO.NumGenerations), Min: 2, Max: 1024, Hint: "G completions sampled per prompt; micro batch × grad accum must be a multiple"},
		{Key: "maxcomp", Label: "Max answer tokens", Kind: form.Int, Value: strconv.Itoa(c.GRPO.MaxCompletionLength), Min: 1, Max: 1 << 20, Hint: "longer answers are cut"},
		{Key: "temp", Label: "Temperature", Kind: form.Float, Value: ftoa(c.GRPO.Temperature), Min: 0.01, Max: 10, Hint: "sampling temperature of the answers"},
		{Key: "klbeta", Label: "KL beta", Kind: form.Float, Value: ftoa(c.GRPO.Beta), Min: 0, Max: 100, Hint: "pull towards the base model (0: none, no reference pass)"},
		{Key: "gloss", Label: "GRPO loss", Kind: form.Choice, Value: orDefault(c.GRPO.LossType, engine.GRPOLossTypes[0]), Options: engine.GRPOLossTypes, Hint: "how token losses are averaged (dapo: over the step's tokens)"},
		{Key: "eps", Label: "Clip epsilon", Kind: form.Float, Value: ftoa(c.GRPO.Epsilon), Min: 0.001, Max: 0.999, Advanced: true, Hint: "the probability ratio is clipped to 1±epsilon"},
		{Key: "epshigh", Label: "Clip epsilon high", Kind: form.Float, Value: ftoa(c.GRPO.EpsilonHigh), Min: 0, Max: 10, Advanced: true, Hint: "upper clip (0: epsilon; DAPO uses 0.28)"},
		{Key: "iters", Label: "Iterations (μ)", Kind: form.Int, Value: strconv.Itoa(c.GRPO.NumIterations), Min: 1, Max: 64, Advanced: true, Hint: "optimizer steps on each batch of answers"},
		{Key: "scale", Label: "Scale rewards", Kind: form.Choice, Value: orDefault(c.GRPO.ScaleRewards, engine.GRPOScaleRewards[0]), Options: engine.GRPOScaleRewards, Advanced: true, Hint: "divide advantages by the reward spread of each prompt, the step, or not"},
		{Key: "topp", Label: "Top-p", Kind: form.Float, Value: ftoa(c.GRPO.TopP), Min: 0.01, Max: 1, Advanced: true, Hint: "nucleus sampling of the answers (1: off)"},
		{Key: "rslora", Label: "rsLoRA", Kind: form.Bool, Value: yesNo(c.LoRA.RSLoRA), Advanced: true, Hint: "scale by alpha/√r instead of alpha/r (steadier at high rank)"},
		{Key: "schedule", Label: "LR schedule", Kind: form.Choice, Value: orDefault(c.Train.Schedule, "cosine"), Options: []string{"cosine", "linear", "constant"}, Advanced: true},
		{Key: "warmup", Label: "Warmup ratio", Kind: form.Float, Value: ftoa(c.Train.WarmupRatio), Min: 0, Max: 0.5, Advanced: true, Hint: "share of the steps spent ramping the learning rate up"},
		{Key: "warmupsteps", Label: "Warmup steps", Kind: form.Int, Value: strconv.Itoa(c.Train.WarmupSteps), Min: 0, Max: 1 << 20, Advanced: true, Hint: "steps ramping the learning rate up from 0 (a warmup ratio above 0 replaces them)"},
		{Key: "decay", Label: "Weight decay", Kind: form.Float, Value: ftoa(c.Train.WeightDecay), Min: 0, Max: 1, Advanced: true},
		{Key: "clip", Label: "Max grad norm", Kind: form.Float, Value: ftoa(c.Train.MaxGradNorm), Min: 0, Max: 1e6, Advanced: true, Hint: "clip the gradient norm (0 = no clipping)"},
		{Key: "ckpt", Label: "Act. checkpointing", Kind: form.Bool, Value: yesNo(c.Train.Checkpointing), Advanced: true, Hint: "recompute activations in backward: less memory, ~30% slower"},
		{Key: "packing", Label: "Packing", Kind: form.Bool, Value: yesNo(c.Data.Packing), Advanced: true, Hint: "pack short examples into full-length sequences"},
		{Key: "trainon", Label: "Train on", Kind: form.Choice, Value: orDefault(c.Data.TrainOn, "responses"), Options: []string{"responses", "all"}, Advanced: true, Hint: "responses: the prompt tokens carry no loss"},
		{Key: "seed", Label: "Seed", Kind: form.Int, Value: strconv.FormatInt(c.Train.Seed, 10), Advanced: true},
	}, formStyles(p.styles))
	p.form.SetSize(p.w, p.formHeight())
	p.applyVisibility()
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// formHeight leaves the page's three lines above the form, and a line
// below it for p.err only when there is one (the form keeps its own hint
// and error lines): a spare line hid the last advanced setting.
func (p *methodPage) formHeight() int {
	if p.err != "" {
		return max(p.h-4, 4)
	}
	return max(p.h-3, 4)
}

func (p *methodPage) applyVisibility() {
	m := p.form.Get("method")
	noLoRA := m == "full"
	for _, k := range []string{"r", "alpha", "dropout", "targets", "rslora"} {
		p.form.SetHidden(k, noLoRA)
	}
	for _, k := range []string{"beta", "loss"} {
		p.form.SetHidden(k, m != "dpo")
	}
	for _, k := range grpoFields {
		p.form.SetHidden(k, m != "grpo")
	}
}

func (p *methodPage) leave() error {
	if err := p.form.Validate(); err != nil {
		return shownError{err}
	}
	c := p.cfg
	c.Method = p.form.Get("method")
	if c.Method != "full" {
		var targets []string
		for _, t := range strings.Split(p.form.Get("targets"), ",") {
			if t = strings.TrimSpace(t); t != "" {
				targets = append(targets, t)
			}
		}
		if len(targets) == 0 {
			p.form.FocusKey("targets")
			return fmt.Errorf("Target modules: name at least one module (for example q,v)")
		}
		c.LoRA = engine.LoRAConfig{Rank: p.form.Int("r"), Alpha: p.form.Float("alpha"), Dropout: p.form.Float("dropout"),
			TargetModules: targets, RSLoRA: p.form.Bool("rslora")}
	} else {
		c.LoRA = engine.LoRAConfig{}
	}
	if c.Method == "dpo" {
		c.DPO = engine.DPOConfig{Beta: p.form.Float("beta"), LossType: p.form.Get("loss")}
	} else {
		c.DPO = engine.DPOConfig{}
	}
	if c.Method == "grpo" {
		spec, err := rewardSpec(p.form.Get("reward"), p.form.Get("rewardarg"))
		if err != nil {
			p.form.FocusKey("rewardarg")
			return err
		}
		g := &c.GRPO
		g.Rewards = []reward.Spec{spec}
		g.NumGenerations, g.MaxCompletionLength = p.form.Int("gens"), p.form.Int("maxcomp")
		g.Temperature, g.Beta, g.LossType = p.form.Float("temp"), p.form.Float("klbeta"), p.form.Get("gloss")
		g.Epsilon, g.EpsilonHigh, g.NumIterations = p.form.Float("eps"), p.form.Float("epshigh"), p.form.Int("iters")
		g.ScaleRewards, g.TopP = p.form.Get("scale"), p.form.Float("topp")
	} else {
		c.GRPO = engine.GRPOConfig{}
	}
	c.Train.Schedule = p.form.Get("schedule")
	// A warm-up ratio above 0 replaces the count of warm-up steps (a run
	// may set one of the two, not both). The count was not shown: a
	// preset's (the demo's 3, unsloth's 5) applied under "Warmup ratio 0",
	// and the first step of a short run trained at learning rate 0.
	c.Train.WarmupRatio = p.form.Float("warmup")
	c.Train.WarmupSteps = p.form.Int("warmupsteps")
	if c.Train.WarmupRatio > 0 {
		c.Train.WarmupSteps = 0
	}
	c.Train.WeightDecay = p.form.Float("decay")
	c.Train.MaxGradNorm = p.form.Float("clip")
	c.Train.Checkpointing = p.form.Bool("ckpt")
	c.Data.Packing = p.form.Bool("packing")
	c.Data.TrainOn = p.form.Get("trainon")
	c.Train.Seed = int64(p.form.Int("seed"))
	return nil
}

func (p *methodPage) update(msg tea.Msg) (tea.Cmd, nav) {
	if pm, ok := msg.(tea.PasteMsg); ok {
		p.form.Paste(pm.Content)
		return nil, stay
	}
	km, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil, stay
	}
	var used bool
	p.form, used = p.form.Update(km)
	if m := p.form.Get("method"); m != p.method {
		p.switchMethod(m)
	}
	if used {
		return nil, stay
	}
	switch km.String() {
	case "enter":
		return nil, next
	case "esc":
		return nil, back
	}
	return nil, stay
}

// switchMethod loads the new method's defaults and rebuilds the form.
func (p *methodPage) switchMethod(m string) {
	d, err := p.presets.Defaults(p.cfg.Model, m)
	if err != nil {
		p.err = fmt.Sprintf("defaults for %s: %v", m, err)
		p.cfg.Method = m
	} else {
		p.err = ""
		p.applyDefaults(d)
	}
	open := p.form.Advanced()
	p.enter()
	if open {
		p.form.FocusKey("seed")
	}
	p.form.FocusKey("method")
}

func (p *methodPage) setSize(w, h int) {
	p.w, p.h = w, h
	p.form.SetSize(w, p.formHeight())
}

func (p *methodPage) typing() bool { return p.form.TextFocused() }

func (p *methodPage) help() []key.Binding {
	return []key.Binding{bind("↑/↓", "field"), bind("←/→", "change"), p.keys.Next, p.keys.Back}
}

func (p *methodPage) view() string {
	st := p.styles
	var b strings.Builder
	b.WriteString(st.Bold.Render("How should it learn?") + "\n")
	b.WriteString(st.Muted.Render(methodBlurb[p.form.Get("method")]) + "\n\n")
	p.form.SetSize(p.w, p.formHeight()) // p.err may have come or gone
	b.WriteString(p.form.View())
	if p.err != "" {
		b.WriteString("\n" + st.Warn.Render(p.err))
	}
	return b.String()
}

// grpoFields are the method page's GRPO rows.
var grpoFields = []string{"reward", "rewardarg", "gens", "maxcomp", "temp", "klbeta", "gloss", "eps", "epshigh", "iters", "scale", "topp"}

const (
	rewardHint    = "exact_answer/numeric_answer: the data's answer column; regex: a pattern; length; json; command; http"
	rewardArgHint = "regex: the pattern · answers: optional <answer>(.*)</answer> pattern · length: target tokens · command: program and args · http: URL"
)

// firstReward is the reward the studio edits: the run's first (a run file
// may list several; the studio sets one).
func firstReward(g engine.GRPOConfig) reward.Spec {
	if len(g.Rewards) == 0 {
		return reward.Spec{Type: reward.Types[0]}
	}
	return g.Rewards[0]
}

// rewardArg is a reward's one setting as the method page shows it.
func rewardArg(s reward.Spec) string {
	switch s.Type {
	case "length":
		if s.TargetLength > 0 {
			return strconv.Itoa(s.TargetLength)
		}
		return ""
	case "command":
		return strings.Join(s.Command, " ")
	case "http":
		return s.URL
	}
	return s.Pattern
}

// rewardSpec builds the reward from the page's two rows, checked as the
// engine checks a run file's.
func rewardSpec(typ, arg string) (reward.Spec, error) {
	arg = strings.TrimSpace(arg)
	s := reward.Spec{Type: typ}
	switch typ {
	case "length":
		n, err := strconv.Atoi(arg)
		if err != nil || n <= 0 {
			return s, fmt.Errorf("Reward setting: length needs a target number of tokens, e.g. 200")
		}
		s.TargetLength = n
	case "command":
		s.Command = strings.Fields(arg)
	case "http":
		s.URL = arg
	case "json":
	default:
		s.Pattern = arg
	}
	if err := s.Validate("Reward"); err != nil {
		return s, err
	}
	return s, nil
}
