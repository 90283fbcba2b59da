package cpu

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/engine"
)

func TestFiniteDiffLayerNorm(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(31, 4))
	const rows, dim = 5, 12
	const eps = 1e-6
	x := randn(rng, rows*dim, 1)
	for i := range x {
		x[i] += 0.7 // a mean away from 0, so the centring shows
	}
	w := randn(rng, dim, 1)
	bias := randn(rng, dim, 1)
	r := randn(rng, rows*dim, 1)
	xT, wT, bT := zeros(t, b, rows, dim), zeros(t, b, dim), zeros(t, b, dim)
	out, mean, rstd := zeros(t, b, rows, dim), zeros(t, b, rows), zeros(t, b, rows)
	loss := func() float64 {
		must(t, b.Upload(xT, x))
		must(t, b.Upload(wT, w))
		must(t, b.Upload(bT, bias))
		must(t, b.LayerNorm(out, mean, rstd, xT, wT, bT, eps))
		return weightedSum(values(t, b, out), r)
	}
	numX := numericGrad(x, loss)
	numW := numericGrad(w, loss)
	numB := numericGrad(bias, loss)
	loss()

	// By hand: the first row's output from its definition.
	o := values(t, b, out)
	var mu, v float64
	for _, xv := range x[:dim] {
		mu += float64(xv)
	}
	mu /= dim
	for _, xv := range x[:dim] {
		v += (float64(xv) - mu) * (float64(xv) - mu)
	}
	v /= dim
	for j := 0; j < dim; j++ {
		want := (float64(x[j])-mu)/math.Sqrt(v+eps)*float64(w[j]) + float64(bias[j])
		if math.Abs(float64(o[j])-want) > 1e-5 {
			t.Fatalf("out[0][%d] = %v, want %v", j, o[j], want)
		}
	}

	dxPre, dwPre, dbPre := randn(rng, rows*dim, 1), randn(rng, dim, 1), randn(rng, dim, 1)
	dx, dw, db := tensorOf(t, b, dxPre, rows, dim), tensorOf(t, b, dwPre, dim), tensorOf(t, b, dbPre, dim)
	rT := tensorOf(t, b, r, rows, dim)
	must(t, b.LayerNormBackward(dx, dw, db, rT, xT, wT, mean, rstd))
	checkGrad(t, "dx", minus(values(t, b, dx), dxPre), numX)
	checkGrad(t, "dWeight", minus(values(t, b, dw), dwPre), numW)
	checkGrad(t, "dBias", minus(values(t, b, db), dbPre), numB)

	// Frozen: no weight or bias gradient; dx alone still accumulates.
	dx2 := tensorOf(t, b, dxPre, rows, dim)
	must(t, b.LayerNormBackward(dx2, nil, nil, rT, xT, wT, mean, rstd))
	checkGrad(t, "dx (frozen)", minus(values(t, b, dx2), dxPre), numX)
	// Only the parameters (the tower's first norm needs no input gradient).
	dw2 := tensorOf(t, b, dwPre, dim)
	must(t, b.LayerNormBackward(nil, dw2, nil, rT, xT, wT, mean, rstd))
	checkGrad(t, "dWeight (no dx)", minus(values(t, b, dw2), dwPre), numW)

	err := b.LayerNorm(out, mean, rstd, xT, wT, zeros(t, b, dim+1), eps)
	if err == nil || !strings.Contains(err.Error(), "bias") {
		t.Errorf("a bias of the wrong length: %v", err)
	}
}

func TestFiniteDiffGELUTanh(t *testing.T) {
	b := New()
	checkActivationFiniteDiff(t, b, rand.New(rand.NewPCG(32, 5)), b.GELUTanh, b.GELUTanhBackward)
	// gelu_tanh(1) from the formula, worked by hand: 0.5*(1+tanh(sqrt(2/pi)*1.044715)).
	one := tensorOf(t, b, []float32{1}, 1)
	y := zeros(t, b, 1)
	must(t, b.GELUTanh(y, one))
	if got, want := values(t, b, y)[0], 0.5*(1+math.Tanh(math.Sqrt(2/math.Pi)*1.044715)); math.Abs(float64(got)-want) > 1e-6 {
		t.Errorf("gelu_tanh(1) = %v, want %v", got, want)
	}
}

