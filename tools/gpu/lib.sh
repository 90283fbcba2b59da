# Functions shared by the batches' run.sh. dispatch.sh copies this file to .dev/gpu/common/lib.sh
# beside the binaries; a run.sh sources it from there ($PWD is the repository root on the device):
#   . $PWD/.dev/gpu/common/lib.sh || exit 1
#   batch_start <folder>

# batch_start NAME: O (the batch's output folder $OUT/NAME, made), B (the binaries' folder), S (its
# summary.txt), and the summary's first step: the GPU and the commit the binaries were built from.
batch_start() {
  O=$OUT/$1; mkdir -p $O
  B=$PWD/.dev/gpu/common
  S=$O/summary.txt
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
  cat $B/COMMIT >>$O/gpu.txt 2>/dev/null
  step start; cat $O/gpu.txt >>$S
}

# step WORDS: a heading with the time in the summary.
step() { echo "== $(date -u +%T) $*" >>$S; }

# losses FILE: the "loss" values of a whet --json log, on one line.
losses() { grep -o '"loss":[^,}]*' "$1" | cut -d: -f2 | tr '\n' ' '; }

# The committed tiny Gemma 3 vision model (testdata/tiny-gemma3-vision-shapes) trained with LoRA r8
# on the language model and the projector on the committed shapes dataset (vtrain, vlayers).
# SHAPES_LORA: more keys for the run's lora line (", vision_layers: true"); SHAPES_SAVE: the steps
# between checkpoints.

# shapes_runfile NAME BACKEND STEPS: writes $O/NAME.yaml and prints its path.
shapes_runfile() {
  cat >$O/$1.yaml <<YAML
name: $1
model: $PWD/testdata/tiny-gemma3-vision-shapes
backend: $2
runs_dir: $O/runs
method: lora
lora: {r: 8, alpha: 16, dropout: 0, projector: true${SHAPES_LORA-}}
data: {path: $PWD/testdata/datasets/shapes/train.jsonl, template: gemma-3, max_length: 96, packing: false, seed: 1}
train: {max_steps: $3, micro_batch: 6, lr: 0.02, schedule: constant, warmup_steps: 0, seed: 1, save_every: ${SHAPES_SAVE:?}, log_every: 10, sample_every: 0}
YAML
  echo $O/$1.yaml
}

# shapes_train PREFIX STEPS SECONDS: the runs PREFIX-cpu and PREFIX-cuda (WHET_CUDA_VISION=1), STEPS
# steps each within SECONDS each, into cpu.jsonl/cpu.err and cuda.jsonl/cuda.err; the summary gets
# each one's exit status, losses, first log lines and last error lines.
shapes_train() {
  local be
  for be in cpu cuda; do
    step "train $be"
    WHET_CUDA_VISION=1 timeout $3 $B/whet train -c $(shapes_runfile $1-$be $be $2) --json >$O/$be.jsonl 2>$O/$be.err
    echo "$be rc=$? losses: $(losses $O/$be.jsonl)" >>$S
    grep -h '"event":"\(log\|done\)"' $O/$be.jsonl | head -8 >>$S
    tail -5 $O/$be.err >>$S
  done
}

# shapes_resume NAME LAST FROM TO: drops the CUDA run NAME's checkpoint of step LAST (its last) and
# resumes it from its checkpoint of step FROM to step TO (within 40 s), into resume.log.
shapes_resume() {
  step "cuda resume $3 -> $4"
  rm -rf $O/runs/$1/checkpoints/step-$(printf %08d $2)
  WHET_CUDA_VISION=1 timeout 40 $B/whet train -c $(shapes_runfile $1 cuda $4) --resume-anyway >$O/resume.log 2>&1
  echo "rc=$?" >>$S; grep -E "resumed|^step|done|failed" $O/resume.log | head -6 >>$S
}
