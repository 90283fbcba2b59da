#!/usr/bin/env python3
"""PyTorch's causal attention (torch.nn.functional.scaled_dot_product_attention) at the shapes of
engine/cuda's BenchmarkAttentionForward/Backward(D128), for issue 20's attention rows.

Usage: python3 attention_reference.py [--dims 64,128] [--iters 20]

Head dim 64: Llama-3.2-1B's 4 sequences of 2048 tokens, 32 query heads, 8 key/value heads; head
dim 128: Llama-3.1-8B's 2 sequences. bf16 on the GPU, random inputs, grouped-query attention
(enable_gqa), whatever backend SDPA picks (its name is printed when torch can say). TFLOP/s
counted as the Go benchmark counts them: causal, half the S x S scores, 2 matrix products
forward and 5 backward (2 * batch * S * S / 2 * D * heads each). One JSON line per head dim and
direction; mean time of --iters runs after 3 untimed ones, by CUDA events.
"""

import argparse
import json

SHAPES = {64: (4, 32, 8), 128: (2, 32, 8)}  # head dim: (sequences, query heads, key/value heads)
S = 2048


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="64,128", help="head dims, comma-separated (64, 128)")
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    dims = [int(d) for d in a.dims.split(",")]
    for d in dims:
        if d not in SHAPES:
            ap.error(f"--dims: {d} is not one of {sorted(SHAPES)}")
    import torch  # after the arguments: --help and a wrong argument need no torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    for d in dims:
        b, h, kvh = SHAPES[d]
        q = torch.randn(b, h, S, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(b, kvh, S, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(b, kvh, S, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        dout = torch.randn(b, h, S, d, device="cuda", dtype=torch.bfloat16)

        def fwd():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

        out = fwd()

        def bwd():
            torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)

        for name, fn, products in (("forward", fwd, 2), ("backward", bwd, 5)):
            for _ in range(3):
                fn()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(a.iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            sec = start.elapsed_time(end) / 1e3 / a.iters
            flops = products * 2 * b * S * S / 2 * d * h
            print(json.dumps({"impl": "pytorch-sdpa", "head_dim": d, "direction": name, "batch": b, "seq": S,
                              "heads": h, "kv_heads": kvh, "ms": sec * 1e3, "tflops": flops / sec / 1e12,
                              "device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
