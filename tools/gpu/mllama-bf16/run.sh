#!/usr/bin/env bash
# mllama-bf16: Llama 3.2 Vision (Mllama) in bf16 compute (engine.MllamaOptions.Compute
# BF16; whet train's default on CUDA since this passed on 2026-12-07, WHET_MLLAMA_BF16=0 keeps float32) on the CUDA backend. Runs from the repo root.
#  1. TestMllamaBF16MatchesCPU (engine/cuda/mllama_test.go): the tiny Mllama end to end with its
#     weights and activations in bf16 on the GPU against the CPU in float32 (vision output and
#     logits within 5e-2 of the largest value, forward loss within 1 %, 40 LoRA steps each within
#     3 %) and, logged beside it, the CPU's own bf16; TestMllamaMatchesCPU (float32) beside it as
#     the control. A failure reruns with WHET_CUDA_SYNC=1 (names a faulting launch).
#  2. TestMllama11BVisionQLoRABF16Step (engine/cuda/mllama_bench_test.go): Llama-3.2-11B-Vision at
#     the released shape, random weights, NF4 language-model linears, the rest bf16, LoRA r16,
#     batch 1, one 560x560 image (4 tiles) and 1024 tokens: warm-up step, forward, one timed step;
#     peak against memplan.PlanMllama's qlora bf16 plan without checkpointing
#     (peak_over_plan_qlora_bf16_nockpt; the plan says 18.4 GB) and the 12.4 GB plan with
#     checkpointing (plan_qlora, which the Mllama engine does not implement), forward_s, tok_s,
#     into mllama-11b-qlora-bf16.json. The float32 run (mllama-qlora, H100): 39.17 GB, 46.8 tok/s,
#     forward 16 s; the first bf16 run (main fc0d129, before the engine freed each layer's tensors
#     after its backward): 22.90 GB against 23.63 GB planned, 65.3 tok/s.
#  3. TestMllama11BVisionQLoRABF16CkptStep: the same with activation checkpointing
#     (engine.MllamaModel.Checkpointing, train.activation_checkpointing): peak against the
#     checkpointed qlora bf16 plan (peak_over_plan_qlora; 12.2 GB), tok/s, into
#     mllama-11b-qlora-bf16-ckpt.json.
# A failure of 1 reruns it with WHET_CUDA_SYNC=1 and skips 2 and 3.
# PHASE (go.sh sets it; unset: both in turn): tests = 1 (untimed: may share the machine with other
# batches' tests), bench = 2 and 3 alone, if 1 passed in this folder (tiny.ok).
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
PHASE=${PHASE:-all}
batch_start mllama-bf16
echo "PHASE=$PHASE" >>$S
for T in TestMllamaBF16MatchesCPU TestMllama11BVisionQLoRABF16Step TestMllama11BVisionQLoRABF16CkptStep; do
  if ! (cd engine/cuda && $B/cuda.test -test.list "^$T\$" 2>/dev/null | grep -q "$T"); then
    echo "cuda.test lacks $T: rebuild it (tools/gpu/dispatch.sh) from a main that has commit 'mllama: activation checkpointing ...'" >>$S
    step end; exit 0
  fi
done
RUN='^(TestMllamaBF16MatchesCPU|TestMllamaMatchesCPU)$'
if [ $PHASE != bench ]; then
step tiny
echo "cmd: cd engine/cuda && WHET_CUDA_REQUIRE=1 cuda.test -test.run '$RUN' -test.v" >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 35 $B/cuda.test -test.run "$RUN" -test.v -test.count=1) >$O/tiny.log 2>&1; echo "tiny rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|sample [0-9]: vision|forward loss|loss cpu|loss cuda" $O/tiny.log >>$S
grep -E -- "--- FAIL" -A8 $O/tiny.log | head -40 >>$S
if grep -q -- "--- FAIL" $O/tiny.log; then
  step tiny-sync
  (cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_CUDA_SYNC=1 timeout 25 $B/cuda.test -test.run '^TestMllamaBF16MatchesCPU$' -test.v -test.count=1 -test.failfast) >$O/tiny-sync.log 2>&1; echo "sync rc=$?" >>$S
  grep -E -- "--- FAIL" -A8 $O/tiny-sync.log | head -30 >>$S
  step end; exit 0
fi
grep -q '^ok' $O/tiny.log && touch $O/tiny.ok
fi
[ $PHASE = tests ] && { step end; exit 0; }
if [ ! -f $O/tiny.ok ]; then echo "the tiny tests did not pass in this folder (no tiny.ok): 11B steps not run" >>$S; step end; exit 0; fi
step mllama-11b-qlora-bf16
echo "cmd: cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_MLLAMA_11B_QLORA_BF16=$O/mllama-11b-qlora-bf16.json cuda.test -test.run '^TestMllama11BVisionQLoRABF16Step\$' -test.v" >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_MLLAMA_11B_QLORA_BF16=$O/mllama-11b-qlora-bf16.json timeout 75 $B/cuda.test -test.run '^TestMllama11BVisionQLoRABF16Step$' -test.v -test.count=1) >$O/mllama-11b-qlora-bf16.log 2>&1; echo "11b qlora bf16 rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|mllama11b|    " $O/mllama-11b-qlora-bf16.log | tail -20 >>$S
cat $O/mllama-11b-qlora-bf16.json >>$S 2>/dev/null
step mllama-11b-qlora-bf16-ckpt
(cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_MLLAMA_11B_QLORA_BF16_CKPT=$O/mllama-11b-qlora-bf16-ckpt.json timeout 75 $B/cuda.test -test.run '^TestMllama11BVisionQLoRABF16CkptStep$' -test.v -test.count=1) >$O/mllama-11b-qlora-bf16-ckpt.log 2>&1; echo "11b qlora bf16 ckpt rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|mllama11b|    " $O/mllama-11b-qlora-bf16-ckpt.log | tail -6 >>$S
cat $O/mllama-11b-qlora-bf16-ckpt.json >>$S 2>/dev/null
step end
