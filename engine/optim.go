package engine

import (
	"fmt"
	"math"
)

// Schedule gives the learning-rate multiplier for a 0-based optimizer step,
// exactly as transformers' schedulers do (get_constant_schedule_with_warmup,
// get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup): the
// first warmup step has multiplier 0.
type Schedule struct {
	Kind   string // constant | linear | cosine
	Warmup int
	Total  int
}

// NewSchedule is the schedule a run's settings give over total steps:
// warmup_steps, or else warmup_ratio of the steps rounded up (as
// transformers' get_warmup_steps does).
func NewSchedule(c TrainConfig, total int) Schedule {
	warm := c.WarmupSteps
	if warm == 0 && c.WarmupRatio > 0 {
		warm = int(math.Ceil(float64(total) * c.WarmupRatio))
	}
	return Schedule{Kind: c.Schedule, Warmup: warm, Total: total}
}

// Multiplier returns lr(step)/lr for a 0-based step.
func (s Schedule) Multiplier(step int) float64 {
	if step < s.Warmup {
		return float64(step) / float64(max(1, s.Warmup))
	}
	switch s.Kind {
	case "linear":
		return math.Max(0, float64(s.Total-step)/float64(max(1, s.Total-s.Warmup)))
	case "cosine":
		progress := float64(step-s.Warmup) / float64(max(1, s.Total-s.Warmup))
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*progress)))
	}
	return 1
}

// Idle reports whether every step of the schedule has multiplier 0, so
// that the run cannot change the model: a run of one step with warm-up
// (its first warm-up step is at 0), as a two-pair DPO file with the
// default micro batch of 8 makes.
func (s Schedule) Idle() bool {
	for step := 0; step < s.Total; step++ {
		if s.Multiplier(step) > 0 {
			return false
		}
	}
	return s.Total > 0
}

// IdleNote is the warning for an Idle schedule ("" otherwise).
func (s Schedule) IdleNote() string {
	if !s.Idle() {
		return ""
	}
	return fmt.Sprintf("warning: learning rate 0 at every step: the model will not change (%d step(s), %d of warm-up, which starts at 0); set train.warmup_steps and train.warmup_ratio to 0, or train for more steps (more epochs or data, a smaller micro batch)", s.Total, s.Warmup)
}

// ValidSchedule reports whether kind is a known schedule name.
func ValidSchedule(kind string) error {
	switch kind {
	case "constant", "linear", "cosine":
		return nil
	}
	return fmt.Errorf("train.schedule: unknown schedule %q (want constant, linear or cosine)", kind)
}

// Optimizer is AdamW over a model's trainable parameters.
type Optimizer struct {
	Beta1, Beta2, Eps, WeightDecay float64
	// DecayAll applies weight decay to biases and norm weights too (plain
	// torch.optim.AdamW over all parameters); by default they are exempt as
	// in transformers' Trainer.
	DecayAll bool
	Step     int // optimizer steps taken
	// Seed is the run's seed, which bf16 masters' stochastic rounding
	// draws from (with the step and the parameter's name).
	Seed uint64
}

// GradNorm is the global L2 norm of every trainable gradient.
func GradNorm(m *Model) (float64, error) {
	params := m.TrainableParams()
	if all, ok := m.B.(SumSquaresOfAll); ok {
		sum, err := all.SumSquaresAll(grads(params))
		if err != nil {
			return 0, fmt.Errorf("grad norm: %w", err)
		}
		return math.Sqrt(sum), nil
	}
	var sum float64
	for _, p := range params {
		s, err := m.B.SumSquares(p.Grad)
		if err != nil {
			return 0, fmt.Errorf("grad norm of %s: %w", p.Name, err)
		}
		sum += s
	}
	return math.Sqrt(sum), nil
}

// ClipGrads scales the gradients so their global norm is at most maxNorm,
// as torch.nn.utils.clip_grad_norm_ does (coefficient maxNorm/(norm+1e-6),
// applied only when below 1). It returns the norm before clipping.
func ClipGrads(m *Model, maxNorm float64) (float64, error) {
	norm, err := GradNorm(m)
	if err != nil {
		return 0, err
	}
	return norm, clipTo(m, norm, maxNorm)
}

// clipTo is ClipGrads for gradients whose global norm is already known.
func clipTo(m *Model, norm, maxNorm float64) error {
	return scaleGrads(m, ClipCoef(norm, maxNorm))
}

// scaleGrads multiplies every trainable gradient by coef (nothing when 1).
func scaleGrads(m *Model, coef float32) error {
	if coef == 1 {
		return nil
	}
	params := m.TrainableParams()
	if all, ok := m.B.(ScaleOfAll); ok {
		if err := all.ScaleAll(grads(params), coef); err != nil {
			return fmt.Errorf("clip grads: %w", err)
		}
		return nil
	}
	for _, p := range params {
		if err := m.B.Scale(p.Grad, coef); err != nil {
			return fmt.Errorf("clip %s: %w", p.Name, err)
		}
	}
	return nil
}

