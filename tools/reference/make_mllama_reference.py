#!/usr/bin/env python3
"""Build whet's tiny Llama 3.2 Vision (MllamaForConditionalGeneration) and the transformers
state file the Go test (engine TestReferenceMllama) compares against.

Usage:  python3 make_mllama_reference.py OUTDIR

Writes, under OUTDIR:
  tiny-mllama/              config.json in the published Llama-3.2-11B-Vision layout (vision_config,
                            text_config with rope_theta/rope_scaling), model.safetensors under the
                            published checkpoint's tensor names (language_model.model.*,
                            language_model.lm_head.weight, vision_model.*, multi_modal_projector.*),
                            f32 weights; reloaded with from_pretrained and checked to give the same logits
  reference/tiny-mllama.safetensors, reference/tiny-mllama.json

The model is tiny: vision tiles of 16x16 pixels in patches of 8 (4 patches + the class token = 5
positions, padded to 8 as MllamaVisionModel pads them), hidden 32, 4 heads, 3 local layers and 2
gated global layers, intermediate_layers_indices [0, 2], up to 4 tiles; text hidden 64, 3 layers
with a cross-attention layer at index 1, GQA 4/2, llama3 rope scaling, vocab 256 (+8 embedding
rows, the image token 256 among them, as in the released model). Every parameter, gates included,
is drawn from a seeded normal so that no gate is 0 (tanh(0) would hide a layer).

Two samples, each run as its own batch row (the way whet packs them: each sequence with its own
images), logits concatenated, loss = summed cross-entropy over the non-ignored targets / count:
  sample 0: one image of 2 tiles (aspect ratio 1x2, id 2; tiles 2-3 masked), <|image|> at position 1
  sample 1: two images, 1 tile (id 1) and 4 tiles (2x2, id 6), <|image|> at positions 3 and 7
The cross-attention masks come from transformers' processor functions
(get_cross_attention_token_mask, convert_sparse_cross_attention_mask_to_dense); tokens before the
first image have fully masked rows (full_text_row_masked_out_mask).

Recorded: inputs (pixel values, aspect-ratio ids and masks, cross-attention masks, ids, targets),
the vision model's output and each local layer's output (hooks), the projector output, logits,
loss, every parameter's gradient (grad.<published name>), and LoRA (r 4, alpha 8, A and B normal
std 0.1) on q/k/v/o/gate/up/down of every language-model layer (the cross-attention layer's too)
and on multi_modal_projector, base frozen: lora_loss and lora_grad.<module>.lora_A/B.weight.
Float32, eager attention, one thread, deterministic.
"""

import json
import math
import os
import platform
import sys
import traceback

SEED = 20261207

IMAGE_SIZE = 16
PATCH = 8
MAX_TILES = 4
SUPPORTED_ASPECT_RATIOS = [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]
VOCAB = 256
IMAGE_TOKEN = 256  # = vocab_size, one of the 8 extra embedding rows, as 128256 in the released model
IGNORE_INDEX = -100

VISION_CONFIG = {
    "attention_heads": 4,
    "hidden_act": "gelu",
    "hidden_size": 32,
    "image_size": IMAGE_SIZE,
    "initializer_range": 0.02,
    "intermediate_layers_indices": [0, 2],
    "intermediate_size": 64,
    "max_num_tiles": MAX_TILES,
    "model_type": "mllama_vision_model",
    "norm_eps": 1e-05,
    "num_channels": 3,
    "num_global_layers": 2,
    "num_hidden_layers": 3,
    "patch_size": PATCH,
    "supported_aspect_ratios": SUPPORTED_ASPECT_RATIOS,
    "vision_output_dim": 32 * 3,  # hidden * (1 + len(intermediate_layers_indices))
}

TEXT_CONFIG = {
    "bos_token_id": 1,
    "cross_attention_layers": [1],
    "dropout": 0,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 96,
    "max_position_embeddings": 512,
    "model_type": "mllama_text_model",
    "num_attention_heads": 4,
    "num_hidden_layers": 3,
    "num_key_value_heads": 2,
    "pad_token_id": None,  # the released 128004 would make that embedding row gradient-free
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 64,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "use_cache": True,
    "vocab_size": VOCAB,
}

PUBLISHED_CONFIG = {
    "architectures": ["MllamaForConditionalGeneration"],
    "image_token_index": IMAGE_TOKEN,
    "model_type": "mllama",
    "text_config": TEXT_CONFIG,
    "torch_dtype": "float32",
    "vision_config": VISION_CONFIG,
}

