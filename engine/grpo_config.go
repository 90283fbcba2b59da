package engine

import (
	"fmt"
	"math"

	"whet/engine/reward"
)

// GRPOConfig holds GRPO's settings, with TRL's GRPOConfig names. The
// defaults (TRL's) are in presets/methods.yaml.
type GRPOConfig struct {
	// Completions sampled per prompt (G); train.micro_batch × train.grad_accum
	// (the completions of one step) must be a multiple of it.
	NumGenerations int `yaml:"num_generations"`
	// The most tokens a completion may have.
	MaxCompletionLength int `yaml:"max_completion_length"`
	// The sampling temperature of the completions.
	Temperature float64 `yaml:"temperature"`
	// Nucleus sampling: the smallest set of tokens whose probability reaches
	// top_p (1: off).
	TopP float64 `yaml:"top_p"`
	// Sampling among the top_k most likely tokens (0: off).
	TopK int `yaml:"top_k"`
	// Drops tokens less likely than min_p times the most likely one (0: off).
	MinP float64 `yaml:"min_p,omitempty"`
	// Penalises tokens already in the prompt or the completion (1: off).
	RepetitionPenalty float64 `yaml:"repetition_penalty"`
	// The KL coefficient β towards the reference model (0: no KL term and no
	// reference pass).
	Beta float64 `yaml:"beta"`
	// The lower clip ε of the probability ratio.
	Epsilon float64 `yaml:"epsilon"`
	// The upper clip of the probability ratio (0: epsilon; DAPO uses 0.28).
	EpsilonHigh float64 `yaml:"epsilon_high,omitempty"`
	// μ: optimizer steps taken on each batch of completions.
	NumIterations int `yaml:"num_iterations"`
	// How token losses are averaged: dapo (over the step's completion
	// tokens) | grpo (per completion, then over completions) | dr_grpo (over
	// completions × max_completion_length) | bnpo (over the micro-batch's
	// tokens).
	LossType string `yaml:"loss_type"`
	// How advantages are scaled: group (by each prompt's reward spread) |
	// batch (by the whole step's) | none.
	ScaleRewards string `yaml:"scale_rewards"`
	// How several reward functions combine: sum_then_normalize (weigh, sum,
	// then scale as scale_rewards says) | normalize_then_sum (normalise each
	// function within its group, weigh and sum, normalise over the batch).
	MultiObjectiveAggregation string `yaml:"multi_objective_aggregation"`
	// One probability ratio per token | per sequence (GSPO: exp of the mean
	// of the completion's token log-ratios, clipped as one).
	ImportanceSamplingLevel string `yaml:"importance_sampling_level"`
	// Leaves completions cut at max_completion_length out of the loss.
	MaskTruncated bool `yaml:"mask_truncated_completions,omitempty"`
	// The reward functions, summed with their weights: each has a type
	// (exact_answer, numeric_answer, regex, length, json, command, http) and
	// its own keys (docs/grpo.md).
	Rewards []reward.Spec `yaml:"rewards,omitempty"`
	// FullWeights trains every weight instead of LoRA adapters (only with
	// beta 0: a full-weight reference would need a second copy of the model).
	FullWeights bool `yaml:"full_weights,omitempty"`
}

// Loss is the objective's settings.
func (g GRPOConfig) Loss() GRPOLoss {
	return GRPOLoss{Type: g.LossType, Beta: g.Beta, Epsilon: g.Epsilon, EpsilonHigh: g.EpsilonHigh, MaxCompletion: g.MaxCompletionLength,
		Sequence: g.ImportanceSamplingLevel == "sequence"}
}

// validate checks the settings against the training batch sizes.
func (g GRPOConfig) validate(t TrainConfig) error {
	if g.NumGenerations < 2 {
		return fmt.Errorf("grpo.num_generations: must be at least 2 (advantages compare completions of one prompt), got %d", g.NumGenerations)
	}
	if per := t.MicroBatch * max(1, t.GradAccum); per%g.NumGenerations != 0 {
		return fmt.Errorf("grpo.num_generations: train.micro_batch × train.grad_accum = %d completions per step is not a multiple of %d", per, g.NumGenerations)
	}
	if g.MaxCompletionLength < 1 {
		return fmt.Errorf("grpo.max_completion_length: must be at least 1, got %d", g.MaxCompletionLength)
	}
	if err := inRange("grpo.temperature", g.Temperature, 0, math.MaxFloat64, false, true); err != nil {
		return err
	}
	if err := inRange("grpo.top_p", g.TopP, 0, 1, false, true); err != nil {
		return err
	}
	if g.TopK < 0 {
		return fmt.Errorf("grpo.top_k: must not be negative, got %d", g.TopK)
	}
	if err := inRange("grpo.min_p", g.MinP, 0, 1, true, false); err != nil {
		return err
	}
	if err := inRange("grpo.repetition_penalty", g.RepetitionPenalty, 0, math.MaxFloat64, false, true); err != nil {
		return err
	}
	if g.NumIterations < 1 {
		return fmt.Errorf("grpo.num_iterations: must be at least 1, got %d", g.NumIterations)
	}
	if !oneOf(g.ScaleRewards, GRPOScaleRewards) {
		return fmt.Errorf("grpo.scale_rewards: unknown %q (want one of %v)", g.ScaleRewards, GRPOScaleRewards)
	}
	if g.ImportanceSamplingLevel != "token" && g.ImportanceSamplingLevel != "sequence" {
		return fmt.Errorf("grpo.importance_sampling_level: unknown %q (want token or sequence)", g.ImportanceSamplingLevel)
	}
	if !oneOf(g.MultiObjectiveAggregation, GRPOAggregations) {
		return fmt.Errorf("grpo.multi_objective_aggregation: unknown %q (want one of %v)", g.MultiObjectiveAggregation, GRPOAggregations)
	}
	if err := g.Loss().Validate(); err != nil {
		return err
	}
	if g.FullWeights && g.Beta != 0 {
		return fmt.Errorf("grpo.beta: full-weight GRPO runs without a reference model, so beta must be 0 (got %g); use LoRA for a KL term", g.Beta)
	}
	_, _, err := reward.Build(g.Rewards)
	return err
}
