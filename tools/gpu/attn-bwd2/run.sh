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
# PHASE (go.sh sets it; unset: both in turn): tests = the compiles and the
# tests (nothing timed: they may share the machine with other batches'
# tests), bench = the benchmarks, alone, for the variants whose tests passed
# in this folder. Each cuda.test process compiles into a kernel cache of its
# own (TestMain), so a bench process compiles what it runs (outside the
# timed loop) whatever ran before it.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1
PHASE=${PHASE:-all}
batch_start attn-bwd2
echo "PHASE=$PHASE" >>$S
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
#    Niced, in COMPILE_LANES processes at a time (all at once alone; 4 in a
#    go.sh group, where other batches' tests share the CPUs and memory): the
#    tests below come first.
if [ $PHASE != bench ]; then
SETS=$(printf '%s\n' "$VARS" | cut -d: -f2 | paste -sd';')
LANES=${COMPILE_LANES:-$([ $PHASE = tests ] && echo 4 || echo $NV)}
CMP=""
for l in $(seq 0 $((LANES - 1))); do
	for i in $(seq $l $LANES $((NV - 1))); do
		# each within what is left of LIMIT (less 20 s), so that the summary is written
		ct=$(( ${LIMIT:-200} - SECONDS - 20 )); [ $ct -gt ${COMPILE_T:-200} ] && ct=${COMPILE_T:-200}
		[ $ct -lt 15 ] && { echo "not compiled: ${SECONDS}s into the batch" >$O/compile-$i.log; echo none >$O/compile-$i.rc; continue; }
		(cd engine/cuda && WHET_FUSED_COMPILE_DEFINES="$SETS" WHET_FUSED_COMPILE_SHARD=$i/$NV WHET_CUDA_REQUIRE=1 nice -n 10 timeout $ct $B/cuda.test -test.run '^TestHopperAttentionFusedCompiles$' -test.v -test.count=1) >$O/compile-$i.log 2>&1
		echo $? >$O/compile-$i.rc
	done &
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
TT=${TESTS_T:-$([ $PHASE = tests ] && echo $(( ${LIMIT:-200} - 30 )) || echo 110)}
[ $TT -lt 20 ] && TT=20
for v in $VARS; do
	name=${v%%:*} def=${v#*:}
	# TESTS_T: 110 s alone; more where a go.sh group shares the CPUs (a slow test is not a hang).
	(cd engine/cuda && WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$def WHET_CUDA_REQUIRE=1 timeout $TT $B/cuda.test -test.run 'TestAttentionMatchesCPU|TestConformance$|TestAttentionBackwardDeterministic' -test.v -test.count=1 >$O/tests-$name.log 2>&1; echo $? >$O/tests-$name.rc) &
	TST="$TST $!"
done
for p in $TST; do wait $p; done
for v in $VARS; do
	name=${v%%:*} def=${v#*:}
	rc=$(cat $O/tests-$name.rc 2>/dev/null || echo none); echo "tests ($name: $def) rc=$rc" >>$S
	grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|worst error|NaN|fused backward:|suite ran|illegal|CUDA_ERROR" $O/tests-$name.log | head -16 >>$S
done

step compile
for p in $CMP; do wait $p; done
for i in $(seq 0 $((NV - 1))); do echo "compile $i rc=$(cat $O/compile-$i.rc 2>/dev/null || echo none)" >>$S; done
cat $O/compile-*.log >$O/compile.log
grep -E "fused-summary|serialises|error|FAIL" $O/compile.log | head -30 >>$S
touch $O/tests.done
fi
[ $PHASE = tests ] && { step end; exit 0; }
# The variants whose tests passed (in this phase or in this folder's tests phase).
PASSED=""
for v in $VARS; do
	name=${v%%:*}
	[ "$(cat $O/tests-$name.rc 2>/dev/null)" = 0 ] && PASSED="$PASSED $name"
done
echo "variants that passed:${PASSED:- none}" >>$S

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
