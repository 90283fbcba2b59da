package engine

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// NonFiniteError says that a step's loss, its gradient norm, or the
// trained weights went NaN or infinite. The trainer returns it before the
// bad values reach the weights, a checkpoint or the exported result, so
// the newest checkpoint on disk is still the last good one.
type NonFiniteError struct {
	Step  int     // the optimizer step (1-based) that went wrong
	What  string  // "loss", "gradient norm" or "weights"
	Value float64 // the non-finite value (for weights, their squared norm)
	// Groups names the parameter groups holding non-finite values
	// (gradients for "gradient norm", masters for "weights"), e.g.
	// "self_attn.q_proj.lora_B.weight (layers 0-3)".
	Groups []string
	Hint   string
	// NoCheckpoint: the run had written no checkpoint yet, so there is
	// no good one to go back to (whet train -c starts it over).
	NoCheckpoint bool
}

func (e *NonFiniteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %d: %s is %v", e.Step, e.What, e.Value)
	if len(e.Groups) > 0 {
		kind := "gradients"
		if e.What == "weights" {
			kind = "values"
		}
		groups := e.Groups
		const most = 6 // a 32-layer model has up to 14 groups: the first few say enough
		more := ""
		if len(groups) > most {
			more = fmt.Sprintf(" and %d more groups", len(groups)-most)
			groups = groups[:most]
		}
		fmt.Fprintf(&b, " (non-finite %s in %s%s)", kind, strings.Join(groups, ", "), more)
	}
	if e.NoCheckpoint {
		b.WriteString("; nothing non-finite was saved, and the run has no checkpoint yet")
	} else {
		b.WriteString("; nothing non-finite was saved, the newest checkpoint is the last good one")
	}
	if e.Hint != "" {
		b.WriteString("; " + e.Hint)
	}
	return b.String()
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// hint suggests the settings that usually cure a divergence.
func (t *Trainer) hint() string {
	h := fmt.Sprintf("lower train.lr (now %g)", t.Cfg.LR)
	if t.Cfg.MaxGradNorm <= 0 {
		h += " and turn clipping on (train.max_grad_norm: 1.0)"
	}
	return h
}

// nonFiniteLoss is the error for a step whose loss is not finite.
func (t *Trainer) nonFiniteLoss(loss float64) error {
	e := &NonFiniteError{Step: t.step + 1, What: "loss", Value: loss, Hint: t.hint(), NoCheckpoint: !t.saved}
	if t.step == 0 {
		e.Hint = "the model gives a non-finite loss before any update: check the model's weights (config.json's torch_dtype, a damaged safetensors file) and the data"
	}
	return e
}

// nonFiniteGrads is the error for a step whose gradient norm is not
// finite, naming the parameter groups whose gradients are.
func (t *Trainer) nonFiniteGrads(norm float64) error {
	e := &NonFiniteError{Step: t.step + 1, What: "gradient norm", Value: norm, Hint: t.hint(), NoCheckpoint: !t.saved}
	var bad []string
	for _, p := range t.Model.TrainableParams() {
		if s, err := t.Model.B.SumSquares(p.Grad); err == nil && !finite(s) {
			bad = append(bad, p.Name)
		}
	}
	e.Groups = groupParams(bad)
	return e
}

// checkWeights returns a *NonFiniteError when a trainable weight (its fp32
// master) is not finite; the trainer calls it before writing a checkpoint
// or exporting, so neither ever holds NaN or Inf.
func (t *Trainer) checkWeights() error {
	params := t.Model.TrainableParams()
	masters := make([]Tensor, len(params))
	for i, p := range params {
		masters[i] = p.Master
	}
	var sum float64
	if all, ok := t.Model.B.(SumSquaresOfAll); ok {
		s, err := all.SumSquaresAll(masters)
		if err != nil {
			return fmt.Errorf("check weights: %w", err)
		}
		sum = s
	} else {
		for i, p := range params {
			s, err := t.Model.B.SumSquares(masters[i])
			if err != nil {
				return fmt.Errorf("check weights of %s: %w", p.Name, err)
			}
			sum += s
		}
	}
	if finite(sum) {
		return nil
	}
	var bad []string
	for _, p := range params {
		if s, err := t.Model.B.SumSquares(p.Master); err == nil && !finite(s) {
			bad = append(bad, p.Name)
		}
	}
	return &NonFiniteError{Step: t.step, What: "weights", Value: sum, Groups: groupParams(bad),
		Hint: "the last update made them diverge: " + t.hint(), NoCheckpoint: !t.saved}
}

var layerName = regexp.MustCompile(`^(.*\blayers)\.(\d+)\.(.+)$`)

// groupParams folds per-layer parameter names into groups:
// model.layers.{0,1,2}.mlp.up_proj.lora_A.weight becomes
// "mlp.up_proj.lora_A.weight (layers 0-2)".
func groupParams(names []string) []string {
	layers := map[string][]int{}
	var order []string
	for _, n := range names {
		key, layer := n, -1
		if m := layerName.FindStringSubmatch(n); m != nil {
			key = m[3]
			layer, _ = strconv.Atoi(m[2])
		}
		if _, ok := layers[key]; !ok {
			order = append(order, key)
		}
		if layer >= 0 {
			layers[key] = append(layers[key], layer)
		} else if layers[key] == nil {
			layers[key] = []int{}
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		if l := layers[k]; len(l) > 0 {
			out = append(out, fmt.Sprintf("%s (%s)", k, layerRanges(l)))
		} else {
			out = append(out, k)
		}
	}
	return out
}

// layerRanges writes sorted layer numbers as "layer 3" or "layers 0-2, 5".
func layerRanges(l []int) string {
	sort.Ints(l)
	var parts []string
	for i := 0; i < len(l); {
		j := i
		for j+1 < len(l) && l[j+1] == l[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(l[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", l[i], l[j]))
		}
		i = j + 1
	}
	word := "layers "
	if len(l) == 1 {
		word = "layer "
	}
	return word + strings.Join(parts, ", ")
}
