#!/usr/bin/env bash
# mllama-qlora: Llama-3.2-11B-Vision QLoRA (issue 24) on the CUDA backend. Runs from the repo root.
# TestMllama11BVisionQLoRAStep (engine/cuda/mllama_bench_test.go): the released shape with random
# weights, the language model's linears in NF4 (engine.MllamaOptions.NF4Linears; tower, projector,
# embeddings, head float32), LoRA r16 on every language-model linear, batch 1, one 560x560 image
# (4 tiles) and 1024 tokens: a warm-up step, a forward, one timed step; peak memory against
# memplan.PlanMllama's qlora plan with f32 weights and no checkpointing, and tok/s, into
# mllama-11b-qlora.json. Then the tiny Mllama's CPU-vs-CUDA check (TestMllamaMatchesCPU) as a
# sanity check of the ops it uses.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
batch_start mllama-qlora
if ! (cd engine/cuda && $B/cuda.test -test.list 'TestMllama11BVisionQLoRAStep' 2>/dev/null | grep -q TestMllama11BVisionQLoRAStep); then
  echo "cuda.test lacks TestMllama11BVisionQLoRAStep: rebuild it from a main that has commit 'mllama: QLoRA ...'" >>$S
  step end; exit 0
fi
step mllama-11b-qlora
echo "cmd: cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_MLLAMA_11B_QLORA=$O/mllama-11b-qlora.json cuda.test -test.run '^TestMllama11BVisionQLoRAStep\$' -test.v" >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_MLLAMA_11B_QLORA=$O/mllama-11b-qlora.json timeout 110 $B/cuda.test -test.run '^TestMllama11BVisionQLoRAStep$' -test.v -test.count=1) >$O/mllama-11b-qlora.log 2>&1; echo "11b qlora rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|mllama11b|    " $O/mllama-11b-qlora.log | tail -20 >>$S
cat $O/mllama-11b-qlora.json >>$S 2>/dev/null
step tiny
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run '^TestMllamaMatchesCPU$' -test.v -test.count=1) >$O/tiny.log 2>&1; echo "tiny rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)" $O/tiny.log >>$S
step end
