package cuda

import (
	"fmt"
	"slices"
	"unsafe"

	"whet/engine"
)

// Multi-tensor kernels (adamw_multi, sum_squares_multi, fill_multi) take
// one block per chunk of at most multiChunk elements, described by a
// table of 64-bit words that the host builds. The optimizer touches the
// same tensors every step, so each distinct table is uploaded once and
// kept (a few at a time) on the device.
const multiChunk = 1 << 15

// The engine finds these fast paths by type assertion (engine/optim.go,
// engine/params.go); without them it falls back, silently, to one launch
// per tensor. Asserting them here makes a changed signature a build error.
var (
	_ engine.MultiAdamW      = (*Backend)(nil)
	_ engine.SumSquaresOfAll = (*Backend)(nil)
	_ engine.FillOfAll       = (*Backend)(nil)
	_ engine.ScaleOfAll      = (*Backend)(nil)
	_ engine.GradScaleFolder = (*Backend)(nil)
)

// chunkTable is one such table on the device.
type chunkTable struct {
	host  []uint64
	ptr   uint64
	bytes int64
}

// chunks appends, for each chunk of t, its first element's address, its
// length and its dtype: the table of sum_squares_multi and fill_multi.
func chunks(table []uint64, t *Tensor) []uint64 {
	for off := 0; off < t.n; off += multiChunk {
		table = append(table, t.ptr()+uint64(off*t.dt.Size()), uint64(min(multiChunk, t.n-off)), uint64(t.dt))
	}
	return table
}

// AdamWAll (engine.MultiAdamW) runs AdamW on every set in one launch and
// writes each updated param into its Out where set: the gradients' scale
// (clipping), the update and the refresh of the compute copies in one
// pass over the tensors.
func (b *Backend) AdamWAll(sets []engine.AdamWSet, p engine.AdamWParams) error {
	c := b.check("AdamWAll")
	// The fused kernel (the default) unless FusedAdamWEnv=0 asks for
	// adamw_multi and nothing needs the fused one (a gradient scale, bf16
	// masters).
	fused := b.fusedAdamW || p.GradMultiplier() != 1
	for _, s := range sets {
		fused = fused || s.RoundSeed != 0 || (!isNil(s.Param) && s.Param.DType() != engine.F32)
	}
	var table []uint64
	for i, s := range sets {
		name := func(what string) string { return fmt.Sprintf("sets[%d].%s", i, what) }
		pt := c.float(name("Param"), s.Param)
		gt := c.float(name("Grad"), s.Grad)
		mt := c.f32(name("M"), s.M)
		vt := c.f32(name("V"), s.V)
		c.SameLen(name("Param"), pt, name("Grad"), gt)
		c.SameLen(name("Param"), pt, name("M"), mt)
		c.SameLen(name("Param"), pt, name("V"), vt)
		var ot *Tensor
		if !isNil(s.Out) {
			if s.RoundSeed != 0 {
				c.Failf("%s: a bf16 master (RoundSeed set) is its own compute copy: Out must be nil", name("Out"))
			}
			ot = c.float(name("Out"), s.Out)
			c.SameLen(name("Param"), pt, name("Out"), ot)
			c.disjoint(name("Out"), ot, name("Param"), pt)
		}
		if c.Err != nil {
			return c.Err
		}
		ps := uint64(pt.dt.Size())
		for off := 0; off < pt.n; off += multiChunk {
			n := min(multiChunk, pt.n-off)
			out, odt := uint64(0), uint64(0)
			if ot != nil {
				out, odt = ot.ptr()+uint64(off*ot.dt.Size()), uint64(ot.dt)
			}
			if !fused {
				table = append(table, pt.ptr()+uint64(4*off), gt.ptr()+uint64(off*gt.dt.Size()),
					mt.ptr()+uint64(4*off), vt.ptr()+uint64(4*off), out, uint64(n), uint64(gt.dt)|odt<<32)
				continue
			}
			table = append(table, pt.ptr()+ps*uint64(off), gt.ptr()+uint64(off*gt.dt.Size()),
				mt.ptr()+uint64(4*off), vt.ptr()+uint64(4*off), out, uint64(n),
				uint64(gt.dt)|uint64(pt.dt)<<16|odt<<32, s.RoundSeed, uint64(off))
		}
	}
	if c.Err == nil && p.Step < 1 {
		c.Failf("Step %d: steps count from 1", p.Step)
	}
	if c.Err != nil {
		return c.Err
	}
	if len(table) == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	h := adamwHyperOf(p)
	op := fmt.Sprintf("AdamWAll of %d tensors", len(sets))
	if !fused {
		return b.launchTable(op, "adamw.cu", "adamw_multi", table, 7,
			h.decay, h.b1c, h.b2, h.b2c, h.stepSize, h.bc2Sqrt, h.eps)
	}
	return b.launchTable(op, "adamw.cu", "adamw_multi_fused", table, 9,
		h.decay, h.b1c, h.b2, h.b2c, h.stepSize, h.bc2Sqrt, h.eps, h.gscale, uint64(p.Step))
}

