"""The Python side of tools/hub/interop.sh: huggingface_hub and transformers
against whet's fake Hub and whet's cache.

  python3 interop.py snapshot REPO        # snapshot_download through HF_ENDPOINT into HF_HUB_CACHE
  python3 interop.py load REPO REFDIR     # with HF_HUB_OFFLINE=1: load the cached model, compare with REFDIR
"""
import os
import stat
import sys


def versions():
    import huggingface_hub
    print(f"huggingface_hub {huggingface_hub.__version__}")
    try:
        import transformers
        import torch
        print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    except ImportError as e:
        print(f"transformers/torch not importable: {e}")


def snapshot(repo):
    from huggingface_hub import snapshot_download
    print(f"HF_ENDPOINT={os.environ['HF_ENDPOINT']} HF_HUB_CACHE={os.environ['HF_HUB_CACHE']}")
    path = snapshot_download(repo)
    print(f"snapshot_download({repo!r}) -> {path}")
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        print(f"  {name} -> {os.readlink(p) if os.path.islink(p) else '(not a link)'}")
    tagged = snapshot_download(repo, revision="v1.0")
    print(f"snapshot_download({repo!r}, revision='v1.0') -> {tagged}")


def load(repo, refdir):
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "run with HF_HUB_OFFLINE=1"
    from huggingface_hub import hf_hub_download, scan_cache_dir, try_to_load_from_cache

    info = scan_cache_dir(os.environ["HF_HUB_CACHE"])
    for r in info.repos:
        print(f"scan_cache_dir: {r.repo_id} {r.repo_type} {r.size_on_disk} bytes, refs {sorted(r.refs)}, "
              f"{len(r.revisions)} revision(s), {r.nb_files} files")
        for rev in r.revisions:
            print(f"  {rev.commit_hash} refs={sorted(rev.refs)} files={sorted(f.file_name for f in rev.files)}")
    if info.warnings:
        for w in info.warnings:
            print(f"scan_cache_dir warning: {w}")
        raise SystemExit("FAIL: huggingface_hub finds the cache malformed")
    assert [r.repo_id for r in info.repos] == [repo], info.repos

    config = hf_hub_download(repo, "config.json")
    print(f"hf_hub_download({repo!r}, 'config.json') offline -> {config}")
    cached = try_to_load_from_cache(repo, "model.safetensors")
    print(f"try_to_load_from_cache -> {cached}")
    assert isinstance(cached, str) and os.path.isfile(cached)
    for root, dirs, files in os.walk(os.environ["HF_HUB_CACHE"]):
        for n in dirs + files:
            mode = os.lstat(os.path.join(root, n)).st_mode
            if not stat.S_ISLNK(mode) and mode & stat.S_IWOTH:
                raise SystemExit(f"FAIL: {os.path.join(root, n)} is world-writable")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(repo)
    model = AutoModelForCausalLM.from_pretrained(repo, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(refdir, dtype=torch.float32)
    print(f"AutoModelForCausalLM.from_pretrained({repo!r}) offline: {type(model).__name__}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, tokenizer {type(tok).__name__}")
    ids = tok("Why does bread rise?", return_tensors="pt").input_ids
    with torch.no_grad():
        a = model(ids).logits
        b = ref(ids).logits
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    diff = (a - b).abs().max().item()
    print(f"logits vs the model folder itself: max |diff| = {diff}")
    if diff != 0:
        raise SystemExit("FAIL: the cached model differs from the served folder")
    print(f"greedy: {tok.decode(out[0][ids.shape[1]:], skip_special_tokens=True)!r}")


if __name__ == "__main__":
    versions()
    cmd = sys.argv[1]
    if cmd == "snapshot":
        snapshot(sys.argv[2])
    elif cmd == "load":
        load(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
