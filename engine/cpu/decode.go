package cpu

import (
	"fmt"

	"whet/engine"
)

var _ engine.DeviceDecoder = (*Backend)(nil)

// devicePos reads pos[0] (an I32 tensor of one element) and checks it
// against rows.
func devicePos(c *checker, pos engine.Tensor, rows int) (int, bool) {
	pt := c.intTensor("pos", pos)
	if c.Err != nil {
		return 0, false
	}
	c.Length("pos", pt, 1)
	if c.Err != nil {
		return 0, false
	}
	p := int(pt.ints()[0])
	if p < 0 || p >= rows {
		c.Failf("pos[0] = %d is outside the %d rows of the cache", p, rows)
		return 0, false
	}
	return p, true
}

// storeRow copies x [1, C] into row p of cache [rows, C], rounded to the
// cache's dtype.
func storeRow(cache, x *Tensor, p int) {
	cols := x.n
	row := cache.floats()[p*cols : (p+1)*cols]
	copy(row, x.floats())
	if cache.dt == engine.BF16 {
		roundSliceBF16(row) // only the row written
	}
}

// AttentionDecode turns q and k by RoPEPartial at pos[0] (in copies),
// stores the turned k and v in that row of the caches and attends over
// rows 0..pos[0] (AttentionKV).
func (b *Backend) AttentionDecode(out, q, k, v, kCache, vCache, pos, cos, sin engine.Tensor, p engine.AttnParams) error {
	c := check("AttentionDecode")
	qt, kt, vt := c.float("q", q), c.float("k", k), c.float("v", v)
	kc, vc, ct := c.float("kCache", kCache), c.float("vCache", vCache), c.float("cos", cos)
	if c.Err != nil {
		return c.Err
	}
	kd := p.NKVHeads * p.HeadDim
	rows := engine.Rows(kc)
	c.Matrix("k", kt, 1, kd)
	c.Matrix("v", vt, 1, kd)
	c.Matrix("kCache", kc, rows, kd)
	c.Matrix("vCache", vc, rows, kd)
	if c.Err != nil {
		return c.Err
	}
	at, ok := devicePos(&c, pos, min(rows, engine.Rows(ct)))
	if !ok {
		return c.Err
	}
	turned := func(x *Tensor, heads int) (*Tensor, error) {
		t, err := b.Alloc(x.dt, x.shape...)
		if err != nil {
			return nil, err
		}
		if err := b.Copy(t, x); err != nil {
			return nil, err
		}
		return t.(*Tensor), b.RoPEPartial(t, pos, cos, sin, heads, p.HeadDim, false)
	}
	qr, err := turned(qt, p.NHeads)
	if err != nil {
		return fmt.Errorf("cpu: AttentionDecode: turn q: %w", err)
	}
	defer b.Free(qr)
	kr, err := turned(kt, p.NKVHeads)
	if err != nil {
		return fmt.Errorf("cpu: AttentionDecode: turn k: %w", err)
	}
	defer b.Free(kr)
	storeRow(kc, kr, at)
	storeRow(vc, vt, at)
	kv, err := b.View(kc, 0, at+1, kd)
	if err != nil {
		return fmt.Errorf("cpu: AttentionDecode: %w", err)
	}
	vv, err := b.View(vc, 0, at+1, kd)
	if err != nil {
		return fmt.Errorf("cpu: AttentionDecode: %w", err)
	}
	return b.AttentionKV(out, qr, kv, vv, at, p)
}

// Argmax writes the column of the largest logit (the lowest on ties) into
// ids[0].
func (b *Backend) Argmax(ids, logits engine.Tensor) error {
	c := check("Argmax")
	it, lt := c.intTensor("ids", ids), c.float("logits", logits)
	if c.Err != nil {
		return c.Err
	}
	c.Length("ids", it, 1)
	c.Matrix("logits", lt, 1, engine.Cols(lt))
	if c.Err != nil {
		return c.Err
	}
	l := lt.floats()
	best := 0
	for i, v := range l {
		if v > l[best] {
			best = i
		}
	}
	it.ints()[0] = int32(best)
	return nil
}

// AdvancePosition adds 1 to pos[0] while it stays below limit.
func (b *Backend) AdvancePosition(pos engine.Tensor, limit int) error {
	c := check("AdvancePosition")
	pt := c.intTensor("pos", pos)
	if c.Err != nil {
		return c.Err
	}
	c.Length("pos", pt, 1)
	if c.Err != nil {
		return c.Err
	}
	if p := pt.ints(); int(p[0])+1 < limit {
		p[0]++
	}
	return nil
}
