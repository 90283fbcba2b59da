#!/usr/bin/env bash
# attn-bwd2: the reordered fused Hopper attention backward
# (kernels/attention_hopper.cu attn_bwd_fused_ovl, HOP_BWD_OVL=1|2, never
# run on a GPU before this batch) and its FlashAttention-3-style dq
# reductions (HOP_BWD_DQT=1: tiled fp32 accumulator, each warp's 4 KB of dQ
# staged in shared memory and added by one bulk reduction), against the
# default fused backward (WHET_ATTN_BWD_FUSED=1 = HOP_BWD_FUSED=1,
# HOP_BWD_ZINIT=1,HOP_BWD_RED_V2=1) and the split kernels; HOP_BWD_DESC=1
# builds each wgmma descriptor as a base descriptor plus an offset;
# HOP_BWD_WG1=1 makes blocks of one warpgroup (64 keys, 128 threads) so
# that two share an SM (d128 then adds dq by red.global); HOP_BWD_LATEDV=1
# computes dS before issuing dV (FlashAttention 3's order, fewer live
# registers); zt is the default kernel with only the bulk dq reductions;
# w3 asks ptxas for three d64 blocks an SM (HOP_BWD_MINB64=3, <= 168 registers). Runs from the
# repo root on an H100/H200; writes only under $OUT/attn-bwd2. Read
# summary.txt first (tools/gpu/README.md). Order: compile (ptxas -v per
# variant in the background), correctness per variant, benchmarks.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1
batch_start attn-bwd2
F=HOP_BWD_FUSED=1
# name:defines (WHET_ATTN_BWD_FUSED=0, so that only these apply)
VARS="o1:$F,HOP_BWD_OVL=1,HOP_BWD_RED_V2=1
o2:$F,HOP_BWD_OVL=2,HOP_BWD_RED_V2=1
o2t:$F,HOP_BWD_OVL=2,HOP_BWD_DQT=1
o2td:$F,HOP_BWD_OVL=2,HOP_BWD_DQT=1,HOP_BWD_DESC=1
w2:$F,HOP_BWD_OVL=2,HOP_BWD_WG1=1,HOP_BWD_RED_V2=1
w2td:$F,HOP_BWD_OVL=2,HOP_BWD_WG1=1,HOP_BWD_DQT=1,HOP_BWD_DESC=1
o2lt:$F,HOP_BWD_OVL=2,HOP_BWD_LATEDV=1,HOP_BWD_DQT=1
w2ltd:$F,HOP_BWD_OVL=2,HOP_BWD_WG1=1,HOP_BWD_LATEDV=1,HOP_BWD_DQT=1,HOP_BWD_DESC=1
zt:$F,HOP_BWD_ZINIT=1,HOP_BWD_DQT=1
w3:$F,HOP_BWD_OVL=2,HOP_BWD_WG1=1,HOP_BWD_RED_V2=1,HOP_BWD_MINB64=3"
NV=$(printf '%s\n' "$VARS" | wc -l)

# 1. NVRTC for sm_90a of each variant's define set, one process each, in
#    the background (CPU only): ptxas -v and a 'fused-summary' line per
#    fused kernel (registers, spill bytes, C75xx notes: "serialized" ones
#    mean the wgmma wait for each other).
SETS=$(printf '%s\n' "$VARS" | cut -d: -f2 | paste -sd';')
CMP=""
for i in $(seq 0 $((NV - 1))); do
	(cd engine/cuda && WHET_FUSED_COMPILE_DEFINES="$SETS" WHET_FUSED_COMPILE_SHARD=$i/$NV WHET_CUDA_REQUIRE=1 timeout 120 $B/cuda.test -test.run '^TestHopperAttentionFusedCompiles$' -test.v -test.count=1) >$O/compile-$i.log 2>&1 &
	CMP="$CMP $!"
done

