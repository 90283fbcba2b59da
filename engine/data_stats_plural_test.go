package engine_test

import (
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
)

// One row of data reads "1 row, 1 example; train 1 sequence", not "1 rows".
func TestStatsLinesCountInTheSingular(t *testing.T) {
	var s datasets.Stats
	s.Rows, s.Examples = 1, 1
	s.Train.Sequences, s.Train.Tokens, s.Train.TrainableTokens = 1, 1, 1
	line := engine.StatsLines(s)[1]
	if want := "data: 1 row, 1 example; train 1 sequence (1 token, 1 trained), eval 0 sequences"; line != want {
		t.Errorf("StatsLines = %q, want %q", line, want)
	}
	s.Rows, s.Examples, s.Train.Sequences, s.Train.Tokens = 3, 2, 2, 9
	if line := engine.StatsLines(s)[1]; !strings.HasPrefix(line, "data: 3 rows, 2 examples; train 2 sequences (9 tokens,") {
		t.Errorf("StatsLines = %q", line)
	}
}
