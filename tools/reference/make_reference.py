#!/usr/bin/env python3
"""Build whet's tiny test models and the transformers state files the Go tests compare against.

Usage:  python3 make_reference.py OUTDIR [MODEL ...]     (default: every model below)

Writes, all under OUTDIR:
  tiny-llama/   LlamaForCausalLM (Llama 3 style: GQA, llama3 rope scaling, untied head), bf16 weights
  tiny-qwen2/   Qwen2ForCausalLM (q/k/v bias, tied embeddings), f32 weights
  tiny-qwen3/, tiny-gemma3/, tiny-gemma2/, tiny-phi3/   the 2025 families, built from
                published-style config.json files (see FAMILY_MODELS)
  reference/    <model>.safetensors and <model>.json per model, tokenizer_cases.json

Everything is seeded and runs in float32 on the CPU with eager attention, one thread, with
deterministic algorithms on, so a rerun with the same torch/transformers/tokenizers versions
reproduces the files. The pure-Python helpers (corpus, targets, schedule, rope bands) import
nothing beyond the standard library so they can be checked on a machine without torch.
"""

import ast
import json
import math
import os
import sys
import sysconfig
import warnings

# The tokenizers library trains with a thread pool; one thread keeps the merge order stable.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("RAYON_RS_NUM_CPUS", "1")

SEED = 20261126

VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2's pre-tokenizer pattern: contractions, letter runs with one optional leading
# non-letter, single digits, punctuation runs, newlines, and whitespace that does not
# swallow the space in front of the next word.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Plain ChatML (the template of many chatml fine-tunes): each turn framed by
# <|im_start|>ROLE\n ... <|im_end|>\n, and an open assistant turn for
# generation. whet's built-in "chatml" template renders it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SEQ_LENS = (13, 9)
# The first targets of the second sequence are ignored, as a chat prompt would be.
PROMPT_MASKED_SEQ = 1
PROMPT_MASKED_TARGETS = 4
IGNORE_INDEX = -100

WEIGHT_STD = 0.1  # linear and embedding weights
NORM_STD = 0.1  # RMSNorm weights are 1 + NORM_STD * randn
BIAS_STD = 0.1

TRAIN_STEPS = 10
WARMUP_STEPS = 2
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
WEIGHT_DECAY = 0.01
CLIP_NORM = 1.0
FULL_LR = 1e-3
LORA_LR = 1e-2

LORA_R = 4
LORA_ALPHA = 8
LORA_INIT_STD = 0.1
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

GEN_PROMPT_LEN = 8
GEN_NEW_TOKENS = 32

MODELS = {
    "tiny-llama": {
        "architecture": "LlamaForCausalLM",
        "hidden_size": 64,
        "intermediate_size": 176,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "max_position_embeddings": 512,
        "weights_dtype": "bfloat16",
        "seed_offset": 0,
    },
    "tiny-qwen2": {
        "architecture": "Qwen2ForCausalLM",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "max_position_embeddings": 512,
        "weights_dtype": "float32",
        "seed_offset": 1000,
    },
}

