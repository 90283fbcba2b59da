#!/usr/bin/env bash
# attention-bwd: the fused Hopper attention backward (FlashAttention 3's:
# one kernel per 128-key block, dK/dV in registers, dq through fp32
# reductions; kernels/attention_hopper.cu attn_bwd_fused_hopper) and its
# variants, and the switch that would make it the default
# (WHET_ATTN_BWD_FUSED=1: HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_RED_V2=1,
# engine/cuda attnBwdFusedDefines). Runs from the repo root on an
# H100/H200; writes only under $OUT/attention-bwd. Read summary.txt first
# (tools/gpu/README.md). Order: compile (ptxas serialisation per kernel and
# variant), correctness per variant, benchmarks; the 1B LoRA step with
# the fastest variant is the next batch, attention-bwd-e2e (best.env).
set -u
O=$OUT/attention-bwd; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
F=HOP_BWD_FUSED=1
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
cat .dev/gpu/common/COMMIT >>$O/gpu.txt 2>/dev/null
step start; cat $O/gpu.txt >>$S

# 1. NVRTC for sm_90a, every define set of fusedCompileVariants, in 8
#    processes side by side (CPU only, background): ptxas -v and a
#    'fused-summary' line per fused kernel (registers, spill bytes,
#    serialisation notes C75xx); the HOP_BWD_ZINIT sets FAIL on any
#    "wgmma ... serialized" note.
CMP=""
for i in 0 1 2 3 4 5 6 7; do
	(cd engine/cuda && WHET_FUSED_COMPILE_SHARD=$i/8 WHET_CUDA_REQUIRE=1 timeout 100 $B/cuda.test -test.run '^TestHopperAttentionFusedCompiles$' -test.v -test.count=1) >$O/compile-$i.log 2>&1 &
	CMP="$CMP $!"
done

# 2. The would-be default (WHET_ATTN_BWD_FUSED=1): attention against the
#    CPU, the conformance suite and the determinism test (fused dq/dk/dv
#    against the split kernels, which Deterministic keeps, bit-equal reruns
#    there); a bf16 d64/d128 backward fails if it did not take the fused kernel.
step tests-auto
echo "cmd: cd engine/cuda && WHET_ATTN_BWD_FUSED=1 cuda.test -test.run 'TestAttentionMatchesCPU|TestConformance\$|TestAttentionBackwardDeterministic' -test.v" >>$S
(cd engine/cuda && WHET_ATTN_BWD_FUSED=1 WHET_CUDA_REQUIRE=1 timeout 50 $B/cuda.test -test.run 'TestAttentionMatchesCPU|TestConformance$|TestAttentionBackwardDeterministic' -test.v -test.count=1) >$O/tests-auto.log 2>&1
echo "tests (auto) rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|switched off|worst error|NaN|bit-equal|fused backward:|suite ran" $O/tests-auto.log | head -40 >>$S
grep -E -A6 -- "--- FAIL" $O/tests-auto.log | head -40 >>$S

step compile
for p in $CMP; do wait $p; echo "compile rc=$?" >>$S; done
cat $O/compile-[0-7].log >$O/compile.log
grep -E "^    --- |fused-summary|serialises|error" $O/compile.log | head -70 >>$S

# 3. Each variant (auto = FUSED,ZINIT,RED_V2 ran in step 2; v2, the old
#    best, passed on 2026-12-07) on the d64/d128 bf16 cases and the determinism test
#    (name:defines, WHET_ATTN_BWD_FUSED=0 so that only these apply).
VARS="v2:$F,HOP_BWD_RED_V2=1
zv4:$F,HOP_BWD_ZINIT=1,HOP_BWD_RED_V4=1
z-xchg-v4:$F,HOP_BWD_ZINIT=1,HOP_BWD_DQ_XCHG=1,HOP_BWD_RED_V4=1
z-xchg-bulk:$F,HOP_BWD_ZINIT=1,HOP_BWD_DQ_XCHG=1,HOP_BWD_DQ_BULK=1
zv2-wait:$F,HOP_BWD_ZINIT=1,HOP_BWD_RED_V2=1,HOP_BWD_DKV_WAIT=1
zv2-dkss:$F,HOP_BWD_ZINIT=1,HOP_BWD_RED_V2=1,HOP_BWD_DK_SS=1
zq128-v4:$F,HOP_BWD_ZINIT=1,HOP_BWD_Q128=1,HOP_BWD_RED_V4=1"
PASSED="auto"
grep -q "^ok\|^PASS" $O/tests-auto.log || PASSED=""
for v in $VARS; do
	name=${v%%:*} def=${v#*:}
	[ "$name" = v2 ] && { PASSED="$PASSED v2"; continue; } # passed on 2026-12-07 (H100)
	step tests-$name
	(cd engine/cuda && WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$def WHET_CUDA_REQUIRE=1 timeout 20 $B/cuda.test -test.run 'TestAttention(MatchesCPU|BackwardDeterministic)/^d(64|128)(_.*_bf16)?$' -test.v -test.count=1) >$O/tests-$name.log 2>&1
	rc=$?; echo "tests ($name: $def) rc=$rc" >>$S
	grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|worst error|NaN|fused backward:" $O/tests-$name.log | head -12 >>$S
	[ $rc = 0 ] && PASSED="$PASSED $name"
done
echo "variants that passed: $PASSED" >>$S

# 4. BenchmarkAttentionBackward (d64 at Llama-3.2-1B's 4x2048, 32/8 heads)
#    and ...D128 (8B's 2x2048): the default split kernels, then the
#    would-be default (auto), then each variant that passed, same card.
step bench
echo "cmd: cd engine/cuda && [env] cuda.test -test.run '^\$' -test.bench 'AttentionBackward(D128)?\$' -test.benchtime 20x" >>$S
bench() { # name, env...
	local name=$1; shift
	(cd engine/cuda && env "$@" WHET_CUDA_REQUIRE=1 timeout 20 $B/cuda.test -test.run '^$' -test.bench 'AttentionBackward(D128)?$' -test.benchtime 20x -test.count=1 -test.v) >$O/bench-$name.log 2>&1
	echo "bench $name [$*] rc=$?" >>$S; grep -E "^Benchmark.*(ns/op|TFLOP)|FAIL|switched off" $O/bench-$name.log >>$S
}
bench default WHET_ATTN_BWD_FUSED=0
for name in $PASSED; do
	if [ $name = auto ]; then bench auto WHET_ATTN_BWD_FUSED=1; continue; fi
	def=$(printf '%s\n' "$VARS" | sed -n "s/^$name://p")
	bench $name WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$def
done
# the fastest passing variant at d64 (the 1B step's attention)
best=$(for name in $PASSED; do awk -v n=$name '/^BenchmarkAttentionBackward-/{print $(NF-1), n}' $O/bench-$name.log; done | sort -g | tail -1 | cut -d' ' -f2)
echo "fastest at d64: ${best:-none}" >>$S

# 5. For tools/gpu/attention-bwd-e2e (next in the same call): the env of
#    the fastest passing variant.
if [ -n "$best" ]; then
	if [ $best = auto ]; then echo "WHET_ATTN_BWD_FUSED=1" >$O/best.env
	else echo "WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$(printf '%s\n' "$VARS" | sed -n "s/^$best://p")" >$O/best.env; fi
	echo "best.env: $(cat $O/best.env)" >>$S
fi
step end
