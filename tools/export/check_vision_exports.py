#!/usr/bin/env python3
"""Loads whet's exports of the two vision models in transformers and PEFT and
compares their logits with whet's (issue 24).

Inputs come from the Go test TestWriteVisionExportInputs:

    WHET_VISION_EXPORT_DEV=$PWD/.dev/gpu/vision-export/inputs \
        go test ./engine/export -run TestWriteVisionExportInputs

which writes gemma3/ (a tiny Gemma3ForConditionalGeneration) and mllama/ (a
tiny MllamaForConditionalGeneration), each with base/, peft/ (the LoRA run's
PEFT export: the language model's linears and the projector; Gemma 3's
projector through target_parameters), merged-bf16/ and inputs.json (ids, the
image inputs as the processors lay them out, whet's float32 logits of the
base with the adapter applied). Then, where torch, transformers and peft are
installed (the GPU machine, batch tools/gpu/vision-export):

    python3 tools/export/check_vision_exports.py DIR result.json

For each model it runs, in float32 with eager attention on the CPU: the base,
base + PeftModel.from_pretrained(peft/), and merged-bf16 (upcast), and writes
the largest |logit - whet's|, the largest logit, the argmax agreement (for
Mllama also against whet's logits with TapLayerOutputs: base_tap_outputs,
peft_tap_outputs, merged_bf16_tap_outputs), and
which adapter keys PEFT did not take (file keys missing from the PEFT model's
state dict, and the reverse). A model that fails is written with its error.
TestVisionExportTransformersReference checks the file once it is committed
as testdata/export/vision-transformers.json.
"""
import json
import sys
import traceback

import torch
import transformers
import peft
from peft import PeftModel
from safetensors.torch import load_file


def kwargs_of(name, inp):
    ids = torch.tensor([inp["input_ids"]], dtype=torch.long)
    px = torch.tensor(inp["pixel_values"], dtype=torch.float32).reshape(inp["pixel_shape"])
    if name == "gemma3":
        return dict(input_ids=ids, pixel_values=px, token_type_ids=torch.tensor([inp["token_type_ids"]], dtype=torch.long))
    return dict(input_ids=ids, pixel_values=px,
                aspect_ratio_ids=torch.tensor([inp["aspect_ratio_ids"]], dtype=torch.long),
                aspect_ratio_mask=torch.tensor(inp["aspect_ratio_mask"], dtype=torch.long).reshape(1, 1, -1),
                cross_attention_mask=torch.tensor(inp["cross_attention_mask"], dtype=torch.long).reshape(inp["cross_attention_shape"]))


def load(name, path):
    cls = transformers.Gemma3ForConditionalGeneration if name == "gemma3" else transformers.MllamaForConditionalGeneration
    return cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


def compare(logits, whet):
    got = logits[0].float()
    want = torch.tensor(whet, dtype=torch.float32).reshape(got.shape[0], -1)
    got = got[:, : want.shape[1]]
    return {"max_abs_diff": float((got - want).abs().max()), "max_logit": float(want.abs().max()),
            "argmax_agree": float((got.argmax(-1) == want.argmax(-1)).float().mean())}


def check(d, name):
    inp = json.load(open(f"{d}/{name}/inputs.json"))
    kw = kwargs_of(name, inp)
    out = {}
    # Mllama's inputs also hold whet's logits with the intermediate vision
    # layers tapped at their outputs (MllamaVisionConfig.TapLayerOutputs), as
    # transformers 5 taps them; each run is compared with both.
    tap = inp.get("logits_tap_outputs")

    def record(key, logits):
        out[key] = compare(logits, inp["logits"])
        if tap is not None:
            out[key + "_tap_outputs"] = compare(logits, tap)

    with torch.no_grad():
        base = load(name, f"{d}/{name}/base")
        record("base", base(**kw).logits)
        pm = PeftModel.from_pretrained(base, f"{d}/{name}/peft").eval()
        file_keys = set(load_file(f"{d}/{name}/peft/adapter_model.safetensors").keys())
        model_keys = set(peft.get_peft_model_state_dict(pm).keys())
        out["keys_in_file_not_model"] = sorted(file_keys - model_keys)
        out["keys_in_model_not_file"] = sorted(model_keys - file_keys)
        record("peft", pm(**kw).logits)
        merged = load(name, f"{d}/{name}/merged-bf16")
        record("merged_bf16", merged(**kw).logits)
    return out


def main():
    d, dst = sys.argv[1], sys.argv[2]
    res = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}}
    for name in ("gemma3", "mllama"):
        try:
            res[name] = check(d, name)
        except Exception as e:  # noqa: BLE001 -- one model's failure must not hide the other's result
            res[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
        print(name, json.dumps(res[name])[:2000], flush=True)
    json.dump(res, open(dst, "w"), indent=1)


if __name__ == "__main__":
    main()
