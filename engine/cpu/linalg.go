package cpu

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"whet/engine"
)

// MatMul computes c = alpha*op(a)@op(b) + beta*c through gonum's Sgemm,
// which splits large products over all cores. beta == 0 overwrites c
// without reading it, as BLAS does.
func (b *Backend) MatMul(c, a, bm engine.Tensor, transA, transB bool, alpha, beta float32) error {
	ch := check("MatMul")
	ct := ch.float("c", c)
	at := ch.float("a", a)
	bt := ch.float("b", bm)
	ch.disjoint("c", ct, "a", at)
	ch.disjoint("c", ct, "b", bt)
	if ch.Err != nil {
		return ch.Err
	}
	m, k, n, ok := ch.MatMul(ct, at, bt, transA, transB)
	if !ok {
		return ch.Err
	}
	if m == 0 || n == 0 {
		return nil
	}
	cd := ct.floats()
	if k == 0 {
		// Sgemm rejects a zero leading dimension; the product is empty.
		for i := range cd {
			if beta == 0 {
				cd[i] = 0
			} else {
				cd[i] *= beta
			}
		}
		ct.settle()
		return nil
	}
	tA, tB := blas.NoTrans, blas.NoTrans
	if transA {
		tA = blas.Trans
	}
	if transB {
		tB = blas.Trans
	}
	blas32.Gemm(tA, tB, alpha,
		blas32.General{Rows: engine.Rows(at), Cols: engine.Cols(at), Stride: engine.Cols(at), Data: at.floats()},
		blas32.General{Rows: engine.Rows(bt), Cols: engine.Cols(bt), Stride: engine.Cols(bt), Data: bt.floats()},
		beta,
		blas32.General{Rows: m, Cols: n, Stride: n, Data: cd})
	ct.settle()
	return nil
}

// AddScaled computes dst += alpha*src.
func (b *Backend) AddScaled(dst, src engine.Tensor, alpha float32) error {
	c := check("AddScaled")
	d := c.float("dst", dst)
	s := c.float("src", src)
	c.SameLen("dst", d, "src", s)
	if c.Err != nil {
		return c.Err
	}
	dd, sd := d.floats(), s.floats()
	for i := range dd {
		dd[i] += alpha * sd[i]
	}
	d.settle()
	return nil
}

// Scale computes t *= s.
func (b *Backend) Scale(t engine.Tensor, s float32) error {
	c := check("Scale")
	d := c.float("t", t)
	if c.Err != nil {
		return c.Err
	}
	x := d.floats()
	for i := range x {
		x[i] *= s
	}
	d.settle()
	return nil
}

// AddBias adds bias to every row of out.
func (b *Backend) AddBias(out, bias engine.Tensor) error {
	c := check("AddBias")
	o := c.float("out", out)
	bs := c.float("bias", bias)
	if c.Err != nil {
		return c.Err
	}
	cols := engine.Cols(o)
	c.Length("bias", bs, cols)
	if c.Err != nil {
		return c.Err
	}
	od, bd := o.floats(), bs.floats()
	for r := 0; r < engine.Rows(o); r++ {
		row := od[r*cols : (r+1)*cols]
		for j := range row {
			row[j] += bd[j]
		}
	}
	o.settle()
	return nil
}

// BiasBackward adds the column sums of dOut to dBias.
func (b *Backend) BiasBackward(dBias, dOut engine.Tensor) error {
	c := check("BiasBackward")
	db := c.float("dBias", dBias)
	do := c.float("dOut", dOut)
	if c.Err != nil {
		return c.Err
	}
	cols := engine.Cols(do)
	c.Length("dBias", db, cols)
	if c.Err != nil {
		return c.Err
	}
	sums := make([]float64, cols)
	dd := do.floats()
	for r := 0; r < engine.Rows(do); r++ {
		for j, v := range dd[r*cols : (r+1)*cols] {
			sums[j] += float64(v)
		}
	}
	bd := db.floats()
	for j := range bd {
		bd[j] += float32(sums[j])
	}
	db.settle()
	return nil
}

// SumSquares returns the sum of squares of t in float64.
func (b *Backend) SumSquares(t engine.Tensor) (float64, error) {
	c := check("SumSquares")
	d := c.float("t", t)
	if c.Err != nil {
		return 0, c.Err
	}
	var s float64
	for _, v := range d.floats() {
		s += float64(v) * float64(v)
	}
	return s, nil
}
