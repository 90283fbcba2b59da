#!/usr/bin/env python3
"""DPO reference for whet: TRL's DPO loss written out in PyTorch on the tiny models.

Usage:  python3 make_dpo_reference.py REPO_ROOT OUTDIR [MODEL ...]   (default: tiny-llama tiny-qwen2)

For tiny-llama and tiny-qwen2 (from REPO_ROOT/testdata) it builds 3 preference pairs
(a shared 3-token prompt, responses of 3-5 tokens, prompt targets masked), takes the
reference log-probs from the base model (LoRA off: the adapter-disabled reference TRL
uses with PEFT), attaches the fixed LoRA init of REPO_ROOT/testdata/reference/<model>.safetensors,
and writes OUTDIR/<model>.dpo.safetensors with the batch, the reference log-probs, and
for each loss setting the loss, TRL's metrics and the LoRA gradients.

The formulas, as TRL's DPOTrainer computes them:
  h = (pi_c - ref_c) - (pi_r - ref_r)      (log-probs summed over response tokens;
                                             averaged per token for ipo)
  sigmoid: loss = -(1-ls) logsigmoid(beta h) - ls logsigmoid(-beta h)
  ipo:     loss = (h - 1/(2 beta))^2
  loss is the mean over pairs; rewards/chosen = beta (pi_c - ref_c), rewards/rejected likewise,
  rewards/margins = chosen - rejected, rewards/accuracies = mean(chosen > rejected),
  logps/chosen, logps/rejected = mean policy log-probs.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference as mr  # noqa: E402

SETTINGS = {
    "sigmoid": {"beta": 0.1, "label_smoothing": 0.1, "loss_type": "sigmoid"},
    "ipo": {"beta": 0.1, "label_smoothing": 0.0, "loss_type": "ipo"},
}
METRICS = ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"]
PAIRS = 3
PROMPT_LEN = 3


def make_pairs(vocab, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    ids, targets, positions, starts = [], [], [], [0]
    for p in range(PAIRS):
        prompt = torch.randint(0, vocab, (PROMPT_LEN,), generator=g).tolist()
        for k in range(2):
            resp = torch.randint(0, vocab, (3 + k + p % 2,), generator=g).tolist()
            toks = prompt + resp
            for i, t in enumerate(toks):
                ids.append(t)
                positions.append(i)
                masked = i + 1 < PROMPT_LEN or i == len(toks) - 1
                targets.append(-100 if masked else toks[i + 1])
            starts.append(len(ids))
    return ids, targets, positions, starts


def seq_logps(model, ids, targets, positions, starts, average):
    import torch
    import torch.nn.functional as F

    out = []
    for s in range(len(starts) - 1):
        a, b = starts[s], starts[s + 1]
        x = torch.tensor(ids[a:b])[None]
        pos = torch.tensor(positions[a:b])[None]
        logits = model(input_ids=x, position_ids=pos, use_cache=False).logits[0].float()
        tgt = torch.tensor(targets[a:b])
        mask = tgt != -100
        lp = F.log_softmax(logits, dim=-1).gather(1, tgt.clamp(min=0)[:, None])[:, 0]
        total = (lp * mask).sum()
        out.append(total / mask.sum() if average else total)
    return torch.stack(out)


def dpo(policy, ref, beta, ls, loss_type):
    import torch.nn.functional as F

    pc, pr = policy[0::2], policy[1::2]
    rc, rr = ref[0::2], ref[1::2]
    h = (pc - rc) - (pr - rr)
    if loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        losses = -F.logsigmoid(beta * h) * (1 - ls) - F.logsigmoid(-beta * h) * ls
    cr = (beta * (pc - rc)).detach()
    rj = (beta * (pr - rr)).detach()
    metrics = {
        "rewards/chosen": cr.mean(), "rewards/rejected": rj.mean(), "rewards/margins": (cr - rj).mean(),
        "rewards/accuracies": (cr > rj).float().mean(), "logps/chosen": pc.detach().mean(),
        "logps/rejected": pr.detach().mean(),
    }
    return losses.mean(), metrics


def main(argv):
    import torch
    from safetensors.torch import load_file, save_file

    root, out = argv[1], argv[2]
    names = argv[3:] or ["tiny-llama", "tiny-qwen2"]
    every = dict(mr.MODELS, **mr.FAMILY_MODELS)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(mr.SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    summary = {}
    for name in names:
        lora_targets = every[name].get("lora_targets", mr.LORA_TARGETS)
        model = mr.load_model(os.path.join(root, "testdata", name))
        mr.freeze(model)
        init = load_file(os.path.join(root, "testdata", "reference", name + ".safetensors"))
        init = {k: v for k, v in init.items() if k.startswith("lora.")}
        ids, targets, positions, starts = make_pairs(model.config.vocab_size, mr.SEED + 7)
        tensors = {
            "input_ids": torch.tensor(ids, dtype=torch.int32),
            "targets": torch.tensor(targets, dtype=torch.int32),
            "positions": torch.tensor(positions, dtype=torch.int32),
            "seq_starts": torch.tensor(starts, dtype=torch.int32),
        }
        info = {"pairs": PAIRS, "settings": SETTINGS, "metrics_order": METRICS}
        for key, st in SETTINGS.items():
            average = st["loss_type"] == "ipo"
            with torch.no_grad():
                ref = seq_logps(model, ids, targets, positions, starts, average)
            lora = mr.LoRA(model, init, lora_targets)
            policy = seq_logps(model, ids, targets, positions, starts, average)
            loss, metrics = dpo(policy, ref, st["beta"], st["label_smoothing"], st["loss_type"])
            loss.backward()
            tensors[f"{key}.ref_logps"] = ref.float().contiguous()
            tensors[f"{key}.loss"] = loss.detach().float().reshape(1)
            tensors[f"{key}.metrics"] = torch.stack([metrics[m].float() for m in METRICS])
            for mod, a, b in lora.modules:
                tensors[f"{key}.lora_grad.{mod}.lora_A.weight"] = a.grad.detach().float().contiguous()
                tensors[f"{key}.lora_grad.{mod}.lora_B.weight"] = b.grad.detach().float().contiguous()
            for h in lora.handles:
                h.remove()
            info[key] = {"loss": float(loss), **{m: float(v) for m, v in metrics.items()}}
        save_file(tensors, os.path.join(out, name + ".dpo.safetensors"))
        summary[name] = info
    with open(os.path.join(out, "dpo.json" if names == ["tiny-llama", "tiny-qwen2"] else "dpo-" + "-".join(n.removeprefix("tiny-") for n in names) + ".json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv)
