#!/usr/bin/env bash
# defaults: the engine/cuda tests of the decoding path that became the default on
# 2026-12-07 (WHET_DECODE=graph, GEMV kernels on), run without any WHET_* switch, and the
# test that checks every launched kernel exists in the binary's sources.
set -u
O=$OUT/defaults; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>$S 2>&1
cat $B/COMMIT >>$S 2>/dev/null
echo "cmd: cd engine/cuda && cuda.test -test.run 'TestGenerateMatchesCPU|TestFamilyGenerateMatchesCPU|TestRecordRefusesHostWork|TestGenerateGraphEqualsPlain|TestLaunchedKernelsExist|TestAttentionDecodeMatchesCPU|TestMatVec' -test.v" >>$S
(cd engine/cuda && env -u WHET_DECODE -u WHET_CUDA_GEMV WHET_CUDA_REQUIRE=1 timeout 50 $B/cuda.test -test.run 'TestGenerateMatchesCPU|TestFamilyGenerateMatchesCPU|TestRecordRefusesHostWork|TestGenerateGraphEqualsPlain|TestLaunchedKernelsExist|TestAttentionDecodeMatchesCPU|TestMatVec' -test.v -test.count=1) >$O/cuda-tests.log 2>&1
echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|tokens equal" $O/cuda-tests.log >>$S
grep -E -A6 -- "--- FAIL" $O/cuda-tests.log | head -40 >>$S