# 2. Correctness of each variant: attention against the CPU (every case;
#    the bf16 d64/d128 ones take the fused kernel, d128_window70_softcap its
#    soft-cap instance, T = 250 and 700 the tile padding), the conformance
#    suite (its bf16 backwards must take the fused kernel) and the
#    determinism test (fused dq/dk/dv against the split kernels). The
#    variants' processes run side by side (small cases; timings come later).
step tests
TST=""
for v in $VARS; do
	name=${v%%:*} def=${v#*:}
	(cd engine/cuda && WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$def WHET_CUDA_REQUIRE=1 timeout 110 $B/cuda.test -test.run 'TestAttentionMatchesCPU|TestConformance$|TestAttentionBackwardDeterministic' -test.v -test.count=1 >$O/tests-$name.log 2>&1; echo $? >$O/tests-$name.rc) &
	TST="$TST $!"
done
# The default and split kernels' compiles for the benches, into the kernel
# cache meanwhile (one small case each).
for w in "default WHET_ATTN_BWD_FUSED=1" "split WHET_ATTN_BWD_FUSED=0"; do
	(cd engine/cuda && env ${w#* } WHET_CUDA_REQUIRE=1 timeout 110 $B/cuda.test -test.run 'TestAttentionMatchesCPU/^d64_gqa8x2_packed_bf16$' -test.count=1 >$O/warm-${w%% *}.log 2>&1) &
	TST="$TST $!"
done
for p in $TST; do wait $p; done
PASSED=""
for v in $VARS; do
	name=${v%%:*} def=${v#*:}
	rc=$(cat $O/tests-$name.rc 2>/dev/null || echo none); echo "tests ($name: $def) rc=$rc" >>$S
	grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|worst error|NaN|fused backward:|suite ran|illegal|CUDA_ERROR" $O/tests-$name.log | head -16 >>$S
	[ "$rc" = 0 ] && PASSED="$PASSED $name"
done
echo "variants that passed:${PASSED:- none}" >>$S

step compile
for p in $CMP; do wait $p; echo "compile rc=$?" >>$S; done
cat $O/compile-*.log >$O/compile.log
grep -E "fused-summary|serialises|error|FAIL" $O/compile.log | head -30 >>$S

# 3. BenchmarkAttentionBackward (d64: Llama-3.2-1B's 4x2048, 32/8 heads)
#    and ...D128 (8B's 2x2048): the default fused backward, each variant
#    that passed, then the split kernels, same card, 20 runs each.
step bench
echo "cmd: cd engine/cuda && [env] cuda.test -test.run '^\$' -test.bench 'AttentionBackward(D128)?\$' -test.benchtime 20x" >>$S
bench() { # name, env... (skipped within 35 s of the limit go.sh gives, LIMIT, so that the summary ends)
	local name=$1; shift
	if [ $SECONDS -gt $((${LIMIT:-200} - 35)) ]; then echo "bench $name skipped: ${SECONDS}s into the batch (limit ${LIMIT:-200})" >>$S; return; fi
	(cd engine/cuda && env "$@" WHET_CUDA_REQUIRE=1 timeout 30 $B/cuda.test -test.run '^$' -test.bench 'AttentionBackward(D128)?$' -test.benchtime 20x -test.count=1) >$O/bench-$name.log 2>&1
	echo "bench $name [$*] rc=$?" >>$S; grep -E "^Benchmark.*(ns/op|TFLOP)|FAIL|panic" $O/bench-$name.log >>$S
}
bench default WHET_ATTN_BWD_FUSED=1
for name in $PASSED; do
	bench $name WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$(printf '%s\n' "$VARS" | sed -n "s/^$name://p")
done
bench split WHET_ATTN_BWD_FUSED=0
# The fastest at each head dim among default and the passing variants.
for b in "AttentionBackward-:d64" "AttentionBackwardD128-:d128"; do
	pat=${b%%:*} d=${b#*:}
	best=$(for name in default $PASSED; do [ -f $O/bench-$name.log ] && awk -v n=$name -v p="^Benchmark$pat" '$0 ~ p {print $(NF-1), n}' $O/bench-$name.log; done | sort -g | tail -1)
	echo "fastest at $d: ${best:-none} (TFLOP/s, variant)" >>$S
	# For attn-bwd2-e2e (the 1B LoRA step, head dim 64): the fastest at d64
	# when it is a variant, not the default.
	name=${best#* }
	if [ $d = d64 ] && [ -n "$best" ] && [ "$name" != default ]; then
		echo "WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$(printf '%s\n' "$VARS" | sed -n "s/^$name://p")" >$O/best.env
		echo "best.env: $(cat $O/best.env)" >>$S
	fi
done
step end