// TestFiniteDiffAttentionGroups: the gradients of attention with
// bidirectional groups, windows and GQA, and that the groups change what
// plain Attention computes exactly where the mask says.
func TestFiniteDiffAttentionGroups(t *testing.T) {
	for _, tc := range []struct {
		name   string
		starts []int32
		groups []int32
		h, kvh int
		window int
	}{
		// Two sequences: the first with one image block, the second with two.
		{"gqa_images", []int32{0, 9, 20}, []int32{-1, -1, 0, 0, 0, 0, -1, -1, -1, -1, 1, 1, 1, -1, -1, 2, 2, 2, -1, -1}, 4, 2, 0},
		// A window shorter than the block: a block token sees the later ones, but
		// the window hides earlier ones past it (the last token sees as causal).
		{"window2_images", []int32{0, 9, 20}, []int32{-1, -1, 0, 0, 0, 0, -1, -1, -1, -1, 1, 1, 1, -1, -1, 2, 2, 2, -1, -1}, 2, 1, 2},
		// SigLIP: every sequence one group, attending both ways.
		{"bidirectional", []int32{0, 6, 12}, []int32{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, 2, 2, 0},
		{"no_groups", []int32{0, 5, 11}, []int32{-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1}, 2, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New()
			rng := rand.New(rand.NewPCG(33, uint64(len(tc.name))))
			const D = 8
			T := int(tc.starts[len(tc.starts)-1])
			maxLen := 0
			for i := 0; i+1 < len(tc.starts); i++ {
				maxLen = max(maxLen, int(tc.starts[i+1]-tc.starts[i]))
			}
			seqs := engine.SeqLayout{Starts: tc.starts, MaxLen: maxLen}
			p := engine.AttnParams{NHeads: tc.h, NKVHeads: tc.kvh, HeadDim: D, Scale: 0.35, Window: tc.window}
			q := randn(rng, T*tc.h*D, 1)
			k := randn(rng, T*tc.kvh*D, 1)
			v := randn(rng, T*tc.kvh*D, 1)
			r := randn(rng, T*tc.h*D, 1)
			g := intsOf(t, b, tc.groups)
			qT, kT, vT := zeros(t, b, T, tc.h*D), zeros(t, b, T, tc.kvh*D), zeros(t, b, T, tc.kvh*D)
			out, lse := zeros(t, b, T, tc.h*D), zeros(t, b, tc.h, T)
			loss := func() float64 {
				must(t, b.Upload(qT, q))
				must(t, b.Upload(kT, k))
				must(t, b.Upload(vT, v))
				must(t, b.AttentionGroups(out, lse, qT, kT, vT, g, seqs, p))
				return weightedSum(values(t, b, out), r)
			}
			numQ := numericGrad(q, loss)
			numK := numericGrad(k, loss)
			numV := numericGrad(v, loss)
			loss()
			dq := tensorOf(t, b, randn(rng, len(q), 1), T, tc.h*D)
			dk := tensorOf(t, b, randn(rng, len(k), 1), T, tc.kvh*D)
			dv := tensorOf(t, b, randn(rng, len(v), 1), T, tc.kvh*D)
			must(t, b.AttentionGroupsBackward(dq, dk, dv, tensorOf(t, b, r, T, tc.h*D), qT, kT, vT, out, lse, g, seqs, p))
			checkGrad(t, "dq", values(t, b, dq), numQ)
			checkGrad(t, "dk", values(t, b, dk), numK)
			checkGrad(t, "dv", values(t, b, dv), numV)

			// Against causal Attention: a row differs exactly when its token
			// sees a key causal attention hides: a later token of its group
			// (the window cuts the group too, as transformers 5 does: an
			// earlier one past it stays hidden).
			causal := zeros(t, b, T, tc.h*D)
			must(t, b.Attention(causal, zeros(t, b, tc.h, T), qT, kT, vT, seqs, p))
			got, plain := values(t, b, out), values(t, b, causal)
			for i := 0; i < T; i++ {
				extra := false
				for j := 0; j < T; j++ {
					same := tc.groups[i] >= 0 && tc.groups[i] == tc.groups[j]
					hidden := j > i
					if same && hidden {
						extra = true
					}
				}
				var diff float64
				for d := 0; d < tc.h*D; d++ {
					diff = max(diff, math.Abs(float64(got[i*tc.h*D+d]-plain[i*tc.h*D+d])))
				}
				if extra && diff < 1e-6 {
					t.Errorf("token %d sees more keys than causal attention but its output is unchanged", i)
				}
				if !extra && diff > 1e-6 {
					t.Errorf("token %d sees the causal keys only but its output differs by %g", i, diff)
				}
			}
		})
	}
}

func TestAttentionGroupsChecksGroups(t *testing.T) {
	b := New()
	seqs := engine.SeqLayout{Starts: []int32{0, 4}, MaxLen: 4}
	p := engine.AttnParams{NHeads: 1, NKVHeads: 1, HeadDim: 4, Scale: 0.5}
	q, k, v := zeros(t, b, 4, 4), zeros(t, b, 4, 4), zeros(t, b, 4, 4)
	err := b.AttentionGroups(zeros(t, b, 4, 4), zeros(t, b, 1, 4), q, k, v, intsOf(t, b, []int32{0, 0, 0}), seqs, p)
	if err == nil || !strings.Contains(err.Error(), "groups") {
		t.Errorf("3 groups for 4 tokens: %v", err)
	}
	err = b.AttentionGroups(zeros(t, b, 4, 4), zeros(t, b, 1, 4), q, k, v, zeros(t, b, 4), seqs, p)
	if err == nil || !strings.Contains(err.Error(), "groups") {
		t.Errorf("float groups: %v", err)
	}
}
