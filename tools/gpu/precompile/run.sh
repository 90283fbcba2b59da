#!/usr/bin/env bash
# precompile: the ahead-of-time kernel compile (WHET_CUDA_PRECOMPILE=1, engine/cuda/precompile.go:
# every kernel file the cache lacks compiled in background goroutines, GOMAXPROCS at a time, as the
# backend opens, with progress lines on stderr; never run on a GPU). Runs from the repository root;
# writes only under $OUT/precompile.
#  1. cold, switch off: the first `whet bench` of Llama-3.2-1B LoRA 1x512 (1 step, no warm-up) with an
#     empty kernel cache (its own XDG_CACHE_HOME), as tools/gpu/rows's "cold compile" step; its stderr
#     now says "compiling CUDA kernels for sm_90 once, on first use: file N, X" (kernels/X.cu)
#     (one line every 2 s at most);
#  2. cold, switch on: the same with another empty cache; its stderr must carry "compiling CUDA
#     kernels for ..." lines, the last "N of N files, done in ...";
#  3. warm, switch on: step 2's cache again: no "compiling CUDA kernels" line, the fast start;
#  4. the engine/cuda tests of the new code with the switch on: TestPrecompileOnGPU (empty cache:
#     every file compiled in the background, no compile when the kernels load afterwards, stored
#     cubins equal to a compile in function's way), the GPU-less scheduling tests, and
#     TestLazyCompilesAreReported, TestCompileAllKernels and TestConformance (each New starts the
#     compile; cold test cache).
# summary.txt: the three walls (`wall N ms`), the cubins each cache holds, the progress lines, the
# tests' results. LIMIT (from go.sh) bounds the tests' time.
# PHASE (go.sh sets it; unset: both in turn): tests = step 4 (untimed: may share the machine with
# other batches' tests), bench = steps 1-3, alone (their walls are the measurement).
set -u
. $PWD/.dev/gpu/common/lib.sh || exit 1 # batch_start, step: tools/gpu/lib.sh
PHASE=${PHASE:-all}
batch_start precompile
echo "PHASE=$PHASE" >>$S
W=$B/whet
T0=$(date +%s)
ARGS="--backend cuda --json --model llama-3.2-1b --method lora --batch 1 --seq 512 --steps 1 --warmup 0"
echo "cmd: whet bench $ARGS" >>$S
cold() { # label xdg-folder timeout [env...]
  local label=$1 xdg=$2 t=$3; shift 3
  step "$label"
  mkdir -p $xdg
  local s0=$(date +%s%N)
  env XDG_CACHE_HOME=$xdg "$@" timeout $t $W bench $ARGS >$O/$label.jsonl 2>$O/$label.err
  local rc=$?
  echo "$label rc=$rc wall $(( ($(date +%s%N) - s0) / 1000000 )) ms, cubins in the cache: $(ls $xdg/whet/kernels 2>/dev/null | grep -c cubin)" >>$S
  echo "compiling lines: $(grep -c 'compiling CUDA kernels' $O/$label.err)" >>$S
  grep 'compiling CUDA kernels' $O/$label.err | sed -n '1p;$p' >>$S
  grep -o '"tokens_per_sec":[^,]*' $O/$label.jsonl | head -1 >>$S
  [ $rc = 0 ] || tail -5 $O/$label.err >>$S
}
# The caches live outside $OUT (a batch stopped at its limit must not pack their cubins).
X=/tmp/precompile-xdg
if [ $PHASE != tests ]; then
rm -rf $X
cold cold-off $X/off 110 # rows's cold step had 240 s; on 2026-12-07 16:47 a first 1B LoRA bench ran out of 50 s compiling
cold cold-on $X/on 60 WHET_CUDA_PRECOMPILE=1
cold warm-on $X/on 25 WHET_CUDA_PRECOMPILE=1
rm -rf $X # cubins: not worth bringing back
fi
[ $PHASE = bench ] && { step end; exit 0; }
left=$(( ${LIMIT:-150} - ($(date +%s) - T0) - 5 ))
[ $left -lt 10 ] && left=10
RUN='^(TestPrecompileOnGPU|TestPrecompile.*|TestGetWaitsForCompileInFlight|TestGetCompilesQueuedFileItself|TestLazyCompilesAreReported|TestCompileAllKernels|TestConformance)$'
step "cuda.test with WHET_CUDA_PRECOMPILE=1 (timeout $left s)"
echo "cmd: cd engine/cuda && WHET_CUDA_PRECOMPILE=1 WHET_CUDA_REQUIRE=1 cuda.test -test.run '$RUN' -test.v" >>$S
(cd engine/cuda && WHET_CUDA_PRECOMPILE=1 WHET_CUDA_REQUIRE=1 timeout $left $B/cuda.test -test.run "$RUN" -test.v -test.count=1) >$O/cuda-tests.log 2>&1; echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|files for .* in .* s|cubins in the cache" $O/cuda-tests.log | grep -v "^    --- PASS" | head -40 >>$S
grep -E -A8 -- "--- FAIL|panic" $O/cuda-tests.log | head -40 >>$S
step end
