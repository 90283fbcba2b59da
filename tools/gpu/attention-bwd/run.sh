#!/usr/bin/env bash
# attention-bwd: the fused Hopper attention backward (FlashAttention 3's:
# one kernel per 128-key block, dK/dV in registers, dq through fp32
# atomics; WHET_NVRTC_DEFINES=HOP_BWD_FUSED=1, kernels/attention_hopper.cu
# attn_bwd_fused_hopper) and the deterministic switch (Options.Deterministic,
# WHET_DETERMINISTIC=1). Runs from the repo root on an H100/H200; writes
# only under $OUT/attention-bwd. Read summary.txt first (tools/gpu/README.md).
set -u
O=$OUT/attention-bwd; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
F=HOP_BWD_FUSED=1
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
cat .dev/gpu/common/COMMIT >>$O/gpu.txt 2>/dev/null
step start; cat $O/gpu.txt >>$S

# 1. NVRTC for sm_90a with the fused backward, in the background (CPU only):
#    the whole log and ptxas -v (registers, spills) for -DHOP_BWD_FUSED=1
#    alone, with HOP_BWD_STS=1 (16-bit stores of dS instead of
#    stmatrix.trans), HOP_BWD_RED_V2=1 (red.global.add.v2.f32),
#    HOP_BWD_DQ_BULK=1 (dQ staged in shared memory, bulk reductions),
#    HOP_BWD_DQ_XCHG=1 (d64: swapped dQ halves) and the last two together.
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 90 $B/cuda.test -test.run '^TestHopperAttentionFusedCompiles$' -test.v -test.count=1) >$O/compile.log 2>&1 &
CMP=$!

# 2. Attention against the CPU (out, lse, dq, dk, dv), the conformance suite
#    and the determinism test with the fused backward on: each bf16 d64/d128
#    backward fails if it did not take the fused kernel (attnBwdFusedRuns),
#    TestAttentionBackwardDeterministic checks bit-equal reruns with
#    Deterministic on (the split kernels, even with the define) and the
#    fused dq/dk/dv against them, and logs the fused reruns' spread.
step tests-fused
echo "cmd: cd engine/cuda && WHET_NVRTC_DEFINES=$F cuda.test -test.run 'TestAttentionMatchesCPU|TestConformance\$|TestAttentionBackwardDeterministic' -test.v" >>$S
(cd engine/cuda && WHET_NVRTC_DEFINES=$F WHET_CUDA_REQUIRE=1 timeout 50 $B/cuda.test -test.run 'TestAttentionMatchesCPU|TestConformance$|TestAttentionBackwardDeterministic' -test.v -test.count=1) >$O/tests-fused.log 2>&1
echo "tests (fused) rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|fused|switched off|worst error|NaN|bit-equal|rerun" $O/tests-fused.log | head -80 >>$S
echo "-- failures in full:" >>$S
grep -E -A6 -- "--- FAIL" $O/tests-fused.log | head -60 >>$S

# 3. Only if that failed: a WHET_CUDA_SYNC=1 rerun of one d64 and one d128
#    case (names a faulting launch), and the same cases with HOP_BWD_STS=1:
#    if those pass, the stmatrix.trans store of dS is the bug.
if ! grep -q "^ok\|^PASS" $O/tests-fused.log; then
	step tests-fused-sync
	(cd engine/cuda && WHET_NVRTC_DEFINES=$F WHET_CUDA_SYNC=1 WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run 'TestAttentionMatchesCPU/^d(64_gqa8x2_packed|128_gqa4x1_long)_bf16$' -test.v -test.count=1) >$O/tests-fused-sync.log 2>&1
	echo "sync rerun rc=$?" >>$S; tail -25 $O/tests-fused-sync.log >>$S
	step tests-fused-sts
	(cd engine/cuda && WHET_NVRTC_DEFINES=$F,HOP_BWD_STS=1 WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run 'TestAttentionMatchesCPU/^d(64|128)_.*_bf16$' -test.v -test.count=1) >$O/tests-fused-sts.log 2>&1
	echo "tests (fused, HOP_BWD_STS=1) rc=$?" >>$S; grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- |worst error|NaN" $O/tests-fused-sts.log | head -30 >>$S
fi

