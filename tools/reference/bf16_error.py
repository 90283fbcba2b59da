#!/usr/bin/env python3
"""How far transformers itself lands from its float32 results when it runs in bf16.

Usage:  python3 bf16_error.py REPO_ROOT [MODEL ...]   (default: every tiny reference model)

For each tiny reference model (testdata/<model>, its batch in testdata/reference/<model>.safetensors)
this runs the model in float32 and again with weights and compute in bf16 (model.to(bfloat16),
the way whet's bf16 backend stores and computes), on the CPU, and prints one JSON line: the
relative error (root of summed squares over the tensor) of the bf16 logits and of all full
fine-tuning gradients together against the float32 run. These are PyTorch's own bf16 errors on
the same models and tokens: the scale against which engine/cuda's TestReferenceOnGPU bounds
whet's bf16 errors.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

MODELS = ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3", "tiny-gemma2", "tiny-phi3"]


def run(model, batch, dtype):
    m = model.to(dtype)
    m.zero_grad(set_to_none=True)
    ids, tg, starts = batch["input_ids"].long(), batch["targets"].long(), batch["seq_starts"].tolist()
    logits, loss_sum, count = [], 0.0, int((tg != -100).sum())
    for a, b in zip(starts[:-1], starts[1:]):
        out = m(input_ids=ids[a:b].unsqueeze(0), position_ids=batch["positions"][a:b].long().unsqueeze(0))
        lg = out.logits[0].float()
        logits.append(lg)
        loss_sum = loss_sum + torch.nn.functional.cross_entropy(lg, tg[a:b], ignore_index=-100, reduction="sum")
    (loss_sum / count).backward()
    grads = torch.cat([p.grad.float().flatten() for p in m.parameters() if p.grad is not None])
    return torch.cat(logits).detach(), grads


def rel(a, b):
    return float(((a - b).norm() / b.norm()).item())


def main(argv):
    root = argv[1]
    names = argv[2:] or MODELS
    torch.manual_seed(0)
    for name in names:
        path = os.path.join(root, "testdata", name)
        batch = load_file(os.path.join(root, "testdata", "reference", name + ".safetensors"))
        kw = dict(dtype=torch.float32, attn_implementation="eager")
        l32, g32 = run(AutoModelForCausalLM.from_pretrained(path, **kw), batch, torch.float32)
        l16, g16 = run(AutoModelForCausalLM.from_pretrained(path, **kw), batch, torch.bfloat16)
        print(json.dumps({"model": name, "logits_rel": rel(l16, l32), "grads_rel": rel(g16, g32),
                          "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main(sys.argv)
