package engine

import (
	"fmt"
	"slices"

	"whet/engine/envswitch"
)

// Stacked LoRA adapters (issue 20): the adapters of linears that read the
// same input (q, k and v; gate and up) keep their A matrices as row blocks
// of one tensor, so that the thin products of the group run as one GEMM
// each instead of one per adapter:
//
//	forward    xaᵀ [R, t] = A_stack [R, in] · xᵀ          (x read once, not 3 times)
//	           y_i       += s_i · (xaᵀ_i)ᵀ · B_iᵀ         (rows of xaᵀ: contiguous views)
//	backward   dB_i      += s_i · dy_iᵀ · (xaᵀ_i)ᵀ
//	           dxaᵀ_i     = s_i · B_iᵀ · dy_iᵀ            (rows of dxaᵀ [R, t])
//	           dA_stack  += dxaᵀ · x                       (x read once)
//	           dx         = (dxaᵀ)ᵀ · A_stack              (one write of dx, before the base
//	                                                         products add into it)
//
// with R the sum of the group's ranks. The intermediate is kept transposed
// ([R, t], not [t, R]) so that each member's block is a contiguous view:
// the Backend's MatMul takes contiguous operands only. Inside an MLP tile
// of rows [r0, r0+t) the block of the tile starts at element r0·R.
//
// The storage keeps PEFT's layout: each adapter is still its own Param
// (lora_A / lora_B of its module, same names and shapes), whose A weight
// and A gradient are views of the stack's tensors; checkpoints and adapter
// files read and write the Params as before.
//
// Dropout: PEFT draws an independent mask per adapter, so with dropout
// the adapters' inputs differ and a pass runs the group unstacked (each
// adapter as before, same masks as without stacking); stacking then only
// serves passes without dropout (evaluation, generation). Adapters
// switched off, or weights no longer in the stack, also run unstacked.
//
// The default since it ran on GPUs (tools/gpu/lora-fused on an H200 and
// tools/gpu/gemm-tune on an H100, 2026-12-07: TestLoRAStackedMatchesCPU
// and the LoRA training curves passed, Llama-3.2-1B LoRA 1.6-2.2 %
// faster); WHET_LORA_FUSED=0 when the adapters are made turns it off.

// LoRAFusedEnv set to 0 makes AddLoRA keep every adapter's A on its own
// (no stacking); unset or 1, the adapters of q, k, v and of gate, up are
// stacked (see LoRAOptions.Fused).
const LoRAFusedEnv = "WHET_LORA_FUSED"

// LoRAFusedOn is the one rule for whether adapters are stacked: asked for
// in the options, or unless LoRAFusedEnv=0.
func LoRAFusedOn(asked bool) bool {
	return asked || envswitch.On(LoRAFusedEnv)
}

// loraStack is a group of adapters on linears sharing their input whose A
// weights (and gradients) are row blocks of one tensor.
type loraStack struct {
	lins []*Linear // members, in block order
	offs []int     // first row of each member's A in the stack
	rows int       // sum of the members' ranks
	in   int
	w    Tensor // [rows, in] compute dtype: members' A.W are its row blocks
	grad Tensor // F32 [rows, in]: members' A.Grad are its row blocks
	// ws and grads are the members' A.W and A.Grad as made here; a member
	// whose tensor is no longer this one (data parallelism moves the
	// gradients into buckets) turns the stacked product off for it.
	ws, grads []Tensor
}

// LoRAStackGroups are the groups of the family's linears that read the
// same input and whose adapters a fused run stacks (short names, block
// order): q, k, v and gate, up. A family with fused projections (Phi-3's
// qkv_proj, gate_up_proj) has one adapter there already, and no group.
func (f *Family) LoRAStackGroups() [][]string {
	var out [][]string
	n := f.Names
	if n.Q != "" && n.K != "" && n.V != "" {
		out = append(out, []string{"q", "k", "v"})
	}
	if n.Gate != "" && n.Up != "" {
		out = append(out, []string{"gate", "up"})
	}
	return out
}

// stackGroups returns, for layer l, the groups of linears that get adapters
// (per want) and are stacked: at least two members with the same input
// width, plain linears (no fused parts).
func (m *Model) stackGroups(l *Layer, want map[string]bool) [][]*Linear {
	fam := m.Family()
	if fam == nil {
		return nil
	}
	byShort := map[string]*Linear{}
	for _, lin := range l.linears() {
		byShort[lin.Short] = lin
	}
	var out [][]*Linear
	for _, g := range fam.LoRAStackGroups() {
		var lins []*Linear
		for _, s := range g {
			if lin := byShort[s]; lin != nil && want[s] && lin.Parts == nil {
				lins = append(lins, lin)
			}
		}
		if len(lins) >= 2 && !slices.ContainsFunc(lins, func(x *Linear) bool { return x.In != lins[0].In }) {
			out = append(out, lins)
		}
	}
	return out
}

