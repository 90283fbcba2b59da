#!/usr/bin/env bash
# vref: the CUDA side of the vision reference fixes (branch vref). Runs from the repo root.
#  1. conformance of GroupAttention (kernels/group_attention.cu, whose mask now follows
#     transformers 5.17: AND(window, OR(causal, group)); the case lm_gqa4x1_d256_window3_runs has
#     a window shorter than its image runs, so it tells the two masks apart), bf16 and f32;
#  2. TestGemma3VisionTrainingMatchesCPU and TestMllamaMatchesCPU (the tiny vision models on the
#     GPU against the CPU engine).
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
batch_start vref
# Second level: the GroupAttention cases (the two matching tests have no subtests).
RUN='^(TestConformance|TestConformanceF32|TestGemma3VisionTrainingMatchesCPU|TestMllamaMatchesCPU)$/^(AttentionGroups|AttentionGroupsBackward)$'
step cuda.test
echo "cmd: cd engine/cuda && WHET_CUDA_REQUIRE=1 cuda.test -test.run '$RUN' -test.v" >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 100 $B/cuda.test -test.run "$RUN" -test.v -test.count=1) >$O/cuda-tests.log 2>&1; echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|^    --- |loss cpu|loss cuda" $O/cuda-tests.log >>$S
grep -E -- "--- FAIL" -A6 $O/cuda-tests.log | head -60 >>$S
if grep -q -- "--- FAIL" $O/cuda-tests.log; then
  step cuda.test-sync
  (cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_CUDA_SYNC=1 timeout 40 $B/cuda.test -test.run "$RUN" -test.v -test.count=1 -test.failfast) >$O/cuda-tests-sync.log 2>&1; echo "sync rc=$?" >>$S
  grep -E -- "--- FAIL" -A6 $O/cuda-tests-sync.log | head -30 >>$S
fi
step end