# 3b. The fused kernel's alternatives on the d64/d128 bf16 cases:
#     paired reductions (HOP_BWD_RED_V2=1), bulk dq reductions from
#     shared memory (HOP_BWD_DQ_BULK=1), swapped dQ halves at d64
#     (HOP_BWD_DQ_XCHG=1), and the last two together.
for v in v2:HOP_BWD_RED_V2=1 bulk:HOP_BWD_DQ_BULK=1 xchg:HOP_BWD_DQ_XCHG=1 xchg-bulk:HOP_BWD_DQ_XCHG=1,HOP_BWD_DQ_BULK=1; do
	name=${v%%:*} def=${v#*:}
	step tests-fused-$name
	(cd engine/cuda && WHET_NVRTC_DEFINES=$F,$def WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run 'TestAttention(MatchesCPU|BackwardDeterministic)/^d(64|128)(_.*_bf16)?$' -test.v -test.count=1) >$O/tests-fused-$name.log 2>&1
	echo "tests (fused, $def) rc=$?" >>$S; grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|worst error|NaN|fused backward:" $O/tests-fused-$name.log | head -20 >>$S
done

# 4. The deterministic path without the define (today's default kernels):
#    two backwards bit-equal at d64 and d128.
step determinism-default
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 20 $B/cuda.test -test.run '^TestAttentionBackwardDeterministic$' -test.v -test.count=1) >$O/determinism-default.log 2>&1
echo "determinism (default kernels) rc=$?" >>$S; grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- |bit-equal|rerun" $O/determinism-default.log | head -12 >>$S

# 5. Backward benchmarks (d64 at Llama-3.2-1B's 4x2048, 32/8 heads; d128 at
#    8B's 2x2048): the default split Hopper kernels, then the fused one,
#    then each alternative of the fused one (step 3b), on the same card.
step bench
echo "cmd: cd engine/cuda && [WHET_NVRTC_DEFINES=...] cuda.test -test.run '^\$' -test.bench 'AttentionBackward(D128)?\$' -test.benchtime 20x" >>$S
for v in default:"" fused:"$F" fused-v2:"$F,HOP_BWD_RED_V2=1" fused-bulk:"$F,HOP_BWD_DQ_BULK=1" \
	fused-xchg:"$F,HOP_BWD_DQ_XCHG=1" fused-xchg-bulk:"$F,HOP_BWD_DQ_XCHG=1,HOP_BWD_DQ_BULK=1"; do
	name=${v%%:*} defs=${v#*:}
	(cd engine/cuda && WHET_NVRTC_DEFINES=$defs WHET_CUDA_REQUIRE=1 timeout 25 $B/cuda.test -test.run '^$' -test.bench 'AttentionBackward(D128)?$' -test.benchtime 20x -test.count=1 -test.v) >$O/bench-$name.log 2>&1
	echo "bench $name [WHET_NVRTC_DEFINES=$defs] rc=$?" >>$S; grep -E "^Benchmark.*(ns/op|TFLOP)|FAIL|^ok|fused|switched off" $O/bench-$name.log >>$S
done

step compile-fused
wait $CMP; echo "compile rc=$?" >>$S
grep -E "^(=== RUN|--- |ok|FAIL)|error|serializ" $O/compile.log | head -40 >>$S
# registers and spills of the fused kernels only, per define set (=== RUN names it)
awk '/^=== RUN/{print} /Compiling entry function/{f=/fused/} f && /Compiling entry|Used|spill/' $O/compile.log | head -80 >>$S

# 6. Only if the fused tests passed: the Llama-3.2-1B LoRA 4x2048 step
#    (random weights) with the default kernels, then with the fused
#    backward, tok/s side by side (last: the batch may run out of time here).
if grep -q "^ok\|^PASS" $O/tests-fused.log; then
	for v in default:"" fused:"$F"; do
		name=${v%%:*} defs=${v#*:}
		step "1b-lora $name"
		WHET_NVRTC_DEFINES=$defs timeout 45 $B/whet bench --backend cuda --json --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --warmup 2 >$O/1b-lora-$name.json 2>$O/1b-lora-$name.err
		echo "1b-lora $name [WHET_NVRTC_DEFINES=$defs] rc=$?" >>$S; tail -1 $O/1b-lora-$name.json >>$S; tail -3 $O/1b-lora-$name.err >>$S
	done
fi

step end
