#!/usr/bin/env python3
"""Render the vision chat templates over conversations whose content mixes
text and image parts, with jinja2, into golden files.

Gemma 3 writes <start_of_image> where an image part is; Llama 3.2 Vision
(Mllama) writes <|image|> and refuses a system message next to images.
datasets tests (TestImageTemplatesMatchJinjaGoldens) compare the built-in
gemma-3 family and whet's Jinja interpreter with these files byte for byte.

Usage: tools/templates/render_images.py
Writes testdata/templates/golden-images/<template>/<case>[.gen].txt (or
.err when the template raises), rendered like render.py (transformers'
environment, strftime_now fixed at 2026-01-05).
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(__file__))
import render  # noqa: E402  (the same environment and special tokens)

OUT = os.path.join(render.TEMPLATES, "golden-images")

# name -> (template file, bos_token, eos_token) as tokenizer_config.json sets them.
SPECS = {
    "gemma-3": (os.path.join(render.FAMILIES, render.SPECS["gemma-3"][0]),) + render.SPECS["gemma-3"][1:],
    "llama-3.2-vision": (os.path.join(render.TEMPLATES, "llama-3.2-vision.jinja"), "<|begin_of_text|>", "<|eot_id|>"),
}


def main():
    with open(os.path.join(render.TEMPLATES, "conversations-images.json"), encoding="utf-8") as f:
        conversations = json.load(f)
    env = render.environment()
    shutil.rmtree(OUT, ignore_errors=True)
    count = 0
    for name, (file, bos, eos) in SPECS.items():
        with open(file, encoding="utf-8") as f:
            source = f.read()
        outdir = os.path.join(OUT, name)
        os.makedirs(outdir)
        for case, messages in conversations.items():
            for gen in (False, True):
                base = os.path.join(outdir, case + (".gen" if gen else ""))
                try:
                    text = render.render(env, source, messages, bos, eos, gen, {})
                except render.TemplateError as e:
                    render.write(base + ".err", str(e) + "\n")
                else:
                    render.write(base + ".txt", text)
                count += 1
    print("wrote %d renders under %s" % (count, os.path.relpath(OUT, render.ROOT)), file=sys.stderr)


if __name__ == "__main__":
    main()
