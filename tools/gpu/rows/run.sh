#!/usr/bin/env bash
# rows (issues 20, 21): every engine/cuda GPU test at today's defaults, the conformance suite and
# training curves again with the deterministic kernels (WHET_DETERMINISTIC=1: issue 20's done-when
# asks for both in the same run), then every row of issue 20's table (whet bench beside
# tools/bench/reference.py with the same arguments, on the same card) and issue 21's decode rows.
# Runs from the repository root; writes only under $OUT/rows.
#
# PHASE (go.sh sets it; unset: both in turn):
#   tests  the untimed steps: the suite in three processes side by side (the ptxas surveys of the
#          attention variants, …Compiles, belong to attn-bwd2/attn-fwd2), the deterministic run
#          beside them, and a few tiny whet bench runs that fill whet's kernel cache
#          (~/.cache/whet/kernels) with every kernel file the rows use, so that the timed rows
#          below compile nothing (the test processes keep their kernels in a private cache).
#   bench  the timed steps, alone on the machine: the cold compile (ROWS_COLD=1, the default: the
#          first whet bench with an empty kernel cache of its own; tools/gpu/precompile times the
#          same command, so ROWS_COLD=0 where it runs in the same call), then the rows.
# ROWS_TESTS_ONLY=1: the tests only. ROWS_SUITE_T: each suite process's limit (default 300 s).
# ROWS_DET=0: no deterministic run. ROWS_PART=whet|ref: only whet's rows or only PyTorch's (all:
# whet's, then PyTorch's; a call too short for both leaves the references for the next).
# ROWS_FIRST=N: only the first N rows. ROWS_ONLY=label.kind,... (kind whet, ref or transformers,
# e.g. qwen-lora.ref,decode-1b.transformers): only those; the summary's last line names the rows a
# short call left out in this form.
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
PHASE=${PHASE:-all}
batch_start rows
W=$B/whet
T0=$(date +%s); LIMIT=${LIMIT:-575}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
echo "PHASE=$PHASE LIMIT=$LIMIT" >>$S

# warm_cache: tiny whet bench runs that compile what the rows use into whet's kernel cache.
warm_cache() {
  step "warm whet's kernel cache (tiny whet bench runs)"
  warm() { [ $(left) -gt 40 ] || { echo "warm skipped: $(left) s left: $*" >>$O/warm.txt; return; }; timeout 120 $W bench --backend cuda --json "$@" >>$O/warm.jsonl 2>>$O/warm.err; echo "warm rc=$? $*" >>$O/warm.txt; }
  warm --model llama-3.2-1b --method lora,full --batch 1 --seq 256 --steps 1 --warmup 0 --max-time 0
  warm --model gemma-3-1b,qwen3-1.7b,qwen2.5-0.5b --method lora --batch 1 --seq 256 --steps 1 --warmup 0 --max-time 0
  warm --model llama-3.2-1b --method lora,qlora --decode 8 --seq 16 --decode-modes graph
}

if [ $PHASE != bench ]; then
step "cuda.test at the defaults (3 processes) and with WHET_DETERMINISTIC=1 (1 process), side by side"
# The ptxas surveys of the attention variants compile 20+ define sets: attn-bwd2/attn-fwd2 run them.
SKIP='TestKernelsCompileForEveryArch|TestHopperAttentionFusedCompiles|TestHopperAttentionWSCompiles|TestHopperAttentionOverlapCompiles'
SH1='TestTrainingMatchesCPU|TestFamilyTrainingMatchesCPU|TestLoRAStackedMatchesCPU|TestReferenceOnGPU|TestReferenceDPOOnGPU|TestGEMMTuneMatchesReference'
SH2='TestAttentionBackwardDeterministic|TestAttentionMatchesCPU|TestHopperAttentionCompiles|TestHopperForwardLongMatchesMMASync|TestFamilyGenerateMatchesCPU'
DET='TestConformance|TestConformanceF32|TestTrainingMatchesCPU|TestFamilyTrainingMatchesCPU|TestAttentionMatchesCPU|TestReferenceOnGPU'
ST=${ROWS_SUITE_T:-$(( LIMIT - 25 < 300 ? LIMIT - 25 : 300 ))} # ends before go.sh's limit, so that the summary is written
[ $ST -lt 20 ] && ST=20
suite() { # log env... -- cuda.test args...
  local lg=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  (cd engine/cuda && env "${envs[@]}" WHET_CUDA_REQUIRE=1 timeout $ST $B/cuda.test "$@" -test.v -test.count=1) >$O/$lg.log 2>&1
  echo $? >$O/$lg.rc
}
suite cuda-tests-1 X=0 -- -test.run "^($SH1)\$" -test.skip "$SKIP" &
P1=$!
suite cuda-tests-2 X=0 -- -test.run "^($SH2)\$" -test.skip "$SKIP" &
P2=$!
suite cuda-tests-3 X=0 -- -test.skip "$SKIP|^($SH1|$SH2)\$" &
P3=$!
PD=""
if [ "${ROWS_DET:-1}" = 1 ]; then
  suite det-tests WHET_DETERMINISTIC=1 -- -test.run "^($DET)\$" &
  PD=$!