// launchTable launches a multi-tensor kernel over table (words 64-bit
// words per chunk, one block per chunk) with the table's device address
// as its first argument. The caller holds the backend (enter).
func (b *Backend) launchTable(op, file, name string, table []uint64, words int, args ...any) error {
	dev, err := b.tableOnDevice(op, table)
	if err != nil {
		return err
	}
	return b.launch(op, file, name, dim3{len(table) / words, 1, 1}, block256, 0, append([]any{dev}, args...)...)
}

// tableOnDevice returns the device copy of table, uploading it unless one
// of the tables kept (per weight-decay group for AdamW, the gradients for
// the norm and zeroing) equals it.
func (b *Backend) tableOnDevice(op string, table []uint64) (uint64, error) {
	for _, t := range b.chunkTables {
		if slices.Equal(t.host, table) {
			return t.ptr, nil
		}
	}
	const keep = 6
	if len(b.chunkTables) == keep { // drop the oldest
		old := b.chunkTables[0]
		b.rawFree(old.ptr, old.bytes)
		b.chunkTables = b.chunkTables[1:]
	}
	bytes := int64(8 * len(table))
	p, err := b.rawAlloc(bytes)
	if err != nil {
		return 0, withOp(fmt.Sprintf("%s: chunk table of %d bytes", op, bytes), err)
	}
	// Synchronous: the table is in place before the launch reads it.
	if err := b.drv.call("cuMemcpyHtoD_v2", b.drv.cuMemcpyHtoD, uintptr(p), uintptr(unsafe.Pointer(&table[0])), uintptr(bytes)); err != nil {
		b.rawFree(p, bytes)
		return 0, withOp(op+": chunk table", err)
	}
	b.chunkTables = append(b.chunkTables, chunkTable{host: slices.Clone(table), ptr: p, bytes: bytes})
	return p, nil
}

// FillAll (engine.FillOfAll) sets every element of every tensor to v in
// one launch (zeroing hundreds of adapter gradients).
func (b *Backend) FillAll(ts []engine.Tensor, v float32) error {
	c := b.check("FillAll")
	var table []uint64
	ds := make([]*Tensor, len(ts))
	for i, t := range ts {
		d := c.tensor(fmt.Sprintf("ts[%d]", i), t)
		ds[i] = d
		if c.Err != nil {
			return c.Err
		}
		if d.dt == engine.I32 && v != float32(int32(v)) {
			return fmt.Errorf("cuda: FillAll: %g is not an int32 for I32 tensor ts[%d] %v", v, i, d.shape)
		}
		table = chunks(table, d)
	}
	if len(table) == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	for _, d := range ds {
		d.alloc.known = nil
		if d.dt == engine.I32 {
			d.alloc.known = summarise(d.off, []int32{int32(v)})
			d.alloc.known.n = d.n
		}
	}
	return b.launchTable(fmt.Sprintf("FillAll of %d tensors", len(ts)), fileElementwise, "fill_multi", table, 3, v)
}

// ScaleAll (engine.ScaleOfAll) multiplies every element of every float
// tensor by v in one launch (clipping hundreds of adapter gradients).
func (b *Backend) ScaleAll(ts []engine.Tensor, v float32) error {
	c := b.check("ScaleAll")
	var table []uint64
	for i, t := range ts {
		d := c.float(fmt.Sprintf("ts[%d]", i), t)
		if c.Err != nil {
			return c.Err
		}
		table = chunks(table, d)
	}
	if len(table) == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	return b.launchTable(fmt.Sprintf("ScaleAll of %d tensors", len(ts)), fileElementwise, "scale_multi", table, 3, v)
}
