#!/usr/bin/env python3
"""PyTorch DDP reference for `whet bench --gpus N`: reference.py's workload on N GPUs.

Usage (one process per GPU, started by torchrun):

    torchrun --standalone --nproc_per_node N tools/bench/ddp_reference.py \
        --model llama-3.1-8b --method lora --batch 2 --seq 2048 --checkpointing

The model (random init, bf16, SDPA attention) and the LoRA adapters (r16 on all seven
linear layers) are reference.py's own (imported from it); each rank trains on --batch
random sequences of --seq tokens (the batch is per GPU, as whet bench's --batch with
--gpus), wrapped in torch.nn.parallel.DistributedDataParallel over NCCL (25 MB buckets,
its default and whet's; gradients as bucket views). LoRA adapters are registered as
parameters of the linear layers they adapt (reference.py does so), so that DDP
all-reduces their gradients.
Full fine-tuning keeps fp32 parameters under bf16 autocast, as reference.py does, with
the whole AdamW state on every GPU (plain DDP; whet shards it across the GPUs, so the
memory figures differ by design). Rank 0 prints one JSON line like reference.py's, with
the job's tokens/s (every rank's tokens over rank 0's step time), the per-GPU rate, the
rank count and the global batch.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402  (add_args, prepare, measure)


def main():
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    ap = argparse.ArgumentParser()
    reference.add_args(ap)
    a = ap.parse_args()
    if "LOCAL_RANK" not in os.environ:
        sys.exit("ddp_reference.py: run it under torchrun (torchrun --standalone --nproc_per_node N ...)")
    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    rank, world = dist.get_rank(), dist.get_world_size()

    # Every rank builds the same weights (DDP also broadcasts rank 0's).
    model, params = reference.prepare(a)
    ddp = DDP(model, device_ids=[local], gradient_as_bucket_view=True)
    gen = torch.Generator(device="cuda").manual_seed(1 + rank)  # each rank its own rows
    ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq), device="cuda", generator=gen)
    dt, loss = reference.measure(a, ddp, params, ids, before_timing=dist.barrier)
    dist.all_reduce(loss)  # summed over the ranks: /world is the global batch's mean
    if rank == 0:
        tps = a.batch * a.seq * world / dt
        print(json.dumps({"impl": "pytorch-ddp", "model": a.model, "method": a.method, "batch": a.batch, "seq": a.seq,
                          "checkpointing": a.checkpointing, "ranks": world, "global_batch": a.batch * world,
                          "tokens_per_sec": tps, "tokens_per_sec_per_rank": tps / world, "step_s": dt,
                          "peak_bytes": torch.cuda.max_memory_allocated(), "loss": float(loss) / world,
                          "torch": torch.__version__, "nccl": ".".join(map(str, torch.cuda.nccl.version()))}),
              flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
