#!/usr/bin/env bash
# nf4-matvec (issue 21, NF4 decoding): the bandwidth-laid-out NF4 mat-vec matvec_nf4_v2
# (WHET_NF4_MATVEC=v2, kernels/nf4.cu) against the current matvec_nf4 and the CPU
# (TestNF4MatVecV2) and in greedy decoding of tiny-llama in NF4 (TestGenerateNF4V2), the
# kernel benchmark of v1, v2 and v2r8 (8 rows a block) at Llama-3.1-8B's shapes (GB/s), then
# Llama-3.1-8B QLoRA decoding (graph mode) without and with the env var.
# Runs from the repository root; writes only under $OUT/nf4-matvec.
set -u
O=$OUT/nf4-matvec; mkdir -p $O
B=$PWD/.dev/gpu/common
S=$O/summary.txt
# Kernel caches and temporary files stay under $O (removed at the end).
export XDG_CACHE_HOME=$O/xdg TMPDIR=$O/tmp; mkdir -p $XDG_CACHE_HOME $TMPDIR
step() { echo "== $(date -u +%T) $*" | tee -a $S; }
step start
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader | tee $O/gpu.txt >>$S
cat $B/COMMIT >>$S 2>/dev/null
step tests
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 40 $B/cuda.test -test.run 'TestNF4MatVecV2|TestNF4V2LaunchShape|TestMatVecKernels|TestGenerateNF4V2' -test.v -test.count=1) >$O/cuda-tests.log 2>&1
echo "cuda.test rc=$?" >>$S
grep -E "^(--- |ok|FAIL|PASS|panic)|^    --- FAIL" $O/cuda-tests.log >>$S
grep -E -A8 -- "--- FAIL|panic" $O/cuda-tests.log | head -40 >>$S
step kernel-bench
# GB/s = bytes the product must read (codes, absmax, x) and write, per product, HBM-bound
# (the recording cycles through 256 MB of weight copies). H100 SXM: 3.35 TB/s.
(cd engine/cuda && WHET_CUDA_REQUIRE=1 timeout 20 $B/cuda.test -test.run XXX -test.bench 'BenchmarkNF4MatVec' -test.benchtime 40x) >$O/kernel-bench.log 2>&1
echo "kernel bench rc=$?" >>$S
grep -E "^Benchmark|FAIL|panic" $O/kernel-bench.log >>$S
W=$B/whet
for kern in v1 v2; do
  step "bench-8b-qlora $kern"
  WHET_NF4_MATVEC=$kern timeout 60 $W bench --backend cuda --json --model llama-3.1-8b --method qlora --decode 256 --seq 128 \
    --decode-modes graph >$O/bench-8b-$kern.jsonl 2>$O/bench-8b-$kern.err
  echo "bench-8b $kern rc=$?" >>$S
  cat $O/bench-8b-$kern.jsonl >>$S
  tail -3 $O/bench-8b-$kern.err >>$S
done
python3 - $O/bench-8b-v1.jsonl $O/bench-8b-v2.jsonl <<'PY' | tee -a $S
import json, sys
for f in sys.argv[1:]:
    for line in open(f):
        try:
            r = json.loads(line)
        except Exception:
            continue
        print(f, r.get("decode_mode"), r.get("decode_tokens_per_sec"), "tok/s", r.get("weight_bytes_per_token"), "weight bytes/token")
PY
rm -rf $O/xdg $O/tmp
step end
