#!/usr/bin/env python3
"""Build whet's tiny Gemma 3 vision model and the transformers state file the Go test compares against.

Usage:  python3 make_vision_model_reference.py OUTDIR

Writes, all under OUTDIR:
  tiny-gemma3-vision/   Gemma3ForConditionalGeneration (SigLIP tower, projector, Gemma 3 text model),
                        f32 weights under the tensor names of the released checkpoints
                        (language_model.model.*, vision_tower.vision_model.*, multi_modal_projector.*);
                        only the model. prefix is rewritten, so a transformers whose SiglipVisionModel
                        holds its layers itself (5.17) saves vision_tower.embeddings.* etc., which
                        whet reads too
  reference/tiny-gemma3-vision.safetensors and .json

The batch is two sequences, each run as its own batch row (positions from 0): the first holds one
image, the second two, each image framed by <start_of_image> ... <end_of_image> as Gemma3Processor
frames it, with mm_tokens_per_image image tokens in between and token_type_ids 1 on them (so the
bidirectional mask among one image's tokens applies). Recorded: pixel values, ids, positions,
targets, token types, the vision tower's last hidden state, the projected image features, logits,
loss, every parameter's gradient (full fine-tuning, vision tower included), and with the base frozen
LoRA gradients on the language model (q/k/v/o/gate/up/down) and on the projector's matrix
(y = x W + (x A^T B^T) * alpha/r, W = mm_input_projection_weight [vision hidden, text hidden]).

Seeded, float32, CPU, eager attention, one thread, deterministic algorithms.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference as mr  # noqa: E402  (constants and helpers shared with the text references)

NAME = "tiny-gemma3-vision"
SEED = mr.SEED + 9000
VOCAB_SIZE = 512
BOI, EOI, IMAGE = 509, 510, 511  # the released model: 255999, 256000, 262144 (inside its 262208 ids)
TOKENS_PER_IMAGE = 4  # mm_tokens_per_image: 2x2 after pooling 4x4 patches with a 2x2 kernel
IMAGE_SIZE, PATCH = 32, 8
IGNORE_INDEX = -100
PROMPT_MASKED_TARGETS = 3  # first targets of the second sequence, as a chat prompt would be

# Written as the released gemma-3-4b-it config.json is (sparse text_config / vision_config relying on
# transformers' defaults where the tiny model keeps them), scaled down.
PUBLISHED_CONFIG = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "boi_token_index": BOI,
    "eoi_token_index": EOI,
    "image_token_index": IMAGE,
    "initializer_range": 0.02,
    "mm_tokens_per_image": TOKENS_PER_IMAGE,
    "text_config": {
        "model_type": "gemma3_text",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "query_pre_attn_scalar": 24,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 512,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "rope_theta": 1000000.0,
        "sliding_window": 3,  # shorter than an image block of 4: the or-mask reaches past it
        "sliding_window_pattern": 2,
        "layer_types": ["sliding_attention", "full_attention"],
        "pad_token_id": None,
        "bos_token_id": None,
        "eos_token_id": 2,
        "tie_word_embeddings": True,
    },
    "vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH,
        "vision_use_head": False,
    },
}

# (text tokens before, images, text tokens after) per sequence; images are framed by BOI/EOI.
SEQUENCES = [
    {"before": 3, "images": 1, "after": 5},
    {"before": 2, "images": 2, "after": 4},
]

LM_TARGETS = mr.LORA_TARGETS
PROJ_LORA = "model.multi_modal_projector.mm_input_projection"

# transformers 5 module prefixes -> the released checkpoints' tensor names
PREFIXES = [
    ("model.language_model.", "language_model.model."),
    ("model.vision_tower.", "vision_tower."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("lm_head.", "language_model.lm_head."),
]

GEN_NEW_TOKENS = 8


def published_name(name):
    for new, old in PREFIXES:
        if name.startswith(new):
            return old + name[len(new):]
    return name


def make_batch(seed):
    """Ids with image blocks, positions, token types, targets and seq starts (standard library only)."""
    import random

    rng = random.Random(seed)
    ids, types, starts, image_seq = [], [], [0], []
    for s, spec in enumerate(SEQUENCES):
        seq = [rng.randrange(3, BOI) for _ in range(spec["before"])]
        for _ in range(spec["images"]):
            seq += [BOI] + [IMAGE] * TOKENS_PER_IMAGE + [EOI]
            image_seq.append(s)
        seq += [rng.randrange(3, BOI) for _ in range(spec["after"])]
        ids += seq
        types += [1 if t == IMAGE else 0 for t in seq]
        starts.append(len(ids))
    positions, targets = [], []
    for s in range(len(SEQUENCES)):
        a, b = starts[s], starts[s + 1]
        positions += list(range(b - a))
        for t in range(a, b):
            nxt = ids[t + 1] if t + 1 < b else None
            # No loss on predicting an image token (the processor's labels mask them) nor past the end.
            targets.append(IGNORE_INDEX if nxt is None or nxt == IMAGE else nxt)
        if s == 1:
            for t in range(a, a + PROMPT_MASKED_TARGETS):
                targets[t] = IGNORE_INDEX
    return {"input_ids": ids, "token_type_ids": types, "positions": positions, "targets": targets,
            "seq_starts": starts, "image_seq": image_seq}


def init_weights(model, seed):
    """Normal weights (std 0.1); Gemma's (1 + w) RMSNorms around 0, SigLIP's LayerNorms around 1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "vision_tower" in name and ("layer_norm" in name or "layernorm" in name) and name.endswith(".weight"):
                p.copy_(1.0 + mr.NORM_STD * torch.randn(p.shape, generator=g))
            elif name.endswith("norm.weight"):
                p.copy_(mr.NORM_STD * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(mr.BIAS_STD * torch.randn(p.shape, generator=g))
            else:
                p.copy_(mr.WEIGHT_STD * torch.randn(p.shape, generator=g))


def build(model_dir, seed):
    """Build from the published-style config.json, save, and rewrite the weights under the
    released checkpoints' names; returns what happened for the JSON."""
    import torch
    import transformers
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, Gemma3ForConditionalGeneration

    os.makedirs(model_dir, exist_ok=True)
    cfg_path = os.path.join(model_dir, "config.json")
    mr.write_json(cfg_path, PUBLISHED_CONFIG)
    config = AutoConfig.from_pretrained(model_dir)
    config.text_config.pad_token_id = None
    try:
        model = Gemma3ForConditionalGeneration._from_config(config, attn_implementation="eager")
    except (AttributeError, TypeError):
        config._attn_implementation = "eager"
        model = Gemma3ForConditionalGeneration(config)
    init_weights(model, seed)
    model.save_pretrained(model_dir)
    saved = load_file(os.path.join(model_dir, "model.safetensors"))
    saved_names = sorted(saved)
    renamed = {}
    for k, v in saved.items():
        n = published_name(k)
        if n == "language_model.lm_head.weight" and tied(model):
            continue  # tied to the embedding, as in the released files
        renamed[n] = v.contiguous()
    for f in os.listdir(model_dir):
        if f.endswith(".safetensors") or f.endswith(".safetensors.index.json"):
            os.remove(os.path.join(model_dir, f))
    save_file(renamed, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})
    published = dict(PUBLISHED_CONFIG, torch_dtype="float32")
    mr.write_json(cfg_path, published)
    mr.write_json(os.path.join(model_dir, "generation_config.json"), {
        "bos_token_id": None, "eos_token_id": [2], "pad_token_id": 0,
        "transformers_version": transformers.__version__,
    })
    # Loading the renamed file must give back exactly the built weights; if this transformers
    # cannot read the released names, keep its own layout (whet reads both) and say so.
    want = {published_name(k): v for k, v in model.state_dict().items()}
    try:
        reloaded = load_model(model_dir)
        got = {published_name(k): v for k, v in reloaded.state_dict().items()}
        bad = [k for k in want if k not in got or not torch.equal(want[k].float(), got[k].float())]
    except Exception as e:  # noqa: BLE001 (any failure means: fall back)
        bad = [f"{type(e).__name__}: {e}"]
    released_ok = not bad
    if not released_ok:
        print("WARNING: the released-layout file does not reload equal:", bad[:5], "- keeping transformers' own names")
        os.remove(os.path.join(model_dir, "model.safetensors"))
        save_file({k: v.contiguous() for k, v in saved.items()}, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})
        renamed = saved
        reloaded = load_model(model_dir)
        got = {published_name(k): v for k, v in reloaded.state_dict().items()}
        still = [k for k in want if k not in got or not torch.equal(want[k].float(), got[k].float())]
        if still:
            raise RuntimeError(f"reloading transformers' own file changed {still[:5]} ({len(still)})")
    return {"transformers_saved_names": saved_names, "file_names": sorted(renamed),
            "released_layout_reloads_equal": released_ok, "released_layout_problem": bad[:5]}