// ClipCoef is the factor torch.nn.utils.clip_grad_norm_ scales gradients
// of global norm norm by: maxNorm/(norm+1e-6) in float32 when that is
// below 1, else 1 (also when maxNorm is not positive: no clipping). The
// trainer hands it to the AdamW step (AdamWParams.GradScale) instead of
// scaling the gradients in a pass of their own; ClipGrads scales them.
func ClipCoef(norm, maxNorm float64) float32 {
	if maxNorm <= 0 {
		return 1
	}
	coef := maxNorm / (norm + 1e-6)
	if coef >= 1 {
		return 1
	}
	return float32(coef)
}

// Apply takes one AdamW step at learning rate lr and refreshes the compute
// copies of the weights.
func (o *Optimizer) Apply(m *Model, lr float64) error { return o.ApplyScaled(m, lr, 1) }

// ApplyScaled is Apply on the gradients times gradScale (ClipCoef): the
// step reads each gradient once and scales it as it goes, and the
// gradients themselves stay as they were. The result is bit-equal to
// scaling the gradients first (ClipGrads) and then calling Apply.
func (o *Optimizer) ApplyScaled(m *Model, lr float64, gradScale float32) error {
	o.Step++
	if multi, ok := m.B.(MultiAdamW); ok {
		return o.applyAll(m, multi, lr, gradScale)
	}
	for _, p := range m.TrainableParams() {
		wd := o.WeightDecay
		if p.NoDecay && !o.DecayAll {
			wd = 0
		}
		err := m.B.AdamW(p.Master, p.Grad, p.M, p.V, AdamWParams{
			LR: float32(lr), Beta1: float32(o.Beta1), Beta2: float32(o.Beta2),
			Eps: float32(o.Eps), WeightDecay: float32(wd), Step: o.Step, GradScale: gradScale,
			RoundSeed: o.roundSeed(m, p),
		})
		if err != nil {
			return fmt.Errorf("adamw on %s: %w", p.Name, err)
		}
	}
	return m.SyncFromMasters()
}

// roundSeed is p's stochastic-rounding key: 0 (round to nearest) unless
// the model keeps bf16 masters.
func (o *Optimizer) roundSeed(m *Model, p *Param) uint64 {
	if !m.BF16Masters {
		return 0
	}
	return roundKey(o.Seed, p.Name)
}

// applyAll is ApplyScaled through MultiAdamW: one call per weight-decay
// group, each refreshing the compute copies of its masters as it goes.
func (o *Optimizer) applyAll(m *Model, multi MultiAdamW, lr float64, gradScale float32) error {
	var sets []AdamWSet
	var noDecay []bool
	for _, p := range m.TrainableParams() {
		set := AdamWSet{Param: p.Master, Grad: p.Grad, M: p.M, V: p.V, RoundSeed: o.roundSeed(m, p)}
		if p.Master != p.W {
			set.Out = p.W
		}
		sets = append(sets, set)
		noDecay = append(noDecay, p.NoDecay && !o.DecayAll)
	}
	return o.stepSets(m.B, sets, noDecay, lr, gradScale)
}

// stepSets takes one AdamW step (o.Step already counted) on sets, those
// marked noDecay without weight decay, with the gradients times
// gradScale: one MultiAdamW call per group where the backend has it, else
// AdamW on each set.
func (o *Optimizer) stepSets(b Backend, sets []AdamWSet, noDecay []bool, lr float64, gradScale float32) error {
	var groups [2][]AdamWSet // decayed, not decayed
	for i, s := range sets {
		k := 0
		if noDecay[i] {
			k = 1
		}
		groups[k] = append(groups[k], s)
	}
	for k, g := range groups {
		if len(g) == 0 {
			continue
		}
		wd := o.WeightDecay
		if k == 1 {
			wd = 0
		}
		p := AdamWParams{LR: float32(lr), Beta1: float32(o.Beta1), Beta2: float32(o.Beta2),
			Eps: float32(o.Eps), WeightDecay: float32(wd), Step: o.Step, GradScale: gradScale}
		if multi, ok := b.(MultiAdamW); ok {
			if err := multi.AdamWAll(g, p); err != nil {
				return fmt.Errorf("adamw on %d tensors: %w", len(g), err)
			}
			continue
		}
		for _, s := range g {
			p.RoundSeed = s.RoundSeed
			if err := b.AdamW(s.Param, s.Grad, s.M, s.V, p); err != nil {
				return fmt.Errorf("adamw: %w", err)
			}
			if s.Out != nil {
				if err := b.Copy(s.Out, s.Param); err != nil {
					return fmt.Errorf("adamw: refresh the compute copy: %w", err)
				}
			}
		}
	}
	return nil
}
