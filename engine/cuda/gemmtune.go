package cuda

import (
	"fmt"
	"sort"
	"strings"
	"unsafe"

	"whet/engine/envswitch"
)

// Tuned GEMM algorithms (issue 20). cuBLASLt's heuristic picks one
// algorithm per problem from a model of the card; for the thin products of
// LoRA training (rank 16: 8192x2048x16, 16x2048x8192 with the 8192 tokens
// as the reduction, ...) the profile of the 1B LoRA row shows them at a
// third to a half of the card's bandwidth, where the choice of tile and
// split-K decides the rate. With tuning on, the first call of each problem
// (each plan: sizes, transposes, types and alignments) asks the heuristic
// for up to tuneCandidates algorithms (and, for a small output over a long
// reduction, split-K variants of the first few: splitVariants), times each
// on the call's own operands and keeps the fastest for the rest of the run.
//
// The timing runs write into the call's output when it is overwritten
// (beta 0; the real product follows and overwrites it again) and into a
// scratch output of the same size otherwise, so the results are those of
// the chosen algorithm alone. Every candidate computes the same product
// with float32 accumulation; their orders of summation differ, so a tuned
// run is not bit-equal to an untuned one, nor, when two candidates time
// alike, to another tuned run. Products recorded into a graph are not
// tuned (the capture cannot wait for the device); a later plain call of
// the same problem tunes it. A deterministic backend (Options.
// Deterministic, SetDeterministic) neither tunes nor uses tuned choices:
// timings differ from run to run, and so could the choice.
//
// The default since it ran on an H100 (tools/gpu/gemm-tune, 2026-12-07:
// Llama-3.2-1B LoRA 66,744 -> 67,746 tok/s, TestLoRAStackedMatchesCPU and
// the LoRA training curves passed with it); WHET_GEMM_TUNE=0 turns it off.

// GEMMTuneEnv set to 0 turns GEMM tuning off; unset or 1 leaves it on
// (Options.TuneGEMM changes nothing now).
const GEMMTuneEnv = "WHET_GEMM_TUNE"

const (
	tuneCandidates = 16 // algorithms asked of the heuristic per problem
	tuneReps       = 5  // timed runs per candidate, after one untimed
)

// gemmTuneOn is the one rule for whether GEMMs are tuned: asked for, or
// unless GEMMTuneEnv=0.
func gemmTuneOn(asked bool) bool {
	return asked || envswitch.On(GEMMTuneEnv)
}

// tuneRecord is what tuning found for one problem, for the report.
type tuneRecord struct {
	name       string    // as the profiler names the product
	times      []float64 // ms per run of each candidate, -1 where it failed
	chosen     int       // index into times
	candidates int
}

// GEMMTuned reports whether the backend tunes its GEMMs (Options.TuneGEMM,
// GEMMTuneEnv) and is not deterministic.
func (b *Backend) GEMMTuned() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tuner != nil && !b.deterministic
}

// pickFastest returns the index of the smallest non-negative time, the
// first of equals; -1 when every candidate failed.
func pickFastest(times []float64) int {
	best := -1
	for i, t := range times {
		if t >= 0 && (best < 0 || t < times[best]) {
			best = i
		}
	}
	return best
}

// tunePlan times the heuristic's candidates for p on the call's operands
// and keeps the fastest in p. Failing to tune is not an error of the
// product: p keeps the heuristic's first choice, and the record says why.
// Errors that leave the device unusable (a failed synchronisation) are
// returned.
//
// ltA and ltB are cuBLASLt's A and B (the column-major problem's: the
// backend's b and a), c the call's output of outBytes bytes.
func (b *Backend) tunePlan(op, name string, p *matmulPlan, key matmulKey, ltA, ltB, c uint64, outBytes int64, alpha, beta float32) error {
	p.tuned = true
	rec := tuneRecord{name: name}
	defer func() { b.tuneLog = append(b.tuneLog, rec) }()
	cands, err := b.lt.heuristics(p, key, b.workspaceSize, tuneCandidates)
	if err != nil {
		return nil
	}
	cands = append(cands, b.lt.splitVariants(p, key, cands, b.workspaceSize)...)
	if len(cands) < 2 {
		rec.candidates = len(cands)
		return nil
	}
	rec.candidates = len(cands)
	out := c
	if beta != 0 {
		tmp, free, err := b.temp(op+" (tuning)", outBytes)
		if err != nil {
			return nil
		}
		defer free()
		out = tmp
	}
	rec.times = make([]float64, len(cands))
	for i, h := range cands {
		rec.times[i] = -1
		if h.state != 0 || h.workspace > b.workspaceSize {
			continue
		}
		cand := *p
		cand.algo, cand.workspace = h.algo, h.workspace
		ms, ok, err := b.timeGEMM(&cand, alpha, beta, ltA, ltB, out)
		if err != nil {
			return withOp(op+" (tuning)", err)
		}
		if ok {
			rec.times[i] = ms
		}
	}
	rec.chosen = pickFastest(rec.times)
	if rec.chosen >= 0 {
		first := heuristicResult{algo: p.algo, workspace: p.workspace}
		p.first = &first
		p.algo, p.workspace = cands[rec.chosen].algo, cands[rec.chosen].workspace
	}
	return nil
}