# The 2025 families (issue 17). Each is written as its published config.json is, scaled down
# (the Hugging Face fields and spellings of Qwen3-0.6B, Gemma-3-1B/4B, Gemma-2-2B and
# Phi-4-mini), and transformers builds the model from that file, so the reference also proves
# how transformers reads those fields. pad_token_id is left out: nn.Embedding would zero that
# row's gradient (padding_idx).
FAMILY_MODELS = {
    "tiny-qwen3": {
        "architecture": "Qwen3ForCausalLM",
        "weights_dtype": "bfloat16",
        "tie_word_embeddings": True,
        "norm_init": "one_centered",
        "lora_targets": LORA_TARGETS,
        "seed_offset": 2000,
        "published_config": {
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "head_dim": 24,  # independent of hidden/heads (64/4 = 16), as in every Qwen3
            "hidden_act": "silu",
            "hidden_size": 64,
            "intermediate_size": 160,
            "max_position_embeddings": 512,
            "max_window_layers": 3,
            "num_attention_heads": 4,
            "num_hidden_layers": 3,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-06,
            "rope_scaling": None,
            "rope_theta": 1000000,
            "sliding_window": None,
            "tie_word_embeddings": True,
            "use_sliding_window": False,
        },
    },
    "tiny-gemma3": {
        "architecture": "Gemma3ForCausalLM",
        "weights_dtype": "float32",
        "tie_word_embeddings": True,
        "norm_init": "zero_centered",  # Gemma's RMSNorm scales by (1 + w)
        "lora_targets": LORA_TARGETS,
        "seed_offset": 3000,
        "published_config": {
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "attn_logit_softcapping": None,
            "final_logit_softcapping": None,
            "head_dim": 16,
            "hidden_activation": "gelu_pytorch_tanh",
            "hidden_size": 48,  # sqrt(48) is not a round number, so the embedding scale shows
            "intermediate_size": 128,
            "max_position_embeddings": 512,
            "num_attention_heads": 4,
            "num_hidden_layers": 6,
            "num_key_value_heads": 1,
            "query_pre_attn_scalar": 24,  # differs from head_dim, as in Gemma 3 27B
            "rms_norm_eps": 1e-06,
            "rope_local_base_freq": 10000.0,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},  # the 4B/12B global layers
            "rope_theta": 1000000.0,
            "sliding_window": 4,  # shorter than both reference sequences (13 and 9 tokens)
            "sliding_window_pattern": 6,
            "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
            "tie_word_embeddings": True,
        },
    },
    "tiny-gemma2": {
        "architecture": "Gemma2ForCausalLM",
        "weights_dtype": "float32",
        "tie_word_embeddings": True,
        "norm_init": "zero_centered",
        "lora_targets": LORA_TARGETS,
        "seed_offset": 4000,
        "published_config": {
            "architectures": ["Gemma2ForCausalLM"],
            "model_type": "gemma2",
            "attention_bias": False,
            "attention_dropout": 0.0,
            # Gemma 2 ships 50 and 30; a tiny random model's logits are a few units, so smaller
            # caps are used to make the tanh bend the numbers the test compares.
            "attn_logit_softcapping": 1.0,
            "final_logit_softcapping": 2.0,
            "head_dim": 16,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh",
            "hidden_size": 64,
            "intermediate_size": 128,
            "max_position_embeddings": 512,
            "num_attention_heads": 4,
            "num_hidden_layers": 4,
            "num_key_value_heads": 2,
            "query_pre_attn_scalar": 16,
            "rms_norm_eps": 1e-06,
            "rope_theta": 10000.0,
            "sliding_window": 4,
            "tie_word_embeddings": True,
        },
    },
    "tiny-phi3": {
        "architecture": "Phi3ForCausalLM",
        "weights_dtype": "float32",
        "tie_word_embeddings": False,
        "norm_init": "one_centered",
        "lora_targets": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        "seed_offset": 5000,
        "published_config": {
            "architectures": ["Phi3ForCausalLM"],
            "model_type": "phi3",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "embd_pdrop": 0.0,
            "hidden_act": "silu",
            "hidden_size": 64,
            "intermediate_size": 128,
            "lm_head_bias": False,
            "max_position_embeddings": 512,
            "mlp_bias": False,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "original_max_position_embeddings": 64,
            "partial_rotary_factor": 0.75,  # Phi-4-mini: rotary on 12 of the 16 head dims
            "resid_pdrop": 0.0,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {
                "type": "longrope",
                "short_factor": [1.0, 1.05, 1.2, 1.5, 2.25, 3.0],
                "long_factor": [1.0, 1.4, 2.5, 4.0, 7.0, 12.0],
            },
            "rope_theta": 10000.0,
            "sliding_window": 262144,
            "tie_word_embeddings": False,
        },
    },
}

TOKENIZER_CASES = [
    "Hello, world! This is a test of the tokenizer.",
    "def add(x, y):\n    return x + y\n\n\tif x:\n\t\tpass\n",
    "line one\r\nline two\r\n\r\nline four",
    "numbers 1234567 and 3.14159, version 2.0.1",
    "I'll say we've done it; they're sure it's DON'T and WE'LL.",
    "\u00dcn\u00efc\u00f6d\u00e9 fa\u00e7ade na\u00efve \u2014 \u201cquotes\u201d \u65e5\u672c\u8a9e \U0001f642",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "   leading spaces and trailing   ",
    "a<|endoftext|>b <|im_end|>",
    "multiple     spaces\n\n\n\nand newlines",
]

CHAT_CASES = [
    {"messages": [{"role": "user", "content": "What is 2+2?"}], "add_generation_prompt": True},
    {
        "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Write\n  two lines."},
        ],
        "add_generation_prompt": True,
    },
]


# ---------------------------------------------------------------- pure-Python helpers


def collect_corpus(stdlib_dir, max_chars=3_000_000):
    """Docstrings of the Python standard library, in sorted file order, as training text."""
    paths = []
    for root, dirs, files in os.walk(stdlib_dir):
        # Tests and vendored packages hold little English prose; skip them for a stable corpus.
        dirs[:] = sorted(d for d in dirs if d not in ("test", "tests", "site-packages", "dist-packages", "idlelib", "__pycache__"))
        paths.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))
    texts = []
    total = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # old escape sequences in some modules
                tree = ast.parse(f.read())
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc and len(doc) > 40:
                    texts.append(doc)
                    total += len(doc)
                    if total >= max_chars:
                        return texts
    return texts


def make_positions(seq_lens):
    return [p for n in seq_lens for p in range(n)]


def make_seq_starts(seq_lens):
    starts = [0]
    for n in seq_lens:
        starts.append(starts[-1] + n)
    return starts


