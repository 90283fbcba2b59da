#!/usr/bin/env bash
# attention-fwd: the warp-specialised Hopper attention forward (kernels/attention_hopper.cu,
# attn_fwd_hopper_ws; opt-in through WHET_NVRTC_DEFINES=HOP_FWD_WS=1|2, never run on a GPU
# before this batch). Runs from the repo root on an H100/H200; writes only under
# $OUT/attention-fwd. Read summary.txt first (see tools/gpu/README.md).
set -u
O=$OUT/attention-fwd; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt 2>&1
cat $B/COMMIT >>$O/gpu.txt 2>/dev/null
step start; cat $O/gpu.txt >>$S
T() { (cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout "$@"); }
T0=$(date +%s)
left() { echo $((190 - ($(date +%s) - T0))); } # seconds left of LIM (200), with a margin

# 1. NVRTC for sm_90a of every variant, in the background (CPU only): ptxas -v registers and
#    spills of the forward kernels, serialisation warnings; with setmaxnreg (HOP_FWD_WS=2) the
#    test fails unless the kernel got exactly 168 (384 threads) or 128 (512) registers.
T 150 $B/cuda.test -test.run '^TestHopperAttentionWSCompiles$' -test.v -test.count=1 >$O/compile.log 2>&1 &
CMP=$!

# 2. Correctness per variant (HOP_FWD_WS=1; =2: setmaxnreg; +HOP_WS_TMA=1: TMA copies;
#    +HOP_WS_WG64=3: 192 rows a block at d64), each cheapest test first: the long forward against the mma.sync one
#    (up to 1,600 tokens, packed, windowed), then TestAttentionMatchesCPU (out, lse and the
#    backward after it; every bf16 d64/d128 case fails if the Hopper kernels were switched off,
#    and logs "forward on the warp-specialised Hopper kernel" when this forward ran), then
#    TestConformance. A barrier that never completes traps after ~2^22 polls (HOP_WS_WATCHDOG:
#    CUDA_ERROR_ILLEGAL_INSTRUCTION in the log); a hang past that shows as rc=124. Later steps of a
#    variant run only if the earlier passed; variants that pass go to the benchmarks.
PASSED=""
HUNG=0
for V in HOP_FWD_WS=1 HOP_FWD_WS=2 HOP_FWD_WS=2,HOP_WS_TMA=1 HOP_FWD_WS=2,HOP_WS_WG64=3; do
	n=${V//[=,]/_}
	if [ $HUNG = 1 ]; then echo "skipped $V: HOP_FWD_WS=1 hung, the others share its barriers" >>$S; continue; fi
	if [ $(left) -lt 75 ]; then echo "skipped $V: $(left) s left" >>$S; continue; fi
	step "tests $V"
	T 30 env WHET_NVRTC_DEFINES=$V $B/cuda.test -test.run 'TestHopperForwardLongMatchesMMASync' -test.v -test.count=1 >$O/long-$n.log 2>&1
	rc=$?; echo "long forward vs mma.sync ($V) rc=$rc" >>$S
	grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- |worst difference|differs|NaN|warp-specialised|switched off|registers|CUDA_ERROR|illegal" $O/long-$n.log | head -20 >>$S
	[ $rc = 124 ] && [ $V = HOP_FWD_WS=1 ] && HUNG=1
	if [ $rc != 0 ]; then
		step "sync rerun $V"
		T 25 env WHET_NVRTC_DEFINES=$V WHET_CUDA_SYNC=1 $B/cuda.test -test.run 'TestHopperForwardLongMatchesMMASync/d128_gqa4x1_packed' -test.v -test.count=1 >$O/sync-$n.log 2>&1
		echo "sync rerun rc=$?" >>$S; tail -15 $O/sync-$n.log >>$S
		continue
	fi
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
#    passed, and the knobs one at a time on HOP_FWD_WS=2 (or =1 if only it passed): no
#    pingpong, no intra-warpgroup overlap (P V right after each softmax), three stages.
step bench
echo "cmd: cd engine/cuda && WHET_NVRTC_DEFINES=<variant> cuda.test -test.run '^\$' -test.bench 'AttentionForward(D128)?\$' -test.benchtime 20x" >>$S
bench() {
	if [ $(left) -lt 20 ]; then echo "bench ${1:-default} skipped: $(left) s left" >>$S; return; fi
	T 25 env WHET_NVRTC_DEFINES=$1 $B/cuda.test -test.run '^$' -test.bench 'AttentionForward(D128)?$' -test.benchtime 20x -test.count=1 -test.v >$O/bench-$2.log 2>&1
	echo "bench ${1:-default} rc=$?" >>$S
	grep -E "^Benchmark.*(ns/op|TFLOP)|FAIL|^ok|switched off|warp-specialised" $O/bench-$2.log >>$S
}
bench "" default
for V in $PASSED; do bench $V ${V//[=,]/_}; done
# A knob's variant is benchmarked only after the long forward test passed with it.
checkbench() {
	if [ $(left) -lt 35 ]; then echo "$1 skipped: $(left) s left" >>$S; return; fi
	T 25 env WHET_NVRTC_DEFINES=$1 $B/cuda.test -test.run 'TestHopperForwardLongMatchesMMASync' -test.v -test.count=1 >$O/long-$2.log 2>&1
	rc=$?; echo "long forward vs mma.sync ($1) rc=$rc" >>$S
	grep -E "^(--- FAIL|FAIL|panic)|differs|NaN" $O/long-$2.log | head -8 >>$S
	[ $rc = 0 ] && bench $1 $2
}
BASE=""
case " $PASSED " in *" HOP_FWD_WS=2 "*) BASE=HOP_FWD_WS=2 ;; *" HOP_FWD_WS=1 "*) BASE=HOP_FWD_WS=1 ;; esac
if [ -n "$BASE" ]; then
	checkbench $BASE,HOP_WS_PINGPONG=0 nopingpong
	checkbench $BASE,HOP_WS_INTRA=0 nointra
	checkbench $BASE,HOP_WS_STAGES=3 stages3
fi

step compile
wait $CMP; echo "compile rc=$?" >>$S
grep -E "^(=== RUN|--- |ok|FAIL|PASS)|error|registers, [0-9]+ bytes of spill|serializ|setmaxnreg" $O/compile.log | head -60 >>$S
step end
