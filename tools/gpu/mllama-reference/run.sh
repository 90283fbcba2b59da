#!/usr/bin/env bash
# mllama-reference: tiny MllamaForConditionalGeneration reference (issue 24), on the device's CPU.
# Runs from the repository root; writes only under $OUT/mllama-reference/.
set -u
D="$OUT/mllama-reference"; mkdir -p "$D"
L="$D/log.txt"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 || true
  timeout 30 python3 -c "import sys,torch,transformers;print(sys.version.split()[0],'torch',torch.__version__,'transformers',transformers.__version__)" 2>&1
} >"$L"
export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME="$D/hf" TOKENIZERS_PARALLELISM=false
# The exact transformers source the reference came from, to read back here.
timeout 20 python3 - "$D/src" >>"$L" 2>&1 <<'PY'
import os, shutil, sys, transformers.models.mllama as m
os.makedirs(sys.argv[1], exist_ok=True)
d = os.path.dirname(m.__file__)
for f in ("modeling_mllama.py", "configuration_mllama.py", "processing_mllama.py"):
    if os.path.exists(os.path.join(d, f)):
        shutil.copy(os.path.join(d, f), sys.argv[1])
print("copied from", d)
PY
echo "== make_mllama_reference $(date -u +%T)" >>"$L"
timeout 100 python3 tools/reference/make_mllama_reference.py "$D/ref" >>"$L" 2>&1
echo "make_mllama_reference rc=$? $(date -u +%T)" >>"$L"
tar -C "$D" -czf "$D/ref.tgz" ref src >>"$L" 2>&1 && rm -rf "$D/ref" "$D/src"
rm -rf "$D/hf"
ls -la "$D" >>"$L"