def make_targets(input_ids, seq_lens, masked_seq, masked_count):
    """Next-token labels within each packed sequence; the last token of each sequence and the
    first masked_count targets of sequence masked_seq are IGNORE_INDEX."""
    targets = []
    start = 0
    for s, n in enumerate(seq_lens):
        for t in range(n):
            if t == n - 1 or (s == masked_seq and t < masked_count):
                targets.append(IGNORE_INDEX)
            else:
                targets.append(input_ids[start + t + 1])
        start += n
    return targets


def cosine_lr_factor(step, warmup, total):
    """The multiplier of transformers' get_cosine_schedule_with_warmup (num_cycles 0.5)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * 0.5 * progress)))


def llama3_inv_freq(head_dim, theta, scaling):
    """Llama 3.1 rope frequencies in float64, and which band each one falls in."""
    factor = scaling["factor"]
    low = scaling["low_freq_factor"]
    high = scaling["high_freq_factor"]
    orig = scaling["original_max_position_embeddings"]
    low_freq_wavelen = orig / low
    high_freq_wavelen = orig / high
    out, bands = [], []
    for i in range(0, head_dim, 2):
        f = 1.0 / theta ** (i / head_dim)
        wavelen = 2 * math.pi / f
        if wavelen < high_freq_wavelen:
            out.append(f)
            bands.append("unchanged")
        elif wavelen > low_freq_wavelen:
            out.append(f / factor)
            bands.append("scaled")
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
            bands.append("smoothed")
    return out, bands


def default_inv_freq(head_dim, theta):
    return [1.0 / theta ** (i / head_dim) for i in range(0, head_dim, 2)]


def render_chat(template, messages, add_generation_prompt):
    """Render a chat template the way transformers does (sandboxed jinja2, trim/lstrip blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)


