#!/usr/bin/env bash
# attention-d256: head-dim-256 tensor-core attention (Gemma 2/3). Runs from the repo root.
set -u
# The head-dim-256 tensor-core kernels are opt-in until this run passes with them.
export WHET_ATTN_TC256=1
O=$OUT/attention-d256; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
python3 -c "import torch,transformers;print('torch',torch.__version__,'transformers',transformers.__version__)" >>$O/gpu.txt 2>&1
cat .dev/gpu/common/COMMIT >>$O/gpu.txt 2>/dev/null
step start; cat $O/gpu.txt >>$S; echo "WHET_ATTN_TC256=$WHET_ATTN_TC256" >>$S
# NVRTC compile for every arch (CPU only) in the background.
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 180 $B/cuda.test -test.run 'TestKernelsCompileForEveryArch' -test.v -test.count=1) >$O/cuda-arch.log 2>&1 &
ARCH=$!
step cuda.test
echo "cmd: cd engine/cuda && cuda.test -test.run 'TestConformance|TestAttentionMatchesCPU|TestFamilyTrainingMatchesCPU|TestReferenceOnGPU|TestTensorCoreAttentionInstantiated' -test.v" >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 70 $B/cuda.test -test.run 'TestConformance|TestAttentionMatchesCPU|TestFamilyTrainingMatchesCPU|TestReferenceOnGPU|TestTensorCoreAttentionInstantiated' -test.v -test.count=1) >$O/cuda-tests.log 2>&1; echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS)|^    --- FAIL" $O/cuda-tests.log >>$S
grep -E -- "--- FAIL" -A4 $O/cuda-tests.log | head -60 >>$S
step whet-bench
echo "cmd: whet bench --backend cuda --json --model gemma-3-1b,gemma-2-2b --method lora --batch 4 --seq 2048 --steps 5" >>$S
timeout 55 $B/whet bench --backend cuda --json --model gemma-3-1b,gemma-2-2b --method lora --batch 4 --seq 2048 --steps 5 >$O/whet-bench.jsonl 2>$O/whet-bench.err; echo "whet bench rc=$?" >>$S
cat $O/whet-bench.jsonl >>$S; tail -5 $O/whet-bench.err >>$S
step reference
echo "cmd: python3 tools/bench/reference.py --model gemma-3-1b --method lora --batch 4 --seq 2048 --steps 5" >>$S
timeout 40 python3 tools/bench/reference.py --model gemma-3-1b --method lora --batch 4 --seq 2048 --steps 5 >$O/reference.jsonl 2>$O/reference.err; echo "reference rc=$?" >>$S
tail -1 $O/reference.jsonl >>$S; tail -3 $O/reference.err >>$S
step attn-bench
echo "cmd: cd engine/cuda && cuda.test -test.run '^\$' -test.bench 'Attention(Forward|Backward)(D128|D256|Gemma3)\$' -test.benchtime 10x" >>$S
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 28 $B/cuda.test -test.run '^$' -test.bench 'Attention(Forward|Backward)(D128|D256|Gemma3)$' -test.benchtime 10x -test.count=1) >$O/attn-bench.log 2>&1; echo "attn bench rc=$?" >>$S
grep -E "Benchmark|FAIL|ok" $O/attn-bench.log >>$S
step wait-arch
wait $ARCH; echo "arch rc=$?" >>$S; grep -E "^(--- |ok|FAIL|PASS)|NVRTC|spill|register" $O/cuda-arch.log | head -40 >>$S
step end