fi
# whet's kernel cache for the timed rows: the training kernels (LoRA and full, head dims 64 and 256,
# NF4), the decode kernels (bf16 and NF4, graph). Tiny shapes: seconds of GPU time each.
warm_cache
wait $P1 $P2 $P3 $PD
cat $O/warm.txt >>$S
for lg in cuda-tests-1 cuda-tests-2 cuda-tests-3 det-tests; do
  [ -f $O/$lg.log ] || continue
  echo "$lg rc=$(cat $O/$lg.rc 2>/dev/null) passed: $(grep -c -- '--- PASS' $O/$lg.log)" >>$S
  grep -E "^(--- FAIL|FAIL|ok|PASS|panic)|^    --- FAIL" $O/$lg.log >>$S
  grep -E -A8 -- "--- FAIL|panic" $O/$lg.log | head -30 >>$S
done
cat $O/cuda-tests-[123].log >$O/cuda-tests.log 2>/dev/null
echo "suite at the defaults: rc $(cat $O/cuda-tests-[123].rc 2>/dev/null | tr '\n' ' ')passed: $(grep -c -- '--- PASS' $O/cuda-tests.log) (739 on 2026-12-07 17:59)" >>$S
touch $O/tests.done
fi
[ $PHASE = tests ] && { step end; exit 0; }
# ROWS_TESTS_ONLY=1: the tests only (the rows ran in another batch of the call).
[ "${ROWS_TESTS_ONLY:-0}" = 1 ] && { step end; exit 0; }

# The cold start: how long the first `whet bench` spends compiling the kernels it needs with NVRTC
# (an empty kernel cache of its own, as on a user's first run). ROWS_COLD=0 skips it
# (tools/gpu/precompile times the same command, with and without WHET_CUDA_PRECOMPILE=1).
if [ "${ROWS_COLD:-1}" = 1 ]; then
  step "cold compile: whet bench 1 step of llama-3.2-1b lora 1x512 with an empty kernel cache"
  rm -rf /tmp/rows-cold
  s0=$(date +%s)
  XDG_CACHE_HOME=/tmp/rows-cold timeout 240 $W bench --backend cuda --json --model llama-3.2-1b --method lora --batch 1 --seq 512 --steps 1 --warmup 0 >$O/cold.jsonl 2>$O/cold.err
  echo "cold rc=$? wall $(( $(date +%s) - s0 )) s" >>$S
  tail -3 $O/cold.err >>$S
  rm -rf /tmp/rows-cold
fi

# A bench phase on a machine whose kernel cache the tests phase did not fill (another call's
# machine was given back meanwhile): fill it first, so that no row's timeout goes to NVRTC.
# (Not for PyTorch's rows alone.)
WHET_ROWS=1
[ "${ROWS_PART:-all}" = ref ] && WHET_ROWS=0
[ -n "${ROWS_ONLY:-}" ] && [[ ",$ROWS_ONLY" != *.whet* ]] && WHET_ROWS=0
if [ $PHASE = bench ] && [ $WHET_ROWS = 1 ] && [ "$(ls ${XDG_CACHE_HOME:-$HOME/.cache}/whet/kernels 2>/dev/null | grep -c cubin)" -lt 10 ]; then
  warm_cache; cat $O/warm.txt >>$S
fi

