#!/usr/bin/env bash
# gemv2 (issue 21, 1B bf16 decoding): the bf16 GEMV with eight 16-byte pieces a lane in flight
# (WHET_CUDA_GEMV2=1, kernels/gemv2.cu) against cuBLASLt (TestGEMV2), the mat-vec and
# generation tests with it on, then Llama-3.2-1B decoding (graph mode) without and with it.
# Runs from the repository root; writes only under $OUT/gemv2.
set -u
O=$OUT/gemv2; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
# Kernel caches and temporary files stay under $O (removed at the end).
export XDG_CACHE_HOME=$O/xdg TMPDIR=$O/tmp; mkdir -p $XDG_CACHE_HOME $TMPDIR
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step start
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader | tee $O/gpu.txt >>$S
cat $B/COMMIT >>$S 2>/dev/null
step tests
(cd engine/cuda && WHET_CUDA_REQUIRE=1 WHET_CUDA_GEMV2=1 timeout 45 $B/cuda.test -test.run 'TestGEMV2|TestMatVecKernels|TestMatVecsMatchesMatMul|TestGenerateGraphEqualsPlain' -test.v -test.count=1) >$O/cuda-tests.log 2>&1
echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL|graph and plain agree" $O/cuda-tests.log >>$S
grep -E -A8 -- "--- FAIL|panic" $O/cuda-tests.log | head -40 >>$S
W=$B/whet
for kern in gemv gemv2; do
  step "bench-1b $kern"
  env=""; [ $kern = gemv2 ] && env=1
  WHET_CUDA_GEMV2=$env timeout 30 $W bench --backend cuda --json --model llama-3.2-1b --method lora --decode 256 --seq 128 \
    --decode-modes graph >$O/bench-1b-$kern.jsonl 2>$O/bench-1b-$kern.err
  echo "bench-1b $kern rc=$?" >>$S
  cat $O/bench-1b-$kern.jsonl >>$S
  tail -3 $O/bench-1b-$kern.err >>$S
done
rm -rf $O/xdg $O/tmp
step end
