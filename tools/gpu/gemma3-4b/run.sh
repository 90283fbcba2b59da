#!/usr/bin/env bash
# gemma3-4b: gemma-3-4b-it with an image (issue 24) on the CUDA backend. Runs from the repo root.
# TestGemma3Vision4BStep (engine/cuda/gemma3_vision_bench_test.go): the released shape with random
# weights in the backend's compute dtype (bf16), LoRA r16 on every language-model linear, the SigLIP
# tower and projector frozen, batch 1, one 896x896 image (4096 patches pooled to 256 image tokens) in
# 1024 tokens: a warm-up step, a forward, one timed step; peak memory against
# memplan.PlanGemma3Vision for the same run (bf16, no checkpointing) and tok/s, into gemma3-4b.json;
# the test fails when the peak is more than 10 % away from the plan or the loss is not finite.
# Then TestGemma3Vision4BQLoRAStep (the language model's linears in NF4) into gemma3-4b-qlora.json.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
batch_start gemma3-4b
if ! (cd engine/cuda && $B/cuda.test -test.list 'TestGemma3Vision4BStep' 2>/dev/null | grep -q TestGemma3Vision4BStep); then
  echo "cuda.test lacks TestGemma3Vision4BStep: rebuild it from a main that has engine/cuda/gemma3_vision_bench_test.go" >>$S
  step end; exit 0
fi
run() { # name env timeout test
  step "$1"
  echo "cmd: cd engine/cuda && WHET_CUDA_REQUIRE=1 $2=$O/$1.json cuda.test -test.run '^$4\$' -test.v" >>$S
  (cd engine/cuda && env WHET_CUDA_REQUIRE=1 $2=$O/$1.json timeout $3 $B/cuda.test -test.run "^$4\$" -test.v -test.count=1) >$O/$1.log 2>&1
  echo "$1 rc=$?" >>$S
  grep -E "^(--- |ok|FAIL|PASS)|gemma3-4b|    " $O/$1.log | tail -20 >>$S
  cat $O/$1.json >>$S 2>/dev/null
}
run gemma3-4b WHET_GEMMA3_4B 110 TestGemma3Vision4BStep
run gemma3-4b-qlora WHET_GEMMA3_4B_QLORA 70 TestGemma3Vision4BQLoRAStep
step end
