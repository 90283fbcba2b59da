package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// MethodDefaults returns the settings a run of the method starts from (""
// gives the default method). Package presets sets it from
// presets/methods.yaml, the one place run defaults live; a program that
// reads run files imports whet/presets.
var MethodDefaults = func(method string) (RunConfig, error) {
	return RunConfig{}, errors.New("no method defaults linked into this program (import whet/presets)")
}

// DecodeRunConfig reads a run file's YAML on top of its method's defaults:
// a key the file leaves out keeps the default, a key it sets replaces it,
// 0 included (Validate then says what a 0 cannot be). Unknown keys are
// errors. A file that sets either way of counting warm-up (warmup_steps,
// warmup_ratio) or the run's length (epochs, max_steps) drops the
// method's other one, so the file's choice is the one that counts.
func DecodeRunConfig(data []byte) (RunConfig, error) {
	var head struct {
		Method string `yaml:"method"`
		Train  struct {
			WarmupSteps *int     `yaml:"warmup_steps"`
			WarmupRatio *float64 `yaml:"warmup_ratio"`
			Epochs      *float64 `yaml:"epochs"`
			MaxSteps    *int     `yaml:"max_steps"`
		} `yaml:"train"`
		Data struct {
			MaxLength *int `yaml:"max_length"`
		} `yaml:"data"`
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		return RunConfig{}, explainYAMLError(data, err)
	}
	cfg, err := MethodDefaults(head.Method)
	if err != nil {
		return cfg, fmt.Errorf("method: %w", err)
	}
	h := head.Train
	cfg.Train.dropDefaultAlternatives(h.WarmupSteps != nil || h.WarmupRatio != nil, h.Epochs != nil || h.MaxSteps != nil)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && err != io.EOF {
		return cfg, explainYAMLError(data, err)
	}
	if err := checkWholeNumbers(data); err != nil {
		return cfg, err
	}
	cfg.FitMaxLength = head.Data.MaxLength == nil
	return cfg, nil
}

// MaxLengthFor is the max length a run of a model starts from: the
// method's default, or the positions the model was trained on
// (max_position_embeddings) when it has fewer. positions <= 0 (unknown)
// keeps the method's. Only defaults go through it (the studio's method
// presets, a run file without data.max_length): a max length the user
// sets stays as set (the fit page warns when it is past the positions).
func MaxLengthFor(methodDefault, positions int) int {
	if positions > 0 && positions < methodDefault {
		return positions
	}
	return methodDefault
}

// dropDefaultAlternatives is the one rule for settings a run can give two
// ways (warm-up as warmup_steps or warmup_ratio, length as epochs or
// max_steps), applied to a method's defaults t before the caller's values
// go on top: where the caller gave either way, the defaults keep neither,
// so the caller's choice is the one that counts (the full preset's
// warmup_ratio does not clash with a caller's warmup_steps). A caller that
// gives both ways itself still gets Validate's error naming both fields.
func (t *TrainConfig) dropDefaultAlternatives(warmupGiven, lengthGiven bool) {
	if warmupGiven {
		t.WarmupSteps, t.WarmupRatio = 0, 0
	}
	if lengthGiven {
		t.Epochs, t.MaxSteps = 0, 0
	}
}

// FillDefaults is for Go code that builds a RunConfig field by field
// (tests, tools), where a zero field means "not given": it sets every zero
// field from the method's defaults, except that a warm-up or length the
// caller gave one way is not joined by the default's other way
// (dropDefaultAlternatives, as in run files). Run files (DecodeRunConfig)
// and the studio never go through it, so there a 0 stays 0 and Validate
// rejects it where it cannot work.
func (c *RunConfig) FillDefaults() error {
	d, err := MethodDefaults(c.Method)
	if err != nil {
		return fmt.Errorf("method: %w", err)
	}
	t := c.Train
	d.Train.dropDefaultAlternatives(t.WarmupSteps != 0 || t.WarmupRatio != 0, t.Epochs != 0 || t.MaxSteps != 0)
	fillZero(reflect.ValueOf(c).Elem(), reflect.ValueOf(d))
	return nil
}

// fillZero copies into dst every field of src that is zero in dst,
// looking inside nested structs.
func fillZero(dst, src reflect.Value) {
	for i := 0; i < dst.NumField(); i++ {
		f, g := dst.Field(i), src.Field(i)
		switch {
		case f.Kind() == reflect.Struct:
			fillZero(f, g)
		case f.IsZero():
			f.Set(g)
		}
	}
}

