package engine

// NF4MatVecs is implemented by backends that multiply one row by several
// NF4 weights that share it (q, k and v; gate and up) in one launch:
// ys[i] [1, n_i] = x [1, k] @ W_i^T (+ ys[i] when accumulate), W_i held as
// packed[i] and absmax[i] (QuantState's Packed and Absmax). ok is false,
// with nothing done, when the backend cannot take these operands (the
// caller then multiplies them one by one through NF4MatVec).
// NF4MatVecsOn says whether the backend takes shared products at all now
// (a backend may keep its kernel opt-in); while it is false the decoder
// keeps its one-by-one path unchanged.
type NF4MatVecs interface {
	NF4MatVec
	NF4MatVecsOn() bool
	MatVecsNF4(ys []Tensor, x Tensor, packed, absmax []Tensor, accumulate bool) (ok bool, err error)
}
