#!/usr/bin/env bash
# mllama-cuda: Llama 3.2 Vision (Mllama) and Gemma 3 vision on the CUDA backend. Runs from the repo root.
#  1. conformance of the Mllama ops (kernels/gelu.cu, kernels/bias_attention.cu) and the SigLIP
#     ones they sit beside, bf16 and f32;
#  2. TestMllamaMatchesCPU (tiny Mllama end to end in f32: vision output and logits within 1e-4,
#     40 LoRA steps within 1 % of the CPU) and TestGemma3VisionTrainingMatchesCPU (40 bf16 steps
#     within 1 %);
#  3. the 11B-Vision measurement (engine/cuda/mllama_bench_test.go) when the binary has it.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
batch_start mllama-cuda
OPS='^(GELU|GELUBackward|BiasAttention|BiasAttentionBackward|LayerNorm|LayerNormBackward)$'
RUN="^(TestConformance|TestConformanceF32|TestMllamaMatchesCPU|TestGemma3VisionTrainingMatchesCPU)\$/$OPS"
step cuda.test
echo "cmd: cd engine/cuda && WHET_CUDA_REQUIRE=1 cuda.test -test.run '$RUN' -test.v" >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 60 $B/cuda.test -test.run "$RUN" -test.v -test.count=1) >$O/cuda-tests.log 2>&1; echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|^    --- (FAIL|SKIP)|loss cpu|loss cuda" $O/cuda-tests.log >>$S
grep -E -- "--- FAIL" -A6 $O/cuda-tests.log | head -60 >>$S
# On a failure, the same tests with a sync after every launch name a faulting kernel.
if grep -q -- "--- FAIL" $O/cuda-tests.log; then
  step cuda.test-sync
  (cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_CUDA_SYNC=1 timeout 20 $B/cuda.test -test.run "$RUN" -test.v -test.count=1 -test.failfast) >$O/cuda-tests-sync.log 2>&1; echo "sync rc=$?" >>$S
  grep -E -- "--- FAIL" -A6 $O/cuda-tests-sync.log | head -30 >>$S
fi
if (cd engine/cuda && $B/cuda.test -test.list 'TestMllama11BVisionStep' 2>/dev/null | grep -q TestMllama11BVisionStep); then
  step mllama-11b
  echo "cmd: cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_MLLAMA_11B=$O/mllama-11b.json cuda.test -test.run '^TestMllama11BVisionStep\$' -test.v" >>$S
  (cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_MLLAMA_11B=$O/mllama-11b.json timeout 65 $B/cuda.test -test.run '^TestMllama11BVisionStep$' -test.v -test.count=1) >$O/mllama-11b.log 2>&1; echo "11b rc=$?" >>$S
  grep -E "^(--- |ok|FAIL|PASS)|mllama11b|    " $O/mllama-11b.log | tail -20 >>$S
  cat $O/mllama-11b.json >>$S 2>/dev/null
fi
step end
