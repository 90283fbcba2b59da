#!/usr/bin/env bash
# vision-export: whet's PEFT and merged exports of tiny Gemma 3 vision and Llama 3.2 Vision
# models loaded by transformers and PEFT (issue 24), on the device's CPU (torch is there).
# Before the call, after tools/gpu/dispatch.sh vision-export, write the inputs on the
# development machine:
#   WHET_VISION_EXPORT_DEV=$PWD/.dev/gpu/vision-export/inputs go test ./engine/export -run TestWriteVisionExportInputs
# Runs from the repository root; writes only under $OUT/vision-export/.
set -u
D="$OUT/vision-export"; mkdir -p "$D"
L="$D/log.txt"
IN=.dev/gpu/vision-export/inputs
{
  date -u
  timeout 30 python3 -c "import sys,torch,transformers,peft;print(sys.version.split()[0],'torch',torch.__version__,'transformers',transformers.__version__,'peft',peft.__version__)" 2>&1
  ls "$IN" 2>&1
} >"$L"
export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME="$D/hf" TOKENIZERS_PARALLELISM=false
if [ ! -f "$IN/gemma3/inputs.json" ]; then
  echo "no inputs: run TestWriteVisionExportInputs with WHET_VISION_EXPORT_DEV=$IN first (see the header)" >>"$L"
  exit 1
fi
echo "== check_vision_exports $(date -u +%T)" >>"$L"
timeout 100 python3 tools/export/check_vision_exports.py "$IN" "$D/vision-transformers.json" >>"$L" 2>&1
echo "check_vision_exports rc=$? $(date -u +%T)" >>"$L"
rm -rf "$D/hf"
