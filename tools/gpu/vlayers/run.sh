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
O=$OUT/vlayers; mkdir -p $O
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
lora: {r: 8, alpha: 16, dropout: 0, projector: true, vision_layers: true}
data: {path: $PWD/testdata/datasets/shapes/train.jsonl, template: gemma-3, max_length: 96, packing: false, seed: 1}
train: {max_steps: $3, micro_batch: 6, lr: 0.02, schedule: constant, warmup_steps: 0, seed: 1, save_every: 20, log_every: 10, sample_every: 0}
YAML
  echo $O/$1.yaml
}
losses() { grep -o '"loss":[^,}]*' "$1" | cut -d: -f2 | tr '\n' ' '; }
for be in cpu cuda; do
  step "train $be"
  WHET_CUDA_VISION=1 timeout 60 $B/whet train -c $(runfile vl-$be $be 40) --json >$O/$be.jsonl 2>$O/$be.err
  echo "$be rc=$? losses: $(losses $O/$be.jsonl)" >>$S
  grep -h '"event":"\(log\|done\)"' $O/$be.jsonl | head -8 >>$S
  tail -5 $O/$be.err >>$S
done
step "cuda resume 20 -> 30"
rm -rf $O/runs/vl-cuda/checkpoints/step-00000040
WHET_CUDA_VISION=1 timeout 40 $B/whet train -c $(runfile vl-cuda cuda 30) --resume-anyway >$O/resume.log 2>&1
echo "rc=$?" >>$S; grep -E "resumed|^step|done|failed" $O/resume.log | head -6 >>$S
step "merged export of the cpu run"
timeout 30 $B/whet export --run $O/runs/vl-cpu --format merged --out $O/merged >$O/export.log 2>&1
echo "rc=$?" >>$S; tail -3 $O/export.log >>$S
rm -rf $O/merged $O/runs/*/checkpoints
step end
