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

    python3 tools/export/check_transformers.py .dev/export testdata/export/transformers.json \
        [whet_logits_families.json testdata/export/transformers-families.json]

The optional pair compares the 2025 families' cases (Qwen3, Gemma 3, Gemma 2,
Phi-3 with short and long LongRoPE factors, Gemma 3's multimodal layout) the
same way; a case transformers cannot load or run is written with its error
instead of checks, so the others still report.

For each model it loads merged-bf16 and merged-f16 with the class named in
config.json's architectures (AutoModelForCausalLM when it names none)
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
from transformers import AutoConfig, AutoModelForCausalLM
from peft import PeftModel


def load(path, device):
    """The model class config.json names (Gemma3ForConditionalGeneration for
    a multimodal Gemma 3), in float32, on device."""
    cfg = AutoConfig.from_pretrained(path)
    cls = AutoModelForCausalLM
    for name in getattr(cfg, "architectures", None) or []:
        if hasattr(transformers, name):
            cls = getattr(transformers, name)
            break
    # eager attention: the reference implementation (Gemma 2's soft-cap included)
    return cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").to(device)


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


def run_cases(root, logits_file, device):
    with open(os.path.join(root, logits_file)) as f:
        ref = json.load(f)
    out = []
    for case in ref["cases"]:
        d = os.path.join(root, case["name"])
        try:
            checks = []
            for kind in ("merged-bf16", "merged-f16"):
                m = load(os.path.join(d, kind), device).eval()
                print(case["name"], kind, "attention:", m.config._attn_implementation)
                checks.append(compare(kind, logits_of(m, case["inputs"]), case["logits"], case["vocab"]))
            base = load(os.path.join(d, "base"), device)
            m = PeftModel.from_pretrained(base, os.path.join(d, "peft")).to(device).eval()
            checks.append(compare("peft", logits_of(m, case["inputs"]), case["logits"], case["vocab"]))
            out.append({"name": case["name"], "checks": checks})
            for c in checks:
                print(case["name"], c)
        except Exception as e:  # report and go on with the other cases
            print(case["name"], "ERROR", repr(e))
            out.append({"name": case["name"], "error": repr(e)})
    return out


def main():
    root, out_path = sys.argv[1], sys.argv[2]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}
    jobs = [("whet_logits.json", out_path)]
    if len(sys.argv) >= 5:
        jobs.append((sys.argv[3], sys.argv[4]))
    for logits_file, path in jobs:
        result = {"versions": versions, "cases": run_cases(root, logits_file, device)}
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    main()
