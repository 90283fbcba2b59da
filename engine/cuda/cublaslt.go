package cuda

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"

	"whet/engine"
)

// cuBLASLt constants (cublasLt.h, library_types.h).
const (
	cublasStatusAllocFailed = 3

	cublasCompute32F = 68 // CUBLAS_COMPUTE_32F
	cudaR32F         = 0  // CUDA_R_32F
	cudaR16BF        = 14 // CUDA_R_16BF

	cublasOpN = 0
	cublasOpT = 1

	matmulDescTransA = 3 // CUBLASLT_MATMUL_DESC_TRANSA
	matmulDescTransB = 4 // CUBLASLT_MATMUL_DESC_TRANSB

	prefMaxWorkspaceBytes = 1 // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES
	prefMinAlignA         = 5 // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES (B, C, D follow)

	heuristicResultSize = 96 // sizeof(cublasLtMatmulHeuristicResult_t)
	matmulAlgoSize      = 64 // sizeof(cublasLtMatmulAlgo_t)
)

var cublasStatusNames = map[int]string{
	1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
	7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// cublasLt holds the entry points of libcublasLt and one handle.
type cublasLt struct {
	lib    *library
	handle uintptr

	cublasLtCreate, cublasLtDestroy                                 uintptr
	cublasLtMatmulDescCreate, cublasLtMatmulDescDestroy             uintptr
	cublasLtMatmulDescSetAttribute                                  uintptr
	cublasLtMatrixLayoutCreate, cublasLtMatrixLayoutDestroy         uintptr
	cublasLtMatmulPreferenceCreate, cublasLtMatmulPreferenceDestroy uintptr
	cublasLtMatmulPreferenceSetAttribute                            uintptr
	cublasLtMatmulAlgoGetHeuristic, cublasLtMatmul                  uintptr
	cublasLtGetVersion                                              uintptr

	plans map[matmulKey]*matmulPlan
	split splitFns // split-K variants for tuning (gemmtune.go)
}

func openCublasLt() (*cublasLt, error) {
	lib, err := openLibrary("cuBLASLt (libcublasLt)", "libcublasLt.so.13", "libcublasLt.so.12")
	if err != nil {
		return nil, err
	}
	c := &cublasLt{lib: lib, plans: map[matmulKey]*matmulPlan{}}
	err = lib.bind(map[string]*uintptr{
		"cublasLtCreate":                       &c.cublasLtCreate,
		"cublasLtDestroy":                      &c.cublasLtDestroy,
		"cublasLtGetVersion":                   &c.cublasLtGetVersion,
		"cublasLtMatmulDescCreate":             &c.cublasLtMatmulDescCreate,
		"cublasLtMatmulDescDestroy":            &c.cublasLtMatmulDescDestroy,
		"cublasLtMatmulDescSetAttribute":       &c.cublasLtMatmulDescSetAttribute,
		"cublasLtMatrixLayoutCreate":           &c.cublasLtMatrixLayoutCreate,
		"cublasLtMatrixLayoutDestroy":          &c.cublasLtMatrixLayoutDestroy,
		"cublasLtMatmulPreferenceCreate":       &c.cublasLtMatmulPreferenceCreate,
		"cublasLtMatmulPreferenceDestroy":      &c.cublasLtMatmulPreferenceDestroy,
		"cublasLtMatmulPreferenceSetAttribute": &c.cublasLtMatmulPreferenceSetAttribute,
		"cublasLtMatmulAlgoGetHeuristic":       &c.cublasLtMatmulAlgoGetHeuristic,
		"cublasLtMatmul":                       &c.cublasLtMatmul,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

//go:uintptrescapes
func (c *cublasLt) call(name string, fn uintptr, args ...uintptr) error {
	r, _, _ := purego.SyscallN(fn, args...)
	code := int(int32(uint32(r)))
	if code == 0 {
		return nil
	}
	n, ok := cublasStatusNames[code]
	if !ok {
		n = "CUBLAS_STATUS_UNKNOWN"
	}
	return &Error{Call: name, Code: code, Name: n}
}

func (c *cublasLt) version() int {
	r, _, _ := purego.SyscallN(c.cublasLtGetVersion)
	return int(r)
}

func (c *cublasLt) create() error {
	return c.call("cublasLtCreate", c.cublasLtCreate, uintptr(unsafe.Pointer(&c.handle)))
}

// destroy releases every cached plan and the handle.
func (c *cublasLt) destroy() {
	for k, p := range c.plans {
		p.destroy(c)
		delete(c.plans, k)
	}
	if c.handle != 0 {
		purego.SyscallN(c.cublasLtDestroy, c.handle)
		c.handle = 0
	}
}

// matmulKey is everything a plan depends on: cuBLASLt's descriptors and
// the algorithm its heuristic picks are fixed for these values.
type matmulKey struct {
	m, n, k        int // column-major sizes of the cuBLASLt call
	opA, opB       int
	typeAB, typeCD int
	alignA, alignB int // pointer alignment in bytes, capped at 256
	alignC         int
}

// matmulPlan is a cached set of descriptors and the chosen algorithm.
type matmulPlan struct {
	desc, layA, layB, layC uintptr
	algo                   [matmulAlgoSize]byte
	workspace              int
	tuned                  bool             // tuning has run for this plan (gemmtune.go)
	first                  *heuristicResult // the heuristic's choice, when tuning replaced it
}

func (p *matmulPlan) destroy(c *cublasLt) {
	if p.desc != 0 {
		purego.SyscallN(c.cublasLtMatmulDescDestroy, p.desc)
	}
	for _, l := range []uintptr{p.layA, p.layB, p.layC} {
		if l != 0 {
			purego.SyscallN(c.cublasLtMatrixLayoutDestroy, l)
		}
	}
}

func cudaType(dt engine.DType) int {
	if dt == engine.BF16 {
		return cudaR16BF
	}
	return cudaR32F
}

// alignment is the largest power of two up to 256 that divides p.
func alignment(p uint64) int {
	a := 1
	for a < 256 && p%uint64(2*a) == 0 {
		a *= 2
	}
	return a
}

// plan returns the cached plan for key, building it on first use: a
// column-major problem D[m,n] = op(A)[m,k] @ op(B)[k,n] with leading
// dimensions fixed by the operands' storage.
func (c *cublasLt) plan(key matmulKey, lda, ldb, ldc int, workspace int) (*matmulPlan, error) {
	if p, ok := c.plans[key]; ok {
		return p, nil
	}
	p := &matmulPlan{}
	fail := func(err error) (*matmulPlan, error) {
		p.destroy(c)
		return nil, err
	}
	if err := c.call("cublasLtMatmulDescCreate", c.cublasLtMatmulDescCreate, uintptr(unsafe.Pointer(&p.desc)), cublasCompute32F, cudaR32F); err != nil {
		return fail(err)
	}
	opA, opB := int32(key.opA), int32(key.opB)
	if err := c.call("cublasLtMatmulDescSetAttribute", c.cublasLtMatmulDescSetAttribute, p.desc, matmulDescTransA, uintptr(unsafe.Pointer(&opA)), 4); err != nil {
		return fail(err)
	}
	if err := c.call("cublasLtMatmulDescSetAttribute", c.cublasLtMatmulDescSetAttribute, p.desc, matmulDescTransB, uintptr(unsafe.Pointer(&opB)), 4); err != nil {
		return fail(err)
	}
	// Stored shapes: op N means the stored matrix is [rows x cols] = the op's shape.
	rowsA, colsA := key.m, key.k
	if key.opA == cublasOpT {
		rowsA, colsA = key.k, key.m
	}
	rowsB, colsB := key.k, key.n
	if key.opB == cublasOpT {
		rowsB, colsB = key.n, key.k
	}
	mk := func(dst *uintptr, typ, rows, cols, ld int) error {
		return c.call("cublasLtMatrixLayoutCreate", c.cublasLtMatrixLayoutCreate, uintptr(unsafe.Pointer(dst)), uintptr(typ), uintptr(rows), uintptr(cols), uintptr(ld))
	}
	if err := mk(&p.layA, key.typeAB, rowsA, colsA, lda); err != nil {
		return fail(err)
	}
	if err := mk(&p.layB, key.typeAB, rowsB, colsB, ldb); err != nil {
		return fail(err)
	}
	if err := mk(&p.layC, key.typeCD, key.m, key.n, ldc); err != nil {
		return fail(err)
	}
	res, err := c.heuristics(p, key, workspace, 1)
	if err != nil {
		return fail(err)
	}
	p.algo, p.workspace = res[0].algo, res[0].workspace
	c.plans[key] = p
	return p, nil
}

// heuristicResult is one entry of cublasLtMatmulAlgoGetHeuristic's answer
// (cublasLtMatmulHeuristicResult_t).
type heuristicResult struct {
	algo      [matmulAlgoSize]byte
	workspace int
	state     int32 // cublasStatus_t: 0 when the algorithm is usable
}

// parseHeuristics reads count results from buf, laid out as
// cublasLtMatmulHeuristicResult_t: the algorithm (64 bytes), its
// workspace (size_t), its state (int32), then wavesCount and reserved
// words.
func parseHeuristics(buf []byte, count int) ([]heuristicResult, error) {
	if count < 0 || count*heuristicResultSize > len(buf) {
		return nil, fmt.Errorf("cuBLASLt reported %d heuristic results, room for %d", count, len(buf)/heuristicResultSize)
	}
	out := make([]heuristicResult, count)
	for i := range out {
		r := buf[i*heuristicResultSize : (i+1)*heuristicResultSize]
		copy(out[i].algo[:], r[:matmulAlgoSize])
		out[i].workspace = int(binary.LittleEndian.Uint64(r[matmulAlgoSize:]))
		out[i].state = int32(binary.LittleEndian.Uint32(r[matmulAlgoSize+8:]))
	}
	return out, nil
}

// heuristics asks cuBLASLt for up to count algorithms for p's problem
// (key's alignments, at most workspace bytes of workspace), best first by
// its own estimate; at least one, or an error.
func (c *cublasLt) heuristics(p *matmulPlan, key matmulKey, workspace, count int) ([]heuristicResult, error) {
	var pref uintptr
	if err := c.call("cublasLtMatmulPreferenceCreate", c.cublasLtMatmulPreferenceCreate, uintptr(unsafe.Pointer(&pref))); err != nil {
		return nil, err
	}
	defer purego.SyscallN(c.cublasLtMatmulPreferenceDestroy, pref)
	ws := uint64(workspace)
	if err := c.call("cublasLtMatmulPreferenceSetAttribute", c.cublasLtMatmulPreferenceSetAttribute, pref, prefMaxWorkspaceBytes, uintptr(unsafe.Pointer(&ws)), 8); err != nil {
		return nil, err
	}
	for i, a := range []int{key.alignA, key.alignB, key.alignC, key.alignC} {
		v := uint32(a)
		if err := c.call("cublasLtMatmulPreferenceSetAttribute", c.cublasLtMatmulPreferenceSetAttribute, pref, uintptr(prefMinAlignA+i), uintptr(unsafe.Pointer(&v)), 4); err != nil {
			return nil, err
		}
	}
	results := make([]byte, count*heuristicResultSize)
	var got int32
	if err := c.call("cublasLtMatmulAlgoGetHeuristic", c.cublasLtMatmulAlgoGetHeuristic, c.handle, p.desc, p.layA, p.layB, p.layC, p.layC, pref, uintptr(count), uintptr(unsafe.Pointer(&results[0])), uintptr(unsafe.Pointer(&got))); err != nil {
		return nil, err
	}
	if got < 1 {
		return nil, fmt.Errorf("cublasLtMatmulAlgoGetHeuristic found no algorithm for m=%d n=%d k=%d (types %d/%d, alignment %d/%d/%d bytes)",
			key.m, key.n, key.k, key.typeAB, key.typeCD, key.alignA, key.alignB, key.alignC)
	}
	return parseHeuristics(results, int(got))
}

// matmul runs D = alpha*op(A)@op(B) + beta*C with C and D the same buffer.
func (c *cublasLt) matmul(p *matmulPlan, alpha, beta float32, a, b, cd uint64, workspace uint64, wsSize int, stream uintptr) error {
	return c.call("cublasLtMatmul", c.cublasLtMatmul, c.handle, p.desc,
		uintptr(unsafe.Pointer(&alpha)), uintptr(a), p.layA, uintptr(b), p.layB,
		uintptr(unsafe.Pointer(&beta)), uintptr(cd), p.layC, uintptr(cd), p.layC,
		uintptr(unsafe.Pointer(&p.algo[0])), uintptr(workspace), uintptr(wsSize), stream)
}
