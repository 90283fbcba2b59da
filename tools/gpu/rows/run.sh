#!/usr/bin/env bash
# rows (issues 20, 21): every engine/cuda GPU test at today's defaults (Hopper attention on sm_90,
# split NF4 mat-vec), then the training rows of issue 20 that the new attention kernels move
# (Llama-3.2-1B LoRA 4x2048; Llama-3.1-8B LoRA 2x2048 with checkpointing; 8B LoRA 1x4096 without)
# beside tools/bench/reference.py on the same card, and the decode rates (1B bf16, 8B NF4).
# Runs from the repository root; writes only under $OUT/rows.
set -u
O=$OUT/rows; mkdir -p $O
B=$PWD/.dev/gpu/common; W=$B/whet
S=$O/summary.txt
step() { echo "== $(date -u +%T) $*" >>$S; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >$O/gpu.txt; cat $O/gpu.txt >>$S
cat $B/COMMIT >>$S
# A cold start first: how long the first `whet bench` spends compiling the kernels it needs
# with NVRTC (an empty kernel cache, as on a user's first run); it also fills the cache the
# timed rows below use.
# ROWS_COLD=0 skips it (tools/gpu/precompile times the same with and without the precompile).
if [ "${ROWS_COLD:-1}" = 1 ]; then
step cold compile: whet bench 1 step of llama-3.2-1b lora 1x512 with an empty kernel cache
rm -rf ${XDG_CACHE_HOME:-$HOME/.cache}/whet/kernels
s0=$(date +%s)
timeout 240 $W bench --backend cuda --json --model llama-3.2-1b --method lora --batch 1 --seq 512 --steps 1 --warmup 0 >$O/cold.jsonl 2>$O/cold.err; echo "cold rc=$? wall $(( $(date +%s) - s0 )) s" >>$S
tail -3 $O/cold.err >>$S
fi
step cuda.test
# The ptxas surveys of the attention variants (…Compiles) compile 20+ define sets: they belong
# to the attention batches, not to this check of the defaults.
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout ${ROWS_SUITE_T:-300} $B/cuda.test -test.skip 'TestKernelsCompileForEveryArch|TestHopperAttentionFusedCompiles|TestHopperAttentionWSCompiles|TestHopperAttentionOverlapCompiles' -test.v -test.count=1) >$O/cuda-tests.log 2>&1; echo "cuda.test rc=$?" >>$S
grep -E "^(--- FAIL|FAIL|ok|PASS|panic)|^    --- FAIL" $O/cuda-tests.log >>$S
grep -c -- "--- PASS" $O/cuda-tests.log | sed 's/^/passed: /' >>$S
grep -E -A8 -- "--- FAIL|panic" $O/cuda-tests.log | head -40 >>$S
# ROWS_TESTS_ONLY=1: the cold compile and the tests only (the rows ran in another batch of the call).
[ "${ROWS_TESTS_ONLY:-0}" = 1 ] && { step end; exit 0; }
row() { # label timeout args... (whet bench) ; reference with the same args follows when REF=1
  local label=$1 t=$2; shift 2
  step "$label: whet bench $*"
  timeout $t $W bench --backend cuda --json "$@" >>$O/rows.jsonl 2>>$O/bench.err; echo "$label whet rc=$?" >>$S
  tail -1 $O/rows.jsonl >>$S
}
ref() {
  local label=$1 t=$2; shift 2
  step "$label: reference.py $*"
  timeout $t python3 tools/bench/reference.py "$@" 2>>$O/ref.err | tail -1 >>$O/rows.jsonl; echo "$label ref rc=$?" >>$S
  tail -1 $O/rows.jsonl >>$S
}
row 1b-lora 90 --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --warmup 2
ref 1b-lora 60 --model llama-3.2-1b --method lora --batch 4 --seq 2048 --steps 5 --warmup 2
row decode-1b 25 --model llama-3.2-1b --method lora --decode 256 --seq 128 --decode-modes graph
row 8b-lora-ckpt 80 --model llama-3.1-8b --method lora --batch 2 --seq 2048 --steps 3 --warmup 1 --checkpointing
ref 8b-lora-ckpt 90 --model llama-3.1-8b --method lora --batch 2 --seq 2048 --steps 3 --warmup 1 --checkpointing
row 8b-lora-4096 70 --model llama-3.1-8b --method lora --batch 1 --seq 4096 --steps 3 --warmup 1
row decode-8b-nf4 60 --model llama-3.1-8b --method qlora --decode 256 --seq 128 --decode-modes graph
tail -20 $O/bench.err $O/ref.err >>$S 2>/dev/null
step end
