package memplan

import (
	"testing"
)

// TestPeakGrowsWithSeqLen is what MaxSeqLen's bisection relies on: for
// each method and with and without checkpointing, the peak never falls as
// the sequence grows (every length up to 300, then powers of two).
func TestPeakGrowsWithSeqLen(t *testing.T) {
	var lengths []int
	for n := 1; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	for n := 512; n <= 1<<20; n *= 2 {
		lengths = append(lengths, n)
	}
	for _, o := range maxSeqCases() {
		prev := int64(0)
		for _, n := range lengths {
			o.SeqLen = n
			p, err := Plan(tiny(), o)
			if err != nil {
				t.Fatal(err)
			}
			if p.Peak() < prev {
				t.Fatalf("%s checkpointing %v: peak %d at %d tokens, %d one step shorter", o.Method, o.Checkpointing, p.Peak(), n, prev)
			}
			prev = p.Peak()
		}
	}
}

func maxSeqCases() []Options {
	var out []Options
	for _, m := range []Method{LoRA, QLoRA, Full, DPO} {
		for _, ck := range []bool{false, true} {
			out = append(out, Options{Method: m, Checkpointing: ck, MicroBatch: 2})
		}
	}
	return out
}

// TestMaxSeqLen: the answer fits and one token more does not, against
// budgets that land at many lengths; the search's answer equals a linear
// scan's on the tiny model.
func TestMaxSeqLen(t *testing.T) {
	for _, o := range maxSeqCases() {
		for _, want := range []int{1, 2, 3, 100, 777, 4096, 50000} {
			o.SeqLen = want
			p, err := Plan(tiny(), o)
			if err != nil {
				t.Fatal(err)
			}
			// A budget exactly at the plan for want tokens: the answer is
			// want, or longer where the peak is flat past it.
			got, err := MaxSeqLen(tiny(), o, p.Peak())
			if err != nil {
				t.Fatal(err)
			}
			if got.SeqLen < want || got.Plan == nil || got.Plan.Peak() > p.Peak() || got.Plan.Options.SeqLen != got.SeqLen {
				t.Fatalf("%s ck %v budget for %d: got %d (plan %v)", o.Method, o.Checkpointing, want, got.SeqLen, got.Plan)
			}
			if got.Next == nil || got.Next.Options.SeqLen != got.SeqLen+1 || got.Next.Peak() <= p.Peak() {
				t.Fatalf("%s ck %v budget for %d: got %d, next %v", o.Method, o.Checkpointing, want, got.SeqLen, got.Next)
			}
		}
	}
	// Against a linear scan, for one method, every length up to 400.
	o := Options{Method: LoRA}
	for budgetLen := 1; budgetLen <= 400; budgetLen += 37 {
		o.SeqLen = budgetLen
		p, _ := Plan(tiny(), o)
		budget := p.Peak() + 100 // between two lengths' peaks, usually
		scan := 0
		for n := 1; n <= 100000; n++ {
			o.SeqLen = n
			q, _ := Plan(tiny(), o)
			if q.Peak() > budget {
				break
			}
			scan = n
		}
		got, err := MaxSeqLen(tiny(), Options{Method: LoRA}, budget)
		if err != nil || got.SeqLen != scan {
			t.Errorf("budget %d: bisection %d, linear scan %d (%v)", budget, got.SeqLen, scan, err)
		}
	}
}

func TestMaxSeqLenEnds(t *testing.T) {
	// Not even one token fits: SeqLen 0 with the one-token plan as Next.
	got, err := MaxSeqLen(tiny(), Options{Method: Full}, 10)
	if err != nil || got.SeqLen != 0 || got.Plan != nil || got.Next == nil || got.Next.Options.SeqLen != 1 {
		t.Errorf("10 bytes: %+v, %v", got, err)
	}
	// Everything fits: capped at MaxSearchSeqLen.
	got, err = MaxSeqLen(tiny(), Options{Method: LoRA}, 1<<62)
	if err != nil || got.SeqLen != MaxSearchSeqLen || !got.Capped || got.Next != nil {
		t.Errorf("unbounded: SeqLen %d capped %v next %v, %v", got.SeqLen, got.Capped, got.Next, err)
	}
	// Bad options are the plan's errors.
	if _, err := MaxSeqLen(tiny(), Options{Method: "ppo"}, 1<<30); err == nil {
		t.Error("unknown method accepted")
	}
}
