package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzBenchRankCounts: whet bench's --gpus and --ranks lists read as
// distinct counts of at least 1 in increasing order, which written back
// as a list read the same; --ranks counts are at most one a CPU; a list
// that does not read is refused with the flag and its value named.
func FuzzBenchRankCounts(f *testing.F) {
	for _, c := range [][3]string{
		{"1,2,4,8", "", "cuda"}, {"", "2,1", "cpu"}, {"", "", "cuda"}, {"8", "", "cuda"},
		{"2,2", "", "cuda"}, {"", "0", "cpu"}, {"", "2,x", "cpu"}, {"", "2", "cuda"}, {"2", "2", "cpu"},
		{" 1 , 2 ", "", "cuda"}, {"1,,2", "", "cuda"}, {"+2,-1", "", "cuda"}, {"99999999999999999999", "", "cuda"}, {",", "", "cuda"}, {"", "1,100000", "cpu"},
	} {
		f.Add(c[0], c[1], c[2])
	}
	f.Fuzz(func(t *testing.T, gpus, ranks, backend string) {
		counts, err := benchRankCounts(gpus, ranks, backend)
		flag, spec := "--gpus", gpus
		if ranks != "" {
			flag, spec = "--ranks", ranks
		}
		if err != nil {
			if gpus != "" && ranks != "" {
				if !strings.Contains(err.Error(), "--gpus and --ranks cannot both be set") {
					t.Fatalf("--gpus %q --ranks %q: %v", gpus, ranks, err)
				}
				return
			}
			if !strings.HasPrefix(err.Error(), flag+" "+spec+": ") {
				t.Fatalf("%s %q: the error does not name the flag and its value: %v", flag, spec, err)
			}
			return
		}
		if spec == "" {
			if !slices.Equal(counts, []int{1}) {
				t.Fatalf("no list: %v, want one rank", counts)
			}
			return
		}
		var back []string
		for i, n := range counts {
			if n < 1 || i > 0 && n <= counts[i-1] {
				t.Fatalf("%s %q: %v", flag, spec, counts)
			}
			back = append(back, strconv.Itoa(n))
		}
		if flag == "--ranks" && counts[len(counts)-1] > benchCPURankLimit() {
			t.Fatalf("--ranks %q: %v, over the %d CPUs", spec, counts, benchCPURankLimit())
		}
		if len(counts) != strings.Count(spec, ",")+1 {
			t.Fatalf("%s %q: %d counts", flag, spec, len(counts))
		}
		g, r := strings.Join(back, ","), ""
		if flag == "--ranks" {
			g, r = "", g
		}
		again, err := benchRankCounts(g, r, backend)
		if err != nil || !slices.Equal(again, counts) {
			t.Fatalf("%s %q read as %v; written back, %v %v", flag, spec, counts, again, err)
		}
	})
}
