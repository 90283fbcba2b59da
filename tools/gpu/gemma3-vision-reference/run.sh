#!/usr/bin/env bash
# gemma3-vision-reference (issue 24): tiny Gemma3ForConditionalGeneration reference on the device's CPU.
# Runs from the repository root; writes only under $OUT/gemma3-vision-reference/.
set -u
O="$OUT/gemma3-vision-reference"; mkdir -p "$O"
L="$O/log.txt"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -2
  timeout 30 python3 -c "import sys,torch,transformers,safetensors;print(sys.version.split()[0],'torch',torch.__version__,'transformers',transformers.__version__,'safetensors',safetensors.__version__)"
} >"$L" 2>&1
export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=/tmp/vg3-hf TOKENIZERS_PARALLELISM=false
# The transformers sources the reference comes from, to read back if whet differs.
mkdir -p /tmp/vg3/src
timeout 20 python3 - /tmp/vg3/src >>"$L" 2>&1 <<'PY'
import os, shutil, sys, transformers, transformers.masking_utils as mu
import transformers.models.gemma3 as g, transformers.models.siglip as s
for mod, files in ((g, ("modeling_gemma3.py", "configuration_gemma3.py")), (s, ("modeling_siglip.py", "configuration_siglip.py"))):
    d = os.path.dirname(mod.__file__)
    for f in files:
        if os.path.exists(os.path.join(d, f)):
            shutil.copy(os.path.join(d, f), sys.argv[1])
shutil.copy(mu.__file__, sys.argv[1])
print("sources copied")
PY
# CUDA conformance of the vision ops (LayerNorm, GELU-tanh, group attention), in the background.
B=$PWD/.dev/gpu/common
( cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 100 $B/cuda.test -test.v -test.count=1 \
    -test.run '^TestConformance(F32)?$/^(LayerNorm|LayerNormBackward|GELUTanh|GELUTanhBackward|AttentionGroups|AttentionGroupsBackward)$' \
    >"$O/cuda-vision.log" 2>&1; echo "cuda.test rc=$?" >>"$O/cuda-vision.log" ) &
CU=$!
# The script from main when merged, else the copy in this folder (it imports tools/reference/make_reference.py).
S=tools/reference/make_vision_model_reference.py
[ -f "$S" ] || { echo "no $S" >>"$L"; exit 1; }
echo "+ timeout 90 python3 $S /tmp/vg3 ($(date -u +%T))" >>"$L"
PYTHONPATH=tools/reference timeout 90 python3 "$S" /tmp/vg3 >>"$L" 2>&1
rc=$?; echo "rc=$rc ($(date -u +%T))" >>"$L"
ls -laR /tmp/vg3 >>"$L" 2>&1
tar -C /tmp/vg3 -czf "$O/ref.tgz" . >>"$L" 2>&1
wait $CU
grep -E "^(=== RUN|\s*--- |ok|FAIL|PASS)|rc=" "$O/cuda-vision.log" | grep -v "=== RUN" | tail -60 >>"$L"
exit $rc
