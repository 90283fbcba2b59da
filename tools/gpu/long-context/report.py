#!/usr/bin/env python3
"""Summarises a long-context batch (issue 21): the measured step against the
plan and `whet fit --max-seq`, the losses, and the first step's per-token
losses over the prefix against a short run's.

usage: report.py OUTDIR CAP SEQ
OUTDIR holds short.json, long.json (whet bench --json lines), prefix-short.txt,
prefix-long.txt (--loss-prefix-out) and fit-max-seq.txt (whet fit --max-seq).
"""
import json, math, os, re, sys

o, cap, seq = sys.argv[1], sys.argv[2], int(sys.argv[3])

def bench(name):
    try:
        for line in open(os.path.join(o, name)):
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
    except (OSError, ValueError) as e:
        print(f"{name}: {e}")
    return None

def floats(name):
    try:
        return [float(x) for x in open(os.path.join(o, name)).read().split()]
    except (OSError, ValueError) as e:
        print(f"{name}: {e}")
        return None

gb = lambda b: f"{b / 1e9:.2f} GB ({b / 2**30:.2f} GiB)"
short, long_ = bench("short.json"), bench("long.json")
print(f"== {(long_ or short or {}).get('model', '?')} QLoRA r32, batch 1, checkpointing, --memory-limit {cap}, {seq} tokens")
maxseq = None
try:
    m = re.search(r"longest\s+(\d+) tokens", open(os.path.join(o, "fit-max-seq.txt")).read())
    maxseq = int(m.group(1)) if m else None
except OSError:
    pass
print(f"whet fit --max-seq (same settings, --offload auto, this machine's free GPU and host memory): "
      f"{maxseq if maxseq else 'no answer (see fit-max-seq.txt)'} tokens")
if long_ is None:
    print(f"the {seq}-token run gave no result (long.err)")
else:
    ls = long_["losses"]
    finite = all(math.isfinite(x) for x in ls)
    print(f"ran {len(ls)} step(s) of {long_['seq']} tokens: losses {['%.5f' % x for x in ls]} "
          f"({'all finite' if finite else 'NOT FINITE'}), step times {['%.1f' % x for x in long_['step_times_s']]} s, "
          f"setup {long_['setup_s']:.1f} s")
    print(f"tokens/s {long_['tokens_per_sec']:.0f} (mean of the timed steps: {long_['step_s']:.1f} s a step), "
          f"{long_['tflops']:.1f} TFLOP/s by whet bench's count, checkpoints offloaded: {long_['offload_checkpoints']}, "
          f"pinned {gb(long_['host_bytes'])} (plan {gb(long_['plan_host_bytes'])})")
    pk, pl = long_["peak_bytes"], long_["plan_bytes"]
    ctx = 512 * 2**20
    print(f"peak {gb(pk)} measured (device allocations, no CUDA context) against the plan's {gb(pl)}: "
          f"plan/measured {100 * (pl / pk - 1):+.1f} %, without the plan's 512 MiB context estimate {100 * ((pl - ctx) / pk - 1):+.1f} %")
    if maxseq:
        print(f"the plan's longest context {maxseq} is {maxseq / seq:.2f}x the length run here; "
              f"peak per token above the {short['seq'] if short else '?'}-token run: "
              + (f"{(pk - short['peak_bytes']) / (seq - short['seq']) / 1e3:.1f} KB measured" if short else "?"))
if short and long_:
    # step time = a*s^2 + b*s: the short run fixes b (attention is ~1 % of it
    # there), the long one a; 350,000 tokens from the fit.
    ts, tl = short["step_s"], long_["step_s"]
    s0, s1 = short["seq"], long_["seq"]
    a = (tl - ts * s1 / s0) / (s1 * s1 - s0 * s1)
    b = ts / s0 - a * s0
    for s in (80000, 350000):
        print(f"extrapolated step at {s} tokens (a*s^2 + b*s through the two runs): {a * s * s + b * s:.0f} s")
ps, pl = floats("prefix-short.txt"), floats("prefix-long.txt")
if ps and pl:
    n = min(len(ps), len(pl))
    d = [pl[i] - ps[i] for i in range(n)]
    mean_s, mean_l = sum(ps[:n]) / n, sum(pl[:n]) / n
    sd = math.sqrt(sum((x - mean_s) ** 2 for x in ps[:n]) / n)
    rms = math.sqrt(sum(x * x for x in d) / n)
    worst = max(range(n), key=lambda i: abs(d[i]))
    ok = all(math.isfinite(x) for x in pl[:n]) and rms <= 0.05 * sd and abs(mean_l - mean_s) <= 2e-3 * abs(mean_s)
    print(f"prefix: first step's loss over positions 0..{n - 1}: {mean_l:.6f} at {seq} tokens, {mean_s:.6f} at "
          f"{short['seq'] if short else '?'} (difference {mean_l - mean_s:+.2e}); per token: RMS difference {rms:.2e}, "
          f"largest {d[worst]:+.2e} at position {worst}, against a spread (std) of {sd:.3f} between tokens")
    print(f"prefix equal within tolerance (RMS per-token difference <= 5 % of the spread, means within 0.2 %): {'yes' if ok else 'NO'}")
else:
    print("prefix: no comparison (a prefix file is missing)")
