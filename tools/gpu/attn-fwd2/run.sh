#!/usr/bin/env bash
# attn-fwd2: issue 20's second round on the warp-specialised Hopper attention
# forward (kernels/attention_hopper.cu attn_fwd_hopper_ws with the
# straight-line consumer loop HOP_WS_NOSER=1; today's default is
# HOP_FWD_WS=1,HOP_WS_NOSER=1, 250 / 283 TFLOP/s at d64 / d128 on the H100,
# whose d128 wgmma ptxas serialises for want of registers, C7512). Each
# variant below is a WHET_NVRTC_DEFINES set, never run on a GPU before this
# batch (VARS lists them likeliest first, the order of the benches):
#   i128     no intra-warpgroup overlap at d128 only (HOP_WS_INTRA128=0):
#            ptxas did not serialise that d128 loop (with HOP_FWD_WS=2 it was
#            the fastest d128 set, 286.2)
#   r240     setmaxnreg 24 / 240 (producer / consumers) instead of 40 / 232
#   tma      the producer copies with TMA (one thread, mbarrier expect-tx)
#   tma240   both
#   k64s4    64-key tiles at d128 (HOP_WS_BN128=64: S and P take 32 + 16
#            registers instead of 64 + 32, so S, O and P fit 168), four
#            stages (HOP_WS_STAGES=4; d64 keeps 128 keys)
#   k64s4t   k64s4 with TMA copies
#   d64k64   64-key tiles and four stages at d64 only (HOP_WS_BN64=64,
#            HOP_WS_STAGES64=4)
#   w3k64    three consumer warpgroups at d64 (192 rows, 128 registers a
#            thread) on 64-key tiles, four stages; i128 at d128
#   w3k64r   w3k64 with setmaxnreg (32 / 160 at d64, 40 / 232 at d128)
#   p128     P through shared memory at d128 (HOP_WS_PSMEM128=1: O += P V
#            reads P from a swizzled tile, so P's 32 registers are free
#            while P V runs beside the next S and its softmax)
#   w3p      three consumers at d64 and P through shared memory at both
#            head dims (128-key tiles)
# Runs from the repo root on an H100/H200; writes only under $OUT/attn-fwd2.
# Read summary.txt (tools/gpu/README.md). Order: ptxas -v of every set in
# the background (CPU), correctness of every set side by side, benchmarks
# one at a time (today's default first and last, for the drift), then the
# fastest passing set per head dim.
# PHASE (go.sh sets it; unset: both in turn): tests = steps 1 and 2 (nothing
# timed: they may share the machine with other batches' tests), bench = steps
# 3 and 4, alone, for the sets whose tests passed in this folder. Each
# cuda.test process compiles into a kernel cache of its own (TestMain), so a
# bench process compiles what it runs (outside the timed loop) whatever ran
# before it.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1
PHASE=${PHASE:-all}
batch_start attn-fwd2
echo "PHASE=$PHASE" >>$S
W=HOP_FWD_WS=1,HOP_WS_NOSER=1
W2=HOP_FWD_WS=2,HOP_WS_NOSER=1
VARS="k64s4:$W,HOP_WS_BN128=64,HOP_WS_STAGES=4
p128:$W,HOP_WS_PSMEM128=1
d64k64:$W,HOP_WS_BN64=64,HOP_WS_STAGES64=4
i128:$W,HOP_WS_INTRA128=0
w3k64:$W,HOP_WS_WG64=3,HOP_WS_BN64=64,HOP_WS_STAGES64=4,HOP_WS_INTRA128=0
k64s4t:$W,HOP_WS_BN128=64,HOP_WS_STAGES=4,HOP_WS_TMA=1
tma:$W,HOP_WS_TMA=1
w3p:$W,HOP_WS_WG64=3,HOP_WS_PSMEM64=1,HOP_WS_PSMEM128=1
r240:$W2,HOP_WS_PREG2=24,HOP_WS_CREG2=240
w3k64r:$W2,HOP_WS_WG64=3,HOP_WS_BN64=64,HOP_WS_STAGES64=4,HOP_WS_INTRA128=0
tma240:$W2,HOP_WS_TMA=1,HOP_WS_PREG2=24,HOP_WS_CREG2=240"
defs() { [ "$1" = default ] && echo "$W" || printf '%s\n' "$VARS" | sed -n "s/^$1://p"; }
NAMES="$(printf '%s\n' "$VARS" | cut -d: -f1 | tr '\n' ' ')"
T() { (cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout "$@"); }