// Validate names the first field that cannot work, by its run-file key.
func (c *RunConfig) Validate() error {
	if c.Model == "" {
		return errors.New("model: required (a Hugging Face model folder)")
	}
	if c.Name != "" {
		// Checked with the other keys, so that the error names the file
		// (an empty name is given one when the run starts).
		if err := ValidRunName(c.Name); err != nil {
			return err
		}
	}
	switch c.Method {
	case "lora", "qlora", "full", "dpo", "grpo":
	default:
		return fmt.Errorf("method: unknown %q (want lora, qlora, full, dpo or grpo)", c.Method)
	}
	switch c.Backend {
	case "auto", "cpu", "cuda":
	default:
		return fmt.Errorf("backend: unknown %q (want auto, cpu or cuda)", c.Backend)
	}
	if c.Method == "dpo" {
		if err := (DPOLoss{Beta: c.DPO.Beta, LabelSmoothing: c.DPO.LabelSmoothing, Type: c.DPO.LossType}).Validate(); err != nil {
			return err
		}
	}
	if c.Method == "grpo" {
		if err := c.GRPO.validate(c.Train); err != nil {
			return err
		}
	}
	if c.usesLoRA() {
		if c.LoRA.Rank <= 0 {
			return fmt.Errorf("lora.r: must be at least 1, got %d", c.LoRA.Rank)
		}
		if err := inRange("lora.alpha", c.LoRA.Alpha, 0, math.MaxFloat64, false, true); err != nil {
			return err
		}
		if err := inRange("lora.dropout", c.LoRA.Dropout, 0, 1, true, false); err != nil {
			return err
		}
		if _, err := NormalizeTargets(c.LoRA.TargetModules); err != nil {
			return err
		}
	}
	if err := c.Parallel.validate(c); err != nil {
		return err
	}
	// The data pipeline's own rule for its settings (datasets.Options).
	if err := c.Data.Validate(); err != nil {
		return err
	}
	return c.Train.validate()
}

func (t TrainConfig) validate() error {
	if t.MicroBatch < 1 {
		return fmt.Errorf("train.micro_batch: must be at least 1, got %d", t.MicroBatch)
	}
	if t.GradAccum < 1 {
		return fmt.Errorf("train.grad_accum: must be at least 1, got %d", t.GradAccum)
	}
	if err := inRange("train.lr", t.LR, 0, math.MaxFloat32, false, true); err != nil {
		return err
	}
	if err := ValidSchedule(t.Schedule); err != nil {
		return err
	}
	if _, err := MasterWeights(t.MasterWeights); err != nil {
		return err
	}
	for _, r := range []struct {
		field      string
		v, lo, hi  float64
		loIn, hiIn bool
	}{
		// AdamW's own rules (torch.optim.AdamW): betas in [0, 1), eps > 0.
		{"train.beta1", t.Beta1, 0, 1, true, false},
		{"train.beta2", t.Beta2, 0, 1, true, false},
		{"train.eps", t.Eps, 0, 1, false, true},
		{"train.weight_decay", t.WeightDecay, 0, 1, true, true},
		{"train.max_grad_norm", t.MaxGradNorm, 0, math.MaxFloat64, true, true},
		{"train.warmup_ratio", t.WarmupRatio, 0, 1, true, false},
		{"train.epochs", t.Epochs, 0, math.MaxInt32, true, true},
	} {
		if err := inRange(r.field, r.v, r.lo, r.hi, r.loIn, r.hiIn); err != nil {
			return err
		}
	}
	if t.WarmupSteps < 0 {
		return fmt.Errorf("train.warmup_steps: must not be negative, got %d", t.WarmupSteps)
	}
	if t.WarmupSteps > 0 && t.WarmupRatio > 0 {
		return errors.New("train.warmup_steps and train.warmup_ratio: set one of them, not both")
	}
	if t.MaxSteps < 0 {
		return fmt.Errorf("train.max_steps: must not be negative, got %d", t.MaxSteps)
	}
	if t.MaxSteps == 0 && t.Epochs == 0 {
		return errors.New("train.epochs and train.max_steps are both 0: set one of them to say how long to train")
	}
	if t.LogEvery < 1 {
		return fmt.Errorf("train.log_every: must be at least 1, got %d", t.LogEvery)
	}
	for _, f := range []struct {
		field string
		v     int
	}{{"train.eval_every", t.EvalEvery}, {"train.save_every", t.SaveEvery}, {"train.sample_every", t.SampleEvery},
		{"train.keep_checkpoints", t.KeepCheckpoints}, {"train.sample_tokens", t.SampleTokens},
		{"train.mlp_chunk", t.MLPChunk}, {"train.logits_chunk", t.LogitsChunk}} {
		if f.v < 0 {
			return fmt.Errorf("%s: must not be negative, got %d", f.field, f.v)
		}
	}
	if _, err := ParseOffloadMode(t.OffloadCheckpoints); err != nil {
		return fmt.Errorf("train.%w", err)
	}
	if t.SampleEvery > 0 && t.SampleTokens < 1 {
		return fmt.Errorf("train.sample_tokens: must be at least 1 when train.sample_every is set, got %d", t.SampleTokens)
	}
	return nil
}

// inRange checks that v is a finite number between lo and hi, each bound
// included or not; the message names the field and the range.
func inRange(field string, v, lo, hi float64, loIn, hiIn bool) error {
	ok := !math.IsNaN(v) && !math.IsInf(v, 0) &&
		(v > lo || (loIn && v == lo)) && (v < hi || (hiIn && v == hi))
	if ok {
		return nil
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s: must be a finite number, got %v", field, v)
	}
	left, right := "(", ")"
	if loIn {
		left = "["
	}
	if hiIn {
		right = "]"
	}
	switch {
	case hi < math.MaxFloat32:
		return fmt.Errorf("%s: must be in %s%g, %g%s, got %g", field, left, lo, hi, right, v)
	case v > hi:
		return fmt.Errorf("%s: must be at most %g, got %g", field, hi, v)
	case !loIn:
		return fmt.Errorf("%s: must be positive, got %g", field, v)
	}
	return fmt.Errorf("%s: must not be negative, got %g", field, v)
}
