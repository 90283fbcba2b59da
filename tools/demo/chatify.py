#!/usr/bin/env python3
"""Turn the demo corpus into whet's pretraining set (text format, JSON lines).

Usage: python3 tools/demo/chatify.py .cache/demo/corpus.txt .cache/demo/pretrain.jsonl

Austen's paragraphs stay plain text. Half of the WordNet definitions ("word: gloss") become
one-turn ChatML conversations ("What does WORD mean?" -> the gloss), so the pretrained base
model already knows the chat layout and answers plainly; the persona LoRA then only has to
change how it answers. The choice is seeded, so the output is the same on every run.
"""

import json
import random
import sys

QUESTIONS = ["What does {w} mean?", "What is {w}?", "Can you tell me what {w} means?", "Define {w}."]


def main(src, dst):
    rng = random.Random(20261126)
    n_text = n_chat = 0
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            head, sep, gloss = line.partition(": ")
            is_def = sep and 0 < len(head) <= 40 and "," not in head[:1] and not head.endswith(".")
            if is_def and rng.random() < 0.5:
                word = head.split(",")[0].strip()
                answer = gloss.strip()
                answer = answer[:1].upper() + answer[1:]
                if not answer.endswith((".", "!", "?")):
                    answer += "."
                q = rng.choice(QUESTIONS).format(w=word)
                text = f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"
                n_chat += 1
            else:
                text = line
                n_text += 1
            out.write(json.dumps({"text": text}) + "\n")
    print(f"{dst}: {n_text} text rows, {n_chat} chat rows")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
