package engine

import (
	"fmt"
	"math"
)

// The vision tower's forward (MllamaVisionModel), frozen: no backward.
// Per image of A = MaxTiles tiles with aspect-ratio id a:
//
//	patches  = conv(tile) (a matrix product over unfolded patches)
//	h        = patches + tanh(g_pre) * PreTile[a][tile]
//	h        = [class; h] + (1 - tanh(g_pos)) * PosEmbed + tanh(g_pos) * TileEmbed[a][tile]
//	x        = LayerNorm_pre(h), each tile padded with zero rows to a multiple of 8
//	x        = local encoder (hidden states 0..Layers kept where Intermediates asks:
//	           state i is layer i's input, or with TapLayerOutputs its output)
//	x        = LayerNorm_post(x) + tanh(g_post) * PostTile[a][tile]
//	x        = global encoder (tanh-gated layers)
//	out      = [x, intermediates interleaved feature by feature] without the padding rows
//
// Both encoders attend over all A*padded rows of the image under
// transformers' mask: a row is "masked" when its tile is outside the
// aspect-ratio mask or it is a padding row, and a masked row does not see
// masked rows (unmasked rows see every row, padding included).

// vision returns the sample's vision output, [Images*MaxTiles*Patches, OutputDim].
func (p *mpass) vision(s MllamaSample) []float32 {
	v := &p.m.Cfg.Vision
	P := v.Patches()
	out := make([]float32, 0, s.Images*v.MaxTiles*P*v.OutputDim)
	for i := 0; i < s.Images; i++ {
		out = append(out, p.visionImage(s, i)...)
		if p.err != nil {
			p.err = fmt.Errorf("vision tower, image %d: %w", i, p.err)
			return nil
		}
	}
	return out
}

// visionImage runs one image through the tower. Its device buffers live
// one encoder layer at a time (each layer's are freed once the next
// hidden state exists: the kept intermediate layers are on the host), and
// none outlives the call, as memplan.PlanMllama counts them.
func (p *mpass) visionImage(s MllamaSample, img int) []float32 {
	start := len(p.owned)
	defer p.release(start)
	v, V := &p.m.Cfg.Vision, p.m.Vision
	A, H, P, Pp := v.MaxTiles, v.Hidden, v.Patches(), v.PaddedPatches()
	side, ps, ch := v.ImageSize, v.PatchSize, v.Channels
	nside := side / ps
	np := nside * nside
	feat := ch * ps * ps
	ar := int(s.AspectRatioIDs[img])

	// Unfold the tiles' patches: row (tile, py, px), column (c, ky, kx),
	// the order of the convolution weight [H, C, ps, ps].
	px := s.Pixels[img*A*ch*side*side : (img+1)*A*ch*side*side]
	unf := make([]float32, A*np*feat)
	for t := 0; t < A; t++ {
		for py := 0; py < nside; py++ {
			for pxx := 0; pxx < nside; pxx++ {
				row := unf[((t*np)+py*nside+pxx)*feat:]
				for c := 0; c < ch; c++ {
					for ky := 0; ky < ps; ky++ {
						for kx := 0; kx < ps; kx++ {
							row[(c*ps+ky)*ps+kx] = px[((t*ch+c)*side+py*ps+ky)*side+pxx*ps+kx]
						}
					}
				}
			}
		}
	}
	xu := p.upload(unf, A*np, feat)
	pe := p.alloc(A*np, H)
	w := p.view(V.PatchEmbed.W, 0, H, feat)
	p.do("patch embedding", func() error { return p.B.MatMul(pe, xu, w, false, true, 1, 0) })
	peH := p.host(pe)
	// Only this aspect ratio's rows of the tables.
	pre := p.host(p.view(V.PreTile.W, ar*A*H, A*H))
	tile := p.host(p.view(V.TileEmbed.W, ar*A*P*H, A*P*H))
	cls, pos := p.host(V.Class.W), p.host(V.PosEmbed.W)
	if p.err != nil {
		return nil
	}
	// The embeddings, in transformers' order of float32 operations.
	gPre, gPos := p.gate(V.PreTileGate), p.gate(V.PosGate)
	oneMinus := 1 - gPos
	h := make([]float32, A*P*H)
	for t := 0; t < A; t++ {
		for j := 0; j < P; j++ {
			for d := 0; d < H; d++ {
				var x float32
				if j == 0 {
					x = cls[d]
				} else {
					x = peH[(t*np+j-1)*H+d] + float32(pre[t*H+d]*gPre)
				}
				x += float32(oneMinus * pos[j*H+d])
				x += float32(gPos * tile[(t*P+j)*H+d])
				h[(t*P+j)*H+d] = x
			}
		}
	}
	h0 := p.upload(h, A*P, H)
	ln, mean, rstd := p.alloc(A*P, H), p.alloc32(A*P), p.alloc32(A*P)
	eps := float32(v.NormEps)
	p.do("layernorm_pre", func() error { return p.ops.LayerNorm(ln, mean, rstd, h0, V.LNPreW.W, V.LNPreB.W, eps) })
	lnH := p.host(ln)
	if p.err != nil {
		return nil
	}
	N := A * Pp
	padded := make([]float32, N*H)
	for t := 0; t < A; t++ {
		copy(padded[t*Pp*H:t*Pp*H+P*H], lnH[t*P*H:(t+1)*P*H])
	}
	x := p.upload(padded, N, H)

	// transformers' mask: with pad = Pp-P, a row is masked when its tile
	// is off or it is one of the last pad rows of its tile (every row
	// when pad is 0, as its slice [-0:] takes the whole tile).
	masked := make([]bool, N)
	for t := 0; t < A; t++ {
		off := s.AspectRatioMask[img*A+t] == 0
		for j := 0; j < Pp; j++ {
			masked[t*Pp+j] = off || Pp == P || j >= P
		}
	}
	bias := make([]float32, N*N)
	ninf := float32(math.Inf(-1))
	for r := 0; r < N; r++ {
		if !masked[r] {
			continue
		}
		for c := 0; c < N; c++ {
			if masked[c] {
				bias[r*N+c] = ninf
			}
		}
	}
	mask := p.upload32(bias, N, N)
	p.release(start, x, mask) // the embedding stage's buffers
	layerMark := len(p.owned)

	// hidden[s] is hidden state s of the local encoder: 0 its input, l+1
	// layer l's output; intermediate index i is state i, or i+1 with
	// TapLayerOutputs (transformers 5).
	state := func(i int) int {
		if v.TapLayerOutputs {
			return i + 1
		}
		return i
	}
	for _, i := range v.Intermediates {
		if state(i) > len(V.Local) {
			p.err = fmt.Errorf("intermediate_layers_indices %d: the local encoder has %d layers, so no layer %d output", i, len(V.Local), i)
			return nil
		}
	}
	hidden := map[int][]float32{}
	keepHidden := func(s int) {
		for _, i := range v.Intermediates {
			if state(i) == s {
				hidden[s] = p.host(x)
				return
			}
		}
	}
	keepHidden(0)
	for l, L := range V.Local {
		x = p.visionLayer(L, x, mask, 1, 1)
		keepHidden(l + 1)
		p.release(layerMark, x)
		if p.err != nil {
			p.err = fmt.Errorf("local layer %d: %w", l, p.err)
			return nil
		}
	}
	post := p.alloc(N, H)
	p.do("layernorm_post", func() error {
		return p.ops.LayerNorm(post, p.alloc32(N), p.alloc32(N), x, V.LNPostW.W, V.LNPostB.W, eps)
	})
	postTile, gPost := p.host(p.view(V.PostTile.W, ar*A*H, A*H)), p.gate(V.PostTileGate)
	if p.err != nil {
		return nil
	}
	add := make([]float32, N*H)
	for t := 0; t < A; t++ {
		for j := 0; j < Pp; j++ {
			for d := 0; d < H; d++ {
				add[(t*Pp+j)*H+d] = postTile[t*H+d] * gPost
			}
		}
	}
	addT := p.upload(add, N, H)
	p.do("post-tile embedding", func() error { return p.B.AddScaled(post, addT, 1) })
	x = post
	p.release(layerMark, x)
	for l, L := range V.Global {
		x = p.visionLayer(L, x, mask, p.gate(L.GateAttn), p.gate(L.GateFFN))
		p.release(layerMark, x)
		if p.err != nil {
			p.err = fmt.Errorf("global layer %d: %w", l, p.err)
			return nil
		}
	}
	final := p.host(x)
	if p.err != nil {
		return nil
	}
	k := len(v.Intermediates)
	res := make([]float32, A*P*v.OutputDim)
	for t := 0; t < A; t++ {
		for j := 0; j < P; j++ {
			src := (t*Pp + j) * H
			dst := res[(t*P+j)*v.OutputDim:]
			copy(dst[:H], final[src:src+H])
			for d := 0; d < H; d++ {
				for q, idx := range v.Intermediates {
					dst[H+d*k+q] = hidden[state(idx)][src+d]
				}
			}
		}
	}
	return res
}