# The rows, most wanted first; a row that would not end within the batch's limit is skipped and
# says so (its timeout is the most it may take: about three times what each took on 2026-12-07
# with a warm kernel cache, docs/bench/rows-2026-12-07-1020.txt, full-optimizer-…-1655.txt,
# lm-head-…-1653.txt, so that rows near a short call's end still start). whet then PyTorch with
# the same arguments.
N=0 LEFTOUT=""
fits() { # "label kind" timeout: 0 if the step may start
  N=$((N + 1))
  local id=${1// /.} # label.kind, as ROWS_ONLY names it
  if [ -n "${ROWS_ONLY:-}" ] && [[ ",$ROWS_ONLY," != *",$id,"* ]]; then return 1; fi
  if [ -n "${ROWS_FIRST:-}" ] && [ $N -gt $ROWS_FIRST ]; then echo "$1 skipped: ROWS_FIRST=$ROWS_FIRST" >>$S; LEFTOUT="$LEFTOUT,$id"; return 1; fi
  if [ $(left) -lt $(( $2 + 5 )) ]; then echo "$1 skipped: $(left) s left, timeout $2" >>$S; LEFTOUT="$LEFTOUT,$id"; return 1; fi
}
row() { # label timeout args... (whet bench)
  local label=$1 t=$2; shift 2
  fits "$label whet" $t || return 0
  step "$label: whet bench $*"
  timeout $t $W bench --backend cuda --json "$@" >$O/row.jsonl 2>>$O/bench.err; echo "$label whet rc=$?" >>$S
  cat $O/row.jsonl >>$O/rows.jsonl; tail -1 $O/row.jsonl >>$S
}
ref() { # label timeout args... (tools/bench/reference.py)
  local label=$1 t=$2; shift 2
  fits "$label ref" $t || return 0
  step "$label: reference.py $*"
  timeout $t python3 tools/bench/reference.py "$@" 2>>$O/ref.err | tail -1 >$O/row.jsonl; echo "$label ref rc=${PIPESTATUS[0]}" >>$S
  tail -1 $O/row.jsonl | tee -a $O/rows.jsonl >>$S
}
genref() { # label timeout args... (tools/bench/generate_reference.py)
  local label=$1 t=$2; shift 2
  fits "$label transformers" $t || return 0
  step "$label: generate_reference.py $*"
  timeout $t python3 tools/bench/generate_reference.py "$@" 2>>$O/ref.err | tail -1 >$O/row.jsonl; echo "$label transformers rc=${PIPESTATUS[0]}" >>$S
  tail -1 $O/row.jsonl | tee -a $O/rows.jsonl >>$S
}
L1="--model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --warmup 2"
C8="--model llama-3.1-8b --method lora --batch 2 --seq 2048 --steps 3 --warmup 1 --checkpointing"
F1="--model llama-3.2-1b --method full --batch 4 --seq 2048 --steps 5 --warmup 2"
Q="--model qwen2.5-0.5b --method lora --batch 8 --seq 2048 --steps 5 --warmup 2"
if [ "${ROWS_PART:-all}" != ref ]; then # whet's rows (~155 s on an H100 with a warm kernel cache)
  row 1b-lora 40 $L1
  row decode-1b 25 --model llama-3.2-1b --method lora --decode 256 --seq 128 --decode-modes graph
  row 8b-lora-ckpt 55 $C8
  row 8b-lora-4096 55 --model llama-3.1-8b --method lora --batch 1 --seq 4096 --steps 3 --warmup 1
  row decode-8b-nf4 55 --model llama-3.1-8b --method qlora --decode 256 --seq 128 --decode-modes graph
  row 1b-full-fp32 40 $F1 --master-weights fp32
  row 1b-full-bf16 40 $F1 --master-weights bf16
  row qwen-lora 40 $Q
  row decode-8b-bf16 55 --model llama-3.1-8b --method lora --decode 256 --seq 128 --decode-modes graph
  for m in qwen3-1.7b gemma-3-1b; do
    row $m-lora 45 --model $m --method lora --batch 4 --seq 2048 --steps 5 --warmup 2
  done
fi
if [ "${ROWS_PART:-all}" != whet ]; then # PyTorch's, same arguments (~180 s)
  ref 1b-lora 50 $L1
  ref 8b-lora-ckpt 60 $C8
  ref 1b-full-autocast 50 $F1
  ref 1b-full-pure-bf16 50 $F1 --pure-bf16
  ref qwen-lora 50 $Q
  for m in qwen3-1.7b gemma-3-1b; do
    ref $m-lora 55 --model $m --method lora --batch 4 --seq 2048 --steps 5 --warmup 2
  done
  genref decode-1b 50 --model llama-3.2-1b --prompt 128 --new 256
  # PyTorch's SDPA at BenchmarkAttention*'s shapes, for issue 20's attention rows (whet's own:
  # attn-bwd2/attn-fwd2's default rows in the same call)
  if fits "attention sdpa" 45; then
    step "attention: attention_reference.py (SDPA, head dims 64 and 128, forward and backward)"
    timeout 45 python3 tools/bench/attention_reference.py 2>>$O/ref.err >$O/row.jsonl; echo "attention sdpa rc=$?" >>$S
    cat $O/row.jsonl | tee -a $O/rows.jsonl >>$S
  fi
fi
rm -f $O/row.jsonl
tail -20 $O/bench.err $O/ref.err >>$S 2>/dev/null
[ -n "$LEFTOUT" ] && echo "rows left out; to run them: rows:PHASE=bench:ROWS_COLD=0:ROWS_ONLY=${LEFTOUT#,}" >>$S
step end