def load_model(model_dir):
    import torch
    from transformers import Gemma3ForConditionalGeneration

    model = Gemma3ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.to("cpu")
    emb = model.model.language_model.embed_tokens
    if emb.padding_idx is not None:
        raise RuntimeError(f"embedding has padding_idx {emb.padding_idx}")
    if not tied(model):
        print("WARNING: lm_head is not tied to embed_tokens after loading")
    return model


def tied(model):
    return model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()


def run_batch(model, batch, pixels, bidirectional=True):
    """Logits of every sequence (own batch row each) concatenated, and the mean cross-entropy."""
    import torch
    import torch.nn.functional as F

    parts, img = [], 0
    starts = batch["seq_starts"]
    for s in range(len(starts) - 1):
        a, b = starts[s], starts[s + 1]
        n = SEQUENCES[s]["images"]
        ids = torch.tensor(batch["input_ids"][a:b])[None]
        pos = torch.tensor(batch["positions"][a:b])[None]
        tt = torch.tensor(batch["token_type_ids"][a:b])[None] if bidirectional else None
        out = model(input_ids=ids, pixel_values=pixels[img:img + n], token_type_ids=tt,
                    position_ids=pos, use_cache=False)
        parts.append(out.logits[0])
        img += n
    logits = torch.cat(parts, dim=0)
    targets = torch.tensor(batch["targets"])
    count = int((targets != IGNORE_INDEX).sum())
    loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum") / count
    return logits, loss


