#!/usr/bin/env bash
# attention-fwd: the warp-specialised Hopper attention forward (kernels/attention_hopper.cu,
# attn_fwd_hopper_ws; WHET_NVRTC_DEFINES=HOP_FWD_WS=1|2; HOP_FWD_WS=1,HOP_WS_NOSER=1 is the
# default since the run of 2026-12-07 14:42 UTC, WHET_ATTN_FWD_WS=0 turns it off) with the straight-line
# consumer loop HOP_WS_NOSER=1 (never run on a GPU before this batch), which ptxas should compile
# without serialising the wgmma (the first loop got C7520/C7518 on the H100 run). Runs from the
# repo root on an H100/H200; writes only under $OUT/attention-fwd. Read summary.txt first (see
# tools/gpu/README.md): its first section is the compile (serialised wgmma per kernel and
# variant), then correctness, then the benchmarks.
set -u
O=$OUT/attention-fwd; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/progress.txt # the steps as they run; summary.txt = the compile section, then this
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
cat $B/COMMIT >>$O/gpu.txt 2>/dev/null
step start; cat $O/gpu.txt >>$S
T() { (cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout "$@"); }
T0=$(date +%s)
left() { echo $((190 - ($(date +%s) - T0))); } # seconds left of LIM (200), with a margin

# 1. NVRTC for sm_90a, in the background (CPU only): TestHopperAttentionCompiles (default defines)
#    and TestHopperAttentionWSCompiles (each HOP_WS_NOSER=1 variant; the first loop's
#    HOP_FWD_WS=2 and =2,HOP_WS_INTRA=0 for comparison, logged only). Both fail when ptxas says
#    "wgmma.mma_async instructions are serialized" for any kernel (the checked ones); each logs
#    "serialised wgmma: <kernel> <code> x<count>, ..." or "none" per variant. With setmaxnreg
#    (HOP_FWD_WS=2) a forward kernel must also have exactly 168 (384 threads) or 128 (512) registers.
T 150 $B/cuda.test -test.run '^(TestHopperAttentionCompiles|TestHopperAttentionWSCompiles)$' -test.v -test.count=1 >$O/compile.log 2>&1 &
CMP=$!