# 1. ptxas -v of each set (and of today's default, for comparison), one
#    process each in the background (NVRTC, CPU only):
#    TestHopperAttentionWSCompiles with WHET_WS_COMPILE_DEFINES=<the set>
#    logs 'ws-compile dD regs=R spill=B serialised=CODES|none set=...' per
#    forward kernel (and fails on a refused define, a compile error, or a
#    setmaxnreg set without exactly 168 / 128 registers, which would hang).
#    Niced, in COMPILE_LANES processes at a time (all at once alone; 4 in a
#    go.sh group, where other batches' tests share the CPUs and memory): the
#    tests below come first.
if [ $PHASE != bench ]; then
CN=(default $NAMES)
LANES=${COMPILE_LANES:-$([ $PHASE = tests ] && echo 4 || echo ${#CN[@]})}
CMP=""
for l in $(seq 0 $((LANES - 1))); do
	for i in $(seq $l $LANES $((${#CN[@]} - 1))); do
		name=${CN[$i]}
		# each within what is left of LIMIT (less 20 s), so that the summary is written
		ct=$(( ${LIMIT:-200} - SECONDS - 20 )); [ $ct -gt ${COMPILE_T:-200} ] && ct=${COMPILE_T:-200}
		[ $ct -lt 15 ] && { echo "not compiled: ${SECONDS}s into the batch" >$O/compile-$name.log; continue; }
		T $ct env WHET_WS_COMPILE_DEFINES="$(defs $name)" nice -n 10 $B/cuda.test -test.run '^TestHopperAttentionWSCompiles$' -test.v -test.count=1 >$O/compile-$name.log 2>&1
	done &
	CMP="$CMP $!"
done

# 2. Correctness of each set, side by side (small cases; timings come
#    later): the long forward against the mma.sync one (up to 1,600 tokens:
#    a dozen key tiles a block, every stage reused, mbarrier phases wrapping;
#    packed and windowed, so warpgroups skip tiles before and after their
#    run), TestAttentionMatchesCPU (out, lse and the backward after it; every
#    bf16 d64/d128 case takes this forward and logs "forward on the
#    warp-specialised Hopper kernel") and TestConformance (its d64/d128 bf16
#    attention cases). A barrier that never completes traps after ~2^22 polls
#    (HOP_WS_WATCHDOG: CUDA_ERROR_ILLEGAL_INSTRUCTION in the log); rc=124 is a
#    hang past that. A failed set is rerun alone with WHET_CUDA_SYNC=1 on its
#    smallest failing-prone case, to name the launch.
step tests
TST=""
# TESTS_T: 110 s alone; more where a go.sh group shares the CPUs (a slow test is not a hang).
TT=${TESTS_T:-$([ $PHASE = tests ] && echo $(( ${LIMIT:-200} - 40 )) || echo 110)}
[ $TT -lt 20 ] && TT=20
for name in $NAMES; do
	(T $TT env WHET_NVRTC_DEFINES=$(defs $name) $B/cuda.test -test.run 'TestHopperForwardLongMatchesMMASync|TestAttentionMatchesCPU|TestConformance$' -test.v -test.count=1 >$O/tests-$name.log 2>&1; echo $? >$O/tests-$name.rc) &
	TST="$TST $!"
done
for p in $TST; do wait $p; done
for name in $NAMES; do
	rc=$(cat $O/tests-$name.rc 2>/dev/null || echo none)
	ws=$(grep -c "forward on the warp-specialised Hopper kernel" $O/tests-$name.log)
	[ "$ws" = 0 ] && [ "$rc" = 0 ] && rc="0 but no case logged the warp-specialised forward"
	echo "tests ($name: $(defs $name)) rc=$rc, cases on the warp-specialised forward: $ws" >>$S
	grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|differs|worst error|NaN|switched off|CUDA_ERROR|illegal" $O/tests-$name.log | grep -v "^--- PASS\|^PASS\|^ok" | head -14 >>$S
	grep -m2 -o "forward on the warp-specialised Hopper kernel.*" $O/tests-$name.log | sort -u >>$S
	if [ "$rc" != 0 ] && [ $SECONDS -lt $((${LIMIT:-200} - 90)) ]; then
		T 25 env WHET_NVRTC_DEFINES=$(defs $name) WHET_CUDA_SYNC=1 $B/cuda.test -test.run 'TestHopperForwardLongMatchesMMASync/(d64_window700|d128_window333)' -test.v -test.count=1 >$O/sync-$name.log 2>&1
		echo "  sync rerun rc=$?:" >>$S; grep -E "FAIL|CUDA_ERROR|illegal|differs|worst" $O/sync-$name.log | head -6 >>$S
	fi
done

step compile
for p in $CMP; do wait $p; done
NOLINES=1
for name in default $NAMES; do
	l=$(grep -o "ws-compile .*" $O/compile-$name.log | sed 's/ set=[^ ]*//')
	[ -n "$l" ] && NOLINES=0
	echo "$name: $(echo "$l" | tr '\n' ';') $(grep -E -m3 "^(--- FAIL|FAIL|panic)|hopper_ws_test.go.*(want|refuse|error)" $O/compile-$name.log | tr '\n' ' ')" >>$S
done
[ $NOLINES = 1 ] && echo "no ws-compile lines: cuda.test predates WHET_WS_COMPILE_DEFINES (main b803526); rebuild with tools/gpu/dispatch.sh" >>$S
touch $O/tests.done
fi
[ $PHASE = tests ] && { step end; exit 0; }
# The sets whose tests passed (in this phase or in this folder's tests phase): rc 0 and a case
# on the warp-specialised forward.
PASSED=""
for name in $NAMES; do
	[ "$(cat $O/tests-$name.rc 2>/dev/null)" = 0 ] && grep -q "forward on the warp-specialised Hopper kernel" $O/tests-$name.log && PASSED="$PASSED $name"
done
echo "sets that passed the tests:${PASSED:- none}" >>$S
# unser NAME D: 1 when the set's dD forward compiled without a serialised wgmma.
unser() { grep -q "ws-compile d$2 regs=[0-9]* spill=[0-9]* serialised=none" $O/compile-$1.log; }

# 3. BenchmarkAttentionForward (d64: Llama-3.2-1B's 4x2048, 32/8 heads) and
#    ...D128 (Llama-3.1-8B's 2x2048, 32/8 heads), 20 runs each, one process
#    at a time: today's default, each set that passed, today's default again
#    (the two default rows show the card's drift). A bench that would start
#    within 30 s of the limit go.sh gives (LIMIT) is skipped and says so.
step bench
echo "cmd: cd engine/cuda && [WHET_NVRTC_DEFINES=<set>] cuda.test -test.run '^\$' -test.bench 'AttentionForward(D128)?\$' -test.benchtime 20x" >>$S
bench() { # name, log name
	if [ $SECONDS -gt $((${LIMIT:-200} - 30)) ]; then echo "bench $1 skipped: ${SECONDS}s into the batch (limit ${LIMIT:-200})" >>$S; return; fi
	local e=""
	[ $1 = default ] || e="WHET_NVRTC_DEFINES=$(defs $1)"
	T 25 env $e $B/cuda.test -test.run '^$' -test.bench 'AttentionForward(D128)?$' -test.benchtime 20x -test.count=1 -test.v >$O/bench-$2.log 2>&1
	echo "bench $1 rc=$?" >>$S
	grep -E "^Benchmark.*(ns/op|TFLOP)|FAIL|panic" $O/bench-$2.log >>$S
}
bench default default
for name in $PASSED; do bench $name $name; done
bench default default2

# 4. The fastest set per head dim among today's default and the sets that
#    passed the tests AND whose forward at that head dim ptxas did not
#    serialise (the default's d128 is serialised today: it stays the
#    reference row, marked). Then every row for comparison.
step result
for b in "AttentionForward-:64" "AttentionForwardD128-:128"; do
	pat=${b%%:*} d=${b#*:}
	rows=$(for name in default $PASSED; do
		[ -f $O/bench-$name.log ] || continue
		tf=$(awk -v p="^Benchmark$pat" '$0 ~ p {print $(NF-1)}' $O/bench-$name.log)
		[ -n "$tf" ] || continue
		if unser $name $d; then echo "$tf $name"; else echo "$tf $name(serialised)"; fi
	done | sort -g)
	echo "d$d TFLOP/s: $(echo "$rows" | tac | tr '\n' ';')" >>$S
	best=$(echo "$rows" | grep -v serialised | tail -1)
	echo "fastest passing at d$d: ${best:-none} ($(defs ${best#* } 2>/dev/null))" >>$S
done
step end