class LoRA:
    """Hand-written LoRA by forward hooks: on the language model's linears, and on the projector's
    matrix (the hook on mm_soft_emb_norm keeps its output x; the projector's output gets x A^T B^T s)."""

    def __init__(self, model, init):
        self.scaling = mr.LORA_ALPHA / mr.LORA_R
        self.modules, self.handles, self.calls = [], [], 0
        for name, mod in model.named_modules():
            if name.split(".")[-1] in LM_TARGETS and name.startswith("model.language_model.layers."):
                a, b = self._params(init, name)
                self.modules.append((name, a, b))
                self.handles.append(mod.register_forward_hook(self._hook(a, b)))
        want = len(LM_TARGETS) * model.config.text_config.num_hidden_layers
        if len(self.modules) != want:
            raise RuntimeError(f"found {len(self.modules)} LoRA target modules, want {want}")
        a, b = self._params(init, PROJ_LORA)
        self.modules.append((PROJ_LORA, a, b))
        proj = model.model.multi_modal_projector
        self._normed = None

        def keep(module, args, output):
            self._normed = output

        def add(module, args, output):
            self.calls += 1
            return output + (self._normed @ a.t() @ b.t()) * self.scaling

        self.handles.append(proj.mm_soft_emb_norm.register_forward_hook(keep))
        self.handles.append(proj.register_forward_hook(add))

    @staticmethod
    def _params(init, name):
        a = init[f"lora.{name}.lora_A.weight"].clone().requires_grad_(True)
        b = init[f"lora.{name}.lora_B.weight"].clone().requires_grad_(True)
        return a, b

    def _hook(self, a, b):
        def hook(module, args, output):
            self.calls += 1
            return output + (args[0] @ a.t() @ b.t()) * self.scaling

        return hook


