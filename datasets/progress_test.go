package datasets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
)

// countingTok counts the encodings Prepare asks for, to tell how far a
// stopped Prepare went.
type countingTok struct {
	*fakeTok
	n atomic.Int64
}

func (t *countingTok) Encode(text string, addSpecial bool) []int {
	t.n.Add(1)
	return t.fakeTok.Encode(text, addSpecial)
}

// chatRows writes n chat rows to a JSONL file: at 80-odd bytes a row,
// 5,000 rows are some 400 KB, several of the loader's 64 KiB buffers.
func chatRows(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"messages": [{"role": "user", "content": "question %d?"}, {"role": "assistant", "content": "answer %d."}]}`+"\n", i, i)
	}
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrepareContextReportsProgressAndMatchesPrepare(t *testing.T) {
	path := chatRows(t, 2000)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Path: path, MaxLength: 64, EvalSplit: 0.1, Seed: 7}
	// One tokenizer for both runs: the fake numbers pieces as it meets
	// them, so two would give the same text other ids.
	tok := chatmlTok(qwen3Template(t))
	q, err := Prepare(opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	var got []Progress
	p, err := PrepareContext(context.Background(), opts, tok, func(pr Progress) { got = append(got, pr) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 3 {
		t.Fatalf("%d progress reports, want the reading and the tokenizing: %+v", len(got), got)
	}
	if got[0] != (Progress{Stage: StageReading, TotalBytes: info.Size()}) {
		t.Errorf("first report %+v, want reading 0 of %d bytes", got[0], info.Size())
	}
	var prev Progress
	sawRead, tokenizing := false, false
	for i, pr := range got {
		switch pr.Stage {
		case StageReading:
			if tokenizing || pr.Bytes < prev.Bytes || pr.TotalBytes != info.Size() {
				t.Errorf("report %d: %+v after %+v", i, pr, prev)
			}
			sawRead = sawRead || pr.Bytes == info.Size()
		case StageTokenizing:
			if !sawRead {
				t.Errorf("report %d: tokenizing before the whole file was read (%+v)", i, prev)
			}
			if tokenizing && pr.Rows < prev.Rows || pr.TotalRows != 2000 {
				t.Errorf("report %d: %+v after %+v", i, pr, prev)
			}
			tokenizing = true
		default:
			t.Errorf("report %d: stage %q", i, pr.Stage)
		}
		prev = pr
	}
	if last := got[len(got)-1]; last.Stage != StageTokenizing || last.Rows != 2000 {
		t.Errorf("last report %+v, want all 2000 rows tokenized", last)
	}
	// Watching changes nothing of the result.
	if !reflect.DeepEqual(p.Stats, q.Stats) || !reflect.DeepEqual(p.Train, q.Train) || !reflect.DeepEqual(p.TrainBatches, q.TrainBatches) {
		t.Errorf("PrepareContext and Prepare differ: stats\n%+v\n%+v", p.Stats, q.Stats)
	}
}

// Stopped in the middle of the read, Prepare returns the context's error
// without reading the rest of the file or tokenizing anything.
func TestPrepareContextStopsWhileReading(t *testing.T) {
	path := chatRows(t, 5000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last Progress
	tok := &countingTok{fakeTok: chatmlTok(qwen3Template(t))}
	_, err := PrepareContext(ctx, Options{Path: path, MaxLength: 64}, tok, func(pr Progress) {
		last = pr
		if pr.Bytes > 0 {
			cancel() // the first buffer is in
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should name the file", err)
	}
	if last.Stage != StageReading || last.Bytes >= last.TotalBytes {
		t.Errorf("last report %+v: the read should stop before the end of the file", last)
	}
	if n := tok.n.Load(); n != 0 {
		t.Errorf("%d encodings after a stop in the read, want none", n)
	}
}

// Stopped while tokenizing, the workers stop between examples: far fewer
// encodings than a whole run asks for.
func TestPrepareContextStopsWhileTokenizing(t *testing.T) {
	path := chatRows(t, 5000)
	opts := Options{Path: path, MaxLength: 64}
	whole := &countingTok{fakeTok: chatmlTok(qwen3Template(t))}
	if _, err := Prepare(opts, whole); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last Progress
	tok := &countingTok{fakeTok: chatmlTok(qwen3Template(t))}
	_, err := PrepareContext(ctx, opts, tok, func(pr Progress) {
		last = pr
		if pr.Stage == StageTokenizing && pr.Rows > 0 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if last.Rows >= last.TotalRows {
		t.Errorf("last report %+v: should stop before the last row", last)
	}
	if n, all := tok.n.Load(), whole.n.Load(); n > all/4 {
		t.Errorf("%d encodings after a stop at %d of %d rows; a whole run makes %d", n, last.Rows, last.TotalRows, all)
	}
}

func TestPreparePromptsContextStops(t *testing.T) {
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, `{"prompt": "What is %d+%d?", "answer": "%d"}`+"\n", i, i, 2*i)
	}
	path := filepath.Join(t.TempDir(), "prompts.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last Progress
	_, err := PreparePromptsContext(ctx, Options{Path: path, MaxLength: 64}, chatmlTok(qwen3Template(t)), func(pr Progress) {
		last = pr
		if pr.Bytes > 0 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || last.Bytes >= last.TotalBytes {
		t.Errorf("err %v after %+v, want context.Canceled before the end of the file", err, last)
	}
	// Not stopped, it reads the same prompts as PreparePrompts.
	var reports int
	ps, err := PreparePromptsContext(context.Background(), Options{Path: path, MaxLength: 64}, chatmlTok(qwen3Template(t)), func(Progress) { reports++ })
	if err != nil {
		t.Fatal(err)
	}
	qs, err := PreparePrompts(Options{Path: path, MaxLength: 64}, chatmlTok(qwen3Template(t)))
	if err != nil {
		t.Fatal(err)
	}
	if reports == 0 || !reflect.DeepEqual(ps.Train, qs.Train) || !reflect.DeepEqual(ps.Stats, qs.Stats) {
		t.Errorf("PreparePromptsContext (%d reports) and PreparePrompts differ", reports)
	}
}
