#!/usr/bin/env python3
"""PyTorch + transformers reference for `whet bench`: the same workload, measured the same way.

Usage: python3 reference.py --model llama-3.2-1b --method lora --batch 4 --seq 2048 [--checkpointing]
       python3 reference.py --model llama-3.2-1b --method full --batch 4 --seq 2048 [--pure-bf16]

A Llama / Qwen2 / Qwen3 / Gemma 3 causal LM built from the architecture numbers (random init,
bf16 on the GPU, SDPA attention), trained on random tokens: LoRA r16 on all seven linear
layers as plain adapter layers (y = base(x) + (x A^T B^T) * alpha/r, the base frozen), or
full fine-tuning; fused AdamW; the loss normalised over the batch's tokens. Full fine-tuning
runs fp32 weights under bf16 autocast (fp32 masters, as whet's default), or with --pure-bf16
bf16 weights with no autocast and fused AdamW on the bf16 weights (its moments bf16 too, the
update rounded to nearest: PyTorch's fastest full fine-tuning, and the nearest to whet's
train.master_weights: bf16). Prints one JSON line: tokens/s, seconds per step and
torch.cuda.max_memory_allocated.
"""

import argparse
import json
import time

ARCH = {
    # name: (model_type, vocab, hidden, intermediate, layers, heads, kv_heads, head_dim, tied, rope_theta)
    "llama-3.2-1b": ("llama", 128256, 2048, 8192, 16, 32, 8, 64, True, 500000.0),
    "llama-3.2-3b": ("llama", 128256, 3072, 8192, 28, 24, 8, 128, True, 500000.0),
    "llama-3.1-8b": ("llama", 128256, 4096, 14336, 32, 32, 8, 128, False, 500000.0),
    "qwen2.5-0.5b": ("qwen2", 151936, 896, 4864, 24, 14, 2, 64, True, 1000000.0),
    "qwen2.5-1.5b": ("qwen2", 151936, 1536, 8960, 28, 12, 2, 128, True, 1000000.0),
    "qwen3-1.7b": ("qwen3", 151936, 2048, 6144, 28, 16, 8, 128, True, 1000000.0),
    "gemma-3-1b": ("gemma3_text", 262144, 1152, 6912, 26, 4, 1, 256, True, 1000000.0),
}
# Settings beyond the shared numbers, as presets/models.yaml has them.
EXTRA = {
    "gemma-3-1b": dict(query_pre_attn_scalar=256, sliding_window=512, rope_local_base_freq=10000.0,
                       max_position_embeddings=32768),
}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build(name):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    mt, vocab, hidden, inter, layers, heads, kv, hd, tied, theta = ARCH[name]
    kw = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
              num_attention_heads=heads, num_key_value_heads=kv, head_dim=hd, tie_word_embeddings=tied,
              rope_theta=theta, max_position_embeddings=8192)
    kw.update(EXTRA.get(name, {}))
    cfg = AutoConfig.for_model(mt, **kw)
    cfg._attn_implementation = "sdpa"
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    return model


class LoRALinear:
    """Adds x A^T B^T * scale to a frozen nn.Linear through a forward hook. A and B are
    registered on the linear layer (lora_a, lora_b), so that they are the model's
    parameters (DistributedDataParallel reduces only those)."""

    def __init__(self, mod, r, alpha):
        import torch

        self.a = torch.nn.Parameter(torch.randn(r, mod.in_features, device="cuda", dtype=torch.bfloat16) * 0.01)
        self.b = torch.nn.Parameter(torch.zeros(mod.out_features, r, device="cuda", dtype=torch.bfloat16))
        mod.lora_a, mod.lora_b = self.a, self.b
        self.scale = alpha / r
        mod.register_forward_hook(lambda m, args, out: out + (args[0] @ self.a.t() @ self.b.t()) * self.scale)


def add_args(ap):
    """The workload's arguments (reference.py's and ddp_reference.py's)."""
    ap.add_argument("--model", default="llama-3.2-1b", choices=sorted(ARCH))
    ap.add_argument("--method", default="lora", choices=["lora", "full"])
    ap.add_argument("--batch", type=int, default=4, help="sequences per step (per GPU under DDP)")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--pure-bf16", action="store_true",
                    help="full fine-tuning in bf16 throughout: bf16 weights, no autocast, fused AdamW on the bf16 weights")


def prepare(a):
    """The model (seed 0: the same weights in every process) and its trainable
    parameters for the arguments: LoRA adapters on the frozen model, or every weight."""
    import torch

    torch.manual_seed(0)
    model = build(a.model)
    if a.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if a.method == "lora":
        for p in model.parameters():
            p.requires_grad_(False)
        adapters = [LoRALinear(m, a.rank, a.rank) for n, m in list(model.named_modules()) if n.split(".")[-1] in TARGETS]
        params = [p for ad in adapters for p in (ad.a, ad.b)]
        if a.checkpointing:
            model.enable_input_require_grads()
    elif a.pure_bf16:
        # Pure bf16: the weights stay bf16, the optimizer steps them in
        # place (its state in the parameters' dtype).
        params = list(model.parameters())
    else:
        # Full fine-tuning keeps fp32 master weights, as whet does: the
        # model trains in bf16 autocast over fp32 parameters.
        model = model.float()
        params = list(model.parameters())
    return model, params


def measure(a, forward, params, ids, before_timing=None):
    """Times a.steps training steps after a.warmup untimed ones: forward(ids) is the
    model (or its DDP wrapper); fused AdamW, clipping at 1. Returns seconds per step
    and the last loss."""
    import torch

    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=(a.method == "full" and not a.pure_bf16)):
            out = forward(input_ids=ids, labels=ids, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return out.loss

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    if before_timing:
        before_timing()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / a.steps, loss.detach().float()


def main():
    ap = argparse.ArgumentParser()
    add_args(ap)
    a = ap.parse_args()
    if a.pure_bf16 and a.method != "full":
        ap.error("--pure-bf16 is a way of full fine-tuning: use it with --method full")
    import torch  # after the arguments: --help and a wrong argument need no torch

    model, params = prepare(a)
    ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq), device="cuda")
    dt, loss = measure(a, model, params, ids)
    print(json.dumps({"impl": "pytorch", "model": a.model, "method": a.method, "batch": a.batch, "seq": a.seq,
                      "checkpointing": a.checkpointing, "pure_bf16": a.pure_bf16, "tokens_per_sec": a.batch * a.seq / dt, "step_s": dt,
                      "peak_bytes": torch.cuda.max_memory_allocated(), "loss": float(loss),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
