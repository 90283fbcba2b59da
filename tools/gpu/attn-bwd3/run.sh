#!/usr/bin/env bash
# attn-bwd3: one-warpgroup fused backward blocks at head dim 64 only
# (HOP_BWD_WG1_D64=1, kernels/attention_hopper.cu HOP_BWD_NWG; opt-in, never
# run on a GPU before this batch). attn-bwd2 (H100, 2026-12-07 23:51 UTC)
# measured the default o2td (HOP_BWD_FUSED=1,HOP_BWD_OVL=2,HOP_BWD_DQT=1,
# HOP_BWD_DESC=1) at 189.0 / 229.7 TFLOP/s (d64 / d128) and o2td with
# HOP_BWD_WG1=1 (one warpgroup, 64 keys, 128 threads a block at both head
# dims) at 216.3 / 121.9. With HOP_BWD_WG1_D64=1 the d64 kernel is HOP_BWD_WG1's
# and the d128 kernel the default's, so w64td should time as w2td at d64 and
# as o2td at d128 (the ptxas register counts of the two kernels say the same
# before any timing). Variants (backward; WHET_ATTN_BWD_FUSED=0, so that only
# these apply; the forward keeps its default):
#   o2td   the default (attnBwdFusedDefines)
#   w64td  o2td + HOP_BWD_WG1_D64=1
#   w2td   o2td + HOP_BWD_WG1=1 (reference: attn-bwd2's w2td)
# and one forward set, define-only (the backward keeps its default):
#   fs128  today's default forward (attnFwdWSDefines) with HOP_WS_STAGES128=4
#          in place of HOP_WS_STAGES=4: d64 gets two stages of 128 keys (the
#          "tma" set of attn-fwd2, 286.0 TFLOP/s at d64 against k64s4t's 276.6),
#          d128 keeps four stages of 64 keys (k64s4t, 377.7)
# Runs from the repo root on an H100/H200; writes only under $OUT/attn-bwd3.
# Read summary.txt first (tools/gpu/README.md). Order: compile (ptxas -v per
# set in the background), correctness per set side by side, backward and
# forward benchmarks, then the 1B LoRA step (head dim 64) default vs w64td.
# PHASE (go.sh sets it; unset: both in turn): tests = the compiles and the
# tests (nothing timed: they may share the machine with other batches' tests),
# bench = the benchmarks and the 1B step, alone, for the sets whose tests
# passed in this folder. Each cuda.test process compiles into a kernel cache
# of its own (TestMain), so a bench process compiles what it runs (outside the
# timed loop) whatever ran before it.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1
PHASE=${PHASE:-all}
batch_start attn-bwd3
echo "PHASE=$PHASE" >>$S
D=HOP_BWD_FUSED=1,HOP_BWD_OVL=2,HOP_BWD_DQT=1,HOP_BWD_DESC=1
# name:defines (engine/cuda TestAttnBwd3BatchSets checks them against the Go side)
VARS="o2td:$D
w64td:$D,HOP_BWD_WG1_D64=1
w2td:$D,HOP_BWD_WG1=1"
FWD0=HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=64,HOP_WS_STAGES=4,HOP_WS_TMA=1
FWD=HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=64,HOP_WS_STAGES128=4,HOP_WS_TMA=1
NAMES="$(printf '%s\n' "$VARS" | cut -d: -f1 | tr '\n' ' ')"
defs() { printf '%s\n' "$VARS" | sed -n "s/^$1://p"; }
T() { (cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout "$@"); }

