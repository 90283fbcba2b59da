#!/usr/bin/env python3
"""GRPO reference for whet: TRL's GRPOTrainer loss written out in PyTorch on the tiny models.

Usage:  python3 make_grpo_reference.py REPO_ROOT OUTDIR [MODEL ...]   (default: tiny-llama tiny-qwen2)

For tiny-llama and tiny-qwen2 (from REPO_ROOT/testdata) it builds one GRPO batch with fixed
completions instead of sampled ones: PROMPTS prompts of PROMPT_LEN random tokens, each with
G completions of COMPLETION_LENS tokens, packed one sequence per completion (targets on the
completion tokens only). Two reward functions give fixed REWARDS with REWARD_WEIGHTS. The
"old" per-token log-probs (the policy at generation time, which differ from the current policy
when num_iterations > 1) are the current policy's plus fixed OLD_OFFSETS, so that some ratios
fall outside the clip range on each side. The reference log-probs (for the KL term) are the base
model's, LoRA off, as TRL's PEFT path takes them. Then, with the LoRA init of
REPO_ROOT/testdata/reference/<model>.safetensors attached, for each setting in SETTINGS it writes
the loss, TRL's metrics and the LoRA gradients to OUTDIR/<model>.grpo.safetensors.

The formulas, as TRL's GRPOTrainer (_generate_and_score_completions, _compute_loss) has them
with multi_objective_aggregation "sum_then_normalize" and importance_sampling_level "token":
  r_i      = sum_k w_k r_ik                          (weighted sum over reward functions)
  A_i      = r_i - mean_group(r)                     then / (std + 1e-4) unless scale_rewards "none";
             std is the group's (scale "group") or the batch's (scale "batch"), unbiased (n-1)
  ratio_t  = exp(logp_t - old_t)
  l_t      = -min(ratio_t A_i, clamp(ratio_t, 1-eps, 1+eps_high) A_i) + beta kl_t,
  kl_t     = exp(ref_t - logp_t) - (ref_t - logp_t) - 1
  grpo:    loss = mean_i( sum_t l_t / |o_i| )
  bnpo:    loss = sum l / (tokens in the micro-batch)
  dr_grpo: loss = sum l / (sequences * max_completion_length)
  dapo:    loss = sum l / (tokens in the whole accumulated batch)   (one micro-batch here)
Metrics: reward, reward_std, rewards/<f>/mean, rewards/<f>/std, frac_reward_zero_std, kl (token
mean), clip_ratio/low_mean, clip_ratio/high_mean, clip_ratio/region_mean (token means of the
clipped tokens whose advantage has the clipping sign), completions/mean_length.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference as mr  # noqa: E402

PROMPTS = 2
G = 3
PROMPT_LEN = 3
COMPLETION_LENS = [3, 5, 2, 4, 3, 5]  # one per completion, prompt-major
REWARD_FUNCS = ["f0", "f1"]
REWARD_WEIGHTS = [1.0, 0.5]
REWARDS = [[1.0, 0.5], [0.0, 0.25], [2.0, 0.0], [0.5, 1.0], [0.5, 0.0], [1.5, 0.5]]
# old_t = logp_t + OLD_OFFSETS[k % len], k the token's index in the whole batch of completion tokens.
# exp(-offset): 0.70 (below 0.8), 1.42 (above 1.28), 0.95, 1.105, 1.0, 0.61.
OLD_OFFSETS = [0.35, -0.35, 0.05, -0.1, 0.0, 0.5]
MAX_COMPLETION_LENGTH = 8
SETTINGS = {
    "grpo": {"loss_type": "grpo", "scale_rewards": "group", "beta": 0.04, "epsilon": 0.2, "epsilon_high": 0.28},
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": "none", "beta": 0.04, "epsilon": 0.2, "epsilon_high": 0.2},
    "dapo": {"loss_type": "dapo", "scale_rewards": "group", "beta": 0.0, "epsilon": 0.2, "epsilon_high": 0.28},
    "bnpo": {"loss_type": "bnpo", "scale_rewards": "batch", "beta": 0.04, "epsilon": 0.2, "epsilon_high": 0.2},
}
METRICS = [
    "reward", "reward_std", "rewards/f0/mean", "rewards/f0/std", "rewards/f1/mean", "rewards/f1/std",
    "frac_reward_zero_std", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean",
    "completions/mean_length",
]


def make_batch(vocab, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    ids, targets, positions, starts = [], [], [], [0]
    for p in range(PROMPTS):
        prompt = torch.randint(0, vocab, (PROMPT_LEN,), generator=g).tolist()
        for k in range(G):
            comp = torch.randint(0, vocab, (COMPLETION_LENS[p * G + k],), generator=g).tolist()
            toks = prompt + comp
            for i, t in enumerate(toks):
                ids.append(t)
                positions.append(i)
                masked = i + 1 < PROMPT_LEN or i == len(toks) - 1
                targets.append(-100 if masked else toks[i + 1])
            starts.append(len(ids))
    return ids, targets, positions, starts


def per_token_logps(model, ids, targets, positions, starts):
    """[sequences, max completion] log-probs of the completion tokens, zero-padded."""
    import torch
    import torch.nn.functional as F

    width = max(COMPLETION_LENS)
    rows = []
    for s in range(len(starts) - 1):
        a, b = starts[s], starts[s + 1]
        x = torch.tensor(ids[a:b])[None]
        pos = torch.tensor(positions[a:b])[None]
        logits = model(input_ids=x, position_ids=pos, use_cache=False).logits[0].float()
        tgt = torch.tensor(targets[a:b])
        keep = tgt != -100
        lp = F.log_softmax(logits, dim=-1).gather(1, tgt.clamp(min=0)[:, None])[:, 0][keep]
        rows.append(torch.cat([lp, lp.new_zeros(width - lp.numel())]))
    return torch.stack(rows)


def completion_mask():
    import torch

    width = max(COMPLETION_LENS)
    return torch.tensor([[1.0 if t < n else 0.0 for t in range(width)] for n in COMPLETION_LENS])


def nanstd(x):
    # TRL's nanstd: Bessel-corrected; no NaN in these rewards.
    return x.std(correction=1) if x.numel() > 1 else x.new_zeros(())


def advantages(st):
    import torch

    per_func = torch.tensor(REWARDS, dtype=torch.float64)
    rewards = (per_func * torch.tensor(REWARD_WEIGHTS, dtype=torch.float64)[None]).sum(1)
    grouped = rewards.view(-1, G)
    mean = grouped.mean(1).repeat_interleave(G)
    if st["scale_rewards"] in ("group", "none"):
        std = grouped.std(dim=1, correction=1).repeat_interleave(G)
    else:
        std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean
    if st["scale_rewards"] != "none":
        adv = adv / (std + 1e-4)
    zero_std = torch.isclose(std, torch.zeros_like(std))
    metrics = {"reward": rewards.mean(), "reward_std": nanstd(rewards), "frac_reward_zero_std": zero_std.float().mean()}
    for i, name in enumerate(REWARD_FUNCS):
        metrics[f"rewards/{name}/mean"] = per_func[:, i].mean()
        metrics[f"rewards/{name}/std"] = nanstd(per_func[:, i])
    return adv.float(), metrics


def grpo_loss(logps, old, ref, adv, mask, st):
    import torch

    eps_low, eps_high, beta = st["epsilon"], st["epsilon_high"], st["beta"]
    a = adv[:, None]
    coef_1 = torch.exp(logps - old)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(coef_1 * a, coef_2 * a)
    kl = torch.exp(ref - logps) - (ref - logps) - 1
    if beta != 0.0:
        per_token = per_token + beta * kl
    lt = st["loss_type"]
    if lt == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif lt == "bnpo":
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    elif lt == "dr_grpo":
        loss = (per_token * mask).sum() / (per_token.size(0) * MAX_COMPLETION_LENGTH)
    elif lt == "dapo":
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    else:
        raise ValueError(lt)

    def tok_mean(x):
        return (x * mask).sum() / mask.sum()

    low = ((coef_1 < 1 - eps_low) & (a < 0)).float()
    high = ((coef_1 > 1 + eps_high) & (a > 0)).float()
    metrics = {
        "kl": tok_mean(kl.detach()) if beta != 0.0 else torch.zeros(()),
        "clip_ratio/low_mean": tok_mean(low),
        "clip_ratio/high_mean": tok_mean(high),
        "clip_ratio/region_mean": tok_mean(torch.maximum(low, high)),
        "completions/mean_length": mask.sum(-1).mean(),
    }
    return loss, metrics


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
    mask = completion_mask()
    width = mask.size(1)
    offsets = torch.zeros_like(mask)
    k = 0
    for s, n in enumerate(COMPLETION_LENS):
        for t in range(n):
            offsets[s, t] = OLD_OFFSETS[k % len(OLD_OFFSETS)]
            k += 1
    for name in names:
        lora_targets = every[name].get("lora_targets", mr.LORA_TARGETS)
        model = mr.load_model(os.path.join(root, "testdata", name))
        mr.freeze(model)
        init = load_file(os.path.join(root, "testdata", "reference", name + ".safetensors"))
        init = {k: v for k, v in init.items() if k.startswith("lora.")}
        ids, targets, positions, starts = make_batch(model.config.vocab_size, mr.SEED + 11)
        with torch.no_grad():
            ref = per_token_logps(model, ids, targets, positions, starts)
        tensors = {
            "input_ids": torch.tensor(ids, dtype=torch.int32),
            "targets": torch.tensor(targets, dtype=torch.int32),
            "positions": torch.tensor(positions, dtype=torch.int32),
            "seq_starts": torch.tensor(starts, dtype=torch.int32),
            "rewards": torch.tensor(REWARDS, dtype=torch.float32),
            "reward_weights": torch.tensor(REWARD_WEIGHTS, dtype=torch.float32),
            "ref_logps": ref.float().contiguous(),
        }
        info = {"prompts": PROMPTS, "num_generations": G, "completion_lens": COMPLETION_LENS,
                "max_completion_length": MAX_COMPLETION_LENGTH, "settings": SETTINGS, "metrics_order": METRICS,
                "versions": {"torch": torch.__version__}}
        old = None
        for key, st in SETTINGS.items():
            adv, rmetrics = advantages(st)
            lora = mr.LoRA(model, init, lora_targets)
            logps = per_token_logps(model, ids, targets, positions, starts)
            if old is None:
                # The same old log-probs for every setting: the policy's at the LoRA init, offset.
                old = (logps.detach() + offsets) * mask
                tensors["old_logps"] = old.float().contiguous()
                tensors["policy_logps"] = logps.detach().float().contiguous()
            loss, lmetrics = grpo_loss(logps, old, ref, adv, mask, st)
            loss.backward()
            metrics = dict(rmetrics, **lmetrics)
            tensors[f"{key}.advantages"] = adv.contiguous()
            tensors[f"{key}.loss"] = loss.detach().float().reshape(1)
            tensors[f"{key}.metrics"] = torch.stack([torch.as_tensor(metrics[m]).float() for m in METRICS])
            for mod, a, b in lora.modules:
                tensors[f"{key}.lora_grad.{mod}.lora_A.weight"] = a.grad.detach().float().contiguous()
                tensors[f"{key}.lora_grad.{mod}.lora_B.weight"] = b.grad.detach().float().contiguous()
            for h in lora.handles:
                h.remove()
            info[key] = {"loss": float(loss), **{m: float(metrics[m]) for m in METRICS}}
        assert width == max(COMPLETION_LENS)
        save_file(tensors, os.path.join(out, name + ".grpo.safetensors"))
        summary[name] = info
    with open(os.path.join(out, "grpo.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv)