// newLoRAStack allocates the stack for lins, each with rank r, and returns
// it with the members' A weights as views (A.W of each Param), the
// gradients made by makeTrainable later.
func (m *Model) newLoRAStack(lins []*Linear, r int) (*loraStack, error) {
	st := &loraStack{lins: lins, in: lins[0].In}
	for range lins {
		st.offs = append(st.offs, st.rows)
		st.rows += r
	}
	var err error
	if st.w, err = m.B.Alloc(m.Compute, st.rows, st.in); err != nil {
		return nil, fmt.Errorf("allocate stacked lora A %v: %w", []int{st.rows, st.in}, err)
	}
	if st.grad, err = m.B.Alloc(F32, st.rows, st.in); err != nil {
		m.B.Free(st.w)
		return nil, fmt.Errorf("allocate stacked lora A gradient %v: %w", []int{st.rows, st.in}, err)
	}
	if err = m.B.Fill(st.grad, 0); err != nil {
		st.free(m.B)
		return nil, fmt.Errorf("zero stacked lora A gradient: %w", err)
	}
	for i := range lins {
		w, err := m.B.View(st.w, st.offs[i]*st.in, r, st.in)
		if err != nil {
			st.free(m.B)
			return nil, err
		}
		g, err := m.B.View(st.grad, st.offs[i]*st.in, r, st.in)
		if err != nil {
			st.free(m.B)
			return nil, err
		}
		st.ws, st.grads = append(st.ws, w), append(st.grads, g)
	}
	return st, nil
}

func (st *loraStack) free(b Backend) {
	b.Free(st.w)
	b.Free(st.grad)
	st.w, st.grad = nil, nil
}

// weightsStacked reports whether every member's A weight is still its view
// of the stack.
func (st *loraStack) weightsStacked() bool {
	for i, lin := range st.lins {
		if lin.LoRA == nil || lin.LoRA.stack != st || lin.LoRA.A.W != st.ws[i] {
			return false
		}
	}
	return true
}

// gradsStacked reports whether every member's A gradient is still its view
// of the stack's.
func (st *loraStack) gradsStacked() bool {
	if st.grad == nil {
		return false
	}
	for i, lin := range st.lins {
		if lin.LoRA.A.Grad != st.grads[i] {
			return false
		}
	}
	return true
}

// stackOn reports whether this pass runs st's adapters stacked: all of them
// on, none dropping inputs, weights in the stack.
//
// Generation (a.kv set) runs them unstacked: a decoding step is one row,
// where the stack saves nothing, and its one-row products keep the
// operands the recorded decoding steps were made with.
func (a *Activations) stackOn(st *loraStack) bool {
	if st == nil || a.kv != nil || !st.weightsStacked() {
		return false
	}
	for _, lin := range st.lins {
		if lo := lin.LoRA; !lo.Enabled || a.dropout(lo) {
			return false
		}
	}
	return true
}

// stacked is the stack lin's adapter runs in during this pass, or nil.
func (a *Activations) stacked(lin *Linear) *loraStack {
	if lo := lin.LoRA; lo != nil && a.stackOn(lo.stack) {
		return lo.stack
	}
	return nil
}

// stackRows is rows [row0, row0+n) of st's intermediate xaᵀ [R, t] for the
// current rows (the MLP tile's when inside one).
func (a *Activations) stackRows(st *loraStack, set *layerActs, row0, n int) Tensor {
	buf := set.stackXA[st]
	v, err := a.m.B.View(buf, a.r0*st.rows+row0*a.t, n, a.t)
	if err != nil {
		a.noteViewErr(fmt.Errorf("engine: stacked lora rows [%d,%d) of %d for %d tokens at %d: %w", row0, row0+n, st.rows, a.t, a.r0, err))
		return buf
	}
	return v
}

// memberRows is lin's block of rows of st's intermediate.
func (a *Activations) memberRows(st *loraStack, lin *Linear, set *layerActs) Tensor {
	return a.stackRows(st, set, lin.LoRA.stackRow, lin.LoRA.Rank)
}

// stackXA computes the intermediate of every adapter of the linears in
// lins that run stacked in this pass, one product per stack: xaᵀ = A xᵀ.
func (a *Activations) stackXA(lins []*Linear, x Tensor, set *layerActs) error {
	for _, st := range a.stacksOf(lins) {
		if err := a.m.B.MatMul(a.stackRows(st, set, 0, st.rows), st.w, x, false, true, 1, 0); err != nil {
			return fmt.Errorf("%s stacked lora A: %w", st.lins[0].Module, err)
		}
		a.stackedProducts++
	}
	return nil
}

// stacksOf lists the stacks, running stacked in this pass, that lins'
// adapters belong to (each once).
func (a *Activations) stacksOf(lins []*Linear) []*loraStack {
	var out []*loraStack
	for _, lin := range lins {
		if st := a.stacked(lin); st != nil && !slices.Contains(out, st) {
			out = append(out, st)
		}
	}
	return out
}

