package cpu

import "whet/engine"

var _ engine.NF4Dequantizer = (*Backend)(nil)

// DequantizeNF4 expands NF4 codes (bitsandbytes' layout: two 4-bit
// indices per byte, the first in the high nibble, bytes little-endian in
// int32 words) times their block's absmax into out, which is overwritten.
func (b *Backend) DequantizeNF4(out, packed, absmax engine.Tensor) error {
	c := check("DequantizeNF4")
	ot, pt, at := c.float("out", out), c.intTensor("packed", packed), c.f32("absmax", absmax)
	if c.Err != nil {
		return c.Err
	}
	n := ot.n
	if n%engine.NF4BlockSize != 0 || pt.n*8 != n || at.n*engine.NF4BlockSize != n {
		c.Failf("out %v (%d values) needs %d packed words and %d absmax values, got %d and %d",
			ot.shape, n, n/8, n/engine.NF4BlockSize, pt.n, at.n)
		return c.Err
	}
	od, pd, ad := ot.floats(), pt.ints(), at.floats()
	parallelFor(len(pd), 1024, func(lo, hi int) {
		for w := lo; w < hi; w++ {
			word := uint32(pd[w])
			for k := 0; k < 4; k++ {
				by := byte(word >> (8 * k))
				i := 8*w + 2*k
				s := ad[i/engine.NF4BlockSize]
				od[i] = engine.NF4Levels[by>>4] * s
				od[i+1] = engine.NF4Levels[by&15] * s
			}
		}
	})
	ot.settle()
	return nil
}
