package cuda

import (
	"fmt"
	"sort"
	"strings"
	"unsafe"
)

// profiler times every kernel launch and cuBLASLt product on the device
// with a pair of CUDA events, when WHET_CUDA_PROFILE=1 (or
// Options.Profile) asks for it; whet bench prints the table. Events are
// read back at Sync, so timing adds no synchronisation of its own.
type profiler struct {
	create, record, elapsed, destroy uintptr
	free                             []uintptr // recorded-and-read events to reuse
	pending                          []profiled
	totals                           map[string]*profileTotal
}

type profiled struct {
	name       string
	start, end uintptr
}

type profileTotal struct {
	calls int
	ms    float64
}

// newProfiler binds the event entry points of the driver.
func newProfiler(d *driver) (*profiler, error) {
	p := &profiler{totals: map[string]*profileTotal{}}
	if err := d.lib.bind(map[string]*uintptr{
		"cuEventCreate":      &p.create,
		"cuEventRecord":      &p.record,
		"cuEventDestroy_v2":  &p.destroy,
		"cuEventElapsedTime": &p.elapsed,
	}); err != nil {
		return nil, fmt.Errorf("cuda: profiling needs CUDA events: %w", err)
	}
	return p, nil
}

// event returns an event to record, reused when one is free.
func (p *profiler) event(d *driver) (uintptr, error) {
	if n := len(p.free); n > 0 {
		e := p.free[n-1]
		p.free = p.free[:n-1]
		return e, nil
	}
	var e uintptr
	err := d.call("cuEventCreate", p.create, uintptr(unsafe.Pointer(&e)), 0)
	return e, err
}

// around records events before and after run on stream and files the
// interval under name.
func (p *profiler) around(d *driver, stream uintptr, name string, run func() error) error {
	start, err := p.event(d)
	if err != nil {
		return err
	}
	end, err := p.event(d)
	if err != nil {
		return err
	}
	if err := d.call("cuEventRecord", p.record, start, stream); err != nil {
		return err
	}
	if err := run(); err != nil {
		p.free = append(p.free, start, end)
		return err
	}
	if err := d.call("cuEventRecord", p.record, end, stream); err != nil {
		return err
	}
	p.pending = append(p.pending, profiled{name, start, end})
	return nil
}

// collect adds the intervals of finished work (call after the stream is
// synchronised) to the totals.
func (p *profiler) collect(d *driver) error {
	for _, x := range p.pending {
		var ms float32
		if err := d.call("cuEventElapsedTime", p.elapsed, uintptr(unsafe.Pointer(&ms)), x.start, x.end); err != nil {
			return err
		}
		t := p.totals[x.name]
		if t == nil {
			t = &profileTotal{}
			p.totals[x.name] = t
		}
		t.calls++
		t.ms += float64(ms)
		p.free = append(p.free, x.start, x.end)
	}
	p.pending = p.pending[:0]
	return nil
}

// report is the table of totals, longest first, then clears them.
func (p *profiler) report() string {
	type row struct {
		name string
		t    profileTotal
	}
	var rows []row
	var total float64
	for n, t := range p.totals {
		rows = append(rows, row{n, *t})
		total += t.ms
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].t.ms > rows[j].t.ms })
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-60s %8s %10s %6s\n", "kernel or product", "calls", "ms", "share")
	for _, r := range rows {
		fmt.Fprintf(&sb, "%-60s %8d %10.2f %5.1f%%\n", r.name, r.t.calls, r.t.ms, 100*r.t.ms/max(total, 1e-9))
	}
	fmt.Fprintf(&sb, "%-60s %8s %10.2f\n", "total device time in timed work", "", total)
	p.totals = map[string]*profileTotal{}
	return sb.String()
}

// ProfileReport returns the per-kernel device times gathered since the
// last report (and resets them), or "" when profiling is off. With GEMM
// tuning on, the table of every problem tuned so far follows.
func (b *Backend) ProfileReport() (string, error) {
	if b.prof == nil {
		return "", nil
	}
	exit, err := b.enter()
	if err != nil {
		return "", err
	}
	defer exit()
	if err := b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, b.stream); err != nil {
		return "", withOp("ProfileReport", err)
	}
	if err := b.prof.collect(b.drv); err != nil {
		return "", withOp("ProfileReport", err)
	}
	return b.prof.report() + tuneReport(b.tuneLog), nil
}
