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

// TestMaxSeqLenOffload: with the checkpoints offloaded ("auto" resolved
// per length) the longest context beats the one with them on the device;
// the answer's resolved plan fits device and host and one token more does
// not; a host budget below the offloaded plan's need makes the host the
// limit, never below the on-device answer; the CPU backend never
// offloads.
func TestMaxSeqLenOffload(t *testing.T) {
	cfg := tiny()
	cfg.NumLayers = 8
	base := Options{Method: LoRA, Checkpointing: true, MicroBatch: 2, OffloadCheckpoints: "auto"}
	off := base
	off.OffloadCheckpoints = "off"
	o := base
	o.SeqLen = 4096
	p, err := Plan(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	device := p.Peak()
	kept, err := MaxSeqLen(cfg, off, device)
	if err != nil {
		t.Fatal(err)
	}
	resolved := func(n int) *MemPlan {
		t.Helper()
		q := base
		q.SeqLen = n
		r, err := ResolveOffload(cfg, q, device)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := Plan(cfg, r)
		if err != nil {
			t.Fatal(err)
		}
		return pl
	}
	for _, host := range []int64{0, 1 << 20, 1 << 30} {
		got, err := MaxSeqLenHost(cfg, base, device, host)
		if err != nil {
			t.Fatal(err)
		}
		fits := func(pl *MemPlan) bool { return pl.Peak() <= device && (host <= 0 || pl.HostPeak() <= host) }
		if got.SeqLen < kept.SeqLen || !fits(resolved(got.SeqLen)) || fits(resolved(got.SeqLen+1)) {
			t.Errorf("host %d: %d tokens (kept on the device %d)", host, got.SeqLen, kept.SeqLen)
		}
		if host == 0 && (got.SeqLen <= kept.SeqLen || !got.Plan.Offloaded()) {
			t.Errorf("unlimited host: %d tokens, kept %d, offloaded %v", got.SeqLen, kept.SeqLen, got.Plan.Offloaded())
		}
		if host == 1<<20 && got.SeqLen != kept.SeqLen {
			t.Errorf("1 MiB of host: %d tokens, want the on-device %d", got.SeqLen, kept.SeqLen)
		}
	}
	cpuOpts := base
	cpuOpts.Backend, cpuOpts.WeightDType, cpuOpts.SeqLen = BackendCPU, F32, 1<<20
	if r, err := ResolveOffload(cfg, cpuOpts, 1); err != nil || r.OffloadCheckpoints != "off" {
		t.Errorf("CPU backend resolved to %q (%v)", r.OffloadCheckpoints, err)
	}
}
