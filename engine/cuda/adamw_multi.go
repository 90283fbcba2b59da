package cuda

import (
	"fmt"
	"math"
	"slices"
	"unsafe"

	"whet/engine"
)

// adamwChunk is the most elements one block of adamw_multi steps: tensors
// are cut into chunks of this size, one block each.
const adamwChunk = 1 << 15

// adamwTable is a chunk table of kernels/adamw.cu's adamw_multi kept on
// the device: the optimizer steps the same tensors every step, so a table
// is built and uploaded once per set of tensors.
type adamwTable struct {
	host  []uint64
	ptr   uint64
	bytes int64
}

// AdamWAll (engine.MultiAdamW) runs AdamW on every set in one launch and
// writes each updated param into its Out where set.
func (b *Backend) AdamWAll(sets []engine.AdamWSet, p engine.AdamWParams) error {
	c := checker{op: "AdamWAll", b: b}
	var table []uint64
	for i, s := range sets {
		name := func(what string) string { return fmt.Sprintf("sets[%d].%s", i, what) }
		pt := c.f32(name("Param"), s.Param)
		gt := c.float(name("Grad"), s.Grad)
		mt := c.f32(name("M"), s.M)
		vt := c.f32(name("V"), s.V)
		c.sameLen(name("Param"), pt, name("Grad"), gt)
		c.sameLen(name("Param"), pt, name("M"), mt)
		c.sameLen(name("Param"), pt, name("V"), vt)
		var ot *Tensor
		if !isNil(s.Out) {
			ot = c.float(name("Out"), s.Out)
			c.sameLen(name("Param"), pt, name("Out"), ot)
			c.disjoint(name("Out"), ot, name("Param"), pt)
		}
		if c.err != nil {
			return c.err
		}
		for off := 0; off < pt.n; off += adamwChunk {
			n := min(adamwChunk, pt.n-off)
			out, odt := uint64(0), uint64(0)
			if ot != nil {
				out, odt = ot.ptr()+uint64(off*ot.dt.Size()), uint64(ot.dt)
			}
			table = append(table, pt.ptr()+uint64(4*off), gt.ptr()+uint64(off*gt.dt.Size()),
				mt.ptr()+uint64(4*off), vt.ptr()+uint64(4*off), out, uint64(n), uint64(gt.dt)|odt<<32)
		}
	}
	if c.err == nil && p.Step < 1 {
		c.failf("Step %d: steps count from 1", p.Step)
	}
	if c.err != nil {
		return c.err
	}
	if len(table) == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("AdamWAll of %d tensors", len(sets))
	dev, err := b.adamwTableOnDevice(op, table)
	if err != nil {
		return err
	}
	bc1 := 1 - math.Pow(float64(p.Beta1), float64(p.Step))
	bc2 := 1 - math.Pow(float64(p.Beta2), float64(p.Step))
	return b.launch(op, "adamw.cu", "adamw_multi", dim3{len(table) / 7, 1, 1}, block256, 0,
		dev, 1-p.LR*p.WeightDecay, 1-p.Beta1, p.Beta2, 1-p.Beta2, float32(float64(p.LR)/bc1), float32(math.Sqrt(bc2)), p.Eps)
}

// adamwTableOnDevice returns the device copy of table, uploading it unless
// one of the tables kept (one per weight-decay group, typically) equals it.
func (b *Backend) adamwTableOnDevice(op string, table []uint64) (uint64, error) {
	for _, t := range b.adamwTables {
		if slices.Equal(t.host, table) {
			return t.ptr, nil
		}
	}
	const keep = 4
	if len(b.adamwTables) == keep { // drop the oldest
		old := b.adamwTables[0]
		b.rawFree(old.ptr, old.bytes)
		b.adamwTables = b.adamwTables[1:]
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
	b.adamwTables = append(b.adamwTables, adamwTable{host: slices.Clone(table), ptr: p, bytes: bytes})
	return p, nil
}
