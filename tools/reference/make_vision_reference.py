#!/usr/bin/env python3
"""Reference outputs of the Gemma 3 and Llama 3.2 Vision image processors.

    python3 make_vision_reference.py IMAGE_DIR OUT.json [--pil-only]

Runs every image in IMAGE_DIR (the committed test images of
datasets/vision/testdata, made by datasets/vision/testimages_test.go)
through each processor configuration below and writes the outputs to
OUT.json: pixel values (in full for the small configurations, every
STRIDE-th value plus the float64 sum and a SHA-256 of the float32 bytes
for the released sizes; float32 little-endian, base64), num_crops, num_tiles, aspect ratio ids and masks.

Two sources, recorded per case:

- "transformers": Gemma3ImageProcessorPil / MllamaImageProcessorPil (the
  PIL backends; on older transformers, the slow Gemma3ImageProcessor and
  MllamaImageProcessor). Needs transformers, so it runs on the GPU machine.
- "pil": the same steps written out with Pillow and numpy alone
  (convert, Image.resize, float64 rescale then float32 normalise, the tile
  canvas search of the Mllama processor), for machines without
  transformers. With transformers present the script checks that both
  agree and says where they do not.

The whet test (datasets/vision/reference_test.go) reads
testdata/reference_pil.json and testdata/reference_transformers.json when
they exist. Only the standard library, numpy and Pillow (and transformers
for the first source) are used.
"""

import base64
import hashlib
import json
import math
import os
import platform
import sys

import numpy as np
from PIL import Image

STRIDE = 4999

# name -> processor kwargs. The small sizes keep full tensors committable;
# the *_default ones are the released preprocessor_config.json values.
CONFIGS = {
    "gemma3_small": dict(kind="gemma3", size=32),
    "gemma3_pan_and_scan": dict(kind="gemma3", size=24, do_pan_and_scan=True,
                                pan_and_scan_min_crop_size=16, pan_and_scan_max_num_crops=4,
                                pan_and_scan_min_ratio_to_activate=1.2),
    "gemma3_bicubic": dict(kind="gemma3", size=32, resample=3),
    "gemma3_default": dict(kind="gemma3", size=896),
    "mllama_small": dict(kind="mllama", size=16, max_image_tiles=4),
    "mllama_default": dict(kind="mllama", size=560, max_image_tiles=4),
}
FULL = {"gemma3_small", "gemma3_pan_and_scan", "gemma3_bicubic", "mllama_small"}

HALF = [0.5, 0.5, 0.5]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ---------------------------------------------------------------- Pillow + numpy

def rgb_plain(im):
    return im if im.mode == "RGB" else im.convert("RGB")


def rgb_over_white(im):
    if im.mode == "RGB":
        return im
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def rescale_normalize(chw_uint8, mean, std):
    x = (chw_uint8.astype(np.float64) * (1 / 255)).astype(np.float32)
    m = np.array(mean, dtype=np.float32).reshape(3, 1, 1)
    s = np.array(std, dtype=np.float32).reshape(3, 1, 1)
    return (x - m) / s


def resize_chw(chw, h, w, resample):
    pil = Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0)))
    if pil.size != (w, h):
        pil = pil.resize((w, h), resample=resample)
    return np.array(pil).transpose(2, 0, 1)


def pan_and_scan_boxes(h, w, min_crop, max_crops, min_ratio):
    if w >= h:
        if w / h < min_ratio:
            return []
        n = int(math.floor(w / h + 0.5))
        n = min(int(math.floor(w / min_crop)), n)
        cols, rows = min(max_crops, max(2, n)), 1
    else:
        if h / w < min_ratio:
            return []
        n = int(math.floor(h / w + 0.5))
        n = min(int(math.floor(h / min_crop)), n)
        cols, rows = 1, min(max_crops, max(2, n))
    cw, ch = int(math.ceil(w / cols)), int(math.ceil(h / rows))
    if min(cw, ch) < min_crop:
        return []
    return [(r * ch, c * cw, ch, cw) for r in range(rows) for c in range(cols)]


def pil_gemma3(im, cfg):
    arr = np.array(rgb_plain(im)).transpose(2, 0, 1)
    images = [arr]
    if cfg.get("do_pan_and_scan"):
        for y, x, ch, cw in pan_and_scan_boxes(arr.shape[1], arr.shape[2], cfg["pan_and_scan_min_crop_size"],
                                               cfg["pan_and_scan_max_num_crops"],
                                               cfg["pan_and_scan_min_ratio_to_activate"]):
            images.append(arr[:, y:y + ch, x:x + cw])
    size, resample = cfg["size"], cfg.get("resample", 2)
    out = [rescale_normalize(resize_chw(a, size, size, resample), HALF, HALF) for a in images]
    return {"pixel_values": np.stack(out), "num_crops": [len(images) - 1]}