# 2. Correctness per variant, each cheapest test first: the long forward against the mma.sync one
#    (up to 1,600 tokens, packed, windowed: warpgroups that skip tiles before and after their run),
#    then TestAttentionMatchesCPU (out, lse and the backward after it; every bf16 d64/d128 case
#    fails if the Hopper kernels were switched off, and logs "forward on the warp-specialised
#    Hopper kernel" when this forward ran), then TestConformance. HOP_WS_NOSER=1 does the same
#    arithmetic in the same order as the first loop (HOP_FWD_WS=2, run first for that): the
#    "worst difference" lines of HOP_FWD_WS=2 and HOP_FWD_WS=2,HOP_WS_NOSER=1 should be equal.
#    A barrier that never completes traps after ~2^22 polls (HOP_WS_WATCHDOG:
#    CUDA_ERROR_ILLEGAL_INSTRUCTION in the log); a hang past that shows as rc=124. Later steps of a
#    variant run only if the earlier passed; variants that pass go to the benchmarks.
PASSED=""
for V in HOP_FWD_WS=2 HOP_FWD_WS=2,HOP_WS_NOSER=1 HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_WG64=3 HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_INTRA=0 HOP_FWD_WS=1,HOP_WS_NOSER=1; do
	n=${V//[=,]/_}
	if [ $(left) -lt 95 ]; then echo "skipped $V: $(left) s left" >>$S; continue; fi
	step "tests $V"
	T 30 env WHET_NVRTC_DEFINES=$V $B/cuda.test -test.run 'TestHopperForwardLongMatchesMMASync' -test.v -test.count=1 >$O/long-$n.log 2>&1
	rc=$?; echo "long forward vs mma.sync ($V) rc=$rc" >>$S
	grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- |worst difference|differs|NaN|warp-specialised|switched off|registers|CUDA_ERROR|illegal" $O/long-$n.log | head -20 >>$S
	if [ $rc != 0 ]; then
		step "sync rerun $V"
		T 25 env WHET_NVRTC_DEFINES=$V WHET_CUDA_SYNC=1 $B/cuda.test -test.run 'TestHopperForwardLongMatchesMMASync/d128_gqa4x1_packed' -test.v -test.count=1 >$O/sync-$n.log 2>&1
		echo "sync rerun rc=$?" >>$S; tail -15 $O/sync-$n.log >>$S
		continue
	fi
	[ $V = HOP_FWD_WS=2 ] && { PASSED="$PASSED $V"; continue; } # the first loop: passed these on the last run
	T 40 env WHET_NVRTC_DEFINES=$V $B/cuda.test -test.run 'TestAttentionMatchesCPU|TestConformance$' -test.v -test.count=1 >$O/tests-$n.log 2>&1
	rc=$?; echo "TestAttentionMatchesCPU + TestConformance ($V) rc=$rc" >>$S
	ws=$(grep -c "forward on the warp-specialised Hopper kernel" $O/tests-$n.log)
	echo "cases that logged the warp-specialised forward: $ws" >>$S
	if [ "$ws" = 0 ]; then echo "FAIL: no case ran the warp-specialised forward ($V)" >>$S; rc=1; fi
	grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|switched off|worst error|NaN" $O/tests-$n.log | head -40 >>$S
	grep -E -A6 -- "--- FAIL" $O/tests-$n.log | head -40 >>$S
	if [ $rc != 0 ]; then
		step "sync rerun $V"
		T 25 env WHET_NVRTC_DEFINES=$V WHET_CUDA_SYNC=1 $B/cuda.test -test.run 'TestAttentionMatchesCPU/d128_gqa4x1_long_bf16' -test.v -test.count=1 >$O/sync-$n.log 2>&1
		echo "sync rerun rc=$?" >>$S; tail -15 $O/sync-$n.log >>$S
		continue
	fi
	PASSED="$PASSED $V"
done
echo "variants that passed:${PASSED:- none}" >>$S

# 3. Forward benchmarks (docs/performance.md's rows: d64 at Llama-3.2-1B's 4x2048, 32/8 heads;
#    d128 at Llama-3.1-8B's 2x2048), the default Hopper forward first, then each variant that
#    passed (the first loop's HOP_FWD_WS=2 among them), then knobs on HOP_FWD_WS=2,HOP_WS_NOSER=1
#    (no pingpong, three stages), each only after the long forward test passed with it.
step bench
echo "cmd: cd engine/cuda && WHET_NVRTC_DEFINES=<variant> cuda.test -test.run '^\$' -test.bench 'AttentionForward(D128)?\$' -test.benchtime 20x" >>$S
bench() {
	if [ $(left) -lt 20 ]; then echo "bench ${1:-default} skipped: $(left) s left" >>$S; return; fi
	# An empty variant is the first Hopper forward (attn_fwd_hopper): since
	# 2026-12-07 HOP_FWD_WS=1,HOP_WS_NOSER=1 is the default, WHET_ATTN_FWD_WS=0 its off switch.
	T 25 env WHET_NVRTC_DEFINES=$1 WHET_ATTN_FWD_WS=$([ -z "$1" ] && echo 0 || echo 1) $B/cuda.test -test.run '^$' -test.bench 'AttentionForward(D128)?$' -test.benchtime 20x -test.count=1 -test.v >$O/bench-$2.log 2>&1
	echo "bench ${1:-default} rc=$?" >>$S
	grep -E "^Benchmark.*(ns/op|TFLOP)|FAIL|^ok|switched off" $O/bench-$2.log >>$S
	grep -m2 "warp-specialised" $O/bench-$2.log >>$S
}
bench "" default
for V in $PASSED; do bench $V ${V//[=,]/_}; done
checkbench() {
	if [ $(left) -lt 35 ]; then echo "$1 skipped: $(left) s left" >>$S; return; fi
	T 25 env WHET_NVRTC_DEFINES=$1 $B/cuda.test -test.run 'TestHopperForwardLongMatchesMMASync' -test.v -test.count=1 >$O/long-$2.log 2>&1
	rc=$?; echo "long forward vs mma.sync ($1) rc=$rc" >>$S
	grep -E "^(--- FAIL|FAIL|panic)|differs|NaN|CUDA_ERROR" $O/long-$2.log | head -8 >>$S
	[ $rc = 0 ] && bench $1 $2
}
case " $PASSED " in *" HOP_FWD_WS=2,HOP_WS_NOSER=1 "*)
	checkbench HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_PINGPONG=0 noser-nopingpong
	checkbench HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_STAGES=3 noser-stages3
	;;
esac

step compile
wait $CMP; echo "compile rc=$?" >>$S
step end
# summary.txt: the compile section first (serialised wgmma per kernel and variant, registers,
# failures), then the steps.
{
	echo "== compile (TestHopperAttentionCompiles, TestHopperAttentionWSCompiles; rc at the end of the steps)"
	grep -a -E "^(=== RUN|--- |ok|FAIL|PASS)|^    --- |serialised wgmma|ptxas serialises|registers, [0-9]+ bytes of spill|setmaxnreg|error" $O/compile.log | head -80
	echo "serialized lines per variant (raw ptxas messages):"
	awk '/^=== RUN/{v=$3} /wgmma.mma_async instructions are serialized/{match($0, /\(C[0-9]+\)/); c=substr($0, RSTART, RLENGTH); match($0, /function .[a-z0-9_]+/); f=substr($0, RSTART+10, RLENGTH-10); n[v" "f" "c]++} END{for (k in n) print "  " k " x" n[k]}' $O/compile.log | sort
	cat $S
} >$O/summary.txt
