#!/usr/bin/env bash
# attention-hopper: the Hopper (sm_90a, wgmma) attention kernels, opt-in with
# WHET_ATTN_HOPPER=1. Runs from the repo root on an H100/H200; writes only
# under $OUT/attention-hopper. Read summary.txt first (see tools/gpu/README.md).
set -u
O=$OUT/attention-hopper; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
cat .dev/gpu/common/COMMIT >>$O/gpu.txt 2>/dev/null
step start; cat $O/gpu.txt >>$S

# 1. NVRTC for sm_90a in the background (CPU only; the tests below compile
#    the file again and say the same if it fails): the whole log (errors,
#    ptxas warnings such as wgmma serialisation) and ptxas -v registers and
#    spills per kernel; the same for the experimental overlapped forward.
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 60 $B/cuda.test -test.run '^TestHopperAttentionCompiles$' -test.v -test.count=1) >$O/compile.log 2>&1 &
CMP=$!
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 60 $B/cuda.test -test.run '^TestHopperAttentionOverlapCompiles$' -test.v -test.count=1) >$O/compile-overlap.log 2>&1 &
OVC=$!

# 2. The wgmma probe (S = Q K^T and O = P V alone, one warpgroup; its
#    errors say where each wrong value belongs), then attention against the
#    CPU (out, lse, dq, dk, dv) and the conformance suite with the Hopper
#    kernels on (each bf16 d64/d128 case fails if they were switched off).
step tests-hopper
echo "cmd: cd engine/cuda && WHET_ATTN_HOPPER=1 cuda.test -test.run 'TestHopperWgmmaProbe|TestAttentionMatchesCPU|TestConformance\$|TestHopperAttentionInstantiated' -test.v" >>$S
(cd engine/cuda && WHET_ATTN_HOPPER=1 WHET_CUDA_REQUIRE=1 timeout 40 $B/cuda.test -test.run 'TestHopperWgmmaProbe|TestAttentionMatchesCPU|TestConformance$|TestHopperAttentionInstantiated' -test.v -test.count=1) >$O/tests-hopper.log 2>&1
echo "tests (hopper) rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|switched off|on the Hopper kernels|worst error|NaN|Q K\^T|P V:" $O/tests-hopper.log | head -100 >>$S
echo "-- failures in full:" >>$S
grep -E -A6 -- "--- FAIL" $O/tests-hopper.log | head -60 >>$S

# 3. The same with WHET_CUDA_SYNC=1 only if the first run failed: names the
#    launch that faults.
if ! grep -q "^ok\|^PASS" $O/tests-hopper.log; then
	step tests-hopper-sync
	(cd engine/cuda && WHET_ATTN_HOPPER=1 WHET_CUDA_SYNC=1 WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run 'TestAttentionMatchesCPU/d128_gqa4x1_long_bf16' -test.v -test.count=1) >$O/tests-hopper-sync.log 2>&1
	echo "sync rerun rc=$?" >>$S; tail -20 $O/tests-hopper-sync.log >>$S
fi

# 4. Kernel benchmarks (the docs/performance.md attention rows: d64 at
#    Llama-3.2-1B's heads, d128 at Llama-3.1-8B's), mma.sync then Hopper.
step bench
echo "cmd: cd engine/cuda && WHET_ATTN_HOPPER=0|1 cuda.test -test.run '^\$' -test.bench 'Attention(Forward|Backward)(D128)?\$' -test.benchtime 20x" >>$S
(cd engine/cuda && WHET_ATTN_HOPPER=0 WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run '^$' -test.bench 'Attention(Forward|Backward)(D128)?$' -test.benchtime 20x -test.count=1) >$O/bench-mmasync.log 2>&1
echo "bench mma.sync rc=$?" >>$S; grep -E "Benchmark|FAIL|ok" $O/bench-mmasync.log >>$S
(cd engine/cuda && WHET_ATTN_HOPPER=1 WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run '^$' -test.bench 'Attention(Forward|Backward)(D128)?$' -test.benchtime 20x -test.count=1 -test.v) >$O/bench-hopper.log 2>&1
echo "bench hopper rc=$?" >>$S; grep -E "^Benchmark.*(ns/op|TFLOP)|FAIL|^ok|switched off|on the Hopper kernels" $O/bench-hopper.log >>$S
step compile-sm90a
wait $CMP; echo "compile rc=$?" >>$S
cat $O/compile.log >>$S

# 5. The experimental overlapped forward: compile log, the d64/d128 bf16
#    attention cases, forward benchmarks.
step overlap
wait $OVC; echo "compile overlap rc=$?" >>$S; grep -E "^(--- |ok|FAIL)|error|spill|registers|serializ" $O/compile-overlap.log | head -30 >>$S
if grep -q "^ok\|^PASS" $O/compile-overlap.log; then
	(cd engine/cuda && WHET_ATTN_HOPPER=1 WHET_NVRTC_DEFINES=HOP_FWD_OVERLAP=1 WHET_CUDA_REQUIRE=1 timeout 15 $B/cuda.test -test.run 'TestAttentionMatchesCPU/^d(64|128)_.*_bf16$' -test.v -test.count=1) >$O/tests-overlap.log 2>&1
	echo "tests (overlap) rc=$?" >>$S; grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- |worst error|NaN" $O/tests-overlap.log | head -30 >>$S
	(cd engine/cuda && WHET_ATTN_HOPPER=1 WHET_NVRTC_DEFINES=HOP_FWD_OVERLAP=1 WHET_CUDA_REQUIRE=1 timeout 15 $B/cuda.test -test.run '^$' -test.bench 'AttentionForward(D128)?$' -test.benchtime 20x -test.count=1) >$O/bench-overlap.log 2>&1
	echo "bench overlap rc=$?" >>$S; grep -E "Benchmark|FAIL|ok" $O/bench-overlap.log >>$S
fi
step end
