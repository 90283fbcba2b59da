#!/usr/bin/env python3
"""Loads whet's exports in transformers and PEFT and compares their logits
with whet's.

Inputs come from the Go test TestWriteTransformersInputs:

    WHET_EXPORT_DEV=$PWD/.dev/export go test -run TestWriteTransformersInputs ./engine/export

which writes, per tiny model (tiny-llama, tiny-qwen2), base/ (the base
model), peft/ (the LoRA run's PEFT export), merged-bf16/ and merged-f16/
(the merged exports), and whet_logits.json (whet's float32 logits of the
base with the adapter applied, on fixed token ids). Then, where torch,
transformers and peft are installed (the GPU machine):

    python3 tools/export/check_transformers.py .dev/export testdata/export/transformers.json

For each model it loads merged-bf16 and merged-f16 with AutoModelForCausalLM
(weights upcast to float32 so only the stored precision differs) and the
base plus PeftModel.from_pretrained(base, peft/) in float32, runs the fixed
ids, and writes the largest absolute logit difference from whet's, the
largest logit, and how often the argmax agrees. TestTransformersReference
checks the written file against bf16/f16/f32 tolerances.
"""
import json
import os
import sys

import torch
import transformers
import peft
from transformers import AutoModelForCausalLM
from peft import PeftModel


def logits_of(model, inputs):
    out = []
    with torch.no_grad():
        for ids in inputs:
            x = torch.tensor([ids], dtype=torch.long, device=model.device)
            out.append(model(input_ids=x).logits[0].float().cpu())
    return out


def compare(name, got, want, vocab):
    max_diff, max_abs, agree, total = 0.0, 0.0, 0, 0
    for g, w in zip(got, want):
        w = torch.tensor(w, dtype=torch.float32).reshape(-1, vocab)
        max_diff = max(max_diff, (g - w).abs().max().item())
        max_abs = max(max_abs, w.abs().max().item())
        agree += (g.argmax(-1) == w.argmax(-1)).sum().item()
        total += w.shape[0]
    return {"what": name, "max_abs_diff": max_diff, "max_abs_logit": max_abs, "argmax_agreement": agree / total}


def main():
    root, out_path = sys.argv[1], sys.argv[2]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with open(os.path.join(root, "whet_logits.json")) as f:
        ref = json.load(f)
    result = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                           "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"},
              "cases": []}
    for case in ref["cases"]:
        d = os.path.join(root, case["name"])
        checks = []
        for kind in ("merged-bf16", "merged-f16"):
            m = AutoModelForCausalLM.from_pretrained(os.path.join(d, kind), torch_dtype=torch.float32).to(device).eval()
            checks.append(compare(kind, logits_of(m, case["inputs"]), case["logits"], case["vocab"]))
        base = AutoModelForCausalLM.from_pretrained(os.path.join(d, "base"), torch_dtype=torch.float32).to(device)
        m = PeftModel.from_pretrained(base, os.path.join(d, "peft")).to(device).eval()
        checks.append(compare("peft", logits_of(m, case["inputs"]), case["logits"], case["vocab"]))
        result["cases"].append({"name": case["name"], "checks": checks})
        for c in checks:
            print(case["name"], c)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    main()
