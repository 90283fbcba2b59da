#!/usr/bin/env bash
# mllama-q8: BiasAttention's forward with eight queries a block (WHET_BIAS_ATTN_Q8=1,
# kernels/bias_attention.cu bias_attention_forward_q8; never run on a GPU). Runs from the repo root.
#  1. the BiasAttention / BiasAttentionBackward conformance cases (bf16 and f32) with it on
#     (the vision tile mask, the cross-attention mask, fully masked rows, GQA, T not a multiple of 8);
#  2. TestMllamaMatchesCPU (f32, 1e-4) and TestMllamaBF16MatchesCPU with it on;
#  3. TestMllama11BVisionQLoRABF16Step with it on: forward_s and tok_s against the same test
#     without it (tools/gpu/mllama-bf16; float32 and the plain kernel: forward 16.1 s, 46.8 tok/s).
# A failure in 1 or 2 reruns with WHET_CUDA_SYNC=1 and skips 3.
# PHASE (go.sh sets it; unset: both in turn): tests = 1 and 2 (untimed: may share the machine with
# other batches' tests), bench = 3 alone, if 1 and 2 passed in this folder (tests.ok).
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
PHASE=${PHASE:-all}
batch_start mllama-q8
echo "PHASE=$PHASE" >>$S
if ! (cd engine/cuda && $B/cuda.test -test.list '^TestMllama11BVisionQLoRABF16Step$' 2>/dev/null | grep -q TestMllama11BVisionQLoRABF16Step) ||
   ! grep -q bias_attention_forward_q8 kernels/bias_attention.cu; then
  echo "cuda.test or kernels/ lack the q8 forward: rebuild from a main that has commit 'bias_attention.cu: a forward with eight queries a block ...'" >>$S
  step end; exit 0
fi
export WHET_BIAS_ATTN_Q8=1
OPS='^(BiasAttention|BiasAttentionBackward)$'
RUN="^(TestConformance|TestConformanceF32)\$/$OPS|^(TestMllamaMatchesCPU|TestMllamaBF16MatchesCPU)\$"
if [ $PHASE != bench ]; then
step tests-q8
echo "cmd: cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_BIAS_ATTN_Q8=1 cuda.test -test.run '$RUN' -test.v" >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 50 $B/cuda.test -test.run "$RUN" -test.v -test.count=1) >$O/tests.log 2>&1; echo "tests (q8) rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|^    --- (FAIL|SKIP)|sample [0-9]: |forward loss|loss cpu|loss cuda" $O/tests.log >>$S
grep -E -- "--- FAIL" -A8 $O/tests.log | head -50 >>$S
if grep -q -- "--- FAIL" $O/tests.log || ! grep -q '^ok' $O/tests.log; then
  step tests-q8-sync
  (cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_CUDA_SYNC=1 timeout 30 $B/cuda.test -test.run "$RUN" -test.v -test.count=1 -test.failfast) >$O/tests-sync.log 2>&1; echo "sync rc=$?" >>$S
  grep -E -- "--- FAIL" -A8 $O/tests-sync.log | head -30 >>$S
  step end; exit 0
fi
touch $O/tests.ok
fi
[ $PHASE = tests ] && { step end; exit 0; }
if [ ! -f $O/tests.ok ]; then echo "the q8 tests did not pass in this folder (no tests.ok): the 11B step not run" >>$S; step end; exit 0; fi
step mllama-11b-qlora-bf16-q8
(cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_MLLAMA_11B_QLORA_BF16=$O/mllama-11b-qlora-bf16-q8.json timeout 110 $B/cuda.test -test.run '^TestMllama11BVisionQLoRABF16Step$' -test.v -test.count=1) >$O/mllama-11b-q8.log 2>&1; echo "11b qlora bf16 q8 rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|mllama11b|    " $O/mllama-11b-q8.log | tail -20 >>$S
cat $O/mllama-11b-qlora-bf16-q8.json >>$S 2>/dev/null
step end
