package export

import (
	"fmt"
	"math"

	"whet/engine"
)

// Weight is one base tensor of the exported model, by its Hugging Face
// name. Values returns it in float32 with any LoRA adapter merged in.
type Weight struct {
	Name  string
	Shape []int // PyTorch order: [out, in] for a linear
	param *engine.Param
	lin   *engine.Linear // set for a linear's weight, to merge its adapter
	// proj marks Gemma 3's projector matrix, whose adapter is merged as
	// W' = W + s·Aᵀ·Bᵀ ([Dv, Dt]; A [r, Dv], B [Dt, r]).
	proj *engine.LoRA
}

// Weights lists the model's base tensors in Hugging Face order (the tied
// head is not repeated).
func Weights(m *engine.Model) []Weight {
	linOf := map[*engine.Param]*engine.Linear{}
	for _, lin := range m.Linears() {
		linOf[lin.W] = lin
	}
	if v := m.Gemma3Vision; v != nil {
		// The tower's linears carry adapters with lora.vision_layers.
		for _, lin := range v.TowerLinears() {
			linOf[lin.W] = lin
		}
	}
	var out []Weight
	for _, p := range m.Params() {
		if p.Name == "" || isAdapter(p, m) {
			continue
		}
		w := Weight{Name: p.Name, Shape: append([]int(nil), p.Shape...), param: p, lin: linOf[p]}
		if v := m.Gemma3Vision; v != nil && p == v.Proj && v.ProjLoRA != nil && v.ProjLoRA.Enabled {
			w.proj = v.ProjLoRA
		}
		out = append(out, w)
	}
	return out
}

func isAdapter(p *engine.Param, m *engine.Model) bool {
	if v := m.Gemma3Vision; v != nil {
		if v.ProjLoRA != nil && (p == v.ProjLoRA.A || p == v.ProjLoRA.B) {
			return true
		}
		for _, lin := range v.TowerLinears() {
			if lin.LoRA != nil && (lin.LoRA.A == p || lin.LoRA.B == p) {
				return true
			}
		}
	}
	for _, lin := range m.Linears() {
		if lin.LoRA != nil && (lin.LoRA.A == p || lin.LoRA.B == p) {
			return true
		}
	}
	return false
}

// Values downloads the tensor in float32 (an NF4 weight dequantised, as
// the forward pass sees it) and, for a linear with an enabled adapter,
// adds Scale·B·A in float32: W'[o][i] = W[o][i] + s·Σ_r B[o][r]·A[r][i].
func (w Weight) Values(m *engine.Model) ([]float32, error) {
	v, err := m.WeightValues(w.param)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", w.Name, err)
	}
	if w.proj != nil {
		// [Dv, Dt] += s·Aᵀ·Bᵀ is, transposed, [Dt, Dv] += s·B·A.
		Dv, Dt := w.Shape[0], w.Shape[1]
		a, b, err := adapterValues(m, w.proj, Dv, Dt)
		if err != nil {
			return nil, err
		}
		t := transposeF32(v, Dv, Dt)
		mergeLoRA(t, a, b, Dt, Dv, w.proj.Rank, w.proj.Scale)
		merged := transposeF32(t, Dt, Dv)
		return merged, checkFinite(w.Name, merged)
	}
	if w.lin == nil || w.lin.LoRA == nil || !w.lin.LoRA.Enabled {
		return v, checkFinite(w.Name, v)
	}
	lo := w.lin.LoRA
	out, in := w.lin.Out, w.lin.In
	a, b, err := adapterValues(m, lo, in, out)
	if err != nil {
		return nil, err
	}
	mergeLoRA(v, a, b, out, in, lo.Rank, lo.Scale)
	return v, checkFinite(w.Name, v)
}

// adapterValues downloads an adapter's A [r, in] and B [out, r].
func adapterValues(m *engine.Model, lo *engine.LoRA, in, out int) (a, b []float32, err error) {
	a = make([]float32, lo.Rank*in)
	b = make([]float32, out*lo.Rank)
	for _, t := range []struct {
		p   *engine.Param
		dst []float32
	}{{lo.A, a}, {lo.B, b}} {
		src := t.p.W
		if t.p.Master != nil {
			src = t.p.Master
		}
		if err := m.B.Download(src, t.dst); err != nil {
			return nil, nil, fmt.Errorf("read adapter %s: %w", t.p.Name, err)
		}
	}
	return a, b, nil
}

// transposeF32 returns the [cols, rows] transpose of v ([rows, cols]).
func transposeF32(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}

// checkFinite refuses NaN and infinite weights (a diverged run): no format
// can store them usefully, and quantizers would turn them into garbage.
func checkFinite(name string, v []float32) error {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("tensor %s: element %d is %v (did the run diverge?)", name, i, x)
		}
	}
	return nil
}

// mergeLoRA adds scale·B·A into w ([out, in]), with A [r, in] and B [out, r].
func mergeLoRA(w, a, b []float32, out, in, r int, scale float32) {
	row := make([]float32, in)
	for o := 0; o < out; o++ {
		clear(row)
		for k := 0; k < r; k++ {
			c := b[o*r+k]
			if c == 0 {
				continue
			}
			ak := a[k*in : (k+1)*in]
			for i, av := range ak {
				row[i] += c * av
			}
		}
		wo := w[o*in : (o+1)*in]
		for i := range wo {
			wo[i] += scale * row[i]
		}
	}
}
