package tui

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/tui/components/form"
)

// defaultSampleEvery applies when the user gives sample prompts but no
// interval.
const defaultSampleEvery = 20

// settingsPage holds the optimisation and evaluation settings.
type settingsPage struct {
	*common
	cfg  *engine.RunConfig
	form form.Model
	w, h int
}

func newSettingsPage(c *common, cfg *engine.RunConfig) *settingsPage {
	return &settingsPage{common: c, cfg: cfg}
}

func (p *settingsPage) title() string { return "settings" }

func (p *settingsPage) enter() tea.Cmd {
	c := p.cfg
	by := "epochs"
	if c.Train.MaxSteps > 0 {
		by = "steps"
	}
	steps := c.Train.MaxSteps
	if steps == 0 {
		steps = 500
	}
	epochs := c.Train.Epochs
	if epochs == 0 {
		epochs = 3
	}
	p.form = form.New([]form.Field{
		{Key: "name", Label: "Run name", Kind: form.Text, Value: c.Name, Hint: "the run's folder under " + orDefault(c.RunsDir, "runs")},
		{Key: "by", Label: "Length in", Kind: form.Choice, Value: by, Options: []string{"epochs", "steps"}},
		{Key: "epochs", Label: "Epochs", Kind: form.Float, Value: ftoa(epochs), Min: 0.01, Max: 1000, Hint: "passes over the data (fractions allowed)"},
		{Key: "steps", Label: "Max steps", Kind: form.Int, Value: strconv.Itoa(steps), Min: 1, Max: 1e9, Hint: "optimizer steps"},
		{Key: "lr", Label: "Learning rate", Kind: form.Float, Value: ftoa(c.Train.LR), Min: 1e-9, Max: 1, Hint: "peak learning rate (LoRA 1e-4…3e-4, full 1e-5…5e-5)"},
		{Key: "batch", Label: "Micro-batch", Kind: form.Int, Value: strconv.Itoa(c.Train.MicroBatch), Min: 1, Max: 4096, Hint: "sequences per forward pass"},
		{Key: "accum", Label: "Grad accumulation", Kind: form.Int, Value: strconv.Itoa(max(c.Train.GradAccum, 1)), Min: 1, Max: 4096, Hint: "micro-batches per optimizer step"},
		{Key: "maxlen", Label: "Max length", Kind: form.Int, Value: strconv.Itoa(c.Data.MaxLength), Min: 16, Max: 1 << 20, Hint: "tokens per sequence; longer rows are cut"},
		{Key: "eval", Label: "Eval split", Kind: form.Float, Value: ftoa(c.Data.EvalSplit), Min: 0, Max: 0.5, Hint: "share of rows held out for the eval loss (0 = none)"},
		{Key: "prompts", Label: "Sample prompts", Kind: form.Text, Value: strings.Join(c.Train.SamplePrompts, " | "), Hint: sampleHint(c.Train.SampleEvery)},
		{Key: "evalevery", Label: "Eval every", Kind: form.Int, Value: strconv.Itoa(c.Train.EvalEvery), Min: 0, Max: 1e9, Advanced: true, Hint: "steps between evals (0 = only at the end)"},
		{Key: "sampleevery", Label: "Sample every", Kind: form.Int, Value: strconv.Itoa(c.Train.SampleEvery), Min: 0, Max: 1e9, Advanced: true, Hint: "steps between sample generations (0 with prompts = every 20)"},
		{Key: "saveevery", Label: "Save every", Kind: form.Int, Value: strconv.Itoa(c.Train.SaveEvery), Min: 0, Max: 1e9, Advanced: true, Hint: "steps between checkpoints"},
		{Key: "keep", Label: "Keep checkpoints", Kind: form.Int, Value: strconv.Itoa(c.Train.KeepCheckpoints), Min: 0, Max: 1000, Advanced: true, Hint: "the newest N are kept (0 = all)"},
		{Key: "backend", Label: "Backend", Kind: form.Choice, Value: orDefault(c.Backend, "auto"), Options: []string{"auto", "cuda", "cpu"}, Advanced: true, Hint: "auto: CUDA when an NVIDIA GPU is present, else CPU"},
		{Key: "gpus", Label: "GPUs", Kind: form.Text, Value: c.Parallel.GPUs, Advanced: true, Hint: "several GPUs (data parallel): all, a count, or devices such as 0,2,3; empty: one"},
	}, formStyles(p.styles))
	p.form.SetSize(p.w, max(p.h-3, 4))
	p.visibility()
	return nil
}