// visionLayer runs one encoder layer on x [N, H]: pre-LayerNorm attention
// under mask and a GELU MLP, each branch scaled by its gate (1 for the
// local layers) before its residual add.
func (p *mpass) visionLayer(L *MllamaVisionLayer, x, mask Tensor, gAttn, gFFN float32) Tensor {
	v := &p.m.Cfg.Vision
	N, H := Rows(x), v.Hidden
	eps := float32(v.NormEps)
	h1 := p.alloc(N, H)
	p.do("input_layernorm", func() error { return p.ops.LayerNorm(h1, p.alloc32(N), p.alloc32(N), x, L.LN1W.W, L.LN1B.W, eps) })
	q, _ := p.linear(L.Q, h1)
	k, _ := p.linear(L.K, h1)
	vv, _ := p.linear(L.V, h1)
	hd := H / v.Heads
	att, lse := p.alloc(N, H), p.alloc32(v.Heads*N)
	ap := AttnParams{NHeads: v.Heads, NKVHeads: v.Heads, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
	p.do("attention", func() error { return p.ops.BiasAttention(att, lse, q, k, vv, mask, ap) })
	o, _ := p.linear(L.O, att)
	mid := p.alloc(N, H)
	p.do("copy", func() error { return p.B.Copy(mid, x) })
	p.do("attention residual", func() error { return p.B.AddScaled(mid, o, gAttn) })
	h2 := p.alloc(N, H)
	p.do("post_attention_layernorm", func() error { return p.ops.LayerNorm(h2, p.alloc32(N), p.alloc32(N), mid, L.LN2W.W, L.LN2B.W, eps) })
	f1, _ := p.linear(L.FC1, h2)
	p.do("gelu", func() error { return p.ops.GELU(f1, f1) })
	f2, _ := p.linear(L.FC2, f1)
	p.do("mlp residual", func() error { return p.B.AddScaled(mid, f2, gFFN) })
	return mid
}
