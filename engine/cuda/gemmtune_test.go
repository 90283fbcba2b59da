package cuda

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"
)

// TestParseHeuristics reads cublasLtMatmulHeuristicResult_t entries laid out
// as cublasLt.h declares them: algo (64 bytes), workspaceSize (size_t),
// state (int32), wavesCount (float), reserved (4 int32).
func TestParseHeuristics(t *testing.T) {
	buf := make([]byte, 3*heuristicResultSize)
	for i := range 3 {
		r := buf[i*heuristicResultSize:]
		for j := range matmulAlgoSize {
			r[j] = byte(10*i + j)
		}
		binary.LittleEndian.PutUint64(r[64:], uint64(1000*(i+1)))
		binary.LittleEndian.PutUint32(r[72:], uint32(15*i)) // 0, then CUBLAS_STATUS_NOT_SUPPORTED, ...
		binary.LittleEndian.PutUint32(r[76:], math.Float32bits(1.5))
		binary.LittleEndian.PutUint32(r[80:], 0xdeadbeef) // reserved: must not leak into any field
	}
	got, err := parseHeuristics(buf, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d results, want 2", len(got))
	}
	for i, h := range got {
		if h.algo[0] != byte(10*i) || h.algo[63] != byte(10*i+63) {
			t.Errorf("result %d: algo bytes %d..%d, want %d..%d", i, h.algo[0], h.algo[63], 10*i, 10*i+63)
		}
		if h.workspace != 1000*(i+1) {
			t.Errorf("result %d: workspace %d, want %d", i, h.workspace, 1000*(i+1))
		}
		if h.state != int32(15*i) {
			t.Errorf("result %d: state %d, want %d", i, h.state, 15*i)
		}
	}
	if _, err := parseHeuristics(buf, 4); err == nil {
		t.Error("4 results from a buffer of 3: no error")
	}
	if _, err := parseHeuristics(buf, -1); err == nil {
		t.Error("-1 results: no error")
	}
}

func TestPickFastest(t *testing.T) {
	for _, c := range []struct {
		times []float64
		want  int
	}{
		{nil, -1},
		{[]float64{-1, -1}, -1},
		{[]float64{0.02, 0.01, 0.03}, 1},
		{[]float64{-1, 0.05, 0.04, 0.04}, 2}, // failed first; first of equals
		{[]float64{0.01, -1}, 0},
	} {
		if got := pickFastest(c.times); got != c.want {
			t.Errorf("pickFastest(%v) = %d, want %d", c.times, got, c.want)
		}
	}
}

func TestTuneReport(t *testing.T) {
	if got := tuneReport(nil); got != "" {
		t.Errorf("no records: %q, want empty", got)
	}
	rep := tuneReport([]tuneRecord{
		{name: "gemm small", times: []float64{0.010, 0.009}, chosen: 1, candidates: 2},
		{name: "gemm thin", times: []float64{0.020, -1, 0.008}, chosen: 2, candidates: 3},
		{name: "gemm lone", candidates: 1, chosen: 0},
	})
	lines := strings.Split(strings.TrimSpace(rep), "\n")
	if len(lines) != 5 {
		t.Fatalf("report has %d lines, want 5:\n%s", len(lines), rep)
	}
	if !strings.Contains(lines[0], "3 problems") || !strings.Contains(lines[0], GEMMTuneEnv) {
		t.Errorf("header %q", lines[0])
	}
	// Largest saving first: thin (12 µs), small (1 µs), lone (no timing).
	for i, want := range []string{"gemm thin", "gemm small", "gemm lone"} {
		if !strings.HasPrefix(lines[2+i], want) {
			t.Errorf("line %d %q, want it to start with %q\n%s", 2+i, lines[2+i], want, rep)
		}
	}
	if f := strings.Fields(lines[2]); f[len(f)-3] != "20.0" || f[len(f)-2] != "8.0" || f[len(f)-1] != "#2" {
		t.Errorf("thin row %q: want first 20.0 µs, chosen 8.0 µs, #2", lines[2])
	}
	if f := strings.Fields(lines[4]); f[len(f)-3] != "-" || f[len(f)-2] != "-" || f[len(f)-1] != "-" {
		t.Errorf("lone row %q: want no timings", lines[4])
	}
}

func TestGEMMTuneOn(t *testing.T) {
	t.Setenv(GEMMTuneEnv, "")
	if !gemmTuneOn(false) || !gemmTuneOn(true) {
		t.Error("without the env var: tuning is the default")
	}
	t.Setenv(GEMMTuneEnv, "1")
	if !gemmTuneOn(false) {
		t.Errorf("%s=1: tuning off", GEMMTuneEnv)
	}
	t.Setenv(GEMMTuneEnv, "0")
	if gemmTuneOn(false) {
		t.Errorf("%s=0: tuning on", GEMMTuneEnv)
	}
}

func TestSplitChoices(t *testing.T) {
	for _, c := range []struct {
		k          int
		mask       uint32
		outF32     bool
		wantSplits []uint32
		wantScheme uint32
	}{
		// LoRA's dA/dB: 8,192 tokens; float32 partial sums preferred.
		{8192, reductionInPlace | reductionComputeType | reductionOutputType, false, []uint32{2, 4, 8, 16, 32}, reductionComputeType},
		{8192, reductionInPlace, false, []uint32{2, 4, 8, 16, 32}, reductionInPlace},
		// Parts no shorter than splitMinPart.
		{2048, reductionComputeType, true, []uint32{2, 4, 8}, reductionComputeType},
		{1024, reductionComputeType, true, []uint32{2, 4}, reductionComputeType},
		{300, reductionComputeType, true, nil, reductionComputeType},
		// Sums in the output type: only for a float32 output.
		{8192, reductionOutputType, true, []uint32{2, 4, 8, 16, 32}, reductionOutputType},
		{8192, reductionOutputType, false, nil, 0},
		{8192, 0, true, nil, 0},
	} {
		splits, scheme := splitChoices(c.k, c.mask, c.outF32)
		if scheme != c.wantScheme || !slices.Equal(splits, c.wantSplits) {
			t.Errorf("splitChoices(%d, %#x, f32 %v) = %v, scheme %d; want %v, scheme %d", c.k, c.mask, c.outF32, splits, scheme, c.wantSplits, c.wantScheme)
		}
	}
}

// TestWantsSplits: the 1B LoRA row's reductions over 8,192 tokens get split
// variants; its K=16 products and the base GEMMs do not. Sizes are the
// column-major call's (gemm swaps the backend's m and n).
func TestWantsSplits(t *testing.T) {
	for _, c := range []struct {
		m, n, k int
		want    bool
	}{
		{2048, 16, 8192, true},  // dA of q/k/v/o/gate/up: [16, 2048] over tokens
		{16, 512, 8192, true},   // dB of k and v
		{16, 8192, 8192, true},  // dB of gate and up
		{2048, 8192, 16, false}, // B product (K = rank)
		{2048, 8192, 2048, false},
		{128256, 523, 2048, false}, // LM head chunk
	} {
		if got := wantsSplits(matmulKey{m: c.m, n: c.n, k: c.k}); got != c.want {
			t.Errorf("wantsSplits(m %d n %d k %d) = %v, want %v", c.m, c.n, c.k, got, c.want)
		}
	}
}
