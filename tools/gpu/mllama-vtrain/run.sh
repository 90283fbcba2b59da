#!/usr/bin/env bash
# mllama-vtrain: whet train on images with Llama 3.2 Vision (issue 24) on the GPU. The committed tiny
# Mllama (testdata/tiny-mllama-shapes: 16-pixel tiles, one cross-attention layer, the Llama 3.2
# Vision chat template) trains QLoRA r8 with the projector adapter on the committed shapes dataset
# (testdata/datasets/shapes, 72 captioned PNGs) for 40 steps: on the device's CPU (float32), on
# CUDA in float32 (WHET_MLLAMA_BF16=0) and on CUDA in bf16 (the default since 2026-12-07; the batch
# still sets WHET_MLLAMA_BF16=1, harmlessly; its log must say "computes in bf16"); the loss lines of the three go to summary.txt (on the development
# machine's CPU: 0.85, 0.32, 0.30, 0.43 at steps 10-40). Then the bf16 run resumes from its step-20
# checkpoint to step 30. Runs from the repo root; writes only under $OUT/mllama-vtrain.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
batch_start mllama-vtrain
if [ ! -f testdata/tiny-mllama-shapes/model.safetensors ]; then
  echo "testdata/tiny-mllama-shapes is missing: use a main that has commit 'testdata: a tiny Llama 3.2 Vision ...'" >>$S
  step end; exit 0
fi
runfile() { # name backend steps
  cat >$O/$1.yaml <<YAML
name: $1
model: $PWD/testdata/tiny-mllama-shapes
backend: $2
runs_dir: $O/runs
method: qlora
lora: {r: 8, alpha: 16, dropout: 0, projector: true}
data: {path: $PWD/testdata/datasets/shapes/train.jsonl, max_length: 128, packing: false, seed: 1}
train: {max_steps: $3, micro_batch: 3, lr: 0.01, schedule: constant, warmup_steps: 0, seed: 1, save_every: 20, log_every: 5, sample_every: 0}
YAML
  echo $O/$1.yaml
}
losses() { grep -o '"loss":[^,}]*' "$1" | cut -d: -f2 | cut -c1-6 | tr '\n' ' '; } # lib.sh's, each value cut to 6 characters
train() { # name backend env...
  local name=$1 be=$2; shift 2
  step "train $name"
  env WHET_CUDA_VISION=1 "$@" timeout 40 $B/whet train -c $(runfile $name $be 40) --json >$O/$name.jsonl 2>$O/$name.err
  echo "$name rc=$? losses: $(losses $O/$name.jsonl)" >>$S
  grep -h -o '"text":"vision[^"]*"' $O/$name.jsonl | head -4 >>$S
  tail -3 $O/$name.err >>$S
}
train cpu-f32 cpu
train cuda-f32 cuda WHET_MLLAMA_BF16=0
train cuda-bf16 cuda WHET_MLLAMA_BF16=1
step "cuda bf16 resume 20 -> 30"
rm -rf $O/runs/cuda-bf16/checkpoints/step-00000040
WHET_CUDA_VISION=1 WHET_MLLAMA_BF16=1 timeout 30 $B/whet train -c $(runfile cuda-bf16 cuda 30) --resume-anyway >$O/resume.log 2>&1
echo "rc=$?" >>$S; grep -E "resumed|bf16|^step|done|failed|error" $O/resume.log | head -8 >>$S
step end
