#!/usr/bin/env python3
"""transformers' generate() as the reference for `whet bench --decode`.

Usage: python3 generate_reference.py --model llama-3.2-1b --prompt 128 --new 256

Random weights in bf16 on the GPU (SDPA attention, the default dynamic KV cache), greedy,
exactly --new tokens (min_new_tokens = max_new_tokens). Prefill is timed alone (one new
token), and the decode rate is (new - 1) / (total - prefill), as whet measures it.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import build  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.2-1b")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=256)
    a = ap.parse_args()
    import torch  # after the arguments: --help and a wrong argument need no torch

    torch.manual_seed(0)
    model = build(a.model).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, a.prompt), device="cuda")

    def gen(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - t, out.shape[1] - a.prompt

    gen(4)
    prefill, _ = gen(1)
    total, n = gen(a.new)
    print(json.dumps({"impl": "transformers", "model": a.model, "prompt_tokens": a.prompt, "new_tokens": n,
                      "prefill_s": prefill, "decode_tokens_per_sec": (n - 1) / (total - prefill),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
