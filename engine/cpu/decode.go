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

// KVAppend copies x [1, C] into row pos[0] of cache [rows, C].
func (b *Backend) KVAppend(cache, x, pos engine.Tensor) error {
	c := check("KVAppend")
	ct, xt := c.float("cache", cache), c.float("x", x)
	if c.Err != nil {
		return c.Err
	}
	cols := engine.Cols(ct)
	c.Matrix("x", xt, 1, cols)
	p, ok := devicePos(&c, pos, engine.Rows(ct))
	if !ok {
		return c.Err
	}
	row := ct.floats()[p*cols : (p+1)*cols]
	copy(row, xt.floats())
	if ct.dt == engine.BF16 {
		roundSliceBF16(row) // only the row written
	}
	return nil
}

// AttentionDecode is AttentionKV for the one query at position pos[0]
// over rows 0..pos[0] of the caches k and v.
func (b *Backend) AttentionDecode(out, q, k, v, pos engine.Tensor, p engine.AttnParams) error {
	c := check("AttentionDecode")
	kt := c.float("k", k)
	if c.Err != nil {
		return c.Err
	}
	at, ok := devicePos(&c, pos, engine.Rows(kt))
	if !ok {
		return c.Err
	}
	kd := engine.Cols(kt)
	kv, err := b.View(k, 0, at+1, kd)
	if err != nil {
		return fmt.Errorf("cpu: AttentionDecode: %w", err)
	}
	vv, err := b.View(v, 0, at+1, kd)
	if err != nil {
		return fmt.Errorf("cpu: AttentionDecode: %w", err)
	}
	return b.AttentionKV(out, q, kv, vv, at, p)
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
