#!/usr/bin/env python3
"""The scaling table of multigpu.sh: whet bench --gpus lines and ddp_reference.py lines
(JSON, from the files named or stdin) side by side per GPU count: job tokens/s, per-GPU
tokens/s, scaling efficiency (per-GPU rate over the same implementation's 1-GPU rate)
and whet's rate over DDP's."""

import fileinput
import json


def cell(v, fmt, width):
    return format(format(v, fmt) if v is not None else "-", f">{width}")


def main():
    rows = [json.loads(line) for line in fileinput.input() if line.startswith("{")]
    whet = {r["ranks"]: r for r in rows if "impl" not in r}
    ddp = {r["ranks"]: r for r in rows if r.get("impl") == "pytorch-ddp"}
    one = ddp.get(1, {}).get("tokens_per_sec_per_rank")
    print("GPUs  whet tok/s  per GPU     eff  DDP tok/s  per GPU     eff  whet/DDP")
    for n in sorted(set(whet) | set(ddp)):
        w, d = whet.get(n, {}), ddp.get(n, {})
        de = d["tokens_per_sec_per_rank"] / one if d and one else None
        ratio = w["tokens_per_sec"] / d["tokens_per_sec"] if w and d else None
        print(f"{n:<5} {cell(w.get('tokens_per_sec'), '.0f', 10)}  {cell(w.get('tokens_per_sec_per_rank'), '.0f', 7)}  "
              f"{cell(w.get('scaling_efficiency'), '.1%', 6)}  {cell(d.get('tokens_per_sec'), '.0f', 9)}  "
              f"{cell(d.get('tokens_per_sec_per_rank'), '.0f', 7)}  {cell(de, '.1%', 6)}  {cell(ratio, '.2f', 8)}")


if __name__ == "__main__":
    main()
