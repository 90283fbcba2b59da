package cuda

import (
	"fmt"

	"whet/engine"
)

var _ engine.NF4Dequantizer = (*Backend)(nil)

// nf4Block is the NF4 block size (values per absmax), bitsandbytes' and
// QLoRA's default, as engine.NF4BlockSize.
const nf4Block = 64

// DequantizeNF4 expands NF4 codes times their block's absmax into out
// (overwritten), for QLoRA: packed is I32 (n/8 words, two 4-bit codes per
// byte, high nibble first, bytes little-endian), absmax F32 (n/64).
func (b *Backend) DequantizeNF4(out, packed, absmax engine.Tensor) error {
	c := b.check("DequantizeNF4")
	ot, pt, at := c.float("out", out), c.intTensor("packed", packed), c.f32("absmax", absmax)
	if c.Err != nil {
		return c.Err
	}
	n := ot.n
	if n%nf4Block != 0 || pt.n*8 != n || at.n*nf4Block != n {
		c.Failf("out %v (%d values) needs %d packed words and %d absmax values, got %d and %d",
			ot.shape, n, n/8, n/nf4Block, pt.n, at.n)
		return c.Err
	}
	c.disjoint("out", ot, "packed", pt)
	c.disjoint("out", ot, "absmax", at)
	if c.Err != nil {
		return c.Err
	}
	if n == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	return b.launch(fmt.Sprintf("DequantizeNF4 %s %v", ot.dt, ot.shape), "nf4.cu", "dequantize_nf4", b.gridFor(pt.n), block256, 0,
		ot.ptr(), dt(ot), pt.ptr(), at.ptr(), int64(pt.n))
}
