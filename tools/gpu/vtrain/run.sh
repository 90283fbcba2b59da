#!/usr/bin/env bash
# vtrain: whet train on images (issue 24) on the GPU. The committed tiny Gemma 3 vision model
# (testdata/tiny-gemma3-vision-shapes) trains LoRA on the language model and the projector on the
# committed shapes dataset (testdata/datasets/shapes, 72 captioned PNGs) for 80 steps, once on
# the device's CPU and once on CUDA (WHET_CUDA_VISION=1, harmless now that CUDA vision is the default);
# the loss lines of both go to summary.txt (bf16 on CUDA: the curves should agree within a few
# per cent, and both fall from about 2.5 to about 0.25). Then a CUDA run with WHET_CUDA_VISION=0
# (the off switch), which must be refused by name, and a resumed CUDA run (checkpoint of step 40 -> 60).
# Runs from the repo root; writes only under $OUT/vtrain.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step, shapes_*: tools/gpu/lib.sh
batch_start vtrain
SHAPES_LORA= SHAPES_SAVE=40
shapes_train shapes 80 70
step "cuda with WHET_CUDA_VISION=0 (must be refused)"
WHET_CUDA_VISION=0 timeout 20 $B/whet train -c $(shapes_runfile refused cuda 2) >$O/refused.log 2>&1
echo "rc=$? (want 1)" >>$S; tail -3 $O/refused.log >>$S
shapes_resume shapes-cuda 80 40 60
step end
