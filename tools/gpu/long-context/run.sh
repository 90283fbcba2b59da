#!/usr/bin/env bash
# long-context (issue 21): activation checkpoints offloaded to pinned host
# memory (train.offload_checkpoints / whet bench --offload), Llama-3.1-8B
# QLoRA r32, batch 1, checkpointing, random weights, under a 24 GB memory
# cap (--memory-limit 24GB). Runs from the repository root; writes only
# under $OUT/long-context.
#   1. 4096 tokens, offload on (compiles the kernels into ~/.cache/whet)
#   2. 80,000 tokens, offload auto (the plan turns it on: kept on the
#      device only 41,186 tokens fit 24 GB; the plan allows 135,077
#      offloaded, but a step there takes ~2 min), one timed step
#   3. 4096 tokens, offload off: same seeds, so its loss after 3 steps
#      must equal run 1's if offloading changes nothing (bit-equal)
#   4. the offload tests of cuda.test, with the time left
set -u
O=$OUT/long-context; mkdir -p $O
B=$PWD/.dev/gpu/common
W=$B/whet
S=$O/summary.txt
T0=$(date +%s)
step() { echo "== $(date -u +%FT%TZ) (+$(( $(date +%s) - T0 ))s) $*" | tee -a $S; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  free -g | head -2
  echo "cpus $(nproc)"
  echo "common build: $(cat $B/COMMIT 2>/dev/null)"
  $W --version 2>&1
} >$O/gpu.txt 2>&1
step start; cat $O/gpu.txt >>$S

bench() { # label timeout args...
  local label=$1 t=$2; shift 2
  local cmd="$W bench --backend cuda --json --model llama-3.1-8b --method qlora --rank 32 --batch 1 --checkpointing --memory-limit 24GB --max-time 0 $*"
  step "$label (timeout $t): $cmd"; echo "$label: $cmd" >>$O/commands.txt
  timeout $t $cmd >$O/$label.json 2>$O/$label.err
  echo "$label rc=$?" >>$S
  cat $O/$label.json >>$S
  tail -4 $O/$label.err >>$S
}
bench short-on 75 --seq 4096 --steps 2 --warmup 1 --offload on
bench long-80k 115 --seq 80000 --steps 1 --warmup 0 --offload auto
bench short-off 25 --seq 4096 --steps 2 --warmup 1 --offload off

left=$(( 232 - ($(date +%s) - T0) ))
if [ $left -gt 10 ]; then
  step "cuda.test offload tests (timeout $left)"
  (cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout $left $B/cuda.test -test.run '^(TestHostCopies|TestOffloadedCheckpointsOnDevice)$' -test.v -test.count=1) >$O/cudatest.log 2>&1
  echo "cuda.test rc=$?" >>$S
  grep -E "^\s*--- (PASS|FAIL|SKIP)|offload_test.go|^(ok|FAIL|PASS)" $O/cudatest.log >>$S
else
  step "no time left for cuda.test"
fi
step end