def grids(max_tiles):
    return [(a, b) for a in range(1, max_tiles + 1) for b in range(1, max_tiles + 1) if a * b <= max_tiles]


def canvas(h, w, max_tiles, tile):
    g = grids(max_tiles)
    # the processor keeps scale_h only where scale_w > scale_h
    scales = [((a * tile) / h if (b * tile) / w > (a * tile) / h else (b * tile) / w) for a, b in g]
    up = [s for s in scales if s >= 1]
    sel = min(up) if up else max(s for s in scales if s < 1)
    best = None
    for (a, b), s in zip(g, scales):
        if s == sel and (best is None or a * b < best[0] * best[1]):
            best = (a, b)
    return best


def fit(h, w, ch, cw, tile):
    tw, th = min(max(w, tile), cw), min(max(h, tile), ch)
    sh, sw = th / h, tw / w
    if sw < sh:
        return min(math.floor(h * sw), th), tw
    return th, min(math.floor(w * sh), tw)


def pil_mllama(im, cfg):
    tile, max_tiles = cfg["size"], cfg["max_image_tiles"]
    arr = np.array(rgb_over_white(im)).transpose(2, 0, 1)
    rows, cols = canvas(arr.shape[1], arr.shape[2], max_tiles, tile)
    nh, nw = fit(arr.shape[1], arr.shape[2], rows * tile, cols * tile, tile)
    r = resize_chw(arr, nh, nw, cfg.get("resample", 2))
    padded = np.zeros((3, rows * tile, cols * tile), dtype=np.uint8)
    padded[:, :nh, :nw] = r
    x = rescale_normalize(padded, CLIP_MEAN, CLIP_STD)
    x = x.reshape(3, rows, tile, cols, tile).transpose(1, 3, 0, 2, 4).reshape(rows * cols, 3, tile, tile)
    pv = np.zeros((1, 1, max_tiles, 3, tile, tile), dtype=np.float32)
    pv[0, 0, :rows * cols] = x
    mask = np.zeros((1, 1, max_tiles), dtype=np.int64)
    mask[0, 0, :rows * cols] = 1
    mask[0, 0, 0] = 1
    return {"pixel_values": pv, "num_tiles": [[rows * cols]],
            "aspect_ratio_ids": [[grids(max_tiles).index((rows, cols)) + 1]],
            "aspect_ratio_mask": mask.tolist()}


# ---------------------------------------------------------------- transformers

def pil_class(name, module, slow):
    """The PIL-backend processor class; before transformers had backends,
    the slow class (which was the PIL one)."""
    import importlib
    import transformers
    if hasattr(transformers, name):
        return getattr(transformers, name)
    try:
        return getattr(importlib.import_module("transformers.models." + module), name)
    except (ImportError, AttributeError):
        return getattr(transformers, slow)


def hf_processor(cfg):
    kind = cfg["kind"]
    kw = {k: v for k, v in cfg.items() if k != "kind"}
    size = kw.pop("size")
    kw["size"] = {"height": size, "width": size}
    kw.setdefault("resample", 2)
    kw["do_convert_rgb"] = True
    if kind == "gemma3":
        kw.update(image_mean=HALF, image_std=HALF, rescale_factor=1 / 255)
        cls = pil_class("Gemma3ImageProcessorPil", "gemma3.image_processing_pil_gemma3", "Gemma3ImageProcessor")
    else:
        kw.update(image_mean=CLIP_MEAN, image_std=CLIP_STD, rescale_factor=1 / 255)
        cls = pil_class("MllamaImageProcessorPil", "mllama.image_processing_pil_mllama", "MllamaImageProcessor")
    return cls(**kw)


def hf_run(proc, im):
    out = proc(images=im, return_tensors="np")
    res = {k: (np.asarray(v) if k == "pixel_values" else np.asarray(v).tolist()) for k, v in out.items()}
    return res


# Token id sequences for Mllama's cross-attention mask (9 stands for
# <|image|>), with each image's tile count; max 4 tiles.
MASK_CASES = [
    ([1, 2, 3], []),
    ([9, 1, 2], [3]),
    ([9, 1, 2, 9, 3], [1, 4]),
    ([9, 9, 1, 2], [2, 2]),
    ([1, 9, 9, 9, 2, 9, 3], [4, 1, 2, 3]),
]


def hf_cross_attention():
    from transformers.models.mllama.processing_mllama import (
        convert_sparse_cross_attention_mask_to_dense, get_cross_attention_token_mask)
    out = []
    for ids, tiles in MASK_CASES:
        spans = get_cross_attention_token_mask(ids, 9)
        case = {"ids": ids, "num_tiles": tiles, "spans": spans}
        if spans:
            dense = convert_sparse_cross_attention_mask_to_dense([spans], [tiles], 4, len(ids))
            case["dense"] = np.asarray(dense)[0].reshape(-1).tolist()
        out.append(case)
    return out


