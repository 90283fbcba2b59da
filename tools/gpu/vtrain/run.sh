#!/usr/bin/env bash
# vtrain: whet train on images (issue 24) on the GPU. The committed tiny Gemma 3 vision model
# (testdata/tiny-gemma3-vision-shapes) trains LoRA on the language model and the projector on the
# committed shapes dataset (testdata/datasets/shapes, 72 captioned PNGs) for 80 steps, once on
# the device's CPU and once on CUDA with WHET_CUDA_VISION=1 (the Gemma 3 vision ops' opt-in);
# the loss lines of both go to summary.txt (bf16 on CUDA: the curves should agree within a few
# per cent, and both fall from about 2.5 to about 0.25). Then a CUDA run without the opt-in,
# which must be refused by name, and a resumed CUDA run (checkpoint of step 40 -> 60).
# Runs from the repo root; writes only under $OUT/vtrain.
set -u
O=$OUT/vtrain; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
cat $B/COMMIT >>$O/gpu.txt 2>/dev/null
step start; cat $O/gpu.txt >>$S
runfile() { # name backend steps
  cat >$O/$1.yaml <<YAML
name: $1
model: $PWD/testdata/tiny-gemma3-vision-shapes
backend: $2
runs_dir: $O/runs
method: lora
lora: {r: 8, alpha: 16, dropout: 0, projector: true}
data: {path: $PWD/testdata/datasets/shapes/train.jsonl, template: gemma-3, max_length: 96, packing: false, seed: 1}
train: {max_steps: $3, micro_batch: 6, lr: 0.02, schedule: constant, warmup_steps: 0, seed: 1, save_every: 40, log_every: 10, sample_every: 0}
YAML
  echo $O/$1.yaml
}
losses() { grep -o '"loss":[^,}]*' "$1" | cut -d: -f2 | tr '\n' ' '; }
for be in cpu cuda; do
  step "train $be"
  WHET_CUDA_VISION=1 timeout 70 $B/whet train -c $(runfile shapes-$be $be 80) --json >$O/$be.jsonl 2>$O/$be.err
  echo "$be rc=$? losses: $(losses $O/$be.jsonl)" >>$S
  grep -h '"event":"\(log\|done\)"' $O/$be.jsonl | head -8 >>$S
  tail -5 $O/$be.err >>$S
done
step "cuda without WHET_CUDA_VISION (must be refused)"
timeout 20 $B/whet train -c $(runfile refused cuda 2) >$O/refused.log 2>&1
echo "rc=$? (want 1)" >>$S; tail -3 $O/refused.log >>$S
step "cuda resume 40 -> 60"
rm -rf $O/runs/shapes-cuda/checkpoints/step-00000080
WHET_CUDA_VISION=1 timeout 40 $B/whet train -c $(runfile shapes-cuda cuda 60) --resume-anyway >$O/resume.log 2>&1
echo "rc=$?" >>$S; grep -E "resumed|^step|done|failed" $O/resume.log | head -6 >>$S
step end