# 1. NVRTC for sm_90a of each backward set (TestHopperAttentionFusedCompiles
#    with WHET_FUSED_COMPILE_DEFINES=<the set>: ptxas -v and a 'fused-summary'
#    line per fused kernel: registers, spill bytes, C75xx notes) and of the
#    forward sets (TestHopperAttentionWSCompiles with WHET_WS_COMPILE_DEFINES:
#    'ws-compile dD regs=R spill=B serialised=CODES|none' per forward kernel),
#    one process each in the background (CPU only), niced, COMPILE_LANES at a
#    time (all at once alone; 2 in a go.sh group). The strict check (step 3)
#    reads their lines.
if [ $PHASE != bench ]; then
CJ=($NAMES fwd)
LANES=${COMPILE_LANES:-$([ $PHASE = tests ] && echo 2 || echo ${#CJ[@]})}
CMP=""
for l in $(seq 0 $((LANES - 1))); do
	for i in $(seq $l $LANES $((${#CJ[@]} - 1))); do
		name=${CJ[$i]}
		# each within what is left of LIMIT (less 20 s), so that the summary is written
		ct=$(( ${LIMIT:-330} - SECONDS - 20 )); [ $ct -gt ${COMPILE_T:-200} ] && ct=${COMPILE_T:-200}
		[ $ct -lt 15 ] && { echo "not compiled: ${SECONDS}s into the batch" >$O/compile-$name.log; echo none >$O/compile-$name.rc; continue; }
		if [ $name = fwd ]; then
			T $ct env WHET_WS_COMPILE_DEFINES="$FWD0;$FWD" nice -n 10 $B/cuda.test -test.run '^TestHopperAttentionWSCompiles$' -test.v -test.count=1 >$O/compile-$name.log 2>&1
		else
			T $ct env WHET_FUSED_COMPILE_DEFINES="$(defs $name)" nice -n 10 $B/cuda.test -test.run '^TestHopperAttentionFusedCompiles$' -test.v -test.count=1 >$O/compile-$name.log 2>&1
		fi
		echo $? >$O/compile-$name.rc
	done &
	CMP="$CMP $!"
done

# 2. Correctness, one process a set, side by side (small cases; timings come
#    later). Backward sets: attention against the CPU (every case; the bf16
#    d64/d128 ones take the fused kernel, d128_window70_softcap its soft-cap
#    instance, T = 250 and 700 the tile padding), the conformance suite (its
#    bf16 backwards must take the fused kernel) and the determinism test
#    (fused dq/dk/dv against the split kernels at d64 and d128). The forward
#    set: the long forward against the mma.sync one (every stage reused,
#    mbarrier phases wrapping), attention against the CPU and the
#    conformance suite, whose bf16 d64/d128 cases log "forward on the
#    warp-specialised Hopper kernel" with their stages.
step tests
TST=""
# TESTS_T: 150 s alone (the determinism test took 66-93 s alone on the H100);
# more where a go.sh group shares the CPUs (a slow test is not a hang).
TT=${TESTS_T:-$([ $PHASE = tests ] && echo $(( ${LIMIT:-330} - 30 )) || echo 150)}
[ $TT -lt 20 ] && TT=20
for name in $NAMES; do
	(T $TT env WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$(defs $name) $B/cuda.test -test.run 'TestAttentionMatchesCPU|TestConformance$|TestAttentionBackwardDeterministic' -test.v -test.count=1 >$O/tests-$name.log 2>&1; echo $? >$O/tests-$name.rc) &
	TST="$TST $!"
done
(T $TT env WHET_NVRTC_DEFINES=$FWD $B/cuda.test -test.run 'TestHopperForwardLongMatchesMMASync|TestAttentionMatchesCPU|TestConformance$' -test.v -test.count=1 >$O/tests-fs128.log 2>&1; echo $? >$O/tests-fs128.rc) &
TST="$TST $!"
for p in $TST; do wait $p; done
for name in $NAMES; do
	rc=$(cat $O/tests-$name.rc 2>/dev/null || echo none); echo "tests ($name: $(defs $name)) rc=$rc" >>$S
	grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|worst error|NaN|fused backward:|suite ran|illegal|CUDA_ERROR" $O/tests-$name.log | head -16 >>$S
done
rc=$(cat $O/tests-fs128.rc 2>/dev/null || echo none)
ws=$(grep -c "forward on the warp-specialised Hopper kernel" $O/tests-fs128.log)
[ "$ws" = 0 ] && [ "$rc" = 0 ] && { rc="0 but no case logged the warp-specialised forward"; echo "$rc" >$O/tests-fs128.rc; }
echo "tests (fs128: $FWD) rc=$rc, cases on the warp-specialised forward: $ws" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|differs|worst error|NaN|switched off|CUDA_ERROR|illegal" $O/tests-fs128.log | grep -v "^--- PASS\|^PASS\|^ok" | head -14 >>$S
# the stages each head dim ran with (want 2 at d64, 4 at d128)
grep -o "forward on the warp-specialised Hopper kernel.*" $O/tests-fs128.log | sort | uniq -c | head -4 >>$S

# 3. The compiles, and the strict check: a set passes when both fused
#    backward kernels (both forward kernels for fwd) have a line and ptxas
#    serialised none of their wgmma. Then the same-code check: w64td's d64
#    kernel should have w2td's registers and spills, its d128 kernel o2td's.
step compile
for p in $CMP; do wait $p; done
fsum() { # NAME D: "R registers, S bytes spilled, serialized N [...]" of the set's dD fused kernel
	grep -o "fused-summary $(defs $1) attention_backward_fused_hopper_d$2: .*" $O/compile-$1.log | head -1 | sed 's/^[^:]*: //; s/, other notes.*//'
}
for name in $NAMES; do
	l64=$(fsum $name 64) l128=$(fsum $name 128)
	st=ok
	if [ -z "$l64" ] || [ -z "$l128" ]; then st="FAIL (no fused-summary line: compile rc=$(cat $O/compile-$name.rc 2>/dev/null || echo none))"
	elif ! echo "$l64" | grep -q "serialized 0 " || ! echo "$l128" | grep -q "serialized 0 "; then st="FAIL (serialised wgmma)"; fi
	echo "strict $name: $st; d64: ${l64:-none}; d128: ${l128:-none}" >>$S
	echo "$st" >$O/strict-$name
done
regs() { fsum $1 $2 | sed 's/, serialized.*//'; }
same() { # NAME1 NAME2 D
	local x=$(regs $1 $3) y=$(regs $2 $3)
	if [ -z "$x" ] || [ -z "$y" ]; then echo "unknown (no line)"; elif [ "$x" = "$y" ]; then echo same; else echo DIFFERENT; fi
}
a=$(same w64td w2td 64) b=$(same w64td o2td 128)
echo "same-code check: w64td d64 ($(regs w64td 64)) vs w2td ($(regs w2td 64)): $a; w64td d128 ($(regs w64td 128)) vs o2td ($(regs o2td 128)): $b" >>$S
fl=$(grep -o "ws-compile .*set=$FWD (.*" $O/compile-fwd.log | sed 's/ set=[^ ]*//' | tr '\n' ';')
st=ok
[ "$(grep -c "ws-compile d\(64\|128\) regs=[0-9]* spill=[0-9]* serialised=none set=$FWD (" $O/compile-fwd.log)" = 2 ] || st="FAIL (serialised, or no ws-compile lines: compile rc=$(cat $O/compile-fwd.rc 2>/dev/null || echo none))"
echo "strict fs128: $st; ${fl:-no lines}" >>$S
echo "$st" >$O/strict-fs128
echo "fwd default ($FWD0): $(grep -o "ws-compile .*set=$FWD0 (.*" $O/compile-fwd.log | sed 's/ set=[^ ]*//' | tr '\n' ';')" >>$S
cat $O/compile-*.log >$O/compile.log
grep -E -- "--- FAIL|^FAIL|panic|error" $O/compile.log | head -10 >>$S
touch $O/tests.done
fi
[ $PHASE = tests ] && { step end; exit 0; }
# The sets whose tests passed (in this phase or in this folder's tests phase).
PASSED=""
for name in $NAMES; do
	[ "$(cat $O/tests-$name.rc 2>/dev/null)" = 0 ] && PASSED="$PASSED $name"
done
echo "backward sets that passed:${PASSED:- none}" >>$S
FPASS=0; [ "$(cat $O/tests-fs128.rc 2>/dev/null)" = 0 ] && FPASS=1
echo "fs128 passed: $FPASS" >>$S

# 4. BenchmarkAttentionBackward (d64: Llama-3.2-1B's 4x2048, 32/8 heads) and
#    ...D128 (8B's 2x2048), 20 runs each, one process at a time: each
#    backward set that passed, then o2td again (the card's drift).
step bench
echo "cmd: cd engine/cuda && [env] cuda.test -test.run '^\$' -test.bench 'Attention(Backward|Forward)(D128)?\$' -test.benchtime 20x" >>$S
bench() { # name, what (Backward|Forward), env... (skipped within 35 s of LIMIT, so that the summary ends)
	local name=$1 what=$2; shift 2
	if [ $SECONDS -gt $((${LIMIT:-330} - 35)) ]; then echo "bench $name skipped: ${SECONDS}s into the batch (limit ${LIMIT:-330})" >>$S; return; fi
	T 30 env "$@" $B/cuda.test -test.run '^$' -test.bench "Attention$what(D128)?\$" -test.benchtime 20x -test.count=1 >$O/bench-$name.log 2>&1
	echo "bench $name [$*] rc=$?" >>$S; grep -E "^Benchmark.*(ns/op|TFLOP)|FAIL|panic" $O/bench-$name.log >>$S
}
for name in $PASSED; do bench $name Backward WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$(defs $name); done
case " $PASSED " in *" o2td "*) bench o2td-again Backward WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$(defs o2td) ;; esac
# tf NAME PATTERN: the TFLOP/s of a bench log's line
tf() { [ -f $O/bench-$1.log ] && awk -v p="^Benchmark$2" '$0 ~ p {print $(NF-1)}' $O/bench-$1.log | head -1; }
for b in "AttentionBackward-:64" "AttentionBackwardD128-:128"; do
	pat=${b%%:*} d=${b#*:}
	echo "backward d$d TFLOP/s: $(for name in $PASSED o2td-again; do v=$(tf $name $pat); [ -n "$v" ] && echo "$name $v"; done | tr '\n' ';')" >>$S
done
echo "w64td against its kernels' sets: d64 $(tf w64td AttentionBackward-) (w2td $(tf w2td AttentionBackward-), o2td $(tf o2td AttentionBackward-)); d128 $(tf w64td AttentionBackwardD128-) (o2td $(tf o2td AttentionBackwardD128-), w2td $(tf w2td AttentionBackwardD128-))" >>$S

# 5. BenchmarkAttentionForward(D128): today's default forward, fs128 (if it
#    passed), the default again (drift).
bench fwd-default Forward WHET_ATTN_FWD_WS=1
[ $FPASS = 1 ] && bench fs128 Forward WHET_NVRTC_DEFINES=$FWD
bench fwd-default2 Forward WHET_ATTN_FWD_WS=1
echo "forward: d64 default $(tf fwd-default AttentionForward-) / $(tf fwd-default2 AttentionForward-), fs128 $(tf fs128 AttentionForward-) [$(cat $O/strict-fs128 2>/dev/null)]; d128 default $(tf fwd-default AttentionForwardD128-) / $(tf fwd-default2 AttentionForwardD128-), fs128 $(tf fs128 AttentionForwardD128-)" >>$S

# 6. The 1B LoRA step (head dim 64; attn-bwd2-e2e's row): whet bench
#    Llama-3.2-1B LoRA 4x2048 (random weights, 5 timed steps after 2
#    warm-up) with today's default, then with w64td (if it passed its
#    tests). The JSON's attn_bwd_fused counts the fused backward's launches.
#    Each row within what is left of LIMIT (less 10 s), at most 110 s: a
#    define set new to whet's kernel cache compiles every kernel file first
#    (untimed).
for v in "default|WHET_ATTN_BWD_FUSED=1" "w64td|WHET_ATTN_BWD_FUSED=0 WHET_NVRTC_DEFINES=$(defs w64td)"; do
	name=${v%%|*} e=${v#*|}
	case " $PASSED " in *" w64td "*) ;; *) echo "1b-lora: w64td did not pass its tests: no 1B rows" >>$S; break ;; esac
	et=$(( ${LIMIT:-330} - SECONDS - 10 )); [ $et -gt 110 ] && et=110
	if [ $et -lt 30 ]; then echo "1b-lora $name skipped: ${SECONDS}s into the batch (limit ${LIMIT:-330})" >>$S; continue; fi
	step "1b-lora $name"
	env $e timeout $et $B/whet bench --backend cuda --json --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --warmup 2 >$O/1b-lora-$name.json 2>$O/1b-lora-$name.err
	echo "1b-lora $name [$e] rc=$?" >>$S; tail -1 $O/1b-lora-$name.json >>$S; tail -3 $O/1b-lora-$name.err >>$S
done
for name in default w64td; do
	[ -f $O/1b-lora-$name.json ] && echo "1b-lora $name tokens_per_sec: $(grep -o '"tokens_per_sec":[0-9.]*' $O/1b-lora-$name.json | head -1 | cut -d: -f2) attn_bwd_fused: $(grep -o '"attn_bwd_fused":[0-9]*' $O/1b-lora-$name.json | head -1 | cut -d: -f2) loss: $(grep -o '"loss":[0-9.]*' $O/1b-lora-$name.json | head -1 | cut -d: -f2)" >>$S
done
step end