# A batch of two samples with two images and one, through Mllama's
# processor at the small configuration (padding of the image dimension).
BATCH = [["gray8_31x45.png", "rgb8_700x150.png"], ["rgba8_40x30.png"]]


def hf_mllama_batch(image_dir):
    proc = hf_processor(CONFIGS["mllama_small"])
    images = [[Image.open(os.path.join(image_dir, n)) for n in sample] for sample in BATCH]
    out = proc(images=images, return_tensors="np")
    pv = np.ascontiguousarray(out["pixel_values"], dtype=np.float32)
    return {"samples": BATCH, "shape": list(pv.shape),
            "values_f32le_b64": base64.b64encode(pv.reshape(-1).astype("<f4").tobytes()).decode(),
            "aspect_ratio_ids": np.asarray(out["aspect_ratio_ids"]).tolist(),
            "aspect_ratio_mask": np.asarray(out["aspect_ratio_mask"]).tolist(),
            "num_tiles": [list(map(int, t)) for t in out["num_tiles"]]}


# ---------------------------------------------------------------- output

def encode(name, cfg_name, source, res):
    pv = np.ascontiguousarray(res["pixel_values"], dtype=np.float32)
    flat = pv.reshape(-1)
    case = {"image": name, "config": cfg_name, "source": source, "shape": list(pv.shape),
            "sum": float(flat.astype(np.float64).sum()),
            "sha256": hashlib.sha256(flat.astype("<f4").tobytes()).hexdigest()}
    if cfg_name in FULL:
        case["values_f32le_b64"] = base64.b64encode(flat.astype("<f4").tobytes()).decode()
    else:
        case["stride"] = STRIDE
        case["sampled_f32le_b64"] = base64.b64encode(flat[::STRIDE].astype("<f4").tobytes()).decode()
    for k in ("num_crops", "num_tiles", "aspect_ratio_ids", "aspect_ratio_mask"):
        if k in res:
            case[k] = res[k]
    return case


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    image_dir, out_path = sys.argv[1], sys.argv[2]
    pil_only = "--pil-only" in sys.argv[3:]
    names = sorted(n for n in os.listdir(image_dir) if n.endswith((".png", ".jpg")))
    import PIL
    meta = {"python": platform.python_version(), "numpy": np.__version__, "pillow": PIL.__version__,
            "configs": CONFIGS, "stride": STRIDE}
    if not pil_only:
        import transformers
        meta["transformers"] = transformers.__version__
    cases, images, mismatches = [], {}, []
    for name in names:
        im = Image.open(os.path.join(image_dir, name))
        im.load()
        images[name] = {"mode": im.mode, "size": list(im.size), "info": sorted(im.info)}
        for cfg_name, cfg in CONFIGS.items():
            pil = pil_gemma3(im, cfg) if cfg["kind"] == "gemma3" else pil_mllama(im, cfg)
            cases.append(encode(name, cfg_name, "pil", pil))
            if pil_only:
                continue
            try:
                proc = hf_processor(cfg)
                hf = hf_run(proc, im)
            except Exception as e:  # record and go on: one failure must not lose the rest
                mismatches.append(f"{name} {cfg_name}: transformers failed: {type(e).__name__}: {e}")
                continue
            cls = type(proc)
            meta.setdefault("processor_classes", {})[cfg["kind"]] = cls.__module__ + "." + cls.__name__
            cases.append(encode(name, cfg_name, "transformers", hf))
            a, b = np.asarray(hf["pixel_values"], dtype=np.float32), pil["pixel_values"]
            if a.shape != b.shape:
                mismatches.append(f"{name} {cfg_name}: shape {a.shape} vs pil {b.shape}")
            elif not np.array_equal(a, b):
                mismatches.append(f"{name} {cfg_name}: max |transformers - pil| = {float(np.abs(a - b).max())}")
    meta["transformers_vs_pil"] = mismatches
    doc = {"meta": meta, "images": images, "cases": cases}
    if not pil_only:
        try:
            doc["cross_attention"] = hf_cross_attention()
        except Exception as e:
            mismatches.append(f"cross-attention mask: {type(e).__name__}: {e}")
        try:
            doc["mllama_batch"] = hf_mllama_batch(image_dir)
        except Exception as e:
            mismatches.append(f"mllama batch: {type(e).__name__}: {e}")
    with open(out_path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"{len(cases)} cases from {len(names)} images -> {out_path}")
    for m in mismatches:
        print("differs:", m)


if __name__ == "__main__":
    main()
