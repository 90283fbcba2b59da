package cpu

import (
	"math"

	"whet/engine"
)

// AdamW applies one step of torch.optim.AdamW (decoupled weight decay, bias
// correction, eps added after dividing sqrt(v) by sqrt(bias_correction2)):
//
//	param *= 1 - lr*wd
//	m = m + (1-b1)*(g - m)          (torch's lerp)
//	v = b2*v + (1-b2)*g*g
//	param -= lr/(1-b1^step) * m / (sqrt(v)/sqrt(1-b2^step) + eps)
//
// with g the gradient times p.GradScale (rounded to float32 first). param,
// m and v are F32; grad may be F32 or BF16. With p.RoundSeed the updated
// param is rounded to bfloat16 stochastically (engine.RoundBF16Stochastic
// with engine.StochasticBits(engine.StepSeed(p.RoundSeed, p.Step), i)),
// and param may be BF16: a
// bf16 master weight (rounded to nearest without a key).
func (b *Backend) AdamW(param, grad, m, v engine.Tensor, p engine.AdamWParams) error {
	c := check("AdamW")
	pt := c.float("param", param)
	gt := c.float("grad", grad)
	mt := c.f32("m", m)
	vt := c.f32("v", v)
	if c.Err != nil || !c.AdamW(pt, gt, mt, vt, p.Step) {
		return c.Err
	}
	bc1 := 1 - math.Pow(float64(p.Beta1), float64(p.Step))
	bc2 := 1 - math.Pow(float64(p.Beta2), float64(p.Step))
	stepSize := float32(float64(p.LR) / bc1)
	bc2Sqrt := float32(math.Sqrt(bc2))
	decay := 1 - p.LR*p.WeightDecay
	b1c, b2, b2c := 1-p.Beta1, p.Beta2, 1-p.Beta2
	scale, seed := p.GradMultiplier(), uint64(0)
	if p.RoundSeed != 0 {
		seed = engine.StepSeed(p.RoundSeed, p.Step)
	}
	pd, gd, md, vd := pt.floats(), gt.floats(), mt.floats(), vt.floats()
	parallelFor(len(pd), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := float32(gd[i] * scale) // rounded: never fused into what follows
			w := pd[i] * decay
			md[i] += b1c * (g - md[i])
			vd[i] = b2*vd[i] + b2c*g*g
			denom := float32(math.Sqrt(float64(vd[i])))/bc2Sqrt + p.Eps
			w -= stepSize * md[i] / denom
			if p.RoundSeed != 0 {
				w = engine.RoundBF16Stochastic(w, engine.StochasticBits(seed, uint64(i)))
			}
			pd[i] = w
		}
	})
	pt.settle() // a BF16 param without a key: to nearest
	return nil
}

// FoldsGradScale (engine.GradScaleFolder): the CPU's AdamW applies the
// gradients' scale in its one pass.
func (b *Backend) FoldsGradScale() bool { return true }
