package cuda

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"unsafe"
)

// Tuned GEMM algorithms (issue 20). cuBLASLt's heuristic picks one
// algorithm per problem from a model of the card; for the thin products of
// LoRA training (rank 16: 8192x2048x16, 16x2048x8192 with the 8192 tokens
// as the reduction, ...) the profile of the 1B LoRA row shows them at a
// third to a half of the card's bandwidth, where the choice of tile and
// split-K decides the rate. With tuning on, the first call of each problem
// (each plan: sizes, transposes, types and alignments) asks the heuristic
// for up to tuneCandidates algorithms, times each on the call's own
// operands and keeps the fastest for the rest of the run.
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
// Opt-in until it has run on a GPU: Options.TuneGEMM or WHET_GEMM_TUNE=1.

// GEMMTuneEnv set to 1 turns GEMM tuning on (Options.TuneGEMM).
const GEMMTuneEnv = "WHET_GEMM_TUNE"

const (
	tuneCandidates = 16 // algorithms asked of the heuristic per problem
	tuneReps       = 5  // timed runs per candidate, after one untimed
)

// gemmTuneOn is the one rule for whether GEMMs are tuned.
func gemmTuneOn(asked bool) bool {
	return asked || os.Getenv(GEMMTuneEnv) == "1"
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
	if err != nil || len(cands) < 2 {
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
	fmt.Fprintf(&sb, "gemm tuning (%s=1): %d problems\n", GEMMTuneEnv, len(recs))
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