# (ids with IMAGE_TOKEN where the images go, [(aspect ratio id, tiles)] per image, ignored targets)
SAMPLES = [
    {"len": 12, "images_at": [1], "images": [(2, 2)], "ignore_targets": [0, 1, 2]},
    {"len": 11, "images_at": [3, 7], "images": [(1, 1), (6, 4)], "ignore_targets": [0, 1, 2, 3, 4]},
]

WEIGHT_STD = 0.1
NORM_STD = 0.1
BIAS_STD = 0.1
GATE_MEAN, GATE_STD = 0.5, 0.3

LORA_R = 4
LORA_ALPHA = 8
LORA_INIT_STD = 0.1
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def published_name(name):
    """transformers 5's module path -> the released checkpoint's tensor name."""
    dotted = name + "."
    for new, old in (
        ("model.language_model.", "language_model.model."),
        ("model.vision_model.", "vision_model."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("lm_head.", "language_model.lm_head."),
    ):
        if dotted.startswith(new):
            return (old + dotted[len(new):])[:-1]
    return name


def is_gate(name):
    leaf = name.split(".")[-1]
    return leaf in ("gate", "gate_attn", "gate_ffn", "cross_attn_attn_gate", "cross_attn_mlp_gate")


def init_weights(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    kinds = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_gate(name):
                p.copy_(GATE_MEAN + GATE_STD * torch.randn(p.shape, generator=g))
                kinds[name] = "gate"
            elif ("norm" in name or "layernorm" in name) and name.endswith(".weight"):
                p.copy_(1.0 + NORM_STD * torch.randn(p.shape, generator=g))
                kinds[name] = "norm"
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * torch.randn(p.shape, generator=g))
                kinds[name] = "bias"
            else:
                p.copy_(WEIGHT_STD * torch.randn(p.shape, generator=g))
                kinds[name] = "weight"
    return kinds


def make_inputs(seed):
    """Token ids, targets, pixel values and the processor's masks for each sample."""
    import numpy as np
    import torch
    from transformers.models.mllama.processing_mllama import (
        convert_sparse_cross_attention_mask_to_dense, get_cross_attention_token_mask)

    g = torch.Generator().manual_seed(seed)
    out = []
    for s in SAMPLES:
        ids = torch.randint(3, VOCAB, (s["len"],), generator=g).tolist()
        ids[0] = TEXT_CONFIG["bos_token_id"]
        for at in s["images_at"]:
            ids[at] = IMAGE_TOKEN
        n_img = len(s["images"])
        pixel = torch.zeros((1, n_img, MAX_TILES, 3, IMAGE_SIZE, IMAGE_SIZE))
        ar_ids = torch.zeros((1, n_img), dtype=torch.long)
        ar_mask = torch.zeros((1, n_img, MAX_TILES), dtype=torch.long)
        for i, (arid, tiles) in enumerate(s["images"]):
            pixel[0, i, :tiles] = torch.randn((tiles, 3, IMAGE_SIZE, IMAGE_SIZE), generator=g)
            ar_ids[0, i] = arid
            ar_mask[0, i, :tiles] = 1
            h, w = SUPPORTED_ASPECT_RATIOS[arid - 1]
            if h * w != tiles:
                raise RuntimeError(f"aspect ratio id {arid} is {h}x{w}, not {tiles} tiles")
        spans = get_cross_attention_token_mask(ids, IMAGE_TOKEN)
        dense = convert_sparse_cross_attention_mask_to_dense(
            [spans], [[t for _, t in s["images"]]], MAX_TILES, len(ids))
        dense = np.asarray(dense)
        targets = ids[1:] + [IGNORE_INDEX]
        for t in s["ignore_targets"]:
            targets[t] = IGNORE_INDEX
        targets = [IGNORE_INDEX if t == IMAGE_TOKEN else t for t in targets]
        out.append({
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "targets": torch.tensor(targets, dtype=torch.long),
            "pixel_values": pixel,
            "aspect_ratio_ids": ar_ids,
            "aspect_ratio_mask": ar_mask,
            "cross_attention_mask": torch.from_numpy(dense).long(),
            "spans": spans,
        })
    return out


def run(model, inputs):
    """Each sample as its own batch row; logits concatenated; mean CE over kept targets."""
    import torch
    import torch.nn.functional as F

    parts = []
    for x in inputs:
        o = model(
            input_ids=x["input_ids"][None],
            pixel_values=x["pixel_values"],
            aspect_ratio_ids=x["aspect_ratio_ids"],
            aspect_ratio_mask=x["aspect_ratio_mask"],
            cross_attention_mask=x["cross_attention_mask"],
            use_cache=False,
        )
        parts.append(o.logits[0])
    logits = torch.cat(parts, 0)
    targets = torch.cat([x["targets"] for x in inputs])
    count = int((targets != IGNORE_INDEX).sum())
    loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum") / count
    return logits, loss


class LoRA:
    """y = base(x) + (x A^T B^T) * alpha/r by forward hooks, keeping the module names."""

    def __init__(self, model, init):
        self.scaling = LORA_ALPHA / LORA_R
        self.modules, self.handles, self.calls = [], [], 0
        for name, mod in lora_modules(model):
            pub = published_name(name)
            a = init[f"lora.{pub}.lora_A.weight"].clone().requires_grad_(True)
            b = init[f"lora.{pub}.lora_B.weight"].clone().requires_grad_(True)
            self.modules.append((pub, a, b))
            self.handles.append(mod.register_forward_hook(self._hook(a, b)))

    def _hook(self, a, b):
        def hook(module, args, output):
            self.calls += 1
            return output + (args[0] @ a.t() @ b.t()) * self.scaling
        return hook


def lora_modules(model):
    import torch

    mods = []
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        pub = published_name(name)
        if pub.startswith("language_model.model.layers.") and pub.split(".")[-1] in LORA_TARGETS:
            mods.append((name, mod))
        elif pub == "multi_modal_projector":
            mods.append((name, mod))
    return mods


def lora_init(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    init = {}
    for name, mod in lora_modules(model):
        pub = published_name(name)
        init[f"lora.{pub}.lora_A.weight"] = LORA_INIT_STD * torch.randn((LORA_R, mod.in_features), generator=g)
        init[f"lora.{pub}.lora_B.weight"] = LORA_INIT_STD * torch.randn((mod.out_features, LORA_R), generator=g)
    return init


def find_module(model, suffix):
    for name, mod in model.named_modules():
        if published_name(name) == suffix:
            return mod
    raise RuntimeError(f"no module {suffix}; have e.g. {[published_name(n) for n, _ in list(model.named_modules())[:20]]}")


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    out = argv[1]
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import numpy as np
    import safetensors
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "numpy": np.__version__,
                "safetensors": safetensors.__version__}
    print("versions", versions, flush=True)
    model_dir = os.path.join(out, "tiny-mllama")
    ref_dir = os.path.join(out, "reference")
    os.makedirs(model_dir, exist_ok=True)
    os.makedirs(ref_dir, exist_ok=True)
    notes = []

    # Build from the published-style config.json, as transformers reads a released model.
    write_json(os.path.join(model_dir, "config.json"), PUBLISHED_CONFIG)
    config = MllamaConfig.from_pretrained(model_dir)
    config.text_config.pad_token_id = None
    try:
        model = MllamaForConditionalGeneration._from_config(config, attn_implementation="eager")
    except TypeError:
        config._attn_implementation = "eager"
        model = MllamaForConditionalGeneration(config)
    model = model.float()
    kinds = init_weights(model, SEED + 1)
    print("parameters:", json.dumps({published_name(n): list(p.shape) for n, p in model.named_parameters()}), flush=True)
    state = {published_name(n): p.detach().clone().contiguous() for n, p in model.named_parameters()}
    save_file(state, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(model_dir, "generation_config.json"), {
        "bos_token_id": TEXT_CONFIG["bos_token_id"], "eos_token_id": TEXT_CONFIG["eos_token_id"],
        "pad_token_id": None, "transformers_version": transformers.__version__})

    inputs = make_inputs(SEED + 2)
    ref = {}
    for i, x in enumerate(inputs):
        for k in ("input_ids", "targets"):
            ref[f"s{i}.{k}"] = x[k].to(torch.int32).contiguous()
        ref[f"s{i}.pixel_values"] = x["pixel_values"].contiguous()
        ref[f"s{i}.aspect_ratio_ids"] = x["aspect_ratio_ids"].to(torch.int32).contiguous()
        ref[f"s{i}.aspect_ratio_mask"] = x["aspect_ratio_mask"].to(torch.int32).contiguous()
        ref[f"s{i}.cross_attention_mask"] = x["cross_attention_mask"].to(torch.int32).contiguous()

    # Forward with hooks on the vision model, the projector and every local vision layer.
    captured = {}

    def keep(key):
        def hook(module, args, output):
            o = output[0] if isinstance(output, (tuple, list)) else output
            if hasattr(o, "last_hidden_state"):
                o = o.last_hidden_state
            captured.setdefault(key, []).append(o.detach().clone())
        return hook

    handles = [find_module(model, "vision_model").register_forward_hook(keep("vision_out")),
               find_module(model, "multi_modal_projector").register_forward_hook(keep("projector_out"))]
    for l in range(VISION_CONFIG["num_hidden_layers"]):
        handles.append(find_module(model, f"vision_model.transformer.layers.{l}").register_forward_hook(keep(f"vision_local.{l}")))
    for l in range(VISION_CONFIG["num_global_layers"]):
        handles.append(find_module(model, f"vision_model.global_transformer.layers.{l}").register_forward_hook(keep(f"vision_global.{l}")))
    model.train()
    logits, loss = run(model, inputs)
    loss.backward()
    for h in handles:
        h.remove()
    for key, outs in captured.items():
        for i, o in enumerate(outs):
            ref[f"s{i}.{key}"] = o.float().contiguous()
    ref["logits"] = logits.detach().contiguous()
    ref["loss"] = loss.detach().reshape(1)
    missing = []
    for name, p in model.named_parameters():
        if p.grad is None:
            missing.append(published_name(name))
            continue
        ref[f"grad.{published_name(name)}"] = p.grad.detach().clone().contiguous()
    if missing:
        notes.append(f"parameters without a gradient: {missing}")
        print("WARNING no gradient:", missing, flush=True)
    print("loss", float(loss), flush=True)

    # The published names load back into transformers and give the same logits.
    try:
        again = MllamaForConditionalGeneration.from_pretrained(model_dir, attn_implementation="eager").float()
        again.train()
        with torch.no_grad():
            l2, _ = run(again, inputs)
        diff = float((l2 - logits.detach()).abs().max())
        print("reload max |dlogits|", diff, flush=True)
        if diff != 0.0:
            notes.append(f"reloading the published names gives logits {diff} away")
        reload_diff = diff
        del again
    except Exception as e:  # recorded, not fatal: the reference itself is still right
        traceback.print_exc()
        notes.append(f"from_pretrained of the published names failed: {e!r}")
        reload_diff = None

    # LoRA on the language model (cross-attention layer included) and the projector, base frozen.
    for p in model.parameters():
        p.grad = None
        p.requires_grad_(False)
    init = lora_init(model, SEED + 3)
    ref.update({k: v.contiguous() for k, v in init.items()})
    lora = LoRA(model, init)
    _, lora_loss = run(model, inputs)
    want_calls = 0
    for x in inputs:
        want_calls += len(lora.modules)
    if lora.calls != want_calls:
        notes.append(f"LoRA hooks ran {lora.calls} times, want {want_calls}")
    lora_loss.backward()
    ref["lora_loss"] = lora_loss.detach().reshape(1)
    for pub, a, b in lora.modules:
        ref[f"lora_grad.{pub}.lora_A.weight"] = a.grad.detach().clone().contiguous()
        ref[f"lora_grad.{pub}.lora_B.weight"] = b.grad.detach().clone().contiguous()
    print("lora_loss", float(lora_loss), "modules", [m for m, _, _ in lora.modules], flush=True)

    save_file(ref, os.path.join(ref_dir, "tiny-mllama.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(ref_dir, "tiny-mllama.json"), {
        "versions": versions,
        "seed": SEED,
        "config": PUBLISHED_CONFIG,
        "config_as_read": json.loads(config.to_json_string()),
        "samples": [{"len": s["len"], "images_at": s["images_at"], "images": s["images"],
                     "ignore_targets": s["ignore_targets"], "spans": x["spans"]} for s, x in zip(SAMPLES, inputs)],
        "init": {"weight_std": WEIGHT_STD, "norm": f"1 + {NORM_STD}*randn", "bias_std": BIAS_STD,
                 "gates": f"{GATE_MEAN} + {GATE_STD}*randn"},
        "param_kinds": {published_name(k): v for k, v in kinds.items()},
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "init_std": LORA_INIT_STD,
                 "modules": [m for m, _, _ in lora.modules]},
        "loss": float(loss),
        "lora_loss": float(lora_loss),
        "reload_max_abs_logit_diff": reload_diff,
        "notes": notes,
    })
    print("notes", notes, flush=True)
    print("wrote", model_dir, ref_dir, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