// sampleHint says how often the prompts are answered: the interval set
// under the advanced settings, or the default when none is.
func sampleHint(every int) string {
	if every == 0 {
		return fmt.Sprintf("prompts to answer while training, split by | (every %d steps unless set below)", defaultSampleEvery)
	}
	return fmt.Sprintf("prompts to answer while training, split by | (every %d steps; see Sample every)", every)
}

func (p *settingsPage) visibility() {
	steps := p.form.Get("by") == "steps"
	p.form.SetHidden("steps", !steps)
	p.form.SetHidden("epochs", steps)
}

func (p *settingsPage) leave() error {
	if err := p.form.Validate(); err != nil {
		return shownError{err}
	}
	name := strings.TrimSpace(p.form.Get("name"))
	if engine.ValidRunName(name) != nil {
		p.form.FocusKey("name")
		return fmt.Errorf("Run name: %q must be letters, digits, '.', '_' or '-' (it names a folder)", name)
	}
	c := p.cfg
	c.Name = name
	if p.form.Get("by") == "steps" {
		c.Train.MaxSteps, c.Train.Epochs = p.form.Int("steps"), 0
	} else {
		c.Train.Epochs, c.Train.MaxSteps = p.form.Float("epochs"), 0
	}
	c.Train.LR = p.form.Float("lr")
	c.Train.MicroBatch = p.form.Int("batch")
	c.Train.GradAccum = p.form.Int("accum")
	if g := c.GRPO.NumGenerations; c.Method == "grpo" && g > 0 && (c.Train.MicroBatch*c.Train.GradAccum)%g != 0 {
		// A step's completions are whole groups of answers to one prompt.
		p.form.FocusKey("batch")
		return fmt.Errorf("Micro-batch × grad accumulation = %d answers a step: GRPO needs a multiple of its %d answers per prompt", c.Train.MicroBatch*c.Train.GradAccum, g)
	}
	c.Data.MaxLength = p.form.Int("maxlen")
	c.Data.EvalSplit = p.form.Float("eval")
	c.Train.SamplePrompts = nil
	for _, s := range strings.Split(p.form.Get("prompts"), "|") {
		if s = strings.TrimSpace(s); s != "" {
			c.Train.SamplePrompts = append(c.Train.SamplePrompts, s)
		}
	}
	c.Train.EvalEvery = p.form.Int("evalevery")
	c.Train.SampleEvery = p.form.Int("sampleevery")
	if len(c.Train.SamplePrompts) > 0 && c.Train.SampleEvery == 0 {
		// Prompts without an interval would never be generated.
		c.Train.SampleEvery = defaultSampleEvery
	}
	c.Train.SaveEvery = p.form.Int("saveevery")
	c.Train.KeepCheckpoints = p.form.Int("keep")
	c.Backend = p.form.Get("backend")
	gpus := strings.ReplaceAll(p.form.Get("gpus"), " ", "")
	if gpus != "" && gpus != "all" {
		// The syntax here; the devices are counted when the run starts.
		if _, err := engine.ParseGPUs(gpus, math.MaxInt32); err != nil {
			p.form.FocusKey("gpus")
			return fmt.Errorf("GPUs: %v", strings.TrimPrefix(err.Error(), "gpus: "))
		}
	}
	c.Parallel.GPUs = gpus
	return nil
}

func (p *settingsPage) update(msg tea.Msg) (tea.Cmd, nav) {
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
	p.visibility()
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

func (p *settingsPage) setSize(w, h int) {
	p.w, p.h = w, h
	p.form.SetSize(w, max(h-3, 4))
}

func (p *settingsPage) typing() bool { return p.form.TextFocused() }

func (p *settingsPage) help() []key.Binding {
	return []key.Binding{bind("↑/↓", "field"), bind("←/→", "change"), bind("enter", "check fit"), p.keys.Back}
}

func (p *settingsPage) view() string {
	st := p.styles
	eff := p.form.Int("batch") * p.form.Int("accum")
	return st.Bold.Render("Run settings") + "  " +
		st.Muted.Render(fmt.Sprintf("effective batch %d sequences × %s tokens", eff, p.form.Get("maxlen"))) + "\n\n" +
		p.form.View()
}
