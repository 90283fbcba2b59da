#!/usr/bin/env bash
# vlayers: lora.vision_layers (adapters on the Gemma 3 SigLIP tower's linear layers, issue 24) on
# the GPU. The committed tiny Gemma 3 vision model (testdata/tiny-gemma3-vision-shapes) trains LoRA
# on the language model, the projector and the tower's layers on the committed shapes dataset for 40
# steps, once on the device's CPU and once on CUDA with WHET_CUDA_VISION=1 (the whole image path's
# opt-in; the tower adapters add only MatMuls, and the tower's backward is the one full tower
# training uses); the loss lines of both go to summary.txt (bf16 on CUDA: the curves should agree
# within a few per cent). Then a resumed CUDA run (checkpoint of step 20 -> 30) and a merged export
# of the CPU run (the tower adapters merged). Runs from the repo root; writes only under $OUT/vlayers.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step, shapes_*: tools/gpu/lib.sh
batch_start vlayers
SHAPES_LORA=", vision_layers: true" SHAPES_SAVE=20
shapes_train vl 40 60
shapes_resume vl-cuda 40 20 30
step "merged export of the cpu run"
timeout 30 $B/whet export --run $O/runs/vl-cpu --format merged --out $O/merged >$O/export.log 2>&1
echo "rc=$?" >>$S; tail -3 $O/export.log >>$S
rm -rf $O/merged $O/runs/*/checkpoints
step end