def lora_init(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    init = {}
    for name, mod in model.named_modules():
        if name.split(".")[-1] in LM_TARGETS and name.startswith("model.language_model.layers."):
            init[f"lora.{name}.lora_A.weight"] = mr.LORA_INIT_STD * torch.randn((mr.LORA_R, mod.in_features), generator=g)
            init[f"lora.{name}.lora_B.weight"] = mr.LORA_INIT_STD * torch.randn((mod.out_features, mr.LORA_R), generator=g)
    vin, vout = model.model.multi_modal_projector.mm_input_projection_weight.shape
    init[f"lora.{PROJ_LORA}.lora_A.weight"] = mr.LORA_INIT_STD * torch.randn((mr.LORA_R, vin), generator=g)
    init[f"lora.{PROJ_LORA}.lora_B.weight"] = mr.LORA_INIT_STD * torch.randn((vout, mr.LORA_R), generator=g)
    return init


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[1]
    import safetensors
    import torch
    import transformers
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__, "safetensors": safetensors.__version__}
    print("versions", versions)

    model_dir = os.path.join(out, NAME)
    layout = build(model_dir, SEED + 1)
    batch = make_batch(SEED + 2)
    g = torch.Generator().manual_seed(SEED + 3)
    n_images = sum(s["images"] for s in SEQUENCES)
    # Values in the processor's range (rescaled to [0, 1], normalised with mean = std = 0.5).
    pixels = torch.rand((n_images, 3, IMAGE_SIZE, IMAGE_SIZE), generator=g) * 2 - 1

    i32 = lambda xs: torch.tensor(xs, dtype=torch.int32)  # noqa: E731
    ref = {
        "pixel_values": pixels.contiguous(),
        "input_ids": i32(batch["input_ids"]),
        "token_type_ids": i32(batch["token_type_ids"]),
        "positions": i32(batch["positions"]),
        "targets": i32(batch["targets"]),
        "seq_starts": i32(batch["seq_starts"]),
        "image_seq": i32(batch["image_seq"]),
    }

    model = load_model(model_dir)
    model.train()
    with torch.no_grad():
        vision = model.model.vision_tower(pixel_values=pixels).last_hidden_state
        features = model.model.get_image_features(pixels)
        if not torch.is_tensor(features):  # newer transformers return an output object
            features = getattr(features, "pooler_output", None)
            if features is None:
                features = model.model.multi_modal_projector(vision)
    ref["vision_hidden"] = vision.contiguous()
    ref["image_features"] = features.contiguous()
    logits, loss = run_batch(model, batch, pixels)
    loss.backward()
    ref["logits"] = logits.detach().contiguous()
    ref["loss"] = loss.detach().reshape(1)
    names = []
    for pname, p in model.named_parameters():
        if p.grad is None:
            raise RuntimeError(f"no gradient for {pname}")
        ref[f"grad.{published_name(pname)}"] = p.grad.detach().clone().contiguous()
        names.append(published_name(pname))
    n_params = sum(p.numel() for p in model.parameters())
    tied_flag = tied(model)
    model.eval()
    with torch.no_grad():
        causal_logits, causal_loss = run_batch(model, batch, pixels, bidirectional=False)
    mask_effect = float((causal_logits - logits.detach()).abs().max())
    if mask_effect < 1e-4:
        # Not fatal: a transformers that derives token types from the ids itself would show this.
        print(f"WARNING: without token_type_ids the logits change by only {mask_effect}")
    del model

    model = load_model(model_dir)
    init = lora_init(model, SEED + 4)
    ref.update({k: v.contiguous() for k, v in init.items()})
    mr.freeze(model)
    model.train()
    lora = LoRA(model, init)
    _, lora_loss = run_batch(model, batch, pixels)
    want_calls = (len(lora.modules) - 1) * len(SEQUENCES) + len(SEQUENCES)
    if lora.calls != want_calls:
        raise RuntimeError(f"LoRA hooks ran {lora.calls} times, want {want_calls}")
    lora_loss.backward()
    ref["lora_loss"] = lora_loss.detach().reshape(1)
    for mname, a, b in lora.modules:
        ref[f"lora_grad.{mname}.lora_A.weight"] = a.grad.detach().clone().contiguous()
        ref[f"lora_grad.{mname}.lora_B.weight"] = b.grad.detach().clone().contiguous()
    for pname, p in model.named_parameters():
        if p.grad is not None:
            raise RuntimeError(f"frozen base parameter {pname} got a gradient")
    del model, lora

    # Greedy continuation of the first sequence's prompt (its text, image and the token after it).
    model = load_model(model_dir)
    model.eval()
    plen = SEQUENCES[0]["before"] + TOKENS_PER_IMAGE + 3
    ids = torch.tensor(batch["input_ids"][:plen])
    with torch.no_grad():
        for _ in range(GEN_NEW_TOKENS):
            tt = (ids == IMAGE).long()[None]
            lg = model(input_ids=ids[None], pixel_values=pixels[:1], token_type_ids=tt, use_cache=False).logits[0, -1]
            ids = torch.cat([ids, lg.argmax().reshape(1)])
    ref["gen_prompt"] = ids[:plen].to(torch.int32).contiguous()
    ref["gen_output"] = ids[plen:].to(torch.int32).contiguous()
    del model

    ref_dir = os.path.join(out, "reference")
    os.makedirs(ref_dir, exist_ok=True)
    save_file(ref, os.path.join(ref_dir, f"{NAME}.safetensors"), metadata={"format": "pt"})
    info = {
        "model": NAME,
        "model_dir": f"testdata/{NAME}",
        "architecture": "Gemma3ForConditionalGeneration",
        "config": PUBLISHED_CONFIG,
        "layout": layout,
        "parameter_count": n_params,
        "tied_embeddings": tied_flag,
        "parameter_names": names,
        "weight_init": {"std": mr.WEIGHT_STD, "gemma_rmsnorm": f"{mr.NORM_STD} * randn (scales by 1 + w)",
                        "siglip_layernorm": f"1 + {mr.NORM_STD} * randn", "bias_std": mr.BIAS_STD},
        "seeds": {"weights": SEED + 1, "batch": SEED + 2, "pixels": SEED + 3, "lora_init": SEED + 4},
        "batch": {
            "sequences": SEQUENCES,
            "image_block": "<start_of_image> + mm_tokens_per_image x image token + <end_of_image>",
            "token_type_ids": "1 on image tokens (bidirectional among one image's tokens)",
            "targets": "next token inside a sequence; -100 where the next token is an image token, on each "
                       f"sequence's last token, and on the first {PROMPT_MASKED_TARGETS} of the second",
            "pixels": "uniform in [-1, 1), [images, 3, H, W]; image i belongs to sequence image_seq[i]",
            "loss": "sum of cross-entropy over non-ignored targets / their count",
            "target_count": sum(1 for t in batch["targets"] if t != IGNORE_INDEX),
        },
        "lora": {
            "r": mr.LORA_R, "alpha": mr.LORA_ALPHA, "scaling": mr.LORA_ALPHA / mr.LORA_R,
            "language_model_targets": LM_TARGETS,
            "projector": f"{PROJ_LORA}: y = x W + (x A^T B^T) * scaling, x = mm_soft_emb_norm output, "
                         "A [r, vision hidden], B [text hidden, r]",
            "init": f"A and B normal std {mr.LORA_INIT_STD}",
        },
        "results": {
            "loss": float(ref["loss"][0]),
            "lora_loss": float(ref["lora_loss"][0]),
            "causal_only_loss": float(causal_loss),
            "bidirectional_mask_max_logit_change": mask_effect,
            "gen_output": ref["gen_output"].tolist(),
        },
        "versions": versions,
    }
    mr.write_json(os.path.join(ref_dir, f"{NAME}.json"), info)
    print(f"{NAME}: params {n_params}, loss {info['results']['loss']:.6f}, lora_loss {info['results']['lora_loss']:.6f}, "
          f"mask effect {mask_effect:.4g}, gen {info['results']['gen_output']}")
    print("saved names", layout["transformers_saved_names"][:6], "...")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
