"""Runs the CPU-trained family models that engine/cuda's
TestFamilyGenerateMatchesCPU dumped (WHET_FAMILY_DUMP) through transformers
in float32 and bfloat16 on the GPU, and reports, at every position, the
largest logit difference from whet's float32 CPU logits as a percentage of
that position's largest |logit| (median, p90, max, and position 11 = after
12 tokens), beside whet's GPU bf16 and its CPU emulation (emu)."""
import json, os, sys, time
import torch, transformers
from transformers import AutoModelForCausalLM

root, out_path = sys.argv[1], sys.argv[2]
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
print("torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name(0), flush=True)
summary = {}
order = ["phi3", "qwen3", "gemma3", "gemma2"]
for name in sorted(os.listdir(root), key=lambda n: order.index(n) if n in order else len(order)):
    d = os.path.join(root, name)
    w = json.load(open(os.path.join(d, "whet.json")))
    T = len(w["ids"])
    ids = torch.tensor([w["ids"]], device="cuda")
    cpu = torch.tensor(w["cpu"], dtype=torch.float64).view(T, -1)
    res = {"whet_gpu_bf16": torch.tensor(w["gpu_bf16"], dtype=torch.float64).view(T, -1),
           "whet_emu": torch.tensor(w["emu"], dtype=torch.float64).view(T, -1)}
    hid = {}
    for dt, impl in [("float32", "eager"), ("bfloat16", "eager"), ("bfloat16", "sdpa")]:
        t0 = time.time()
        try:
            m = AutoModelForCausalLM.from_pretrained(d, dtype=getattr(torch, dt), attn_implementation=impl).cuda().eval()
            with torch.no_grad():
                o = m(ids, output_hidden_states=True)
                res[f"hf_{dt}_{impl}"] = o.logits[0].double().cpu()
                hid[f"{dt}_{impl}"] = [h[0].double().cpu() for h in o.hidden_states]
        except Exception as e:  # report and go on with the other runs
            print(name, dt, impl, "failed:", repr(e), flush=True)
        print(name, dt, impl, f"{time.time()-t0:.1f}s", flush=True)
    scale = cpu.abs().max(-1).values
    summary[name] = {}
    for k, l in res.items():
        rel = (l - cpu).abs().max(-1).values / scale * 100
        s = {"median": rel.median().item(), "p90": rel.quantile(0.9).item(), "max": rel.max().item(), "pos11": rel[11].item(),
             "abs_pos11": (l - cpu)[11].abs().max().item()}
        summary[name][k] = s
        print(f"{name:7s} {k:22s} % of largest logit vs whet cpu f32: median {s['median']:.3f} p90 {s['p90']:.3f} max {s['max']:.3f} pos11 {s['pos11']:.3f} (abs {s['abs_pos11']:.4f})", flush=True)
    # Per layer (transformers' hidden_states: the embeddings, each block's
    # output, the last one after the final norm): relative difference of
    # bf16 from float32, as |diff| / |f32| over each position's vector.
    if "float32_eager" in hid and "bfloat16_sdpa" in hid:
        for i, (a, b) in enumerate(zip(hid["float32_eager"], hid["bfloat16_sdpa"])):
            r = (b - a).norm(dim=-1) / a.norm(dim=-1) * 100
            print(f"{name:7s} hidden {i}: bf16 vs f32 relative % median {r.median().item():.3f} max {r.max().item():.3f} pos11 {r[11].item():.3f}", flush=True)
    json.dump(summary, open(out_path, "w"), indent=1)  # after each family, in case of a timeout
    if "hf_bfloat16_sdpa" in res:
        g = res["whet_gpu_bf16"]
        for k in ("hf_bfloat16_sdpa", "hf_bfloat16_eager", "whet_emu"):
            if k in res:
                rel = (g - res[k]).abs().max(-1).values / scale * 100
                print(f"{name:7s} whet_gpu_bf16 vs {k}: median {rel.median().item():.3f} max {rel.max().item():.3f} %", flush=True)

