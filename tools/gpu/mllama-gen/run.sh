#!/usr/bin/env bash
# mllama-gen: Llama 3.2 Vision generation on the GPU (engine.MllamaGenerator; on by default,
# WHET_CUDA_VISION=0 turns it off). Runs from the repo root; writes only under $OUT/mllama-gen.
#  1. TestMllamaGeneratorMatchesCPU (tiny Mllama, f32: greedy tokens equal to the CPU's and every
#     step's logits within 1e-4, one/two/no image, adapter on and off; bf16 logged) with
#     TestMllamaMatchesCPU as the control; a WHET_CUDA_SYNC=1 rerun on failure;
#  2. whet chat on the committed tiny Mllama (testdata/tiny-mllama-shapes) after a 20-step CPU QLoRA
#     run on testdata/datasets/shapes: --compare --image, greedy, on the CPU and on CUDA
#     (in float32: WHET_MLLAMA_BF16=0, as bf16 is CUDA's default since 2026-12-07); the replies
#     (without the tok/s lines) must be equal; CUDA with
#     WHET_CUDA_VISION=0 must be refused.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
batch_start mllama-gen
RUN='^(TestMllamaGeneratorMatchesCPU|TestMllamaMatchesCPU)$'
step cuda.test
echo "cmd: cd engine/cuda && WHET_CUDA_REQUIRE=1 cuda.test -test.run '$RUN' -test.v" >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 60 $B/cuda.test -test.run "$RUN" -test.v -test.count=1) >$O/cuda-tests.log 2>&1; echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|bf16 sample|near tie|differ|token " $O/cuda-tests.log | head -40 >>$S
if grep -q -- "--- FAIL" $O/cuda-tests.log; then
  step cuda.test-sync
  (cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_CUDA_SYNC=1 timeout 20 $B/cuda.test -test.run "$RUN" -test.v -test.count=1 -test.failfast) >$O/cuda-tests-sync.log 2>&1; echo "sync rc=$?" >>$S
  grep -E -A6 -- "--- FAIL" $O/cuda-tests-sync.log | head -30 >>$S
fi
if [ ! -f testdata/tiny-mllama-shapes/model.safetensors ]; then
  echo "testdata/tiny-mllama-shapes is missing" >>$S; step end; exit 0
fi
step "train (cpu, 20 qlora steps)"
cat >$O/run.yaml <<YAML
name: mgen
model: $PWD/testdata/tiny-mllama-shapes
backend: cpu
runs_dir: $O/runs
method: qlora
lora: {r: 8, alpha: 16, dropout: 0, projector: true}
data: {path: $PWD/testdata/datasets/shapes/train.jsonl, max_length: 128, packing: false, seed: 1}
train: {max_steps: 20, micro_batch: 3, lr: 0.01, schedule: constant, warmup_steps: 0, seed: 1, save_every: 20, log_every: 10, sample_every: 0}
YAML
timeout 40 $B/whet train -c $O/run.yaml >$O/train.log 2>&1; echo "train rc=$?" >>$S
tail -3 $O/train.log >>$S
chat() { # backend image
  timeout 30 $B/whet chat --run $O/runs/mgen --backend $1 --temperature 0 --max-new-tokens 12 --compare \
    --image testdata/datasets/shapes/img/$2.png --prompt "what is this?"
}
for img in 000 010 033; do
  step "chat $img"
  chat cpu $img >$O/chat-cpu-$img.txt 2>&1; echo "cpu rc=$?" >>$S
  WHET_CUDA_VISION=1 WHET_MLLAMA_BF16=0 chat cuda $img >$O/chat-cuda-$img.txt 2>&1; echo "cuda rc=$?" >>$S
  cat $O/chat-cuda-$img.txt >>$S
  if diff <(grep -v "tok/s" $O/chat-cpu-$img.txt) <(grep -v "tok/s" $O/chat-cuda-$img.txt) >$O/chat-diff-$img.txt; then
    echo "chat $img: cuda replies equal the cpu's" >>$S
  else
    echo "chat $img: cuda replies DIFFER from the cpu's:" >>$S; cat $O/chat-diff-$img.txt >>$S
  fi
done
step "chat cuda with WHET_CUDA_VISION=0"
WHET_CUDA_VISION=0 $B/whet chat --run $O/runs/mgen --backend cuda --max-new-tokens 2 --image testdata/datasets/shapes/img/000.png --prompt hi >$O/chat-refused.txt 2>&1
echo "rc=$? (want 1): $(tail -1 $O/chat-refused.txt)" >>$S
step end