// timeGEMM runs p once, then tuneReps times between two events, and
// returns the mean milliseconds per run; ok is false when cuBLASLt refused
// the algorithm for these operands. err is a failure of the events or of
// the synchronisation.
func (b *Backend) timeGEMM(p *matmulPlan, alpha, beta float32, ltA, ltB, c uint64) (ms float64, ok bool, err error) {
	if b.lt.matmul(p, alpha, beta, ltA, ltB, c, b.workspace, b.workspaceSize, b.stream) != nil {
		return 0, false, nil
	}
	ev := b.tuner
	start, err := ev.event(b.drv)
	if err != nil {
		return 0, false, err
	}
	end, err := ev.event(b.drv)
	if err != nil {
		return 0, false, err
	}
	defer func() { ev.free = append(ev.free, start, end) }()
	if err := b.drv.call("cuEventRecord", ev.record, start, b.stream); err != nil {
		return 0, false, err
	}
	for range tuneReps {
		if b.lt.matmul(p, alpha, beta, ltA, ltB, c, b.workspace, b.workspaceSize, b.stream) != nil {
			ok = false
			break
		}
		ok = true
	}
	if err := b.drv.call("cuEventRecord", ev.record, end, b.stream); err != nil {
		return 0, false, err
	}
	if err := b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, b.stream); err != nil {
		return 0, false, err
	}
	if !ok {
		return 0, false, nil
	}
	var t float32
	if err := b.drv.call("cuEventElapsedTime", ev.elapsed, uintptr(unsafe.Pointer(&t)), start, end); err != nil {
		return 0, false, err
	}
	return float64(t) / tuneReps, true, nil
}

// tuneReport is the table of tuned problems: the heuristic's first choice
// and the chosen candidate, in microseconds a run, largest saving first.
func tuneReport(recs []tuneRecord) string {
	if len(recs) == 0 {
		return ""
	}
	type row struct {
		rec          tuneRecord
		first, chose float64
	}
	var rows []row
	for _, r := range recs {
		x := row{rec: r, first: -1, chose: -1}
		if len(r.times) > 0 {
			x.first = r.times[0]
		}
		if r.chosen >= 0 && r.chosen < len(r.times) {
			x.chose = r.times[r.chosen]
		}
		rows = append(rows, x)
	}
	saving := func(x row) float64 {
		if x.first < 0 || x.chose < 0 {
			return 0
		}
		return x.first - x.chose
	}
	sort.SliceStable(rows, func(i, j int) bool { return saving(rows[i]) > saving(rows[j]) })
	var sb strings.Builder
	fmt.Fprintf(&sb, "gemm tuning (the default; %s=0 turns it off): %d problems\n", GEMMTuneEnv, len(recs))
	fmt.Fprintf(&sb, "%-60s %6s %10s %10s %6s\n", "product", "algos", "first µs", "chosen µs", "pick")
	for _, x := range rows {
		us := func(ms float64) string {
			if ms < 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f", 1000*ms)
		}
		pick := "-"
		if len(x.rec.times) > 0 && x.rec.chosen >= 0 {
			pick = fmt.Sprintf("#%d", x.rec.chosen)
		}
		fmt.Fprintf(&sb, "%-60s %6d %10s %10s %6s\n", x.rec.name, x.rec.candidates, us(x.first), us(x.chose), pick)
	}
	return sb.String()
}

// Split-K variants. For a product whose output is small against its
// reduction (LoRA's dA = dxaᵀ·x is 16 x in over 8,192 tokens; dB is out x 16)
// the work is in a few output tiles, and how many parts the reduction is
// cut into decides how many SMs take part. The heuristic's candidates come
// with the split it thought best; tuning also times copies of the first
// few with other splits, where the algorithm allows them.
const (
	algoCapSplitKSupport = 0       // CUBLASLT_ALGO_CAP_SPLITK_SUPPORT (int32)
	algoCapReductionMask = 1       // CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK (uint32)
	algoConfigSplitKNum  = 2       // CUBLASLT_ALGO_CONFIG_SPLITK_NUM (uint32)
	algoConfigReduction  = 3       // CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME (uint32)
	reductionInPlace     = 1       // CUBLASLT_REDUCTION_SCHEME_INPLACE
	reductionComputeType = 2       // CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE
	reductionOutputType  = 4       // CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE
	splitVariantsOf      = 4       // first candidates given other splits
	splitMaxOutput       = 1 << 21 // output elements up to which splits are tried
	splitMinK            = 1024    // reduction length from which they are
	splitMinPart         = 256     // shortest part of the reduction
	attrSize32           = 4
)

