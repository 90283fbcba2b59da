#!/usr/bin/env python3
"""Check the committed reference files with the standard library alone (no torch needed).

Usage:  python3 check_reference.py [TESTDATA_DIR]     (default: the repository's testdata/)

For each tiny model it reads config.json and the safetensors headers of the model and of its
state file, and checks that every tensor the Go tests read is there with the right dtype and
shape, that the data offsets tile the file exactly, and that the scalar values are finite.
Exits non-zero with a message naming the file and tensor on the first problem.
"""

import json
import math
import os
import struct
import sys

DTYPE_SIZE = {"F32": 4, "BF16": 2, "F16": 2, "I32": 4, "I64": 8}
LORA_TARGETS = {
    "self_attn": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
}


class CheckError(Exception):
    pass


def read_safetensors(path):
    """Return (header dict without __metadata__, metadata, raw data bytes)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise CheckError(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise CheckError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(blob[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n :]
    spans = []
    for name, t in header.items():
        size = DTYPE_SIZE.get(t["dtype"])
        if size is None:
            raise CheckError(f"{path}: tensor {name} has unexpected dtype {t['dtype']}")
        start, end = t["data_offsets"]
        if end - start != size * math.prod(t["shape"]):
            raise CheckError(f"{path}: tensor {name} spans {end - start} bytes, shape {t['shape']} needs {size * math.prod(t['shape'])}")
        spans.append((start, end, name))
    spans.sort()
    pos = 0
    for start, end, name in spans:
        if start != pos:
            raise CheckError(f"{path}: tensor {name} starts at {start}, expected {pos}")
        pos = end
    if pos != len(data):
        raise CheckError(f"{path}: tensors cover {pos} bytes of {len(data)}")
    return header, meta, data


def values(header, data, name):
    t = header[name]
    start, end = t["data_offsets"]
    code = {"F32": "f", "I32": "i"}[t["dtype"]]
    return list(struct.unpack(f"<{(end - start) // 4}{code}", data[start:end]))


def expected_params(cfg):
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // heads
    inter = cfg["intermediate_size"]
    v = cfg["vocab_size"]
    qwen = cfg["model_type"] == "qwen2"
    p = {"model.embed_tokens.weight": [v, h], "model.norm.weight": [h]}
    if not cfg.get("tie_word_embeddings", False):
        p["lm_head.weight"] = [v, h]
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        p[pre + "input_layernorm.weight"] = [h]
        p[pre + "post_attention_layernorm.weight"] = [h]
        p[pre + "self_attn.q_proj.weight"] = [heads * hd, h]
        p[pre + "self_attn.k_proj.weight"] = [kv * hd, h]
        p[pre + "self_attn.v_proj.weight"] = [kv * hd, h]
        p[pre + "self_attn.o_proj.weight"] = [h, heads * hd]
        p[pre + "mlp.gate_proj.weight"] = [inter, h]
        p[pre + "mlp.up_proj.weight"] = [inter, h]
        p[pre + "mlp.down_proj.weight"] = [h, inter]
        if qwen:
            p[pre + "self_attn.q_proj.bias"] = [heads * hd]
            p[pre + "self_attn.k_proj.bias"] = [kv * hd]
            p[pre + "self_attn.v_proj.bias"] = [kv * hd]
    return p


def check_model(testdata, name, want_dtype):
    model_dir = os.path.join(testdata, name)
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    params = expected_params(cfg)
    wpath = os.path.join(model_dir, "model.safetensors")
    wh, _, _ = read_safetensors(wpath)
    if set(wh) != set(params):
        raise CheckError(f"{wpath}: tensors differ from the config: missing {sorted(set(params) - set(wh))}, extra {sorted(set(wh) - set(params))}")
    for pname, shape in params.items():
        if wh[pname]["shape"] != shape or wh[pname]["dtype"] != want_dtype:
            raise CheckError(f"{wpath}: {pname} is {wh[pname]['dtype']} {wh[pname]['shape']}, want {want_dtype} {shape}")
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    ntok = len(tok["model"]["vocab"]) + sum(1 for a in tok["added_tokens"] if a["content"] not in tok["model"]["vocab"])
    if ntok > cfg["vocab_size"]:
        raise CheckError(f"{model_dir}/tokenizer.json: {ntok} tokens exceed vocab_size {cfg['vocab_size']}")

    rpath = os.path.join(testdata, "reference", f"{name}.safetensors")
    rh, _, rdata = read_safetensors(rpath)
    with open(os.path.join(testdata, "reference", f"{name}.json"), encoding="utf-8") as f:
        info = json.load(f)
    seq_lens = info["batch"]["seq_lens"]
    total = sum(seq_lens)
    v = cfg["vocab_size"]
    r = info["lora"]["r"]
    steps = info["optimizer"]["steps"]
    want = {
        "input_ids": ("I32", [total]),
        "positions": ("I32", [total]),
        "seq_starts": ("I32", [len(seq_lens) + 1]),
        "targets": ("I32", [total]),
        "logits": ("F32", [total, v]),
        "loss": ("F32", [1]),
        "lora_loss": ("F32", [1]),
        "gen_prompt": ("I32", [info["generation"]["prompt_len"]]),
        "gen_output": ("I32", [info["generation"]["new_tokens"]]),
        "rope.inv_freq": ("F32", [(cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]) // 2]),
    }
    for curve in ("full", "lora"):
        for what in ("losses", "lrs", "grad_norms"):
            want[f"{curve}_{what}"] = ("F32", [steps])
    for pname, shape in params.items():
        want[f"grad.{pname}"] = ("F32", shape)
    for i in range(cfg["num_hidden_layers"]):
        for block, mods in LORA_TARGETS.items():
            for m in mods:
                mod = f"model.layers.{i}.{block}.{m}"
                out_f, in_f = params[mod + ".weight"]
                for prefix in ("lora", "lora_grad"):
                    want[f"{prefix}.{mod}.lora_A.weight"] = ("F32", [r, in_f])
                    want[f"{prefix}.{mod}.lora_B.weight"] = ("F32", [out_f, r])
    if set(rh) != set(want):
        raise CheckError(f"{rpath}: missing {sorted(set(want) - set(rh))}, extra {sorted(set(rh) - set(want))}")
    for tname, (dtype, shape) in want.items():
        if rh[tname]["dtype"] != dtype or rh[tname]["shape"] != shape:
            raise CheckError(f"{rpath}: {tname} is {rh[tname]['dtype']} {rh[tname]['shape']}, want {dtype} {shape}")
        if dtype == "F32":
            bad = [x for x in values(rh, rdata, tname) if not math.isfinite(x)]
            if bad:
                raise CheckError(f"{rpath}: {tname} holds {len(bad)} non-finite values")
    ids = values(rh, rdata, "input_ids")
    targets = values(rh, rdata, "targets")
    starts = values(rh, rdata, "seq_starts")
    for s in range(len(seq_lens)):
        for t in range(starts[s], starts[s + 1] - 1):
            if targets[t] not in (-100, ids[t + 1]):
                raise CheckError(f"{rpath}: targets[{t}] = {targets[t]} is neither -100 nor input_ids[{t + 1}]")
        if targets[starts[s + 1] - 1] != -100:
            raise CheckError(f"{rpath}: the last target of sequence {s} is not -100")
    if any(not 0 <= x < v for x in ids + values(rh, rdata, "gen_output")):
        raise CheckError(f"{rpath}: token ids outside [0, {v})")
    loss = values(rh, rdata, "loss")[0]
    full = values(rh, rdata, "full_losses")
    lora = values(rh, rdata, "lora_losses")
    if full[0] != loss:
        raise CheckError(f"{rpath}: full_losses[0] {full[0]} != loss {loss}")
    return {
        "model_bytes": os.path.getsize(wpath),
        "reference_bytes": os.path.getsize(rpath),
        "loss": loss,
        "lora_loss": values(rh, rdata, "lora_loss")[0],
        "full_losses": full,
        "lora_losses": lora,
        "tensors": len(rh),
    }


def main(argv):
    testdata = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "testdata")
    try:
        for name, dtype in (("tiny-llama", "BF16"), ("tiny-qwen2", "F32")):
            r = check_model(testdata, name, dtype)
            print(f"{name}: ok, {r['tensors']} reference tensors, model {r['model_bytes']} B, state {r['reference_bytes']} B")
            print(f"  loss {r['loss']:.6f}  lora_loss {r['lora_loss']:.6f}")
            print("  full_losses", " ".join(f"{x:.5f}" for x in r["full_losses"]))
            print("  lora_losses", " ".join(f"{x:.5f}" for x in r["lora_losses"]))
    except (CheckError, OSError, KeyError, ValueError) as e:
        print(f"check failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