def tokenizer_config(eos, pad, special_ids):
    added = {
        str(i): {
            "content": tok,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for tok, i in sorted(special_ids.items(), key=lambda kv: kv[1])
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "errors": "replace",
        "model_max_length": 512,
        "pad_token": pad,
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


# ---------------------------------------------------------------- tokenizer


def train_tokenizer(texts):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > VOCAB_SIZE:
        raise RuntimeError(f"tokenizer has {size} tokens, more than the model's vocab {VOCAB_SIZE}")
    return tok


def save_tokenizer(tok, model_dir, special_ids):
    tok.save(os.path.join(model_dir, "tokenizer.json"))
    write_json(
        os.path.join(model_dir, "tokenizer_config.json"),
        tokenizer_config("<|im_end|>", "<|endoftext|>", special_ids),
    )


def tokenizer_cases(tok, model_dir):
    """Encodings of tricky strings and rendered chats, for the Go tokenizer and template tests."""
    cases = []
    for text in TOKENIZER_CASES:
        enc = tok.encode(text)
        decoded = tok.decode(enc.ids, skip_special_tokens=False)
        cases.append({"text": text, "ids": enc.ids, "tokens": enc.tokens, "decoded": decoded})
    chats = []
    hf = None
    hf_error = None
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(model_dir)
    except Exception as e:  # recorded, not fatal: the state files do not depend on it
        hf_error = f"{type(e).__name__}: {e}"
    for case in CHAT_CASES:
        text = render_chat(CHAT_TEMPLATE, case["messages"], case["add_generation_prompt"])
        entry = dict(case)
        entry["text"] = text
        entry["ids"] = tok.encode(text).ids
        if hf is not None:
            hf_text = hf.apply_chat_template(case["messages"], tokenize=False, add_generation_prompt=case["add_generation_prompt"])
            hf_ids = hf(hf_text, add_special_tokens=False)["input_ids"]
            entry["transformers_agrees"] = hf_text == text and list(hf_ids) == entry["ids"]
        chats.append(entry)
    out = {"chat_template": CHAT_TEMPLATE, "encode": cases, "chat": chats}
    if hf is not None:
        out["transformers_tokenizer"] = {
            "class": type(hf).__name__,
            "len": len(hf),
            "eos_token_id": hf.eos_token_id,
            "pad_token_id": hf.pad_token_id,
            "bos_token_id": hf.bos_token_id,
        }
    if hf_error:
        out["transformers_error"] = hf_error
    return out


# ---------------------------------------------------------------- models (torch from here on)


def init_weights(model, spec, seed):
    """Seeded normal weights; norm weights around 1 (or around 0 for (1 + w) norms)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    zero_centered = spec.get("norm_init") == "zero_centered"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_((0.0 if zero_centered else 1.0) + NORM_STD * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * torch.randn(p.shape, generator=g))
            else:
                p.copy_(WEIGHT_STD * torch.randn(p.shape, generator=g))


def build_family_model(spec, model_dir, special_ids, seed):
    """Build a model from its published-style config.json and save it with that same file."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    # pad_token_id is written as null: the published files say 0 (Gemma) or 199999 (Phi-4-mini),
    # and transformers would then build the embedding with that padding_idx (its row gets no
    # gradient, and an id past the tiny vocabulary is an error).
    published = dict(spec["published_config"], vocab_size=VOCAB_SIZE, bos_token_id=None,
                     eos_token_id=special_ids["<|im_end|>"], pad_token_id=None)
    os.makedirs(model_dir, exist_ok=True)
    cfg_path = os.path.join(model_dir, "config.json")
    write_json(cfg_path, dict(sorted(published.items())))
    config = AutoConfig.from_pretrained(model_dir)
    config.pad_token_id = None
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    init_weights(model, spec, seed)
    if spec["weights_dtype"] == "bfloat16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(model_dir)
    # save_pretrained writes transformers 5's own spelling; put the published file back.
    published["torch_dtype"] = spec["weights_dtype"]
    write_json(cfg_path, dict(sorted(published.items())))
    write_json(
        os.path.join(model_dir, "generation_config.json"),
        {
            "bos_token_id": None,
            "eos_token_id": [special_ids["<|im_end|>"], special_ids["<|endoftext|>"]],
            "pad_token_id": special_ids["<|endoftext|>"],
            "transformers_version": transformers.__version__,
        },
    )


def build_model(spec, model_dir, special_ids, seed):
    import torch

    if "published_config" in spec:
        return build_family_model(spec, model_dir, special_ids, seed)
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    rope = {"rope_type": "default", "rope_theta": spec["rope_theta"]}
    if spec["rope_scaling"]:
        rope = dict(spec["rope_scaling"], rope_theta=spec["rope_theta"])
    common = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        hidden_act="silu",
        max_position_embeddings=spec["max_position_embeddings"],
        rms_norm_eps=spec["rms_norm_eps"],
        tie_word_embeddings=spec["tie_word_embeddings"],
        rope_parameters=rope,
        # No pad_token_id: nn.Embedding would zero that row's gradient (padding_idx).
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=special_ids["<|im_end|>"],
        attention_dropout=0.0,
    )
    if spec["architecture"] == "LlamaForCausalLM":
        config = LlamaConfig(head_dim=spec["head_dim"], attention_bias=False, mlp_bias=False, **common)
        model = LlamaForCausalLM(config)
    else:
        config = Qwen2Config(use_sliding_window=False, **common)
        model = Qwen2ForCausalLM(config)

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_STD * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * torch.randn(p.shape, generator=g))
            else:
                p.copy_(WEIGHT_STD * torch.randn(p.shape, generator=g))
    if spec["weights_dtype"] == "bfloat16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(model_dir)

    # Write the rope settings the way the published Llama 3 / Qwen2 config.json files do
    # (top-level rope_theta and rope_scaling); transformers 5 reads them back into
    # rope_parameters itself, and every number below comes from the re-loaded model.
    cfg_path = os.path.join(model_dir, "config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.pop("rope_parameters", None)
    cfg["rope_theta"] = spec["rope_theta"]
    cfg["rope_scaling"] = spec["rope_scaling"]
    write_json(cfg_path, dict(sorted(cfg.items())))

    import transformers

    write_json(
        os.path.join(model_dir, "generation_config.json"),
        {
            "bos_token_id": None,
            "eos_token_id": [special_ids["<|im_end|>"], special_ids["<|endoftext|>"]],
            "pad_token_id": special_ids["<|endoftext|>"],
            "transformers_version": transformers.__version__,
        },
    )


def load_model(model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.to("cpu")
    if model.model.embed_tokens.padding_idx is not None:
        raise RuntimeError(f"{model_dir}: embedding has padding_idx {model.model.embed_tokens.padding_idx}")
    for name, p in model.named_parameters():
        if p.dtype != torch.float32:
            raise RuntimeError(f"{model_dir}: {name} loaded as {p.dtype}")
    return model


def packed_loss(model, batch):
    """Run each packed sequence as its own batch row (positions from 0), concatenate the
    logits and average the cross-entropy over all non-ignored targets."""
    import torch
    import torch.nn.functional as F

    parts = []
    starts = batch["seq_starts"]
    for s in range(len(starts) - 1):
        ids = batch["input_ids"][starts[s] : starts[s + 1]].long()
        pos = batch["positions"][starts[s] : starts[s + 1]].long()
        out = model(input_ids=ids[None], position_ids=pos[None], use_cache=False)
        parts.append(out.logits[0])
    logits = torch.cat(parts, dim=0)
    targets = batch["targets"].long()
    count = int((targets != IGNORE_INDEX).sum())
    loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum") / count
    return logits, loss


def make_batch(seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    total = sum(SEQ_LENS)
    ids = torch.randint(0, VOCAB_SIZE, (total,), generator=g).tolist()
    return {
        "input_ids": torch.tensor(ids, dtype=torch.int32),
        "positions": torch.tensor(make_positions(SEQ_LENS), dtype=torch.int32),
        "seq_starts": make_seq_starts(SEQ_LENS),
        "targets": torch.tensor(make_targets(ids, SEQ_LENS, PROMPT_MASKED_SEQ, PROMPT_MASKED_TARGETS), dtype=torch.int32),
    }


def train_curve(model, params, batch, lr):
    """TRAIN_STEPS AdamW steps on the same batch; the loss is recorded before each step."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    opt = torch.optim.AdamW(params, lr=lr, betas=BETAS, eps=ADAM_EPS, weight_decay=WEIGHT_DECAY, foreach=False)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=WARMUP_STEPS, num_training_steps=TRAIN_STEPS)
    losses, lrs, norms, mismatches = [], [], [], []
    for step in range(TRAIN_STEPS):
        opt.zero_grad(set_to_none=True)
        _, loss = packed_loss(model, batch)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=CLIP_NORM)
        used_lr = opt.param_groups[0]["lr"]
        expect = lr * cosine_lr_factor(step, WARMUP_STEPS, TRAIN_STEPS)
        if abs(used_lr - expect) > 1e-12:
            # Kept, not fatal: the file stores the lr actually used, and the JSON says so.
            mismatches.append({"step": step, "scheduler": used_lr, "formula": expect})
        losses.append(float(loss.detach()))
        lrs.append(used_lr)
        norms.append(float(norm))
        opt.step()
        sched.step()
    if mismatches:
        print("WARNING: scheduler lr differs from the cosine formula:", mismatches)
    return losses, lrs, norms, mismatches


class LoRA:
    """Hand-written LoRA: y = base(x) + (x @ A^T @ B^T) * alpha/r, added by forward hooks so the
    base module names stay the Hugging Face ones."""

    def __init__(self, model, init, targets=LORA_TARGETS):
        self.scaling = LORA_ALPHA / LORA_R
        self.modules = []  # (name, A, B) in model order
        self.handles = []
        self.calls = 0  # hook invocations, to prove every target module really ran
        for name, mod in model.named_modules():
            if name.split(".")[-1] in targets and name.startswith("model.layers."):
                a = init[f"lora.{name}.lora_A.weight"].clone().requires_grad_(True)
                b = init[f"lora.{name}.lora_B.weight"].clone().requires_grad_(True)
                self.modules.append((name, a, b))
                self.handles.append(mod.register_forward_hook(self._hook(a, b)))
        if len(self.modules) != len(targets) * model.config.num_hidden_layers:
            raise RuntimeError(f"found {len(self.modules)} LoRA target modules")

    def _hook(self, a, b):
        def hook(module, args, output):
            self.calls += 1
            x = args[0]
            return output + (x @ a.t() @ b.t()) * self.scaling

        return hook

    def params(self):
        return [t for _, a, b in self.modules for t in (a, b)]


def lora_init(model, seed, targets=LORA_TARGETS):
    import torch

    g = torch.Generator().manual_seed(seed)
    init = {}
    for name, mod in model.named_modules():
        if name.split(".")[-1] in targets and name.startswith("model.layers."):
            init[f"lora.{name}.lora_A.weight"] = LORA_INIT_STD * torch.randn((LORA_R, mod.in_features), generator=g)
            init[f"lora.{name}.lora_B.weight"] = LORA_INIT_STD * torch.randn((mod.out_features, LORA_R), generator=g)
    return init


def freeze(model):
    for p in model.parameters():
        p.requires_grad_(False)


def greedy_reference(model, prompt):
    """Greedy decoding by full recomputation, no cache and no end-of-sequence stop."""
    import torch

    ids = prompt.long().clone()
    with torch.no_grad():
        for _ in range(GEN_NEW_TOKENS):
            logits = model(input_ids=ids[None], use_cache=False).logits[0, -1]
            ids = torch.cat([ids, logits.argmax().reshape(1)])
    return ids[len(prompt) :]


def generate_reference(model, prompt):
    import torch
    from transformers import GenerationConfig

    # End-of-sequence ids are cleared so that all GEN_NEW_TOKENS come out.
    model.config.eos_token_id = None
    model.generation_config = GenerationConfig(bos_token_id=None, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        out = model.generate(
            prompt.long()[None],
            attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
            do_sample=False,
            max_new_tokens=GEN_NEW_TOKENS,
        )
    return out[0, len(prompt) :]


def family_rope(model, spec):
    """Every rotary table of a family model (Gemma 3 has one per layer type) and what the
    formula from its config.json says it should be; returns tensors to store and a summary."""
    import torch

    cfg = spec["published_config"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    rot = int(head_dim * cfg.get("partial_rotary_factor", 1.0))
    base = default_inv_freq(rot, cfg["rope_theta"])
    expect = {}
    if cfg["model_type"] == "gemma3_text":
        expect["sliding_attention_inv_freq"] = default_inv_freq(rot, cfg["rope_local_base_freq"])
        expect["full_attention_inv_freq"] = [f / cfg["rope_scaling"]["factor"] for f in base]
    elif (cfg.get("rope_scaling") or {}).get("type") == "longrope":
        # Sequences shorter than original_max_position_embeddings take the short factors.
        expect["inv_freq"] = [f / s for f, s in zip(base, cfg["rope_scaling"]["short_factor"])]
    else:
        expect["inv_freq"] = base
    tensors, summary = {}, {"rotary_dim": rot, "tables": {}}
    for name, buf in model.named_buffers():
        leaf = name.split(".")[-1]
        if not leaf.endswith("inv_freq") or leaf.startswith("original_"):
            continue
        got = buf.detach().double()
        entry = {"buffer": name, "values": [float(x) for x in got]}
        if leaf in expect:
            want = torch.tensor(expect[leaf], dtype=torch.float64)
            entry["max_rel_err_vs_formula"] = float(((got - want).abs() / want).max()) if got.shape == want.shape else f"shape {list(got.shape)} vs {list(want.shape)}"
        else:
            entry["max_rel_err_vs_formula"] = "no formula for this table"
        summary["tables"][leaf] = entry
        tensors["rope." + leaf] = got.float().contiguous()
    scaling = {}
    for name, mod in model.named_modules():
        for attr in ("attention_scaling", "sliding_attention_attention_scaling", "full_attention_attention_scaling"):
            if hasattr(mod, attr) and not callable(getattr(mod, attr)):
                scaling[f"{name}.{attr}"] = float(getattr(mod, attr))
    summary["attention_scaling"] = scaling
    if not tensors:
        raise RuntimeError("the model has no inv_freq buffer")
    print("rope", json.dumps(summary)[:2000])
    return tensors, summary


def check_rope(model, spec):
    import torch

    if spec["rope_scaling"]:
        expect, bands = llama3_inv_freq(spec["head_dim"], spec["rope_theta"], spec["rope_scaling"])
        if "scaled" not in bands or "smoothed" not in bands or "unchanged" not in bands:
            raise RuntimeError(f"llama3 rope scaling leaves some band empty: {bands}")
    else:
        expect, bands = default_inv_freq(spec["head_dim"], spec["rope_theta"]), ["unchanged"] * (spec["head_dim"] // 2)
    buffers = [b for n, b in model.named_buffers() if n.split(".")[-1] == "inv_freq"]
    if not buffers:
        raise RuntimeError("the model has no inv_freq buffer to check")
    got = buffers[0].detach().double()
    want = torch.tensor(expect, dtype=torch.float64)
    rel = float(((got - want).abs() / want).max())
    if rel > 1e-5:
        raise RuntimeError(f"rotary inv_freq differs from the formula: {got.tolist()} vs {expect} (rel {rel})")
    return got.float(), bands, rel


def make_model_reference(name, spec, out, tok, special_ids, versions):
    import torch
    from safetensors.torch import save_file

    model_dir = os.path.join(out, name)
    os.makedirs(model_dir, exist_ok=True)
    seed = SEED + spec["seed_offset"]
    build_model(spec, model_dir, special_ids, seed + 1)
    save_tokenizer(tok, model_dir, special_ids)

    batch = make_batch(seed + 2)
    ref = {
        "input_ids": batch["input_ids"],
        "positions": batch["positions"],
        "seq_starts": torch.tensor(batch["seq_starts"], dtype=torch.int32),
        "targets": batch["targets"],
    }
    # Forward, loss and every parameter's gradient.
    model = load_model(model_dir)
    if spec["tie_word_embeddings"] and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise RuntimeError(f"{name}: lm_head is not tied to embed_tokens after loading")
    if "published_config" in spec:
        rope_tensors, rope_summary = family_rope(model, spec)
        ref.update(rope_tensors)
        inv_freq, bands, rope_rel = next(iter(rope_tensors.values())), [], None
        print(f"{name}: loaded config", json.dumps({k: getattr(model.config, k, None) for k in ("layer_types", "sliding_window", "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping", "head_dim", "partial_rotary_factor", "rope_parameters", "tie_word_embeddings")}, default=str))
    else:
        inv_freq, bands, rope_rel = check_rope(model, spec)
        ref["rope.inv_freq"] = inv_freq
        rope_summary = None
    model.train()
    logits, loss = packed_loss(model, batch)
    loss.backward()
    ref["logits"] = logits.detach().contiguous()
    ref["loss"] = loss.detach().reshape(1)
    names = []
    for pname, p in model.named_parameters():
        if p.grad is None:
            raise RuntimeError(f"{name}: no gradient for {pname}")
        ref[f"grad.{pname}"] = p.grad.detach().clone().contiguous()
        names.append(pname)
    if spec["tie_word_embeddings"] and "lm_head.weight" in names:
        raise RuntimeError(f"{name}: tied model lists lm_head.weight as its own parameter")
    n_params = sum(p.numel() for p in model.parameters())
    del model

    # Full fine-tuning curve.
    model = load_model(model_dir)
    model.train()
    full_params = list(model.parameters())
    full_losses, full_lrs, full_norms, full_lr_mismatch = train_curve(model, full_params, batch, FULL_LR)
    if abs(full_losses[0] - float(ref["loss"][0])) > 1e-6 * abs(full_losses[0]):
        raise RuntimeError(f"{name}: first training loss {full_losses[0]} != reference loss {float(ref['loss'][0])}")
    del model

    # LoRA gradients at the fixed init, then the LoRA curve from the same init.
    model = load_model(model_dir)
    targets = spec.get("lora_targets", LORA_TARGETS)
    init = lora_init(model, seed + 3, targets)
    ref.update({k: v.contiguous() for k, v in init.items()})
    freeze(model)
    model.train()
    lora = LoRA(model, init, targets)
    _, lora_loss = packed_loss(model, batch)
    if lora.calls != len(lora.modules) * len(SEQ_LENS):
        raise RuntimeError(f"{name}: LoRA hooks ran {lora.calls} times, want {len(lora.modules) * len(SEQ_LENS)}")
    lora_loss.backward()
    ref["lora_loss"] = lora_loss.detach().reshape(1)
    for mname, a, b in lora.modules:
        ref[f"lora_grad.{mname}.lora_A.weight"] = a.grad.detach().clone().contiguous()
        ref[f"lora_grad.{mname}.lora_B.weight"] = b.grad.detach().clone().contiguous()
    for pname, p in model.named_parameters():
        if p.grad is not None:
            raise RuntimeError(f"{name}: frozen base parameter {pname} got a gradient")
    del model, lora

    model = load_model(model_dir)
    freeze(model)
    model.train()
    lora = LoRA(model, init, targets)
    lora_losses, lora_lrs, lora_norms, lora_lr_mismatch = train_curve(model, lora.params(), batch, LORA_LR)
    if abs(lora_losses[0] - float(ref["lora_loss"][0])) > 1e-6 * abs(lora_losses[0]):
        raise RuntimeError(f"{name}: first LoRA training loss {lora_losses[0]} != lora_loss")
    del model, lora

    ref["full_losses"] = torch.tensor(full_losses, dtype=torch.float32)
    ref["full_lrs"] = torch.tensor(full_lrs, dtype=torch.float32)
    ref["full_grad_norms"] = torch.tensor(full_norms, dtype=torch.float32)
    ref["lora_losses"] = torch.tensor(lora_losses, dtype=torch.float32)
    ref["lora_lrs"] = torch.tensor(lora_lrs, dtype=torch.float32)
    ref["lora_grad_norms"] = torch.tensor(lora_norms, dtype=torch.float32)

    # Greedy generation from the untrained model.
    g = torch.Generator().manual_seed(seed + 4)
    prompt = torch.randint(0, VOCAB_SIZE, (GEN_PROMPT_LEN,), generator=g).to(torch.int32)
    model = load_model(model_dir)
    model.eval()
    manual = greedy_reference(model, prompt)
    gen_error = None
    try:
        generated = generate_reference(model, prompt)
    except Exception as e:
        generated, gen_error = None, f"{type(e).__name__}: {e}"
    if generated is not None and len(generated) == GEN_NEW_TOKENS:
        gen_output, gen_source = generated, "model.generate"
    else:
        gen_output, gen_source = manual, "argmax loop (model.generate did not return all tokens)"
    ref["gen_prompt"] = prompt
    ref["gen_output"] = gen_output.to(torch.int32).contiguous()
    del model

    ref_dir = os.path.join(out, "reference")
    os.makedirs(ref_dir, exist_ok=True)
    save_file(ref, os.path.join(ref_dir, f"{name}.safetensors"), metadata={"format": "pt"})  # one key: safetensors writes metadata in hash order

    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        saved_config = json.load(f)
    info = {
        "model": name,
        "model_dir": f"testdata/{name}",
        "architecture": spec["architecture"],
        "config": {k: v for k, v in spec.items() if k not in ("seed_offset", "published_config")},
        "vocab_size": VOCAB_SIZE,
        "parameter_count": n_params,
        "parameter_names": names,
        "weight_init": {
            "linear_and_embedding_std": WEIGHT_STD,
            "norm_weight": f"1 + {NORM_STD} * randn",
            "bias_std": BIAS_STD,
            "saved_dtype": spec["weights_dtype"],
            "note": "all computations use the saved weights, loaded back as float32",
        },
        "rope": rope_summary or {"inv_freq": [float(x) for x in inv_freq], "bands": bands, "max_rel_err_vs_formula": rope_rel},
        "seed": seed,
        "seeds": {"weights": seed + 1, "batch": seed + 2, "lora_init": seed + 3, "gen_prompt": seed + 4},
        "batch": {
            "seq_lens": list(SEQ_LENS),
            "ignore_index": IGNORE_INDEX,
            "prompt_masked_sequence": PROMPT_MASKED_SEQ,
            "prompt_masked_targets": PROMPT_MASKED_TARGETS,
            "target_count": int((batch["targets"] != IGNORE_INDEX).sum()),
            "packing": "each sequence run as its own batch row with positions from 0; logits concatenated",
            "loss": "sum of cross-entropy over non-ignored targets of both sequences / their count",
        },
        "optimizer": {
            "name": "torch.optim.AdamW",
            "betas": list(BETAS),
            "eps": ADAM_EPS,
            "weight_decay": WEIGHT_DECAY,
            "weight_decay_applies_to": "every trainable parameter (one param group)",
            "foreach": False,
            "scheduler_vs_formula_mismatches": full_lr_mismatch + lora_lr_mismatch,
            "clip_grad_norm": CLIP_NORM,
            "schedule": "transformers.get_cosine_schedule_with_warmup",
            "warmup_steps": WARMUP_STEPS,
            "steps": TRAIN_STEPS,
            "full_lr": FULL_LR,
            "lora_lr": LORA_LR,
            "losses": "losses[i] is the loss before update i (after i updates); step 0 runs at lr 0 but still updates Adam's moments and step count",
        },
        "lora": {
            "r": LORA_R,
            "alpha": LORA_ALPHA,
            "scaling": LORA_ALPHA / LORA_R,
            "dropout": 0.0,
            "rslora": False,
            "targets": targets,
            "init": f"A and B both normal std {LORA_INIT_STD}, stored as lora.<module>.lora_A/B.weight",
            "forward": "y = base(x) + (x @ A^T @ B^T) * alpha / r",
        },
        "generation": {
            "prompt_len": GEN_PROMPT_LEN,
            "new_tokens": GEN_NEW_TOKENS,
            "greedy": True,
            "eos": "disabled",
            "source": gen_source,
            "matches_argmax_loop": bool(torch.equal(gen_output.long(), manual.long())),
            "generate_error": gen_error,
        },
        "results": {
            "loss": float(ref["loss"][0]),
            "lora_loss": float(ref["lora_loss"][0]),
            "full_losses": full_losses,
            "full_lrs": full_lrs,
            "full_grad_norms": full_norms,
            "lora_losses": lora_losses,
            "lora_lrs": lora_lrs,
            "lora_grad_norms": lora_norms,
        },
        "saved_config_json": saved_config,
        "versions": versions,
    }
    write_json(os.path.join(ref_dir, f"{name}.json"), info)
    print(
        f"{name}: params {n_params}, loss {info['results']['loss']:.6f}, lora_loss {info['results']['lora_loss']:.6f}, "
        f"full {full_losses[0]:.4f}->{full_losses[-1]:.4f}, lora {lora_losses[0]:.4f}->{lora_losses[-1]:.4f}, "
        f"rope bands {bands}, gen {gen_source} (argmax agrees: {info['generation']['matches_argmax_loop']})"
    )


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[1]
    every = dict(MODELS, **FAMILY_MODELS)
    chosen = argv[2:] or list(every)
    unknown = [n for n in chosen if n not in every]
    if unknown:
        print(f"unknown model {unknown}; known: {list(every)}", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)

    import safetensors
    import tokenizers
    import torch
    import transformers

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
    }
    print("versions", versions)

    stdlib = sysconfig.get_paths()["stdlib"]
    texts = collect_corpus(stdlib)
    chars = sum(len(t) for t in texts)
    if chars < 200_000:
        raise RuntimeError(f"only {chars} characters of docstrings under {stdlib}")
    print(f"corpus: {len(texts)} docstrings, {chars} chars from {stdlib}")
    tok = train_tokenizer(texts)
    special_ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    if any(v is None for v in special_ids.values()):
        raise RuntimeError(f"special tokens missing from the tokenizer: {special_ids}")
    print("tokenizer size", tok.get_vocab_size(with_added_tokens=True), "specials", special_ids)

    for name in chosen:
        make_model_reference(name, every[name], out, tok, special_ids, versions)
    if "tiny-qwen2" not in chosen:
        return 0

    cases = tokenizer_cases(tok, os.path.join(out, "tiny-qwen2"))
    cases["corpus"] = {"source": "docstrings of the Python standard library", "docstrings": len(texts), "chars": chars, "python": versions["python"]}
    cases["special_ids"] = special_ids
    cases["versions"] = versions
    write_json(os.path.join(out, "reference", "tokenizer_cases.json"), cases)
    print("tokenizer cases written; transformers:", cases.get("transformers_tokenizer"), cases.get("transformers_error"))
    print("chat agreement:", [c.get("transformers_agrees") for c in cases["chat"]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