// splitChoices is the splits to try for a reduction of k and the scheme
// that adds the parts, from the algorithm's mask of schemes: float32
// partial sums (compute type) where it can, in place otherwise; a sum in
// the output type only for a float32 output, since a bf16 one would round
// every part. No splits (nil) when the algorithm offers no such scheme.
func splitChoices(k int, mask uint32, outF32 bool) (splits []uint32, scheme uint32) {
	switch {
	case mask&reductionComputeType != 0:
		scheme = reductionComputeType
	case mask&reductionInPlace != 0:
		scheme = reductionInPlace
	case mask&reductionOutputType != 0 && outF32:
		scheme = reductionOutputType
	default:
		return nil, 0
	}
	for s := uint32(2); s <= 32 && k/int(s) >= splitMinPart; s *= 2 {
		splits = append(splits, s)
	}
	return splits, scheme
}

// wantsSplits reports whether tuning tries split-K variants for key: a
// small output over a long reduction.
func wantsSplits(key matmulKey) bool {
	return key.m*key.n <= splitMaxOutput && key.k >= splitMinK
}

// splitFns are the cuBLASLt entry points the variants need, bound on first
// use; bindErr is set when the library lacks them (no variants then).
type splitFns struct {
	capGet, configSet, check uintptr
	bound                    bool
	bindErr                  error
}

// splitVariants returns copies of the first splitVariantsOf usable
// candidates with each other split the algorithm supports, each checked
// by cuBLASLt (cublasLtMatmulAlgoCheck) for p's problem and workspace.
// Variants it refuses are left out; an empty answer is not an error.
func (c *cublasLt) splitVariants(p *matmulPlan, key matmulKey, cands []heuristicResult, workspace int) []heuristicResult {
	f := &c.split
	if !f.bound {
		f.bound = true
		f.bindErr = c.lib.bind(map[string]*uintptr{
			"cublasLtMatmulAlgoCapGetAttribute":    &f.capGet,
			"cublasLtMatmulAlgoConfigSetAttribute": &f.configSet,
			"cublasLtMatmulAlgoCheck":              &f.check,
		})
	}
	if f.bindErr != nil || !wantsSplits(key) {
		return nil
	}
	seen := map[[matmulAlgoSize]byte]bool{}
	for _, h := range cands {
		seen[h.algo] = true
	}
	var out []heuristicResult
	used := 0
	for _, h := range cands {
		if used == splitVariantsOf {
			break
		}
		if h.state != 0 {
			continue
		}
		used++
		var support int32
		var mask uint32
		var written uint64
		if c.call("cublasLtMatmulAlgoCapGetAttribute", f.capGet, uintptr(unsafe.Pointer(&h.algo[0])), algoCapSplitKSupport, uintptr(unsafe.Pointer(&support)), 4, uintptr(unsafe.Pointer(&written))) != nil || support == 0 {
			continue
		}
		if c.call("cublasLtMatmulAlgoCapGetAttribute", f.capGet, uintptr(unsafe.Pointer(&h.algo[0])), algoCapReductionMask, uintptr(unsafe.Pointer(&mask)), 4, uintptr(unsafe.Pointer(&written))) != nil {
			continue
		}
		splits, scheme := splitChoices(key.k, mask, key.typeCD == cudaR32F)
		for _, s := range splits {
			v := heuristicResult{algo: h.algo}
			if c.call("cublasLtMatmulAlgoConfigSetAttribute", f.configSet, uintptr(unsafe.Pointer(&v.algo[0])), algoConfigSplitKNum, uintptr(unsafe.Pointer(&s)), attrSize32) != nil {
				continue
			}
			sc := scheme
			if c.call("cublasLtMatmulAlgoConfigSetAttribute", f.configSet, uintptr(unsafe.Pointer(&v.algo[0])), algoConfigReduction, uintptr(unsafe.Pointer(&sc)), attrSize32) != nil {
				continue
			}
			if seen[v.algo] {
				continue
			}
			var res [heuristicResultSize]byte
			if c.call("cublasLtMatmulAlgoCheck", f.check, c.handle, p.desc, p.layA, p.layB, p.layC, p.layC, uintptr(unsafe.Pointer(&v.algo[0])), uintptr(unsafe.Pointer(&res[0]))) != nil {
				continue
			}
			chk, err := parseHeuristics(res[:], 1)
			if err != nil || chk[0].state != 0 || chk[0].workspace > workspace {
				continue
			}
			v.workspace = chk[0].workspace
			seen[v.algo] = true
			out = append(out, v)
		}
	}
	return out
}