// dxaRows is rows [row0, row0+n) of the adapters' intermediate gradient
// dxaᵀ [R, t] in the shared scratch.
func (a *Activations) dxaRows(row0, n int) Tensor {
	v, err := a.m.B.View(a.dxa, row0*a.t, n, a.t)
	if err != nil {
		a.noteViewErr(fmt.Errorf("engine: lora gradient scratch rows [%d,%d) for %d tokens: %w", row0, row0+n, a.t, err))
		return a.dxa
	}
	return v
}

// stackBackward runs the adapter backward of the linears in lins that run
// stacked in this pass, dys[i] being lins[i]'s output gradient: B and A
// gradients, and the adapters' part of dx, written (accumulate false) or
// added, one product for all. It reports whether it wrote dx, so that
// the linears' own backward (which then skips their adapters) adds to it.
func (a *Activations) stackBackward(lins []*Linear, x Tensor, dys []Tensor, dx Tensor, accumulate bool, set *layerActs) (bool, error) {
	B := a.m.B
	wrote := false
	for _, st := range a.stacksOf(lins) {
		for i, lin := range lins {
			if a.stacked(lin) != st {
				continue
			}
			lo := lin.LoRA
			xa, dxa := a.memberRows(st, lin, set), a.dxaRows(lo.stackRow, lo.Rank)
			if err := B.MatMul(lo.B.Grad, dys[i], xa, true, true, lo.Scale, 1); err != nil {
				return wrote, fmt.Errorf("%s lora B grad: %w", lin.Module, err)
			}
			if err := B.MatMul(dxa, lo.B.W, dys[i], true, true, lo.Scale, 0); err != nil {
				return wrote, fmt.Errorf("%s lora dxa: %w", lin.Module, err)
			}
		}
		dxa := a.dxaRows(0, st.rows)
		if st.gradsStacked() {
			if err := B.MatMul(st.grad, dxa, x, false, false, 1, 1); err != nil {
				return wrote, fmt.Errorf("%s stacked lora A grad: %w", st.lins[0].Module, err)
			}
		} else {
			for _, lin := range st.lins {
				lo := lin.LoRA
				if err := B.MatMul(lo.A.Grad, a.dxaRows(lo.stackRow, lo.Rank), x, false, false, 1, 1); err != nil {
					return wrote, fmt.Errorf("%s lora A grad: %w", lin.Module, err)
				}
			}
		}
		if dx == nil {
			continue
		}
		beta := float32(0)
		if accumulate || wrote {
			beta = 1
		}
		if err := B.MatMul(dx, dxa, st.w, true, false, 1, beta); err != nil {
			return wrote, fmt.Errorf("%s stacked lora input grad: %w", st.lins[0].Module, err)
		}
		wrote = true
	}
	return wrote, nil
}

// restackGrads follows data parallelism moving the gradients of bk's
// params into its flat buffer: a stack whose members' A gradients moved
// there side by side, in order, takes that stretch of the bucket as its
// stacked gradient (freeing its own); one whose members moved apart loses
// it, and the backward then takes each member's A gradient alone.
func (m *Model) restackGrads(bk *gradBucket) error {
	at := map[*Param]int{}
	for i, p := range bk.params {
		at[p] = bk.offs[i]
	}
	for _, l := range m.Layers {
		for _, st := range l.loraStacks {
			first, ok := at[st.lins[0].LoRA.A]
			if !ok {
				continue
			}
			together := true
			for i, lin := range st.lins {
				off, ok := at[lin.LoRA.A]
				together = together && ok && off == first+st.offs[i]*st.in
			}
			m.B.Free(st.grad)
			st.grad = nil
			if !together {
				continue
			}
			g, err := m.B.View(bk.grad, first, st.rows, st.in)
			if err != nil {
				return fmt.Errorf("data parallel: stacked lora A gradient of %s: %w", st.lins[0].Module, err)
			}
			st.grad = g
			for i, lin := range st.lins {
				st.grads[i] = lin.LoRA.A.Grad
			}
		}
	}
	return nil
}

// stackXABuffer lays out a stack's intermediate for up to T tokens: one
// buffer serving both as xaᵀ [R, T] (stacked passes) and as each member's
// own xa [T, r_i] (unstacked passes), the latter starting at element
// offsets rounded up to 16 bytes so that the GEMMs take them in place.
// It returns the buffer's length and the members' offsets.
func stackXABuffer(st *loraStack, T int) (n int, offs []int) {
	for _, lin := range st.lins {
		offs = append(offs, n)
		n += (T*lin.LoRA.Rank + 7) / 8 * 8
	}
	return max(n, T*st.rows), offs
}

// StackedLoRAProducts is how many stacked adapter products (one per group
// and pass) a's passes have run: 0 when no pass ran its adapters stacked.
func (a *Activations) StackedLoRAProducts() int { return a.stackedProducts }
